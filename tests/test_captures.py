"""End to end on real captures: replay into a real register and compare with tshark.

Every robustness capture replays without a crash; where a capture is well formed, the packet
count equals ``capinfos -c`` and the TCP and UDP flow counts equal tshark's conversations.
The bundled samples (pcaps/generic) are also checked against ``expected.json``, which
make_captures.py wrote from tshark when it made them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from monitor import api

from conftest import PCAPS, ROBUSTNESS, expected, robustness_files, robustness_ids, tshark

#: Captures where tshark legitimately counts other conversations than a flow monitor should.
NOT_WELL_FORMED = {
    # Malformed TCP headers: tshark marks the frame malformed and makes no conversation; medmon
    # still attributes the packet to the ports it could read (anomaly tcp.bad_header_length).
    "tcpdump/heapoverflow-tcp_print.pcap",
    "tcpdump/tcp_header_heapoverflow.pcap",
    # Five fragments of a datagram whose last fragment was never captured: tshark cannot
    # reassemble it and shows no TCP; medmon attributes the first fragment's ports to a flow.
    "zeek/ipv4_fragmented-3.pcap",
}


def _capinfos_count(path: Path) -> int:
    exe = shutil.which("capinfos")
    if exe is None:
        pytest.skip("capinfos is not installed (apt-get install wireshark-common)")
    out = subprocess.run([exe, "-c", "-M", str(path)], capture_output=True, text=True).stdout
    m = re.search(r"Number of packets:\s+(\d+)", out)
    return int(m.group(1)) if m else 0


def _conversations(path: Path, kind: str) -> int:
    out = tshark("-r", str(path), "-q", "-z", f"conv,{kind}")
    return sum(1 for line in out.splitlines() if "<->" in line)


def _flow_counts(db: str) -> dict[str, int]:
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute("SELECT proto, count(*) FROM flows GROUP BY proto").fetchall()
    finally:
        con.close()
    return {proto: n for proto, n in rows}


@pytest.mark.parametrize("path", robustness_files(), ids=robustness_ids())
def test_robustness_capture_replays_and_agrees_with_tshark(path: Path, db: str) -> None:
    result = api.replay([str(path)], db=db)
    assert result.run_id == 1
    assert result.packets == _capinfos_count(path)
    name = str(path.relative_to(ROBUSTNESS))
    if name in NOT_WELL_FORMED:
        return
    counts = _flow_counts(db)
    assert counts.get("tcp", 0) == _conversations(path, "tcp")
    assert counts.get("udp", 0) == _conversations(path, "udp")


SAMPLES = sorted((PCAPS / "generic").glob("*.pcap*"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_capture_matches_its_oracle(path: Path, db: str) -> None:
    expected = json.loads((PCAPS / "generic" / "expected.json").read_text())["captures"][path.name]
    result = api.replay([str(path)], db=db)
    assert result.packets == expected["frames"]
    counts = _flow_counts(db)
    assert counts.get("tcp", 0) == expected["tcp_conversations"]
    assert counts.get("udp", 0) == expected["udp_conversations"]
    con = duckdb.connect(db, read_only=True)
    got = {
        (c, s, p)
        for c, s, p in con.execute(
            "SELECT client_ip, server_ip, server_port FROM flows WHERE proto = 'tcp'"
        ).fetchall()
    }
    con.close()
    want = {
        (e["client_ip"], e["server_ip"], e["server_port"]) for e in expected["tcp_client_server"]
    }
    assert got == want


def test_span_duplicates_are_counted_once(db: str) -> None:
    """Every packet of span-duplicates.pcap was captured on two router legs (TTL 64 and 63,
    other MACs): one flow, each packet counted once, the copies reported as duplicates."""
    path = PCAPS / "generic" / "span-duplicates.pcap"
    frames = expected("span-duplicates.pcap")["frames"]
    result = api.replay([str(path)], db=db)
    assert result.packets == frames
    assert result.duplicates == frames // 2
    con = duckdb.connect(db, read_only=True)
    rows = con.execute(
        "SELECT packets_to_server + packets_to_client, state FROM flows WHERE proto = 'tcp'"
    ).fetchall()
    con.close()
    assert rows == [(frames // 2, "closed")]


def test_ssh_dups_capture_counts_retransmissions_once(db: str) -> None:
    """zeek/tcp_ssh-dups.pcap repeats packets as a SPAN port does; tshark sees 377 frames."""
    path = ROBUSTNESS / "zeek" / "tcp_ssh-dups.pcap"
    if not path.exists():
        pytest.skip("robustness captures absent")
    dup_frames = tshark(
        "-r", str(path), "-Y", "tcp.analysis.duplicate_ack || tcp.analysis.retransmission"
    )
    result = api.replay([str(path)], db=db)
    assert result.packets == 377
    assert 0 < result.duplicates <= len(dup_frames.splitlines())


def test_handshake_reorder_keeps_the_syn_sender_as_client(db: str) -> None:
    """The SYN-ACK is captured before the SYN: the client is still the SYN's sender."""
    path = ROBUSTNESS / "zeek" / "tcp_handshake-reorder.pcap"
    if not path.exists():
        pytest.skip("robustness captures absent")
    syn = tshark("-r", str(path), "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields",
                 "-e", "ip.src", "-e", "tcp.dstport")  # fmt: skip
    client, port = syn.split()[:2]
    api.replay([str(path)], db=db)
    con = duckdb.connect(db, read_only=True)
    row = con.execute("SELECT client_ip, server_port, app, state FROM flows").fetchone()
    con.close()
    assert row == (client, int(port), "http", "closed")


def test_missing_syn_makes_the_ephemeral_side_the_client(db: str) -> None:
    path = ROBUSTNESS / "zeek" / "tcp_missing-syn.pcap"
    if not path.exists():
        pytest.skip("robustness captures absent")
    api.replay([str(path)], db=db)
    con = duckdb.connect(db, read_only=True)
    row = con.execute("SELECT client_port > server_port, server_port, app FROM flows").fetchone()
    con.close()
    assert row == (True, 80, "http")


def test_directory_replay_merges_every_sample(db: str) -> None:
    """pcaps/ recursively: every sample capture, merged in time order, in one run."""
    every = sorted(PCAPS.rglob("*.pcap*"))
    frames = 0
    for folder in ("generic", "dicom", "hl7"):
        expected_file = PCAPS / folder / "expected.json"
        frames += sum(
            e["frames"] for e in json.loads(expected_file.read_text())["captures"].values()
        )
    result = api.replay([str(PCAPS)], db=db)
    assert len(result.files) == len(every)
    assert result.packets == frames
