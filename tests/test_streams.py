"""TCP reassembly (monitor.streams): tshark's ``follow,tcp`` as the oracle on real captures, and
hand-built segments for each edge case, each test named for the defect it guards against.

Real captures are read with scapy's ``RawPcapReader`` and :func:`monitor.decode.decode`, and a
small stand-in flow table (:func:`feed_capture`) groups TCP packets by 4-tuple. It is test
scaffolding: medmon's own ``source`` + ``flows`` can replace it without changing the checks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scapy.utils import RawPcapReader

from monitor import streams
from monitor.anomalies import CATALOGUE
from monitor.decode import ACK, FIN, FRAG_NONE, SYN, Packet, decode
from monitor.parsers import REGISTRY
from monitor.parsers.base import FlowContext, ParserSpec
from monitor.streams import (
    HISTORY_CHUNKS,
    PROBE_CLIENT,
    PROBE_SERVER,
    Event,
    Reassembler,
    StreamManager,
)

from conftest import ROBUSTNESS, need_tshark, robustness_files, tshark

PSH_ACK = 0x18

# -- test scaffolding ---------------------------------------------------------------------------


class Collector:
    """A test analyzer: records every event per direction (True: client -> server)."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.events: dict[bool, list[tuple[str, Any]]] = {True: [], False: []}
        self.timestamps: list[int] = []
        self.closed = 0
        self.done = False

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self.events[from_client].append(("data", bytes(data)))
        self.timestamps.append(ts_ns)

    def gap(self, from_client: bool, size: int) -> None:
        self.events[from_client].append(("gap", size))

    def close(self) -> None:
        self.closed += 1

    def stream(self, from_client: bool) -> bytes:
        """The delivered bytes of one direction, gaps left out."""
        return b"".join(v for k, v in self.events[from_client] if k == "data")

    def as_tshark(self, from_client: bool) -> bytes:
        """One direction as ``tshark -z follow,tcp,raw`` writes it: a gap becomes tshark's
        ``[N bytes missing in capture file]`` marker, NUL included (packet-tcp.c
        ``check_follow_fragments``)."""
        return b"".join(
            v if k == "data" else b"[%d bytes missing in capture file]\0" % v
            for k, v in self.events[from_client]
        )


class Recorder:
    """Collects what a StreamManager reports: records, anomalies and the analyzers it built."""

    def __init__(self) -> None:
        self.records: list[object] = []
        self.anomalies: list[tuple[str, str | None, str | None]] = []
        self.analyzers: dict[str, Collector] = {}

    def emit(self, record: object) -> None:
        self.records.append(record)

    def anomaly(self, name: str, flow_uid: str | None, detail: str | None) -> None:
        self.anomalies.append((name, flow_uid, detail))

    def collector(self, ctx: FlowContext) -> Collector:
        analyzer = Collector(ctx)
        self.analyzers[ctx.flow_uid] = analyzer
        return analyzer

    def names(self) -> list[str]:
        return [a[0] for a in self.anomalies]


def make_flow(
    uid: str = "C1", client_port: int = 40000, server_port: int = 4242, **kw: Any
) -> SimpleNamespace:
    """A stand-in for ``monitor.flows.Flow`` with the attributes the stream manager uses."""
    flow = SimpleNamespace(
        uid=uid,
        client_ip=bytes([10, 0, 0, 1]),
        server_ip=bytes([10, 0, 0, 2]),
        client_port=client_port,
        server_port=server_port,
        app=None,
        stream=None,
        isn_client=None,
        isn_server=None,
    )
    for k, v in kw.items():
        setattr(flow, k, v)
    return flow


def tcp_packets(path: Path) -> Iterator[tuple[int, Packet, bytes]]:
    """``(ts_ns, packet, payload)`` for each TCP packet with ports in a pcap file."""
    with RawPcapReader(str(path)) as reader:
        linktype = reader.linktype
        nano = getattr(reader, "nano", False)
        for frame, meta in reader:
            raw = decode(linktype, frame)
            if raw is None:
                continue
            pkt = Packet._make(raw)
            if pkt.proto != 6 or pkt.sport < 0 or pkt.l4_offset < 0 or pkt.frag != FRAG_NONE:
                continue  # IP fragments are the flow table's business, not this stand-in's
            sub = meta.usec if nano else meta.usec * 1000
            payload = frame[pkt.payload_offset : pkt.payload_offset + pkt.payload_len]
            yield meta.sec * 1_000_000_000 + sub, pkt, payload


