"""Observations: SYN traits and ARP bindings checked against tshark on real captures, the
collector's de-duplication and bound, and datagram dispatch."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from monitor.flows import FlowTable
from monitor.observations import ObservationCollector, initial_ttl, syn_traits
from monitor.parsers.base import DatagramContext, DatagramSpec
from monitor.source import CaptureReader

from conftest import PCAPS, ROBUSTNESS, tshark

#: tshark's tcp.option_kind numbers -> our p0f-style names.
OPTION_NAMES = {"0": "eol", "1": "nop", "2": "mss", "3": "ws", "4": "sok", "5": "sack", "8": "ts"}


def _frames(path: Path) -> list[tuple[int, int, bytes, int]]:
    with CaptureReader(str(path)) as r:
        return list(r)


def _collect(path: Path, collector: ObservationCollector | None = None) -> ObservationCollector:
    collector = collector or ObservationCollector()
    table = FlowTable(lambda f: None, observer=collector)
    table.process(_frames(path))
    table.flush()
    return collector


def _facts(collector: ObservationCollector) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for (ip, _mac, kind, value), _entry in collector.entries.items():
        out.setdefault((ip, kind), set()).add(value)
    return out


def test_syn_traits_equal_tsharks_fields_on_real_handshakes() -> None:
    capture = PCAPS / "generic" / "http.pcap"
    facts = _facts(_collect(capture))
    rows = tshark(
        "-r", str(capture), "-Y", "tcp.flags.syn == 1", "-T", "fields", "-E", "separator=|",
        "-e", "ip.src", "-e", "ip.ttl", "-e", "tcp.window_size_value", "-e", "tcp.options.mss_val",
        "-e", "tcp.options.wscale.shift", "-e", "tcp.option_kind", "-e", "tcp.flags.ack",
    ).splitlines()  # fmt: skip
    assert len(rows) >= 4
    for row in rows:
        src, ttl, window, mss, shift, kinds, ack = row.split("|")
        prefix = "tcp.synack_" if ack == "1" else "tcp.syn_"
        assert str(initial_ttl(int(ttl))) in facts[(src, prefix + "ttl")]
        assert window in facts[(src, prefix + "window")]
        assert mss in facts[(src, prefix + "mss")]
        assert shift in facts[(src, prefix + "wscale")]
        layout = ",".join(OPTION_NAMES[k] for k in kinds.split(","))
        assert layout in facts[(src, prefix + "options")]
    # curl on Linux 6.x in the lab namespaces: the Linux SYN layout, initial TTL 64.
    assert facts[("10.20.0.11", "tcp.syn_options")] == {"mss,sok,ts,nop,ws"}
    assert facts[("10.20.0.11", "tcp.syn_ttl")] == {"64"}


def test_arp_bindings_equal_tsharks_senders() -> None:
    capture = ROBUSTNESS / "tcpdump" / "802.1ad_QinQ.pcap"
    collector = _collect(capture)
    rows = tshark(
        "-r", str(capture), "-Y", "arp", "-T", "fields", "-E", "separator=|",
        "-e", "arp.src.hw_mac", "-e", "arp.src.proto_ipv4",
    ).splitlines()  # fmt: skip
    want = {(ip, mac) for mac, ip in (r.split("|") for r in rows) if ip != "0.0.0.0"}
    got = {(ip, mac) for (ip, mac, kind, _v) in collector.entries if kind == "arp.ip"}
    assert want and got == want


def test_arp_probe_claims_nothing() -> None:
    collector = ObservationCollector()
    collector.arp(1, b"\x00\x11\x22\x33\x44\x55", b"\x00\x00\x00\x00")
    assert collector.entries == {}


def test_repeated_facts_are_kept_once_with_first_last_and_count() -> None:
    collector = ObservationCollector()
    for ts in (30, 10, 20):
        collector.add("10.0.0.1", None, "dns.query", "pacs.hospital.test", ts, "C1")
    ((key, entry),) = collector.entries.items()
    assert key == ("10.0.0.1", None, "dns.query", "pacs.hospital.test")
    assert entry == [10, 30, 3, "C1"]
    assert list(collector.rows(7)) == [
        (7, "C1", 10, "10.0.0.1", None, "dns.query", "pacs.hospital.test", 30, 3)
    ]


def test_the_collector_is_bounded() -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    collector = ObservationCollector(
        anomaly=lambda name, uid, detail: seen.append((name, uid, detail)), max_entries=2
    )
    for i in range(4):
        collector.add("10.0.0.1", None, "dns.query", f"n{i}.test", i, "C1")
    collector.add("10.0.0.1", None, "dns.query", "n0.test", 9, "C1")  # kept: still counted
    assert len(collector.entries) == 2 and collector.dropped == 2
    assert [s[0] for s in seen] == ["observation.table_full", "observation.table_full"]
    assert collector.entries[("10.0.0.1", None, "dns.query", "n0.test")][2] == 2


def _syn(options: bytes, window: int = 8192) -> bytes:
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, offset << 4, 0x02, window, 0, 0) + options


def test_syn_traits_of_a_windows_style_layout() -> None:
    # Windows 10's SYN options: MSS 1460, NOP, WS 8, NOP, NOP, SACK permitted (p0f v3 p0f.fp).
    hdr = _syn(bytes.fromhex("020405b4010303080101" + "0402"), window=64240)
    assert syn_traits(117, hdr) == [
        ("ttl", "128"), ("window", "64240"), ("mss", "1460"), ("wscale", "8"),
        ("options", "mss,nop,ws,nop,nop,sok"),
    ]  # fmt: skip


def test_syn_traits_eol_padding_unknown_and_cut_options() -> None:
    # macOS pads its options with EOL bytes; an unknown kind is named by its number.
    assert syn_traits(64, _syn(bytes.fromhex("1e04000000000000")))[-1] == (
        "options", "?30,eol,eol,eol,eol",
    )  # fmt: skip
    # An option whose length byte is missing (options_cut) or below 2 (options_bad_length).
    assert syn_traits(64, _syn(bytes.fromhex("01010102")))[-1] == ("options", "nop,nop,nop,mss,bad")
    assert syn_traits(64, _syn(bytes.fromhex("02010000")))[-1] == ("options", "mss,bad")
    assert syn_traits(255, b"\x00" * 10) == [("ttl", "255")]


def test_datagrams_go_to_the_spec_of_their_port() -> None:
    got: list[tuple[str, str, str | None, int, int]] = []

    def handler(payload: bytes, ctx: DatagramContext) -> None:
        got.append((payload.hex(), ctx.src_ip, ctx.src_mac, ctx.sport, ctx.dport))
        ctx.observe(ctx.src_ip, ctx.src_mac, "dns.query", "example.test")

    spec = DatagramSpec(name="dns", description="test", udp_ports=(53,), handler=handler)
    collector = _collect(PCAPS / "generic" / "dns.pcap", ObservationCollector((spec,)))
    queries = tshark(
        "-r", str(PCAPS / "generic" / "dns.pcap"), "-Y", "udp", "-T", "fields", "-e", "udp.payload"
    ).split()  # fmt: skip
    assert sorted(g[0] for g in got) == sorted(queries)
    assert {k[2] for k in collector.entries if k[2].startswith("dns.")} == {"dns.query"}


def test_a_datagram_parser_that_raises_is_an_anomaly() -> None:
    seen: list[Any] = []

    def broken(payload: bytes, ctx: DatagramContext) -> None:
        raise ValueError("bug")

    spec = DatagramSpec(name="dns", description="test", udp_ports=(53,), handler=broken)
    collector = ObservationCollector((spec,), anomaly=lambda *a: seen.append(a))
    table = FlowTable(lambda f: None, observer=collector)
    table.process(_frames(PCAPS / "generic" / "dns.pcap"))
    table.flush()
    assert seen and all(s[0] == "udp.datagram_handler_error" for s in seen)
    assert seen[0][2] == "dns: ValueError: bug"


def test_a_repeated_query_is_parsed_once_and_counted_each_time() -> None:
    from types import SimpleNamespace

    calls: list[bytes] = []

    def handler(payload: bytes, ctx: DatagramContext) -> None:
        calls.append(payload)
        if payload.endswith(b"bad"):
            ctx.anomaly("dns.malformed", "test")
            return
        ctx.observe(ctx.src_ip, None, "dns.query", payload[2:].decode())

    spec = DatagramSpec(name="dns", description="t", udp_ports=(53,), handler=handler, id_bytes=2)
    collector = ObservationCollector((spec,), anomaly=lambda *a: None)
    flow = SimpleNamespace(
        uid="C1", client_ip=b"\x0a\x00\x00\x01", server_ip=b"\x0a\x00\x00\x35",
        client_mac=b"", server_mac=b"",
    )  # fmt: skip
    for ts, payload in enumerate(
        (b"\x00\x01pacs", b"\x00\x02pacs", b"\x00\x03ris", b"\x00\x04pacs")
    ):
        assert collector.datagram(flow, True, ts, 40000, 53, payload) == "dns"
    assert calls == [b"\x00\x01pacs", b"\x00\x03ris"]
    assert collector.entries[("10.0.0.1", None, "dns.query", "pacs")] == [0, 3, 3, "C1"]
    # A datagram that made an anomaly is parsed (and reported) every time.
    collector.datagram(flow, True, 5, 40000, 53, b"\x00\x05bad")
    collector.datagram(flow, True, 6, 40000, 53, b"\x00\x06bad")
    assert calls[-2:] == [b"\x00\x05bad", b"\x00\x06bad"]
