"""The DICOM analyzer (monitor.parsers.dicom.analyzer): one DicomAssociation per association,
one DicomDevice per data set with device attributes, the PHI boundary, bounded memory and named
anomalies instead of exceptions. Fixtures: tests/wire/dicom_pdus.py (pynetdicom encoders)."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from wire import dicom_pdus as w
from wire.dicom_pdus import Run

from monitor.parsers.dicom import SPEC, DicomAnalyzer
from monitor.parsers.dicom.pdu import MAX_PDATA_LENGTH
from monitor.records import DicomDevice


def _conversation(run: Run, chunk: int = 0, max_pdu: int = 16382) -> Run:
    """RQ/AC, one C-STORE per transfer syntax, a C-ECHO, release: in protocol order."""
    run.feed(True, [w.ASSOCIATE_RQ], 1_000, chunk)
    run.feed(False, [w.ASSOCIATE_AC], 2_000, chunk)
    for ts, cid in w.CONTEXT_OF.items():
        run.feed(True, w.c_store_rq(w.DATASETS[ts], cid, max_pdu=max_pdu), 3_000, chunk)
        run.feed(False, w.c_store_rsp(cid), 4_000, chunk)
    run.feed(True, w.c_echo_rq(), 5_000, chunk)
    run.feed(False, w.c_echo_rsp(), 6_000, chunk)
    run.feed(True, [w.RELEASE_RQ], 7_000, chunk)
    run.feed(False, [w.RELEASE_RP], 8_000, chunk)
    return run


def _expected_device(transfer_syntax: str) -> DicomDevice:
    return DicomDevice(
        flow_uid="Fdicom1",
        ts=3_000,
        ip="10.20.0.5",
        sop_class_uid=w.CT_IMAGE_STORAGE,
        transfer_syntax=transfer_syntax,
        **w.DEVICE,  # type: ignore[arg-type]
    )


def test_spec() -> None:
    assert (SPEC.name, SPEC.tcp_ports, SPEC.analyzer) == ("dicom", (104, 11112), DicomAnalyzer)
    assert SPEC.probe is not None and SPEC.probe(w.ASSOCIATE_RQ[:16], True)


def test_association_record() -> None:
    run = _conversation(Run())
    assert run.analyzer.done
    run.close()
    assert run.anomalies == []
    (a,) = run.associations
    assert (a.ts, a.ts_end, a.client_ip, a.client_port, a.server_ip, a.server_port) == (
        1_000,
        8_000,
        "10.20.0.5",
        50123,
        "10.30.0.10",
        104,
    )
    assert (a.calling_ae, a.called_ae, a.result, a.tls) == (
        "STORESCU",
        "ANY-SCP",
        "accepted",
        False,
    )
    assert (a.implementation_class_uid, a.implementation_version_name) == (
        w.RQ_IMPLEMENTATION_CLASS_UID,
        w.RQ_IMPLEMENTATION_VERSION,
    )
    assert (a.acceptor_implementation_class_uid, a.acceptor_implementation_version_name) == (
        w.AC_IMPLEMENTATION_CLASS_UID,
        w.AC_IMPLEMENTATION_VERSION,
    )
    assert (a.max_pdu_length, a.acceptor_max_pdu_length) == (16382, 32768)
    assert a.application_context == w.APPLICATION_CONTEXT
    assert a.abstract_syntaxes == [w.CT_IMAGE_STORAGE, w.VERIFICATION, w.MR_IMAGE_STORAGE]
    assert a.commands == ["C-STORE-RQ", "C-STORE-RSP", "C-ECHO-RQ", "C-ECHO-RSP"]
    assert json.loads(a.command_counts) == {
        "C-STORE-RQ": 4,
        "C-STORE-RSP": 4,
        "C-ECHO-RQ": 1,
        "C-ECHO-RSP": 1,
    }
    assert json.loads(a.statuses) == {"C-STORE-RSP": {"0x0000": 4}, "C-ECHO-RSP": {"0x0000": 1}}
    assert json.loads(a.presentation_contexts) == [
        {
            "id": cid,
            "abstract_syntax": abstract,
            "transfer_syntaxes": transfers,
            "result": "acceptance" if result == 0 else "abstract-syntax-not-supported",
            "result_raw": result,
            "transfer_syntax": accepted if result == 0 else None,
        }
        for cid, (abstract, transfers, result, accepted) in w.CONTEXTS.items()
    ]
    assert json.loads(a.role_selection) == [
        {"abstract_syntax": w.CT_IMAGE_STORAGE, "scu": 1, "scp": 0, "from": "requestor"}
    ]
    assert a.user_identity_type == "username+passcode"
    assert (a.result_raw, a.reason, a.reason_raw, a.move_destinations) == (None, None, None, [])
    pdus_c = 1 + 4 * 2 + 1 + 1  # RQ, (command + data set PDU) x 4, echo, release RQ
    assert a.pdus == pdus_c + 1 + 4 + 1 + 1
    assert a.bytes_to_server == len(w.ASSOCIATE_RQ) + sum(
        len(p) for ts, cid in w.CONTEXT_OF.items() for p in w.c_store_rq(w.DATASETS[ts], cid)
    ) + sum(map(len, w.c_echo_rq())) + len(w.RELEASE_RQ)
    assert a.bytes_to_client == len(w.ASSOCIATE_AC) + sum(
        len(p) for cid in w.CONTEXT_OF.values() for p in w.c_store_rsp(cid)
    ) + sum(map(len, w.c_echo_rsp())) + len(w.RELEASE_RP)


def test_devices_in_every_transfer_syntax() -> None:
    run = _conversation(Run()).close()
    assert run.devices == [_expected_device(ts) for ts in w.CONTEXT_OF]


def test_phi_canaries_never_leave_the_analyzer() -> None:
    run = _conversation(Run()).close()
    text = run.text()
    for canary in w.CANARIES:
        assert canary not in text
    # ... although they are on the wire:
    for ts in (w.IMPLICIT_LE, w.EXPLICIT_LE, w.EXPLICIT_BE):
        assert b"CANARY^PHI" in w.DATASETS[ts] and b"19000101" in w.DATASETS[ts]
    assert b"CANARY-PASS" in w.ASSOCIATE_RQ


@pytest.mark.parametrize("chunk", [1, 3, 17, 1460])
def test_byte_by_byte_and_segment_splits_give_the_same_records(chunk: int) -> None:
    whole = _conversation(Run()).close()
    split = _conversation(Run(), chunk=chunk).close()
    assert split.records == whole.records
    assert split.anomalies == []


@pytest.mark.parametrize("max_pdu", [40, 100, 333])
def test_pdvs_fragmented_across_pdus_give_the_same_records(max_pdu: int) -> None:
    whole = _conversation(Run()).close()
    fragmented = _conversation(Run(), max_pdu=max_pdu).close()
    assert len(w.c_store_rq(w.DATASETS[w.IMPLICIT_LE], 1, max_pdu=max_pdu)) >= 4
    assert fragmented.devices == whole.devices
    (a,) = fragmented.associations
    assert a.commands == whole.associations[0].commands
    assert fragmented.anomalies == []


def test_rejected_association() -> None:
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ], 10)
    run.feed(False, [w.ASSOCIATE_RJ], 20)
    assert run.analyzer.done
    run.close()
    (a,) = run.associations
    assert (a.result, a.result_raw, a.reason, a.reason_raw) == (
        "rejected",
        1,
        "rejected-permanent: service-user: calling-ae-title-not-recognized",
        3,
    )
    assert (a.ts, a.ts_end, a.calling_ae) == (10, 20, "STORESCU")


def test_aborted_association() -> None:
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ], 10)
    run.feed(False, [w.ASSOCIATE_AC], 20)
    run.feed(True, w.c_echo_rq(), 30)
    assert not run.analyzer.done
    run.feed(False, [w.ABORT], 40)
    assert run.analyzer.done
    run.close()
    (a,) = run.associations
    assert (a.result, a.result_raw, a.reason, a.reason_raw) == (
        "aborted",
        2,
        "service-provider: invalid-pdu-parameter-value",
        6,
    )
    assert a.commands == ["C-ECHO-RQ"]


def test_capture_ending_before_the_ac_is_unknown() -> None:
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ], 10)
    assert not run.analyzer.done
    run.close()
    (a,) = run.associations
    assert (a.result, a.calling_ae, a.acceptor_implementation_class_uid) == (
        "unknown",
        "STORESCU",
        None,
    )


def test_a_second_rq_after_release_starts_a_new_association() -> None:
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ, w.RELEASE_RQ, w.ASSOCIATE_RQ], 10)
    run.close()
    assert [a.result for a in run.associations] == ["unknown", "unknown"]
    assert [a.pdus for a in run.associations] == [2, 1]
    assert run.anomaly_names == ["dicom.pdu_unexpected"]


def test_joined_late_no_ac_seen_still_reads_devices() -> None:
    """No A-ASSOCIATE-AC: the data set's encoding is guessed from its first element."""
    run = Run()
    run.feed(True, w.c_store_rq(w.DATASETS[w.EXPLICIT_LE], 3), 50)
    run.feed(True, w.c_store_rq(w.DATASETS[w.IMPLICIT_LE], 1), 60)
    run.close()
    assert [(d.modality, d.station_name, d.transfer_syntax) for d in run.devices] == [
        ("CT", "CT01", None),
        ("CT", "CT01", None),
    ]
    assert run.associations[0].result == "unknown"