def feed_capture(path: Path, manager: StreamManager) -> list[SimpleNamespace]:
    """Run a capture's TCP packets through ``manager`` with a minimal flow table.

    Flows are keyed by 4-tuple; the client is the SYN's sender (a SYN-ACK's receiver), else the
    side with the higher port. ``isn_client``/``isn_server`` are set from the SYN and SYN-ACK
    before the manager sees the packet, as monitor.flows does. Every flow is closed at the end.
    """
    flows: dict[frozenset[tuple[bytes, int]], SimpleNamespace] = {}
    for ts_ns, p, payload in tcp_packets(path):
        key = frozenset(((p.src, p.sport), (p.dst, p.dport)))
        flow = flows.get(key)
        if flow is None:
            syn = p.tcp_flags & SYN
            src_is_client = not p.tcp_flags & ACK if syn else p.sport > p.dport
            c, s = ((p.src, p.sport), (p.dst, p.dport))
            if not src_is_client:
                c, s = s, c
            flow = flows[key] = make_flow(
                f"F{len(flows)}",
                client_ip=c[0],
                client_port=c[1],
                server_ip=s[0],
                server_port=s[1],
            )
        from_client = p.src == flow.client_ip and p.sport == flow.client_port
        if p.tcp_flags & SYN:
            if from_client and not p.tcp_flags & ACK:
                flow.isn_client = p.seq
            elif not from_client and p.tcp_flags & ACK:
                flow.isn_server = p.seq
        if flow.stream is not False:
            manager.tcp(flow, from_client, ts_ns, p.seq, p.tcp_flags, payload)
    for flow in flows.values():
        manager.close(flow)
    return list(flows.values())


def collect_capture(path: Path, **kw: Any) -> tuple[list[SimpleNamespace], Recorder]:
    """Reassemble every TCP flow of ``path`` into a :class:`Collector` (claims them all)."""
    rec = Recorder()
    spec = ParserSpec(
        "test", "collects every flow", probe=lambda b, c: True, analyzer=rec.collector
    )
    flows = feed_capture(path, StreamManager([spec], rec.emit, rec.anomaly, **kw))
    return flows, rec


def tshark_streams(path: Path) -> list[int]:
    """tshark's TCP stream indexes in a capture."""
    out = tshark("-r", str(path), "-T", "fields", "-e", "tcp.stream")
    return sorted({int(x) for x in out.split()})


def tshark_follow(path: Path, indexes: Sequence[int]) -> dict[int, dict[tuple[bytes, int], bytes]]:
    """``tshark -q -z follow,tcp,raw,N`` for each stream N (one tshark run): the bytes each
    endpoint sent, keyed by (ip, port).

    Each block names ``Node 0`` and ``Node 1`` and prints each chunk as one hex line, those sent
    by node 1 indented with a tab. A stream whose endpoints tshark cannot name is left out.
    """
    args = [a for i in indexes for a in ("-z", f"follow,tcp,raw,{i}")]
    out = tshark("-r", str(path), "-q", *args)
    result: dict[int, dict[tuple[bytes, int], bytes]] = {}
    for block in out.split("Follow: tcp,raw\n")[1:]:
        index = int(re.search(r"^Filter: tcp.stream eq (\d+)$", block, re.M).group(1))  # type: ignore[union-attr]
        nodes = re.findall(r"^Node ([01]): \[?([0-9A-Fa-f:.]+?)\]?:(\d+)$", block, re.M)
        if len(nodes) != 2:
            continue
        ends = [(ipaddress.ip_address(host).packed, int(port)) for _, host, port in nodes]
        sent = {ends[0]: b"", ends[1]: b""}
        for line in block.split("\nNode 1:", 1)[1].splitlines()[1:]:
            if line.startswith("="):
                break
            sent[ends[1] if line.startswith("\t") else ends[0]] += bytes.fromhex(line.strip())
        result[index] = sent
    return result


def compare_with_tshark(path: Path) -> list[str]:
    """Compare each TCP stream's two directions with tshark; return the mismatches."""
    need_tshark()
    flows, rec = collect_capture(path)
    by_ends = {
        frozenset(((f.client_ip, f.client_port), (f.server_ip, f.server_port))): f for f in flows
    }
    problems = []
    indexes = tshark_streams(path)
    assert indexes, f"tshark sees no TCP stream in {path.name}"
    follows = tshark_follow(path, indexes)
    assert sorted(follows) == indexes, "tshark named no endpoints for some stream"
    for index, sent in sorted(follows.items()):
        flow = by_ends.get(frozenset(sent))
        # A flow that never carried payload was never claimed (no probe ran): nothing to say.
        analyzer = rec.analyzers.get(flow.uid) if flow else None
        for end, theirs in sent.items():
            from_client = flow is not None and end == (flow.client_ip, flow.client_port)
            ours = analyzer.as_tshark(from_client) if analyzer else b""
            if ours != theirs:
                pairs = zip(ours, theirs, strict=False)
                at = next(
                    (i for i, (a, b) in enumerate(pairs) if a != b), min(len(ours), len(theirs))
                )
                problems.append(
                    f"stream {index} {'client' if from_client else 'server'}: {len(ours)} bytes "
                    f"vs tshark's {len(theirs)}, first difference at {at}"
                )
    return problems


def data_of(events: Sequence[Event]) -> bytes:
    return b"".join(v for k, v in events if k == "data" and isinstance(v, bytes))


def kinds(events: Sequence[Event]) -> list[str]:
    return [k for k, _ in events]


