"""The C fast lane (monitor/_flowcore.c) against the plain-Python flow table: the same flows,
records, observations and counters, frame for frame, on real and generated captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor import flows as flows_module
from monitor.flows import FlowConfig, FlowTable
from monitor.observations import ObservationCollector
from monitor.parsers import DATAGRAM_REGISTRY, REGISTRY
from monitor.source import CaptureReader
from monitor.streams import StreamManager

from conftest import PCAPS, robustness_files

pytestmark = pytest.mark.skipif(
    flows_module._flowcore is None, reason="medmon was installed without the compiled modules"
)

Frame = tuple[int, int, bytes, int]


def _frames(paths: list[Path]) -> list[Frame]:
    out: list[Frame] = []
    for p in paths:
        with CaptureReader(str(p)) as r:
            out.extend(r)
    return out


def _everything(frames: list[Frame], fast_lane: bool, **cfg: Any) -> dict[str, Any]:
    """Runs the flow table with streams and observations, as a replay does; returns all it
    produced, in the order it was produced."""
    ended: list[tuple[Any, ...]] = []
    records: list[object] = []
    anomalies: list[tuple[str, str | None, str | None]] = []
    collector = ObservationCollector(DATAGRAM_REGISTRY, anomaly=lambda *a: anomalies.append(a))
    streams = StreamManager(
        REGISTRY,
        emit=records.append,
        anomaly=lambda *a: anomalies.append(a),
        observer=collector.flow_observer,
    )
    table = FlowTable(
        lambda f: ended.append(f.row(1) + (f.flags_client, f.flags_server)),
        streams=streams,
        observer=collector,
        config=FlowConfig(**cfg),
        fast_lane=fast_lane,
    )
    assert (table._core is not None) is fast_lane
    checked = 0

    def progress(stats: Any, live: int) -> None:
        nonlocal checked
        checked += 1

    table.process(frames, progress=progress, progress_every=1000)
    live = len(table.flows)
    table.flush()
    s = table.stats
    return {
        "flows": ended,
        "records": [repr(r) for r in records],
        "anomalies": anomalies,
        "observations": list(collector.rows(1)),
        "stats": (
            s.packets,
            s.bytes,
            s.duplicates,
            s.non_ip,
            s.no_flow,
            s.fragments,
            dict(s.anomalies),
            s.flows,
            s.evicted,
        ),
        "live_before_flush": live,
        "progress_calls": checked,
    }


def _same(frames: list[Frame], **cfg: Any) -> dict[str, Any]:
    fast = _everything(frames, True, **cfg)
    slow = _everything(frames, False, **cfg)
    for name in slow:
        assert fast[name] == slow[name], name
    return fast


def test_sample_and_robustness_captures() -> None:
    paths = sorted(PCAPS.glob("*/*.pcap*")) + robustness_files()
    out = _same(_frames([p for p in paths if p.suffix in (".pcap", ".pcapng")]))
    assert len(out["flows"]) > 100 and out["records"] and out["observations"]


def test_span_duplicates_capture() -> None:
    out = _same(_frames([PCAPS / "generic" / "span-duplicates.pcap"]))
    assert out["stats"][2] > 0  # duplicates were dropped


def test_generated_hospital_mix(tmp_path: Path) -> None:
    """The bench's mix: DICOM, HL7, TLS, HTTP, SMB, DNS, IPv6, VLANs, 400 flows; with timeouts,
    sweeps and evictions that happen while the fast lane holds counts not yet settled."""
    from monitor.bench import generate_mix

    path = tmp_path / "mix.pcap"
    generate_mix(str(path), packets=20_000, flows=400)
    frames = _frames([path])
    _same(frames)
    evicting = _same(frames, max_flows=50, sweep_min_packets=500)
    assert evicting["stats"][-1] > 0
    timeouts = {"udp_idle": 0.002, "tcp_idle": 0.005, "sweep_every": 0.001}
    timing_out = _same(frames, sweep_min_packets=500, **timeouts)
    assert "idle" in {row[18] for row in timing_out["flows"]}


def _qinq(data: bytes) -> bytes:
    """The frame with an 802.1ad outer tag: a shape the fast lane leaves to Python."""
    return data[:12] + b"\x88\xa8\x00\x07" + data[12:]


def test_a_duplicate_is_dropped_across_the_lanes() -> None:
    """A SPAN copy that only Python decodes (QinQ) is a duplicate of the original the fast lane
    counted, and the other way round: the two lanes share one signature window."""
    frames = [f for f in _frames([PCAPS / "generic" / "http.pcap"]) if f[1] == 1]
    plain = _everything(frames, True)
    for copy_first in (False, True):
        doubled: list[Frame] = []
        for ts, lt, data, wl in frames:
            pair = [(ts, lt, data, wl), (ts + 1000, lt, _qinq(data), wl + 4)]
            doubled.extend(reversed(pair) if copy_first else pair)
        out = _same(doubled)
        if not copy_first:  # (a copy seen first makes the flow's VLAN and sizes its own)
            assert out["flows"] == plain["flows"]
        ip_frames = plain["stats"][0] - plain["stats"][3]
        assert out["stats"][2] == ip_frames  # every copy dropped, in either order


def test_pending_counts_are_settled_before_python_reads_them() -> None:
    """Counts the fast lane holds reach the Flow before anything reads it: at a sweep, at a
    fragment of the flow, at the flow's end and at flush."""
    frames = _frames([PCAPS / "generic" / "ssh.pcap"])
    ended: list[Any] = []
    table = FlowTable(ended.append)
    table.process(frames[: len(frames) // 2])
    (flow,) = [f for f in table.flows.values() if f.proto == 6]
    before = flow.packets_to_server + flow.packets_to_client
    table.sweep(frames[len(frames) // 2][0])  # not timed out: only settled
    settled = flow.packets_to_server + flow.packets_to_client
    assert (
        settled > before
        and settled + sum(f.packets_to_server + f.packets_to_client for f in ended)
        == len(frames[: len(frames) // 2]) - table.stats.non_ip
    )


def test_blocks_of_records_count_as_the_frames(tmp_path: Path) -> None:
    """CaptureReader.batches hands a chunk's records over as one block, left in the chunk
    (no object per frame); both lanes take blocks, and lists of frames, and stop inside one
    for their periodic work (every 1,000 packets here) without losing or repeating a
    frame."""
    from monitor._flowcore import Records
    from monitor.bench import generate_mix

    path = tmp_path / "mix.pcap"
    generate_mix(str(path), packets=20_000, flows=400)
    frames = _frames([path])
    reader = CaptureReader(str(path))
    blocks = list(reader.batches())
    assert all(isinstance(b, Records) for b in blocks) and len(blocks) > 10
    assert [f for b in blocks for f in b] == frames
    assert [b.last_ts for b in blocks] == [list(b)[-1][0] for b in blocks]
    assert sum(len(b) for b in blocks) == len(frames)
    assert reader.stats.packets == len(frames)
    assert reader.stats.bytes == sum(len(f[2]) for f in frames)
    expected = _everything(frames, True)
    lists = [list(b) for b in blocks]
    for fast_lane in (True, False):
        assert _everything(blocks, fast_lane) == expected  # type: ignore[arg-type]
        assert _everything(lists, fast_lane) == expected  # type: ignore[arg-type]


def test_flush_empties_the_table_at_once() -> None:
    """At the end of input every live flow ends, oldest first, with the fast lane's counts; the
    table (and the core's index) is then empty: the same frames again make new flows with the
    same counts, in both lanes."""
    frames = _frames([PCAPS / "generic" / "http.pcap", PCAPS / "generic" / "dns.pcap"])
    later = 10**18  # the same frames again, far past every timeout

    def shifted(row: tuple[Any, ...]) -> tuple[Any, ...]:  # (first, last, the rest), no uid
        return (row[2] - later, row[3] - later, *row[4:])

    for fast_lane in (True, False):
        ended: list[Any] = []
        table = FlowTable(ended.append, fast_lane=fast_lane)
        table.process(frames)
        live = len(table.flows)
        table.flush()
        first = [f.row(1) for f in ended]
        assert live == len(ended) > 2 and not table.flows and not table._index
        assert [r[2] for r in first] == sorted(r[2] for r in first)  # oldest first
        assert {f.end_reason for f in ended} == {"end"}
        ended.clear()
        table.process([(ts + later, lt, data, wl) for ts, lt, data, wl in frames])
        table.flush()
        again = [shifted(f.row(1)) for f in ended]
        assert again == [(r[2], r[3], *r[4:]) for r in first]


def test_synack_traits_are_read_once_per_sender_and_variant() -> None:
    """The fast lane hands a SYN-ACK's traits to the observer once per sender, TTL, window and
    first option bytes, as the observer reads them: repeats are not handed over, and every
    variant is. A server's handshake is replayed on new client ports with its TTL, window or
    options changed."""
    frames = [f for f in _frames([PCAPS / "generic" / "http.pcap"]) if f[1] == 1]
    syn = next(f for f in frames if f[2][23] == 6 and f[2][47] & 0x12 == 0x02)
    synack = next(f for f in frames if f[2][23] == 6 and f[2][47] & 0x12 == 0x12)
    ack = next(
        f for f in frames if f[2][23] == 6 and f[2][47] == 0x10 and f[2][26:30] == syn[2][26:30]
    )
    assert synack[2][46] >> 4 > 5  # the SYN-ACK has options

    def edit(data: bytes, at: int, value: bytes) -> bytes:
        return data[:at] + value + data[at + len(value) :]

    variants = [
        lambda d: d,
        lambda d: d,  # a repeat
        lambda d: edit(d, 22, bytes([d[22] - 1])),  # another TTL
        lambda d: edit(d, 48, b"\x12\x34"),  # another window
        lambda d: edit(d, 54, bytes([d[54] ^ 0x01])),  # other first option bytes
    ]
    replayed: list[Frame] = []
    ts = syn[0]
    for i, variant in enumerate(variants):
        port = (40000 + i).to_bytes(2, "big")
        for f, at in ((syn, 34), (synack, 36), (ack, 34)):
            ts += 1000
            data = edit(f[2], at, port)
            replayed.append((ts, 1, variant(data) if f is synack else data, f[3]))
    out = _same(replayed)
    synack = [row for row in out["observations"] if row[5].startswith("tcp.synack_")]
    # Read once per variant: four reads of the TTL (all round up to one initial TTL); the
    # repeat is not read again.
    assert [row[8] for row in synack if row[5] == "tcp.synack_ttl"] == [4]
    windows = {row[6] for row in synack if row[5] == "tcp.synack_window"}
    assert len(windows) == 2 and str(0x1234) in windows
    assert len({row[6] for row in synack if row[5] == "tcp.synack_options"}) == 2
