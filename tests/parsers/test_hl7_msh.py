"""HL7 v2 MSH and device fields (monitor.parsers.hl7.msh) on messages python-hl7 put on the wire
(tests/wire/hl7_frames.py); malformed headers are hand-built and named for their defect."""

from __future__ import annotations

import pytest
from wire import hl7_frames as w

from monitor.parsers.hl7.msh import Message, parse_message


def _body(block: bytes) -> bytes:
    """The message inside one MLLP block (<SB> message <EB><CR>)."""
    assert block[:1] == b"\x0b" and block[-2:] == b"\x1c\r"
    return block[1:-2]


def test_adt_a01_v25_header_and_escaped_facility() -> None:
    msg, anomalies = parse_message(_body(w.ADT_A01_V25_MLLP))
    assert anomalies == []
    assert msg == Message(
        delimiters="|^~\\&",
        sending_application="ADT1^1.2.840.114350.1.13.0.1.7.5.737384.2^ISO",
        sending_facility="GOOD HEALTH HOSPITAL",
        receiving_application="MEDMON^1.2.3^ISO",
        receiving_facility="CARDIO|ICU",
        message_datetime="20240102030405",
        message_type="ADT",
        trigger_event="A01",
        message_structure="ADT_A01",
        control_id="ADT-0001",
        processing_id="P",
        version="2.5",
        segments=("MSH", "EVN", "PID", "NK1", "PV1"),
    )


def test_oru_r01_v251_keeps_obx18_only() -> None:
    msg, anomalies = parse_message(_body(w.ORU_R01_V251_MLLP))
    assert anomalies == []
    assert msg.sending_application == "MONITOR^1.2.3^ISO"
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ORU", "R01", "ORU_R01")
    assert msg.version == "2.5.1"
    assert msg.segments == ("MSH", "PID", "OBR", "OBX")
    assert msg.device_ids == ("BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO",)


def test_v27_prt_device_fields_and_vid_version() -> None:
    msg, anomalies = parse_message(_body(w.ORU_R01_V27_PRT_MLLP))
    assert anomalies == []
    assert msg.version == "2.7"  # MSH-12 '2.7^USA': VID component 1
    assert msg.segments == ("MSH", "PID", "OBR", "OBX", "PRT")
    assert msg.device_ids == (
        "INFUSION-PUMP-12^ACME^1.2.3.4.5^ISO",
        "(01)00812345678901",
        "20230101",
        "20280101",
        "LOT-42",
        "SN-0042",
        "DON-1",
        "PUMP^Infusion pump^L",
    )


def test_orm_o01_v23_without_structure() -> None:
    msg, anomalies = parse_message(_body(w.ORM_O01_V23_MLLP))
    assert anomalies == []
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ORM", "O01", None)
    assert msg.version == "2.3"
    assert msg.segments == ("MSH", "PID", "ORC", "OBR")


def test_v21_trigger_event_comes_from_evn() -> None:
    """v2.1 has no trigger component in MSH-9: EVN-1 holds the event type code."""
    msg, anomalies = parse_message(_body(w.ADT_V21_MLLP))
    assert anomalies == []
    assert (msg.message_type, msg.trigger_event, msg.version) == ("ADT", "A08", "2.1")
    assert msg.receiving_application is None  # MSH-5 empty
    assert msg.receiving_facility == "ICU"
    assert msg.segments == ("MSH", "EVN", "PID")


def test_custom_delimiters() -> None:
    msg, anomalies = parse_message(_body(w.CUSTOM_DELIMITERS_MLLP))
    assert anomalies == []
    assert msg.delimiters == "#$*!@"
    assert msg.sending_application == "REG$1.2.9$ISO"
    assert msg.receiving_facility == "IT#OPS"  # '!F!' is the escaped field separator
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ADT", "A04", "ADT_A01")
    assert msg.control_id == "ADT-0004"
    assert msg.segments == ("MSH", "PID")


def test_ack_msa() -> None:
    msg, anomalies = parse_message(_body(w.ORU_R01_V251_ACK_MLLP))
    assert anomalies == []
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ACK", "R01", "ACK")
    assert (msg.ack_code, msg.acknowledged_control_id) == ("AA", "ORU-0001")
    assert msg.control_id == "ACK-ORU-0001"
    assert msg.segments == ("MSH", "MSA")


def test_custom_delimiter_ack_msa() -> None:
    msg, _ = parse_message(_body(w.CUSTOM_DELIMITERS_ACK_MLLP))
    assert (msg.ack_code, msg.acknowledged_control_id) == ("AA", "ADT-0004")


def test_no_msh_records_segment_names_only() -> None:
    msg, anomalies = parse_message(_body(w.BLOCK_WITHOUT_MSH))
    assert [a.name for a in anomalies] == ["hl7.no_msh"]
    assert msg == Message(segments=("PID", "NK1", "PV1"))


def test_alphanumeric_field_separator_is_invalid_msh() -> None:
    msg, anomalies = parse_message(_body(w.MSH_ALPHANUMERIC_FIELD_SEPARATOR))
    assert [a.name for a in anomalies] == ["hl7.invalid_msh"]
    assert msg.delimiters is None
    assert msg.segments == ("MSH", "PID")


def test_too_few_msh_fields_is_invalid_msh_with_what_was_read() -> None:
    msg, anomalies = parse_message(_body(w.MSH_TOO_FEW_FIELDS))
    assert [a.name for a in anomalies] == ["hl7.invalid_msh"]
    assert (msg.sending_application, msg.receiving_facility) == ("APP", "RFAC")
    assert msg.message_type is None


def test_segment_without_name_is_not_read() -> None:
    msg, anomalies = parse_message(_body(w.SEGMENT_WITHOUT_NAME))
    assert [a.name for a in anomalies] == ["hl7.invalid_segment"]
    assert msg.segments == ("MSH", "EVN", "PID", "???", "NK1", "PV1")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"A\\S\\B", "A^B"),
        (b"A\\T\\B\\R\\C\\E\\D", "A&B~C\\D"),
        (b"A\\H\\B\\X0D\\", "A\\H\\B\\X0D\\"),  # highlighting and hex escapes stay as sent
        (b"A\\", "A\\"),
        (b"A\\F", "A\\F"),
    ],
)
def test_escape_sequences_in_kept_fields(value: bytes, text: str) -> None:
    msg, _ = parse_message(b"MSH|^~\\&|" + value + b"|F|R|RF|2024||ADT^A01|1|P|2.5\r")
    assert msg.sending_application == text


@pytest.mark.parametrize(
    "buf",
    [b"", b"M", b"MSH", b"MSH|", b"MSH|^", b"MSH|^^^^|", b"\r\r", b"\xff\xfe\x00", b"MSH|||||"],
)
def test_never_raises(buf: bytes) -> None:
    msg, anomalies = parse_message(buf)
    assert anomalies  # every one of these is malformed
    assert isinstance(msg, Message)


def test_truncated_last_segment_is_not_read_for_fields() -> None:
    body = _body(w.ORU_R01_V251_MLLP)
    cut = body[: body.index(b"BEDSIDE") + 4]
    msg, _ = parse_message(cut, truncated=True)
    assert msg.segments == ("MSH", "PID", "OBR", "OBX")
    assert msg.device_ids == ()