# -- tshark follow,tcp as the oracle ---------------------------------------------------------

#: HTTP and SSH flows with reordered handshakes, a missing SYN, fast retransmissions (captured
#: headers only), SPAN duplicates, inconsistent retransmissions and capture loss, a retransmitted
#: FIN (no data), and 802.1Q. Every TCP stream of each must reassemble exactly as tshark's.
KEY_CAPTURES = [
    "zeek/tcp_handshake-reorder.pcap",
    "zeek/tcp_missing-syn.pcap",
    "zeek/tcp_retransmit-fast009.pcap",
    "zeek/tcp_ssh-dups.pcap",
    "zeek/tcp_reassembly.pcap",
    "zeek/tcp_fin_retransmission.pcap",
    "zeek/http-vlan-0.pcap",
]


@pytest.mark.parametrize("name", KEY_CAPTURES)
def test_reassembly_equals_tshark_follow(robustness: Path, name: str) -> None:
    """Byte for byte, per direction, for every TCP stream.

    Where bytes are missing from the capture (tcp_reassembly.pcap: nine holes in the client's
    stream) tshark writes ``[N bytes missing in capture file]`` once the peer ACKs past the hole
    and we report ``('gap', N)`` (at flush, the buffer being large enough): rendering our gaps
    as tshark's marker makes the two equal, so the holes are at the same places with the same
    sizes. The same capture's retransmissions carry *different* bytes than the first copies; the
    equality shows we keep the same copy as tshark (see test_tcp_reassembly_*).
    """
    assert compare_with_tshark(robustness / name) == []


def test_tcp_reassembly_reports_gaps_and_inconsistent_retransmissions(robustness: Path) -> None:
    flows, rec = collect_capture(robustness / "zeek/tcp_reassembly.pcap")
    (flow,) = flows
    analyzer = rec.analyzers[flow.uid]
    gaps = [v for k, v in analyzer.events[True] if k == "gap"]
    assert gaps == [8, 8, 32, 728, 708, 81, 1343, 20, 1448]  # tshark's nine markers
    assert rec.names().count("tcp.stream_gap") == 9
    # Retransmissions that differ from the copy kept (Zeek's trace is made for it): e.g. frame
    # 64 re-sends seq 13367..13378 as "orgmmpelofil" where frame 28 had "dgphrodofqhq".
    mismatches = [d for n, _, d in rec.anomalies if n == "tcp.stream_overlap_mismatch"]
    offsets = [int(d.split("stream offset ")[1].split(";")[0]) for d in mismatches if d]
    assert offsets == [6114, 13366, 13378, 13402, 13402, 32930]
    assert rec.anomalies[0] == (
        "tcp.stream_gap",
        "F0",
        "client->server: 8 bytes missing at stream offset 1714",
    )
    assert analyzer.events[False] == []  # the server sent nothing but ACKs and a FIN
    assert analyzer.closed == 1


def test_small_buffer_differs_from_tshark_only_after_its_first_early_skip(
    robustness: Path,
) -> None:
    """Where we legitimately differ: tshark holds out-of-order data without limit and skips a
    hole when the peer ACKs past it; we skip when the bounded buffer overflows. With a 3000-byte
    buffer we skip tcp_reassembly.pcap's 1448-byte hole at stream offset 4654 before frame 35
    retransmits those bytes, so they come too late and stay a gap. Before that offset the
    stream is tshark's byte for byte, and the stream keeps its length (data + gaps)."""
    path = robustness / "zeek/tcp_reassembly.pcap"
    _, full = collect_capture(path)  # equals tshark (test_reassembly_equals_tshark_follow)
    _, small = collect_capture(path, max_buffer=3000)
    (ours,) = small.analyzers.values()
    (reference,) = full.analyzers.values()

    def by_offset(a: Collector) -> list[int | None]:
        """The client's stream, one entry per stream offset: a byte, or None in a gap."""
        out: list[int | None] = []
        for kind, value in a.events[True]:
            out.extend(value if kind == "data" else [None] * value)
        return out

    mine, theirs = by_offset(ours), by_offset(reference)
    assert len(mine) == len(theirs) == 33208  # up to the client's FIN
    first = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
    assert (first, mine[first], theirs[first] is not None) == (4654, None, True)
    assert ("tcp.stream_buffer_full", "F0", "client->server: 1448 bytes missing at stream "
            "offset 4654") in small.anomalies  # fmt: skip


def test_ssh_duplicates_are_delivered_once(robustness: Path) -> None:
    """377 frames, most of them SPAN duplicates: each byte once, no anomaly."""
    flows, rec = collect_capture(robustness / "zeek/tcp_ssh-dups.pcap")
    analyzer = rec.analyzers[flows[0].uid]
    assert analyzer.stream(True).startswith(b"SSH-2.0-OpenSSH_7.9\r\n")
    assert analyzer.stream(False).startswith(b"SSH-2.0-OpenSSH_7.6p1 Ubuntu-4ubuntu0.3\r\n")
    assert (len(analyzer.stream(True)), len(analyzer.stream(False))) == (3705, 4273)
    assert rec.anomalies == []


