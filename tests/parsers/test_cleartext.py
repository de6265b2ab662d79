"""FTP greeting and Telnet detection (monitor.parsers.cleartext): a vsftpd greeting captured on
loopback, RFC 959 multi-line and refused greetings, Telnet option negotiation split across
segments; the client's bytes (USER, PASS, log-in text) are never read."""

from __future__ import annotations

from wire import tcp_payloads as w

from monitor.parsers import cleartext
from monitor.parsers.cleartext import has_negotiation, parse_reply_line


def _ftp(*exchange: tuple[bool, bytes], chunk: int = 0) -> w.Harness:
    return w.Harness(cleartext.FtpAnalyzer, server_port=21).feed(exchange, chunk=chunk)


def _telnet(*exchange: tuple[bool, bytes], chunk: int = 0) -> w.Harness:
    return w.Harness(cleartext.TelnetAnalyzer, server_port=23).feed(exchange, chunk=chunk)


def test_vsftpd_greeting() -> None:
    h = _ftp(*w.FTP_VSFTPD_GREETING, chunk=4)
    assert h.about_client == [(False, "ftp.banner", "220 (vsFTPd 3.0.3)")]
    assert h.analyzer.done and h.anomalies == []


def test_multi_line_greeting_records_its_first_line() -> None:
    h = _ftp((False, b"220-PACS archive\r\n220-Authorized use only\r\n220 ready\r\n"))
    assert h.about_client == [(False, "ftp.banner", "220-PACS archive")]


def test_service_ready_later_then_greeting() -> None:
    h = _ftp((False, b"120 ready in 2 minutes\r\n"), (False, b"220 Microsoft FTP Service\r\n"))
    assert h.about_client == [(False, "ftp.banner", "220 Microsoft FTP Service")]


def test_refused_greeting_ends_without_a_banner() -> None:
    h = _ftp((False, b"421 Too many users\r\n"))
    assert h.analyzer.done and h.observations == [] and h.anomalies == []


def test_client_bytes_are_never_read() -> None:
    h = _ftp((True, b"USER admin\r\nPASS secret\r\n"))
    assert h.observations == [] and not h.analyzer.done


def test_a_greeting_that_is_not_a_reply_is_malformed() -> None:
    h = _ftp((False, w.FTP_GREETING_NOT_A_REPLY))
    assert h.anomalies == [("ftp.malformed", "server->client: 12-byte line that is not a reply")]
    assert h.analyzer.done


def test_parse_reply_line() -> None:
    assert parse_reply_line(b"220 (vsFTPd 3.0.3)\r") == (b"220", "220 (vsFTPd 3.0.3)")
    assert parse_reply_line(b"220") == (b"220", "220")
    assert parse_reply_line(b"2200 x") is None
    assert parse_reply_line(b"SSH-2.0-x") is None


def test_telnet_server_negotiation() -> None:
    h = _telnet((False, w.TELNET_SERVER_OPENING))
    assert h.about_client == [(False, "telnet.server", "true")]
    assert h.analyzer.done


def test_telnet_iac_split_across_segments_from_the_client() -> None:
    h = _telnet((True, b"\xff"), (True, b"\xfb\x18"))
    assert h.about_client == [(False, "telnet.server", "true")]


def test_no_negotiation_in_the_first_kib_of_each_side() -> None:
    h = _telnet((False, b"login: " * 200), (True, b"x" * 1100))
    assert h.observations == [] and h.analyzer.done


def test_has_negotiation() -> None:
    assert has_negotiation(b"\xff\xfa\x18\x01\xff\xf0")  # SB TERMINAL-TYPE SEND SE
    assert not has_negotiation(b"\xff\xff")  # an escaped 0xff data byte
    assert not has_negotiation(b"plain text\xff")


def test_specs() -> None:
    assert (cleartext.FTP_SPEC.name, cleartext.FTP_SPEC.tcp_ports) == ("ftp", (21,))
    assert (cleartext.TELNET_SPEC.name, cleartext.TELNET_SPEC.tcp_ports) == ("telnet", (23,))
    assert cleartext.FTP_SPEC.probe is None and cleartext.TELNET_SPEC.probe is None
