"""DICOM end to end on the sample captures (DCMTK, Orthanc and pynetdicom in network
namespaces): every association tshark's dicom dissector sees is one dicom_associations row
with the same AE titles, implementation UIDs and version names, result and DIMSE commands;
device attributes come out of the datasets; no patient data is stored."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from monitor import api

from conftest import PCAPS

CAPTURES = sorted((PCAPS / "dicom").glob("*.pcap"))
EXPECTED = json.loads((PCAPS / "dicom" / "expected.json").read_text())["captures"]


def _rows(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_associations_match_tshark(path: Path, db: str) -> None:
    api.replay([str(path)], db=db)
    got = _rows(
        db,
        "SELECT client_ip, server_ip, server_port, calling_ae, called_ae, "
        "implementation_class_uid, implementation_version_name, "
        "acceptor_implementation_class_uid, acceptor_implementation_version_name, result, "
        "commands FROM dicom_associations WHERE NOT coalesce(tls, false) ORDER BY ts",
    )
    want = EXPECTED[path.name]["dicom"]["associations"]
    assert len(got) == len(want)
    for row, exp in zip(got, want, strict=True):
        assert row[:9] == (
            exp["client_ip"],
            exp["server_ip"],
            exp["server_port"],
            exp["calling_ae"],
            exp["called_ae"],
            exp["rq_implementation_class_uid"],
            exp["rq_implementation_version"],
            exp.get("ac_implementation_class_uid"),
            exp.get("ac_implementation_version"),
        )
        if "reject" in exp:
            assert row[9] == "rejected"
        elif "A-ABORT" in exp["pdus"]:
            assert row[9] == "aborted"
        else:
            assert row[9] == "accepted"
        # tshark loses PDU boundaries after bulk data (bulk-store); compare what it saw.
        assert set(exp["dimse"]) <= set(row[10])


def test_device_attributes_from_datasets(db: str) -> None:
    api.replay([str(PCAPS / "dicom")], db=db)
    rows = _rows(
        db,
        "SELECT ip, modality, manufacturer, model, software_versions, station_name, "
        "device_serial_number, institution_name FROM dicom_devices",
    )
    ct = [r for r in rows if r[0] == "10.20.0.11" and r[1] == "CT"]
    assert ct and ct[0][2:4] == ("GE MEDICAL SYSTEMS", "Optima CT660")
    assert ct[0][4] == ["0.0.0.0", "sw_1.0"]
    assert (ct[0][5], ct[0][6], ct[0][7]) == ("CT01", "CT660-SN-0001", "Example Hospital")
    models = {(r[1], r[2], r[3]) for r in rows}
    assert ("MR", "SIEMENS", "MAGNETOM Skyra") in models
    assert any(m[1] == "FUJIFILM" for m in models)


def test_reject_and_abort_reasons_are_named(db: str) -> None:
    api.replay([str(PCAPS / "dicom" / "rejected.pcap")], db=db)
    rows = _rows(db, "SELECT result, reason FROM dicom_associations ORDER BY ts")
    assert rows[0][0] == "rejected" and "called-ae-title-not-recognized" in rows[0][1]
    assert rows[1][0] == "aborted"


def test_move_destination_and_non_standard_port(db: str) -> None:
    api.replay([str(PCAPS / "dicom" / "find-move.pcap")], db=db)
    dests = _rows(db, "SELECT move_destinations FROM dicom_associations")
    assert ["CLINWS31"] in [d[0] for d in dests]
    api.replay([str(PCAPS / "dicom" / "pynetdicom-store.pcap")], db=db)
    ports = _rows(db, "SELECT DISTINCT server_port FROM dicom_associations")
    assert (11113,) in ports


def test_dicom_over_tls_is_recorded_as_such(db: str) -> None:
    """tls-store.pcap: DCMTK storescu -> storescp over TLS on 2762, and in clear on 11112."""
    api.replay([str(PCAPS / "dicom" / "tls-store.pcap")], db=db)
    flows = _rows(db, "SELECT server_port, app FROM flows WHERE proto = 'tcp' ORDER BY 1")
    assert flows == [(2762, "dicom-tls"), (11112, "dicom")]
    rows = _rows(
        db,
        "SELECT server_port, tls, result, calling_ae FROM dicom_associations ORDER BY 1",
    )
    assert rows == [(2762, True, "unknown", None), (11112, False, "accepted", "CT01")]