def test_missing_syn_starts_at_first_data(robustness: Path) -> None:
    flows, rec = collect_capture(robustness / "zeek/tcp_missing-syn.pcap")
    (flow,) = flows
    assert flow.isn_client is None and flow.isn_server is not None
    analyzer = rec.analyzers[flow.uid]
    assert analyzer.stream(True).startswith(b"GET / HTTP/1.0\r\n")
    assert analyzer.stream(False).startswith(b"HTTP/1.1 200 OK\r\n")


def other_tcp_captures() -> list[Path]:
    key = {ROBUSTNESS / n for n in KEY_CAPTURES}
    return [
        p
        for p in robustness_files()
        if p not in key and p.suffix == ".pcap" and any(True for _ in tcp_packets(p))
    ]


@pytest.mark.parametrize("path", other_tcp_captures(), ids=lambda p: str(p.relative_to(ROBUSTNESS)))
def test_other_robustness_captures_equal_tshark_follow(path: Path) -> None:
    """The remaining robustness captures with TCP: QinQ, MPLS, NFLOG, IPv6, TSO, truncation."""
    assert compare_with_tshark(path) == []


# -- Reassembler: hand-built segments, one defect each ----------------------------------------


def test_in_order_segment_is_delivered_without_copy() -> None:
    r = Reassembler(isn=1000)
    seg = b"hello"
    events = r.add(1001, seg)
    assert events == [("data", seg)] and events[0][1] is seg
    assert r.add(1006, b" world") == [("data", b" world")]
    assert (r.offset, r.buffered) == (11, 0)


def test_wraparound_at_2_32_in_order() -> None:
    r = Reassembler(isn=2**32 - 5)  # data starts at 2**32 - 4
    assert r.add(2**32 - 4, b"0123456789") == [("data", b"0123456789")]  # crosses 2**32
    assert r.add(6, b"abc") == [("data", b"abc")]
    assert r.add(2**32 - 2, b"23") == []  # a retransmission from before the wrap


def test_wraparound_at_2_32_out_of_order() -> None:
    r = Reassembler(isn=2**32 - 5)
    assert r.add(6, b"abc") == []  # after the wrap, ahead of the next byte
    assert r.buffered == 3
    assert r.add(2**32 - 4, b"0123456789") == [("data", b"0123456789"), ("data", b"abc")]
    assert r.buffered == 0


def test_isn_at_top_of_sequence_space() -> None:
    r = Reassembler(isn=2**32 - 1)
    assert r.add(0, b"first") == [("data", b"first")]


def test_retransmission_is_not_delivered_twice() -> None:
    r = Reassembler(isn=0)
    r.add(1, b"abcdef")
    assert r.add(1, b"abcdef") == []
    assert r.add(3, b"cdefgh") == [("data", b"gh")]  # only the new bytes


def test_overlap_with_different_bytes_keeps_first_copy() -> None:
    """tshark's follow keeps the delivered bytes (packet-tcp.c: 'cut off the part already
    seen'); we do too, and name the inconsistency."""
    r = Reassembler(isn=0)
    r.add(1, b"abcdef")
    events = r.add(1, b"abXdefgh")
    assert events == [("tcp.stream_overlap_mismatch", 0), ("data", b"gh")]


def test_in_order_segment_wins_over_buffered_copy_as_in_tshark() -> None:
    """A segment that starts at the next byte is delivered whole; an out-of-order copy of the
    same bytes buffered earlier is trimmed and its difference reported (tshark's order)."""
    r = Reassembler(isn=0)
    assert r.add(11, b"KLMNO") == []
    events = r.add(1, b"abcdefghijklmn")  # stream offsets 0..13: overlaps KLMN
    assert events == [
        ("data", b"abcdefghijklmn"),
        ("tcp.stream_overlap_mismatch", 10),
        ("data", b"O"),
    ]


def test_first_buffered_copy_wins_among_out_of_order_segments() -> None:
    r = Reassembler(isn=0)
    r.add(5, b"EFGH")
    r.add(5, b"efgh")  # a second, different copy, also out of order
    events = r.add(1, b"abcd")
    assert data_of(events) == b"abcdEFGH"
    assert ("tcp.stream_overlap_mismatch", 4) in events


def test_out_of_order_segments_wait_until_contiguous() -> None:
    r = Reassembler(isn=0)
    assert r.add(9, b"ijkl") == []
    assert r.add(5, b"efgh") == []
    assert r.buffered == 8
    assert r.add(1, b"abcd") == [("data", b"abcd"), ("data", b"efgh"), ("data", b"ijkl")]
    assert r.buffered == 0