def test_large_data_set_streams_in_constant_memory() -> None:
    size = 50 << 20
    dataset = w.encode_dataset(w.device_dataset(pixel_bytes=size), w.EXPLICIT_LE)
    pdus = b"".join(w.c_store_rq(dataset, 3, max_pdu=1 << 20))
    del dataset
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ])
    run.feed(False, [w.ASSOCIATE_AC])
    tracemalloc.start()
    try:
        # 64 KiB chunks as the stream manager hands them (bytes; each one freed after use).
        for i in range(0, len(pdus), 1 << 16):
            run.analyzer.data(True, pdus[i : i + (1 << 16)], 3_000)
        run.feed(False, w.c_store_rsp(3))
        run.feed(True, [w.RELEASE_RQ])
        run.feed(False, [w.RELEASE_RP])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(pdus) > size
    assert peak < 2 << 20, f"peak {peak} bytes"
    assert run.devices == [_expected_device(w.EXPLICIT_LE)]
    assert run.associations[0].commands == ["C-STORE-RQ", "C-STORE-RSP"]


def test_big_deflated_data_set_is_inflated_in_bounded_steps() -> None:
    dataset = w.encode_dataset(w.device_dataset(pixel_bytes=20 << 20), w.DEFLATED_LE)
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ])
    run.feed(False, [w.ASSOCIATE_AC])
    tracemalloc.start()
    try:
        run.feed(True, w.c_store_rq(dataset, 7), 3_000, 1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20 + len(dataset) * 3, f"peak {peak} bytes"
    assert run.close().devices == [_expected_device(w.DEFLATED_LE)]


# -- malformed input: named anomalies, never an exception -------------------------------------

MALFORMED = [
    ("assoc_rq_length_4gb", [w.assoc_rq_length_4gb], "dicom.pdu_length_absurd"),
    ("pdu_unknown_type_0x09", [w.pdu_unknown_type_0x09], "dicom.pdu_unknown_type"),
    ("assoc_rq_truncated_fixed_part", [w.assoc_rq_truncated_fixed_part], "dicom.pdu_truncated"),
    ("assoc_rq_item_length_overrun", [w.assoc_rq_item_length_overrun], "dicom.item_length_overrun"),
    ("assoc_rq_unknown_item_0x33", [w.assoc_rq_unknown_item_0x33], "dicom.item_unknown_type"),
    ("assoc_rq_item_header_truncated", [w.assoc_rq_item_header_truncated], "dicom.item_truncated"),
    ("assoc_rq_ae_control_chars", [w.assoc_rq_ae_control_chars], "dicom.ae_title_control_chars"),
    ("pdv_overrun", [w.ASSOCIATE_RQ, w.p_data_pdv_length_overrun], "dicom.pdv_length_overrun"),
    ("p_data_pdv_length_1", [w.ASSOCIATE_RQ, w.p_data_pdv_length_1], "dicom.pdv_length_invalid"),
    ("abort_truncated", [w.ASSOCIATE_RQ, w.abort_truncated], "dicom.pdu_truncated"),
    ("ac_from_requestor", [w.ASSOCIATE_AC], "dicom.pdu_unexpected"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "units", "anomaly"), MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("chunk", [0, 1])
def test_malformed_unit_raises_its_named_anomaly(
    name: str, units: list[bytes], anomaly: str, chunk: int
) -> None:
    run = Run()
    run.feed(True, units, 5, chunk)
    run.close()
    assert anomaly in run.anomaly_names
    # A stream whose very first PDU header is absurd never showed an association.
    assert len(run.associations) == (
        0 if name in ("assoc_rq_length_4gb", "pdu_unknown_type_0x09") else 1
    )
    for canary in w.CANARIES:
        assert canary not in run.text()


def test_ae_title_control_chars_are_replaced_in_the_record() -> None:
    run = Run()
    run.feed(True, [w.assoc_rq_ae_control_chars])
    run.close()
    assert run.associations[0].calling_ae == "STORE?SC?U"
    assert run.anomaly_names == ["dicom.ae_title_control_chars"]


def _store_with(dataset: bytes, cid: int = 3) -> Run:
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ])
    run.feed(False, [w.ASSOCIATE_AC])
    run.feed(True, w.c_store_rq(dataset, cid))
    return run.close()


