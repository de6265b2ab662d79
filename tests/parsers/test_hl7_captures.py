"""HL7 end to end on the sample captures (python-hl7's MLLP client and server in network
namespaces): every message tshark's hl7 dissector sees is one hl7_messages row with the same
type and event, in the same direction, and no patient data is stored."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from monitor import api

from conftest import PCAPS

CAPTURES = sorted((PCAPS / "hl7").glob("*.pcap"))
EXPECTED = json.loads((PCAPS / "hl7" / "expected.json").read_text())["captures"]


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_messages_match_tshark(path: Path, db: str) -> None:
    api.replay([str(path)], db=db)
    con = duckdb.connect(db, read_only=True)
    rows = con.execute(
        "SELECT client_ip, server_ip, direction, message_type, trigger_event, framing "
        "FROM hl7_messages ORDER BY ts, direction DESC"
    ).fetchall()
    con.close()
    want = EXPECTED[path.name]["hl7"]["messages"]
    got = sorted((r[3], r[4], r[2]) for r in rows)
    expect = []
    for m in want:
        to_server = m["dst_port"] in (2575, 6661)
        expect.append((m["message_type"], m["event"], "to_server" if to_server else "to_client"))
    assert got == sorted(expect)
    assert {r[5] for r in rows} == {"mllp"}


def test_header_fields_and_acks(db: str) -> None:
    api.replay([str(PCAPS / "hl7" / "mllp-adt-oru-ack.pcap")], db=db)
    con = duckdb.connect(db, read_only=True)
    rows = con.execute(
        "SELECT message_type, trigger_event, version, control_id, ack_code, "
        "acknowledged_control_id, device_ids, segments FROM hl7_messages ORDER BY ts"
    ).fetchall()
    con.close()
    sent = {r[3]: r for r in rows if r[0] != "ACK"}
    acks = [r for r in rows if r[0] == "ACK"]
    assert acks and all(a[4] == "AA" and a[5] in sent for a in acks)
    versions = {r[2] for r in sent.values()}
    assert {"2.5", "2.3", "2.5.1", "2.7", "2.8"} <= versions
    device_ids = {d for r in rows for d in (r[6] or [])}
    assert {"MONITOR-0042^^^EXAMPLE", "DEVICE-77"} <= device_ids
    assert all("PID" in r[7] for r in sent.values())  # segment names only, never their content