def test_buffer_overflow_skips_the_hole() -> None:
    r = Reassembler(isn=0, max_buffer=10)
    assert r.add(101, b"x" * 6) == []  # bytes 0..99 missing
    events = r.add(107, b"y" * 6)  # 12 bytes held > 10
    assert events == [
        ("tcp.stream_buffer_full", 0),
        ("gap", 100),
        ("data", b"x" * 6),
        ("data", b"y" * 6),
    ]
    assert r.buffered == 0
    assert r.add(1, b"late") == []  # the skipped bytes arrive too late: dropped


def test_segment_count_overflow_skips_the_hole() -> None:
    r = Reassembler(isn=0, max_segments=2)
    r.add(11, b"b")
    r.add(13, b"d")
    events = r.add(12, b"c")  # a third segment
    assert events == [
        ("tcp.stream_buffer_full", 0),
        ("gap", 10),
        ("data", b"b"),
        ("data", b"c"),
        ("data", b"d"),
    ]


def test_flush_delivers_buffered_bytes_across_gaps() -> None:
    r = Reassembler(isn=0)
    r.add(1, b"ab")
    r.add(5, b"ef")
    r.add(9, b"ij")
    assert r.flush() == [
        ("tcp.stream_gap", 2),
        ("gap", 2),
        ("data", b"ef"),
        ("tcp.stream_gap", 6),
        ("gap", 2),
        ("data", b"ij"),
    ]
    assert r.finished and r.buffered == 0
    assert r.add(11, b"kl") == []  # nothing after the end


def test_fin_ends_the_stream_and_data_past_it_is_dropped() -> None:
    r = Reassembler(isn=0)
    assert r.add(1, b"abc", fin=True) == [("data", b"abc")]
    assert r.finished
    assert r.add(4, b"more") == []
    assert r.add(1, b"abc", fin=True) == []  # retransmitted FIN
    assert r.flush() == []


def test_fin_before_missing_bytes_waits_for_them() -> None:
    r = Reassembler(isn=0)
    r.add(1, b"ab")
    assert r.add(5, b"ef", fin=True) == []  # FIN at offset 6, bytes 2..3 missing
    assert not r.finished
    assert r.add(3, b"cd") == [("data", b"cd"), ("data", b"ef")]
    assert r.finished


def test_fin_drops_buffered_bytes_past_it() -> None:
    r = Reassembler(isn=0)
    r.add(7, b"ghij")  # offsets 6..9
    assert r.add(1, b"ab") == [("data", b"ab")]
    r.add(3, b"cd", fin=True)  # FIN at offset 4: "ghij" is past it
    assert r.finished and r.buffered == 0


def test_flush_reports_hole_before_fin() -> None:
    r = Reassembler(isn=0)
    r.add(1, b"ab")
    r.add(9, b"", fin=True)  # FIN at offset 8, bytes 2..7 never arrived
    assert r.flush() == [("tcp.stream_gap", 2), ("gap", 6)]


def test_stale_fin_before_the_data_is_ignored() -> None:
    """tcp_fin_retransmission.pcap: a FIN with the SYN's own sequence number."""
    r = Reassembler(isn=500)
    assert r.add(500, b"", fin=True) == []
    assert not r.finished
    assert r.add(501, b"data") == [("data", b"data")]


def test_data_before_isn_is_trimmed() -> None:
    r = Reassembler(isn=1000)
    assert r.add(995, b"0123456789") == [("data", b"6789")]  # 995..1000 precede the data


def test_missing_syn_starts_at_first_segment() -> None:
    r = Reassembler(isn=None)
    assert r.add(123456, b"late join") == [("data", b"late join")]
    assert r.add(123456 + 9, b"!") == [("data", b"!")]


def test_missing_syn_keepalive_does_not_start_the_stream() -> None:
    """A keep-alive probe (one garbage byte at SND.NXT-1) seen first must not shift the stream."""
    r = Reassembler(isn=None)
    assert r.add(999, b"\x00") == []
    assert r.add(1000, b"MSH|...") == [("data", b"MSH|...")]


def test_keepalive_probe_is_not_an_overlap_mismatch() -> None:
    r = Reassembler(isn=0)
    r.add(1, b"abcd")
    assert r.add(4, b"\x00") == []  # 1 garbage byte at next-1
    assert r.add(5, b"") == []  # a keep-alive without data
    assert r.add(5, b"e") == [("data", b"e")]


def test_zero_window_probe_byte_is_data() -> None:
    """RFC 9293 §3.8.6.1: the probe carries the next byte; the later segment repeats it."""
    r = Reassembler(isn=0)
    r.add(1, b"abc")
    assert r.add(4, b"d") == [("data", b"d")]  # the probe
    assert r.add(4, b"defg") == [("data", b"efg")]  # window open again: no anomaly


def test_duplicate_segment_out_of_order_is_held_once_delivered_once() -> None:
    r = Reassembler(isn=0)
    r.add(5, b"efgh")
    r.add(5, b"efgh")
    assert data_of(r.add(1, b"abcd")) == b"abcdefgh"
    assert r.buffered == 0


