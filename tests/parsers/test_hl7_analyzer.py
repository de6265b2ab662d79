"""The HL7 analyzer (monitor.parsers.hl7): python-hl7's MLLP exchanges in, Hl7Message records
out, and no PHI canary anywhere in a record or an anomaly (STYLE S9)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from wire import hl7_frames as w

from monitor.anomalies import CATALOGUE
from monitor.parsers.base import FlowContext
from monitor.parsers.detect import probe_hl7
from monitor.parsers.hl7 import SPEC, Hl7Analyzer
from monitor.records import Hl7Message
from monitor.streams import StreamManager

CLIENT = bytes([10, 40, 0, 7])
SERVER = bytes([10, 30, 0, 10])

Chunks = list[tuple[bool, bytes]]


class Run:
    """One analyzer over one flow, recording what it emits and reports."""

    def __init__(self, **kwargs: int) -> None:
        self.records: list[Hl7Message] = []
        self.anomalies: list[tuple[str, str | None]] = []
        ctx = FlowContext(
            flow_uid="Cflow1",
            client_ip=CLIENT,
            server_ip=SERVER,
            client_port=51000,
            server_port=2575,
            emit=self._emit,
            anomaly=lambda name, detail: self.anomalies.append((name, detail)),
        )
        self.analyzer = Hl7Analyzer(ctx, **kwargs)

    def _emit(self, record: object) -> None:
        assert isinstance(record, Hl7Message)
        self.records.append(record)

    def feed(self, chunks: Chunks, *, close: bool = True) -> Run:
        for ts, (from_client, data) in enumerate(chunks, start=1000):
            self.analyzer.data(from_client, data, ts)
        if close:
            self.analyzer.close()
        return self

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.anomalies]


def _exchange(*names: str) -> Chunks:
    chunks: Chunks = []
    for name in names:
        sent, acked = w.RECORDED[name]
        chunks += [(True, sent), (False, acked)]
    return chunks


def _assert_phi_free(run: Run) -> None:
    text = repr(run.records) + repr(run.anomalies)
    for canary in w.CANARIES:
        assert canary not in text


def test_spec() -> None:
    assert SPEC.name == "hl7"
    assert SPEC.tcp_ports == (2575,)
    assert SPEC.probe is probe_hl7
    assert SPEC.analyzer is Hl7Analyzer


def test_anomaly_names_are_catalogued() -> None:
    for name in (
        "hl7.mllp_missing_end_block",
        "hl7.mllp_bytes_outside_block",
        "hl7.message_too_large",
        "hl7.message_incomplete",
        "hl7.invalid_msh",
        "hl7.no_msh",
        "hl7.invalid_segment",
    ):
        assert name in CATALOGUE


def test_adt_and_its_ack_become_two_records() -> None:
    run = Run().feed(_exchange("ADT_A01_V25"))
    assert run.anomalies == []
    msg, ack = run.records
    expected: dict[str, Any] = dict(
        flow_uid="Cflow1",
        ts=1000,
        client_ip="10.40.0.7",
        server_ip="10.30.0.10",
        server_port=2575,
        direction="to_server",
        sending_application="ADT1^1.2.840.114350.1.13.0.1.7.5.737384.2^ISO",
        sending_facility="GOOD HEALTH HOSPITAL",
        receiving_application="MEDMON^1.2.3^ISO",
        receiving_facility="CARDIO|ICU",
        message_type="ADT",
        trigger_event="A01",
        version="2.5",
        ack_code=None,
        client_port=51000,
        message_datetime="20240102030405",
        message_structure="ADT_A01",
        control_id="ADT-0001",
        processing_id="P",
        delimiters="|^~\\&",
        segments=["MSH", "EVN", "PID", "NK1", "PV1"],
        acknowledged_control_id=None,
        device_ids=[],
        framing="mllp",
    )
    assert msg == Hl7Message(**expected)
    assert (ack.direction, ack.ts, ack.message_type, ack.trigger_event) == (
        "to_client",
        1001,
        "ACK",
        "A01",
    )
    assert (ack.ack_code, ack.acknowledged_control_id, ack.control_id) == (
        "AA",
        "ADT-0001",
        "ACK-ADT-0001",
    )
    assert ack.sending_application == "MEDMON^1.2.3^ISO"
    assert ack.segments == ["MSH", "MSA"]
    assert run.records[0].run_id is None  # set by the register


def test_every_recorded_exchange_without_phi() -> None:
    run = Run().feed(_exchange(*w.RECORDED))
    assert run.anomalies == []
    summary = [
        (r.direction, r.message_type, r.trigger_event, r.version, r.ack_code, r.device_ids)
        for r in run.records
    ]
    assert summary == [
        ("to_server", "ADT", "A01", "2.5", None, []),
        ("to_client", "ACK", "A01", "2.5", "AA", []),
        ("to_server", "ORU", "R01", "2.5.1", None, ["BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO"]),
        ("to_client", "ACK", "R01", "2.5.1", "AA", []),
        (
            "to_server",
            "ORU",
            "R01",
            "2.7",
            None,
            [
                "INFUSION-PUMP-12^ACME^1.2.3.4.5^ISO",
                "(01)00812345678901",
                "20230101",
                "20280101",
                "LOT-42",
                "SN-0042",
                "DON-1",
                "PUMP^Infusion pump^L",
            ],
        ),
        ("to_client", "ACK", "R01", "2.7", "AA", []),
        ("to_server", "ORM", "O01", "2.3", None, []),
        ("to_client", "ACK", "O01", "2.3", "AA", []),
        ("to_server", "ADT", "A08", "2.1", None, []),
        ("to_client", "ACK", None, "2.1", "AA", []),
        ("to_server", "ADT", "A04", "2.5", None, []),
        ("to_client", "ACK", "A04", "2.5", "AA", []),
    ]
    assert run.records[-2].delimiters == "#$*!@"
    _assert_phi_free(run)


def test_byte_by_byte_gives_the_same_records() -> None:
    whole = Run().feed(_exchange(*w.RECORDED))
    split: Chunks = [
        (from_client, data[i : i + 1])
        for from_client, data in _exchange(*w.RECORDED)
        for i in range(len(data))
    ]
    one_by_one = Run().feed(split)
    assert one_by_one.anomalies == []

    def strip_ts(r: Hl7Message) -> dict[str, object]:
        return {f.name: getattr(r, f.name) for f in fields(r) if f.name != "ts"}

    assert [strip_ts(r) for r in one_by_one.records] == [strip_ts(r) for r in whole.records]


def test_several_messages_in_one_chunk_share_its_ts() -> None:
    stream = b"".join(sent for sent, _ in w.RECORDED.values())
    run = Run().feed([(True, stream)])
    assert [r.control_id for r in run.records] == [
        "ADT-0001",
        "ORU-0001",
        "ORU-0002",
        "ORM-0001",
        "MSG-21",
        "ADT-0004",
    ]
    assert {r.ts for r in run.records} == {1000}


def test_missing_end_block() -> None:
    run = Run().feed([(True, w.ADT_MISSING_END_BLOCK_THEN_ORU)])
    assert run.names == ["hl7.mllp_missing_end_block"]
    assert [r.control_id for r in run.records] == ["ADT-0001", "ORU-0001"]
    _assert_phi_free(run)


def test_raw_hl7_without_mllp() -> None:
    run = Run().feed([(True, w.RAW_ADT_THEN_ORU)])
    assert run.anomalies == []
    assert [(r.control_id, r.framing) for r in run.records] == [
        ("ADT-0001", "raw"),
        ("ORU-0001", "raw"),
    ]


def test_garbage_bytes() -> None:
    run = Run().feed([(True, w.GARBAGE_THEN_ADT)])
    assert run.names == ["hl7.mllp_bytes_outside_block"]
    assert run.anomalies[0][1] == (
        "client->server: 17 bytes outside MLLP blocks skipped at stream offset 0"
    )
    assert [r.control_id for r in run.records] == ["ADT-0001"]


def test_block_without_msh_keeps_no_phi() -> None:
    run = Run().feed([(True, w.BLOCK_WITHOUT_MSH)])
    assert run.names == ["hl7.no_msh"]
    (record,) = run.records
    assert record.segments == ["PID", "NK1", "PV1"]
    assert record.message_type is None
    _assert_phi_free(run)


def test_invalid_msh() -> None:
    run = Run().feed([(True, w.MSH_ALPHANUMERIC_FIELD_SEPARATOR), (True, w.MSH_TOO_FEW_FIELDS)])
    assert run.names == ["hl7.invalid_msh", "hl7.invalid_msh"]
    assert [r.sending_application for r in run.records] == [None, "APP"]
    _assert_phi_free(run)


def test_invalid_segment() -> None:
    run = Run().feed([(True, w.SEGMENT_WITHOUT_NAME)])
    assert run.names == ["hl7.invalid_segment"]
    assert run.records[0].segments == ["MSH", "EVN", "PID", "???", "NK1", "PV1"]
    _assert_phi_free(run)


def test_gap_and_end_of_stream_cut_messages() -> None:
    run = Run()
    run.analyzer.data(True, w.ORU_R01_V251_MLLP[:120], 1)  # MSH and the start of PID
    run.analyzer.gap(True, 100)
    run.analyzer.data(True, w.ORU_R01_V251_MLLP[220:] + w.ADT_A01_V25_MLLP[:-2], 2)
    run.analyzer.close()
    assert run.names == ["hl7.message_incomplete", "hl7.message_incomplete"]
    assert [r.control_id for r in run.records] == ["ORU-0001", "ADT-0001"]
    assert run.records[0].segments == ["MSH", "PID"]
    assert [r.ts for r in run.records] == [1, 2]
    _assert_phi_free(run)


def test_fifty_megabyte_message() -> None:
    """An ORU with a 50 MB OBX-5 (e.g. an embedded PDF): one record from the kept prefix."""
    body = w.ORU_R01_V251_MLLP[:-2]
    filler = b"OBX|2|ED|PDF^Report^L||^AP^PDF^Base64^" + b"Q0FOQVJZ" * 8192 + b"\r"  # ~64 KiB
    run = Run()
    run.analyzer.data(True, body, 1)
    sent = len(body) - 1
    n = 0
    while sent < 50_000_000:
        run.analyzer.data(True, filler, 2)
        sent += len(filler)
        n += 1
    run.analyzer.data(True, w.ORU_R01_V251_MLLP[-2:], 3)  # <EB><CR>
    run.analyzer.data(False, w.ORU_R01_V251_ACK_MLLP, 4)
    run.analyzer.close()
    assert run.names == ["hl7.message_too_large"]
    assert "over 8388608 bytes" in (run.anomalies[0][1] or "")
    msg, ack = run.records
    assert (msg.control_id, msg.ts, msg.message_type) == ("ORU-0001", 3, "ORU")
    assert msg.segments[:4] == ["MSH", "PID", "OBR", "OBX"]
    assert msg.device_ids == ["BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO"]
    assert ack.acknowledged_control_id == "ORU-0001"
    _assert_phi_free(run)


def test_through_the_stream_manager() -> None:
    """SPEC plugged into streams: the port claims the flow, reassembly feeds the analyzer."""
    from types import SimpleNamespace

    out: list[object] = []
    anomalies: list[tuple[str, str | None, str | None]] = []
    manager = StreamManager([SPEC], out.append, lambda *a: anomalies.append(a), strict=True)
    flow = SimpleNamespace(
        uid="Cflow2",
        stream=None,
        app=None,
        client_ip=CLIENT,
        server_ip=SERVER,
        client_port=51001,
        server_port=2575,
        isn_client=100,
        isn_server=900,
    )
    sent, acked = w.RECORDED["ORU_R01_V251"]
    manager.tcp(flow, True, 10, 101, 0x18, sent[:50])
    manager.tcp(flow, True, 11, 151, 0x18, sent[50:])
    manager.tcp(flow, False, 12, 901, 0x18, acked)
    manager.close(flow)
    assert anomalies == []
    assert flow.app == "hl7"
    assert [(r.direction, r.ts, r.control_id) for r in out] == [  # type: ignore[attr-defined]
        ("to_server", 11, "ORU-0001"),
        ("to_client", 12, "ACK-ORU-0001"),
    ]
