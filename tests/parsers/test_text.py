"""The recorded-text rules of monitor.parsers.text: datagram rule (defaults) and stream rule."""

from __future__ import annotations

from monitor.parsers.text import LATIN1, MAX_VALUE_CHARS, UTF8_REPLACE, clean_text, clean_value


def test_datagram_rule_marks_controls_and_keeps_spaces() -> None:
    assert clean_text(b" Host\x00\x1b[1m\x7f\xc2\x85 ") == " Host??[1m?? "
    assert clean_text("x" * 300) == "x" * MAX_VALUE_CHARS


def test_datagram_rule_reads_invalid_utf8_whole_as_latin1() -> None:
    assert clean_text("café".encode()) == "café"
    assert clean_text(b"caf\xe9 \xc3\xa9") == "caf\xe9 \xc3\xa9"
    assert clean_text("é".encode(), decoding=LATIN1) == "Ã©"


def test_stream_rule_is_clean_text_with_its_parameters() -> None:
    raw = b"  Agent\x00/1.0\x1b[31m\x7f\xc2\x85 caf\xe9  "
    assert clean_value(raw) == "Agent/1.0[31m caf\ufffd"
    assert clean_value(raw) == clean_text(raw, decoding=UTF8_REPLACE, controls="", strip=True)
    assert clean_value(" " + "x" * 300) == "x" * MAX_VALUE_CHARS


def test_printable_values_and_removed_controls_before_the_cap() -> None:
    assert clean_text("\x00" * 10 + "y" * 300, controls="") == "y" * MAX_VALUE_CHARS
    assert clean_text("\u00e9t\u00e9 \u2028") == "\u00e9t\u00e9 \u2028"  # not Cc: kept
    assert clean_value(" \u0085x\u0085 ") == "x"