def test_history_for_mismatch_detection_is_bounded() -> None:
    r = Reassembler(isn=0, history=4)
    for i in range(10):
        r.add(1 + 4 * i, b"%04d" % i)
    assert r.add(1, b"XXXX") == []  # too old to compare: dropped silently
    assert r.add(37, b"XXXX") == [("tcp.stream_overlap_mismatch", 36)]  # the newest is compared
    r2 = Reassembler(isn=0)
    for i in range(2 * HISTORY_CHUNKS):
        r2.add(1 + i, b"x")
    assert len(r2._hist) <= HISTORY_CHUNKS


# -- StreamManager ------------------------------------------------------------------------------


def collecting_manager(
    ports: tuple[int, ...] = (4242,), **kw: Any
) -> tuple[StreamManager, Recorder]:
    rec = Recorder()
    spec = ParserSpec("test", "collects", tcp_ports=ports, analyzer=rec.collector)
    return StreamManager([spec], rec.emit, rec.anomaly, **kw), rec


def handshake(
    m: StreamManager, flow: SimpleNamespace, isn_c: int = 1000, isn_s: int = 5000
) -> None:
    flow.isn_client = isn_c
    m.tcp(flow, True, 1, isn_c, SYN, b"")
    flow.isn_server = isn_s
    m.tcp(flow, False, 2, isn_s, SYN | ACK, b"")
    m.tcp(flow, True, 3, isn_c + 1, ACK, b"")


def test_port_claim_is_decided_on_first_packet() -> None:
    m = StreamManager(REGISTRY, Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=443)
    m.tcp(flow, True, 1, 1000, SYN, b"")
    assert flow.app == "tls" and flow.stream.__class__.__name__ == "_Stream"


def test_a_detection_only_spec_records_the_app_and_stops() -> None:
    spec = ParserSpec("legacy", "detection only", tcp_ports=(7777,))
    m = StreamManager([spec], Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=7777)
    m.tcp(flow, True, 1, 1000, SYN, b"")
    assert (flow.app, flow.stream) == ("legacy", False)


def test_probe_claims_dicom_on_any_port() -> None:
    from scapy.contrib.dicom import (
        A_ASSOCIATE_RQ,
        DICOM,
        DICOMApplicationContext,
        DICOMVariableItem,
    )

    rq = bytes(
        DICOM()
        / A_ASSOCIATE_RQ(
            called_ae_title=b"PACS",
            calling_ae_title=b"CT01",
            variable_items=[DICOMVariableItem() / DICOMApplicationContext()],
        )
    )
    m = StreamManager(REGISTRY, Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=4242)
    handshake(m, flow)
    assert flow.stream is not False and flow.app is None  # undecided until payload
    m.tcp(flow, True, 4, 1001, PSH_ACK, rq)
    assert flow.app == "dicom" and flow.stream is not False  # claimed: now analysed


def test_probe_claims_hl7_mllp_on_any_port() -> None:
    m = StreamManager(REGISTRY, Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=6661)
    handshake(m, flow)
    m.tcp(
        flow, True, 4, 1001, PSH_ACK, b"\x0bMSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101||ORU^R01|1|P|2.5\r"
    )
    assert flow.app == "hl7" and flow.stream is not False  # claimed: now analysed


def test_unclaimed_flow_is_given_up_after_both_first_payloads() -> None:
    m = StreamManager(REGISTRY, Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=5555)
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"HELO there")
    assert flow.stream is PROBE_SERVER  # still probing: the server may speak a known protocol
    m.tcp(flow, False, 5, 5001, PSH_ACK, b"250 ok")
    assert (flow.app, flow.stream) == (None, False)


def test_server_first_payload_is_probed_too() -> None:
    m = StreamManager(REGISTRY, Recorder().emit, Recorder().anomaly)
    flow = make_flow(server_port=2222)
    handshake(m, flow)
    m.tcp(flow, False, 4, 5001, PSH_ACK, b"SSH-2.0-OpenSSH_9.2p1\r\n")
    assert flow.app == "ssh" and flow.stream is not False


def test_undecided_pure_acks_and_later_payloads_are_not_probed() -> None:
    calls: list[bytes] = []

    def probe(first: bytes, from_client: bool) -> bool:
        calls.append(first)
        return False

    m = StreamManager([ParserSpec("never", "", probe=probe)], print, print, probe_bytes=4)
    flow = make_flow(server_port=5555)
    handshake(m, flow)
    for i in range(5):
        m.tcp(flow, False, 4 + i, 5001, ACK, b"")
    assert calls == []
    m.tcp(flow, True, 10, 1001, PSH_ACK, b"first payload")
    m.tcp(flow, True, 11, 1014, PSH_ACK, b"second payload")
    assert calls == [b"firs"]  # only probe_bytes of the direction's first payload
    assert flow.stream is PROBE_SERVER


def test_registry_without_probes_gives_up_on_the_first_packet() -> None:
    m = StreamManager([ParserSpec("p", "", tcp_ports=(1,))], print, print)
    flow = make_flow(server_port=5555)
    m.tcp(flow, True, 1, 1000, SYN, b"")
    assert flow.stream is False


