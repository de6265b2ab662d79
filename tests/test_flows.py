"""The flow table: the inlined fast path equals decode(), timeouts, eviction, client choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.flows import FlowConfig, FlowTable, ip_text
from monitor.source import CaptureReader

from conftest import PCAPS, robustness_files

FIELDS = (
    "uid",
    "proto",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "vlan",
    "first_ns",
    "last_ns",
    "packets_to_server",
    "packets_to_client",
    "bytes_to_server",
    "bytes_to_client",
    "payload_to_server",
    "payload_to_client",
    "flags_client",
    "flags_server",
    "isn_client",
    "isn_server",
    "state",
)


def _frames(paths: list[Path]) -> list[tuple[int, int, bytes, int]]:
    out = []
    for p in paths:
        with CaptureReader(str(p)) as r:
            out.extend(r)
    return out


def _run(frames: list[tuple[int, int, bytes, int]], **cfg: object) -> list[tuple]:
    ended: list = []
    table = FlowTable(ended.append, config=FlowConfig(**cfg))  # type: ignore[arg-type]
    table.process(frames)
    table.flush()
    return sorted(tuple(getattr(f, k) for k in FIELDS) for f in ended)


def _as_raw_ip(frames: list[tuple[int, int, bytes, int]]) -> list[tuple[int, int, bytes, int]]:
    """The same packets without their Ethernet header, as LINKTYPE_RAW: forces decode()."""
    out = []
    for ts, lt, data, wl in frames:
        if lt == 1 and len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x86\xdd"):
            out.append((ts, 101, data[14:], wl))
        else:
            out.append((ts, lt, data, wl))
    return out


def test_fast_path_agrees_with_decode() -> None:
    """FlowTable inlines Ethernet/IPv4/TCP decoding; the flows must be exactly those that
    decode() gives for the same packets (wire lengths kept, MACs aside)."""
    paths = sorted((PCAPS / "generic").glob("*.pcap*")) + robustness_files()
    frames = _frames(paths)
    fast = _run(frames)
    slow = _run(_as_raw_ip(frames))
    assert len(fast) > 20
    assert fast == slow


def test_idle_timeout_splits_a_silent_conversation() -> None:
    """A conversation that resumes after its idle timeout is a new flow; no packet is lost.
    ssh.pcap's TCP flow has pauses of a few ms between its packets."""
    frames = _frames([PCAPS / "generic" / "ssh.pcap"])
    normal = _run(frames)
    split = _run(frames, tcp_idle=0.000_5)
    assert len(split) > len(normal)
    assert sum(f[9] + f[10] for f in split) == sum(f[9] + f[10] for f in normal)


def test_eviction_flushes_flows_and_loses_no_packet() -> None:
    frames = _frames(sorted((PCAPS / "generic").glob("*.pcap")))
    ended: list = []
    table = FlowTable(ended.append, config=FlowConfig(max_flows=2))
    table.process(frames)
    assert len(table.flows) <= 2
    assert table.stats.evicted > 0
    assert table.stats.anomalies["flow.evicted"] == table.stats.evicted
    table.flush()
    normal = _run(frames)
    counted = sum(f.packets_to_server + f.packets_to_client for f in ended)
    assert counted == sum(f[9] + f[10] for f in normal)
    assert {f.end_reason for f in ended} >= {"evicted"}


def test_closed_flows_end_after_the_linger() -> None:
    """With a short sweep horizon, FIN-closed TCP flows end as 'closed', not at the end."""
    frames = _frames([PCAPS / "generic" / "http.pcap"])
    last = frames[-1][0]
    # A far-future UDP packet triggers a sweep long after the HTTP flows closed.
    probe = bytes.fromhex("45000020000100004011000" + "00a0000010a000002") + bytes.fromhex(
        "d43100350008" + "0000" + "00000000"
    )
    ended: list = []
    table = FlowTable(ended.append, config=FlowConfig(sweep_min_packets=0))
    table.process([*frames, (last + 3600 * 10**9, 101, probe, len(probe))])
    reasons = {ip_text(f.server_ip): f.end_reason for f in ended if f.proto == 6}
    assert reasons and set(reasons.values()) == {"closed"}


@pytest.mark.parametrize(
    ("flags", "sport", "dport", "client_is_src"),
    [
        (0x02, 40000, 104, True),  # SYN
        (0x12, 104, 40000, False),  # SYN-ACK seen first
        (0x10, 40000, 443, True),  # mid-stream, ephemeral -> service
        (0x10, 443, 40000, False),  # mid-stream, service -> ephemeral
        (0x10, 11112, 2575, True),  # both service ports: higher one is the client
    ],
)
def test_client_choice(flags: int, sport: int, dport: int, client_is_src: bool) -> None:
    from monitor.flows import _client_is_src

    ports = frozenset((11112, 2575))
    assert _client_is_src(6, flags, sport, dport, ports) is client_is_src


def test_flow_rows_follow_the_register_columns() -> None:
    """Flow.row() builds the register's rows by position: it must follow records.Flow."""
    from dataclasses import fields

    from monitor.records import Flow as FlowRecord

    ended: list = []
    table = FlowTable(ended.append)
    table.process(_frames([PCAPS / "generic" / "http.pcap"]))
    table.flush()
    f = ended[0]
    row = dict(zip([c.name for c in fields(FlowRecord)], f.row(7), strict=True))
    assert row["run_id"] == 7 and row["flow_uid"] == f.uid
    assert (row["client_ip"], row["server_port"], row["proto"]) == (
        ip_text(f.client_ip),
        80,
        "tcp",
    )
    assert row["packets_to_server"] == f.packets_to_server
    assert row["bytes_to_client"] == f.bytes_to_client
    assert row["state"] == "closed" and row["end_reason"] == "end"
    assert row["client_mac"] == f.client_mac.hex(":")