def test_data_set_with_an_invalid_vr_stops_its_walk() -> None:
    good = w.DATASETS[w.EXPLICIT_LE]
    at = good.index(b"\x08\x00\x70\x00LO")  # Manufacturer
    run = _store_with(good[: at + 4] + b"Q!" + good[at + 6 :])
    assert run.anomaly_names == ["dicom.dataset_invalid"]
    assert [(d.modality, d.manufacturer) for d in run.devices] == [("CT", None)]


def test_deflate_error() -> None:
    run = _store_with(b"\xff" * 64, cid=7)
    assert run.anomaly_names == ["dicom.deflate_error"]
    assert run.devices == []


def test_device_value_too_long_is_skipped_unread() -> None:
    ds = w.device_dataset()
    with pytest.warns(UserWarning, match="exceeds the maximum length"):
        ds.StationName = "X" * 2000
    run = _store_with(w.encode_dataset(ds, w.EXPLICIT_LE))
    assert run.anomaly_names == ["dicom.device_value_too_long"]
    (d,) = run.devices
    assert (d.station_name, d.device_serial_number) == (None, "SN-000042")


def test_command_too_long_and_command_invalid() -> None:
    import struct

    junk = struct.pack("<HHL", 0, 0x1000, 70_000) + bytes(70_000)
    pdu = struct.pack(">BBL", 4, 0, 6 + len(junk)) + struct.pack(">LBB", len(junk) + 2, 1, 3) + junk
    not_a_command = b"\x08\x00\x60\x00\x02\x00\x00\x00CT"
    pdu2 = struct.pack(">BBLLBB", 4, 0, 6 + len(not_a_command), len(not_a_command) + 2, 1, 3)
    run = Run()
    run.feed(True, [w.ASSOCIATE_RQ, pdu, pdu2 + not_a_command])
    run.close()
    assert run.anomaly_names == ["dicom.command_too_long", "dicom.command_invalid"]


def test_pdata_bound_is_large() -> None:
    assert MAX_PDATA_LENGTH >= 128 << 20