def test_first_spec_wins_a_shared_port_and_probe_order() -> None:
    a = ParserSpec("a", "", tcp_ports=(80,), probe=lambda b, c: b.startswith(b"X"))
    b = ParserSpec("b", "", tcp_ports=(80, 81), probe=lambda b, c: True)
    m = StreamManager([a, b], print, print)
    f80, f81, f82 = make_flow(server_port=80), make_flow(server_port=81), make_flow(server_port=82)
    for f in (f80, f81, f82):
        m.tcp(f, True, 1, 10, PSH_ACK, b"Xyz")
    assert (f80.app, f81.app, f82.app) == ("a", "b", "a")


def test_claimed_flow_is_reassembled_per_direction() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1007, PSH_ACK, b"world")  # out of order
    m.tcp(flow, True, 5, 1001, PSH_ACK, b"hello ")
    m.tcp(flow, False, 6, 5001, PSH_ACK, b"reply")
    m.tcp(flow, True, 7, 1012, FIN | ACK, b"")
    analyzer = rec.analyzers["C1"]
    assert analyzer.events == {
        True: [("data", b"hello "), ("data", b"world")],
        False: [("data", b"reply")],
    }
    assert analyzer.timestamps == [5, 5, 6]  # the packet that made the bytes contiguous
    assert flow.app == "test" and analyzer.closed == 0
    m.close(flow)
    assert analyzer.closed == 1 and flow.stream is False


def test_syn_payload_starts_after_isn_and_duplicate_syn_is_not_redelivered() -> None:
    """TCP Fast Open data rides on the SYN; a retransmitted SYN must not deliver it again."""
    m, rec = collecting_manager()
    flow = make_flow(isn_client=7000)
    m.tcp(flow, True, 1, 7000, SYN, b"early")
    m.tcp(flow, True, 2, 7000, SYN, b"early")  # duplicate SYN
    flow.isn_server = 9000
    m.tcp(flow, False, 3, 9000, SYN | ACK, b"")
    m.tcp(flow, True, 4, 7006, PSH_ACK, b" data")
    assert rec.analyzers["C1"].stream(True) == b"early data"
    assert rec.anomalies == []


def test_duplicate_syn_before_data_changes_nothing() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1000, SYN, b"")  # the SYN again
    m.tcp(flow, True, 5, 1001, PSH_ACK, b"abc")
    assert rec.analyzers["C1"].events[True] == [("data", b"abc")]


def test_analyzer_done_drops_the_flow_and_closes_once() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"header")
    analyzer = rec.analyzers["C1"]
    analyzer.done = True
    m.tcp(flow, True, 5, 1007, PSH_ACK, b"pixels")
    # The manager saw done after delivering "pixels" and gave the flow up.
    assert flow.stream is False and analyzer.closed == 1
    m.close(flow)  # the flow table would not call, but a second close is harmless
    assert analyzer.closed == 1


def test_analyzer_done_mid_batch_stops_delivery() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1007, PSH_ACK, b"second")
    analyzer = rec.analyzers["C1"]
    original = analyzer.data

    def data(from_client: bool, data: bytes, ts_ns: int) -> None:
        original(from_client, data, ts_ns)
        analyzer.done = True

    analyzer.data = data  # type: ignore[method-assign]
    m.tcp(flow, True, 5, 1001, PSH_ACK, b"first ")
    assert analyzer.events[True] == [("data", b"first ")]
    assert flow.stream is False and analyzer.closed == 1


def test_close_flushes_holes_and_reports_them() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"abc")
    m.tcp(flow, True, 5, 1010, PSH_ACK, b"xyz")  # bytes 3..8 never arrive
    m.close(flow)
    analyzer = rec.analyzers["C1"]
    assert analyzer.events[True] == [("data", b"abc"), ("gap", 6), ("data", b"xyz")]
    assert rec.anomalies == [
        ("tcp.stream_gap", "C1", "client->server: 6 bytes missing at stream offset 3")
    ]
    assert analyzer.closed == 1 and flow.stream is False


def test_buffer_full_is_reported_through_the_manager() -> None:
    m, rec = collecting_manager(max_buffer=4)
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, False, 4, 5011, PSH_ACK, b"abcdef")  # 10 bytes missing, 6 > 4 buffered
    assert rec.analyzers["C1"].events[False] == [("gap", 10), ("data", b"abcdef")]
    assert rec.anomalies == [
        ("tcp.stream_buffer_full", "C1", "server->client: 10 bytes missing at stream offset 0")
    ]


def test_overlap_mismatch_is_reported_through_the_manager() -> None:
    m, rec = collecting_manager()
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"abcd")
    m.tcp(flow, True, 5, 1001, PSH_ACK, b"abXd")
    assert rec.analyzers["C1"].stream(True) == b"abcd"
    assert rec.names() == ["tcp.stream_overlap_mismatch"]
    assert rec.anomalies[0][1] == "C1"


def test_direction_probed_before_the_claim_starts_after_a_gap() -> None:
    """The server's first payload matched no probe; the client's then claimed the flow. The
    server's stream starts at its next segment, after a gap the size of what was probed."""
    rec = Recorder()
    spec = ParserSpec(
        "c", "", probe=lambda b, c: c and b.startswith(b"CLAIM"), analyzer=rec.collector
    )
    m = StreamManager([spec], rec.emit, rec.anomaly)
    flow = make_flow(server_port=5555)
    handshake(m, flow)
    m.tcp(flow, False, 4, 5001, PSH_ACK, b"banner\r\n")
    assert flow.stream is PROBE_CLIENT
    m.tcp(flow, True, 5, 1001, PSH_ACK, b"CLAIM me")
    m.tcp(flow, False, 6, 5009, PSH_ACK, b"more")
    analyzer = rec.analyzers["C1"]
    assert analyzer.events == {
        True: [("data", b"CLAIM me")],
        False: [("gap", 8), ("data", b"more")],
    }
    assert rec.anomalies == []  # not capture loss: the bytes were seen, before the claim


def test_direction_probed_before_the_claim_may_resume_with_one_byte() -> None:
    rec = Recorder()
    spec = ParserSpec("c", "", probe=lambda b, c: not c, analyzer=rec.collector)
    m = StreamManager([spec], rec.emit, rec.anomaly)
    flow = make_flow(server_port=5555)
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"hello")  # no match from the client
    m.tcp(flow, False, 5, 5001, PSH_ACK, b"server claims")
    m.tcp(flow, True, 6, 1006, PSH_ACK, b"!")  # one byte: still the stream's next byte
    assert rec.analyzers["C1"].events[True] == [("gap", 5), ("data", b"!")]


def test_analyzer_error_is_reported_and_the_flow_given_up() -> None:
    class Broken(Collector):
        def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
            raise ValueError("bug")

    rec = Recorder()
    spec = ParserSpec("broken", "", tcp_ports=(4242,), analyzer=Broken)
    m = StreamManager([spec], rec.emit, rec.anomaly)
    flow = make_flow()
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"boom")
    assert flow.stream is False
    assert rec.anomalies == [("tcp.stream_analyzer_error", "C1", "broken: ValueError: bug")]
    strict = StreamManager([spec], rec.emit, rec.anomaly, strict=True)
    flow2 = make_flow()
    handshake(strict, flow2)
    with pytest.raises(ValueError, match="bug"):
        strict.tcp(flow2, True, 4, 1001, PSH_ACK, b"boom")


def test_analyzer_failing_to_start_or_close_is_reported() -> None:
    def cannot_start(ctx: FlowContext) -> Collector:
        raise RuntimeError("no")

    class CannotClose(Collector):
        def close(self) -> None:
            raise KeyError("k")

    rec = Recorder()
    specs = [
        ParserSpec("a", "", tcp_ports=(1,), analyzer=cannot_start),
        ParserSpec("b", "", tcp_ports=(2,), analyzer=CannotClose),
    ]
    m = StreamManager(specs, rec.emit, rec.anomaly)
    fa, fb = make_flow("A", server_port=1), make_flow("B", server_port=2)
    m.tcp(fa, True, 1, 10, SYN, b"")
    m.tcp(fb, True, 1, 10, SYN, b"")
    m.close(fb)
    assert (fa.app, fa.stream, fb.stream) == ("a", False, False)
    assert rec.anomalies == [
        ("tcp.stream_analyzer_error", "A", "a: start: RuntimeError: no"),
        ("tcp.stream_analyzer_error", "B", "b: close: KeyError: 'k'"),
    ]


def test_context_describes_the_flow_and_reports_with_its_uid() -> None:
    rec = Recorder()

    class Reporter(Collector):
        def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
            self.ctx.emit(("record", data))
            self.ctx.anomaly("tcp.stream_gap", "from the analyzer")

    spec = ParserSpec("r", "", tcp_ports=(4242,), analyzer=Reporter)
    m = StreamManager([spec], rec.emit, rec.anomaly)
    flow = make_flow(uid="CXyz")
    handshake(m, flow)
    m.tcp(flow, True, 4, 1001, PSH_ACK, b"x")
    assert rec.records == [("record", b"x")]
    assert rec.anomalies == [("tcp.stream_gap", "CXyz", "from the analyzer")]
    ctx = flow.stream.analyzer.ctx
    assert (ctx.flow_uid, ctx.client_ip, ctx.server_ip, ctx.client_port, ctx.server_port) == (
        "CXyz",
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
        40000,
        4242,
    )


def test_stream_anomaly_names_are_catalogued() -> None:
    names = {v for k, v in vars(streams).items() if k.startswith("ANOMALY_")}
    assert names == {
        "tcp.stream_gap",
        "tcp.stream_buffer_full",
        "tcp.stream_overlap_mismatch",
        "tcp.stream_analyzer_error",
    }
    assert names <= set(CATALOGUE)
