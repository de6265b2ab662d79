"""Collecting observations: one fact about one host, kept once per run [Zeek Software framework].

Parsers report facts (``dhcp.hostname``, ``tls.sni``, ``tcp.syn_options``...; the kinds are in
``docs/observations.md``) through :class:`ObservationCollector`, which keeps each distinct
``(ip, mac, kind, value)`` once per run with its first and last capture time, a count and the
first flow it came from. A busy network repeats the same facts millions of times (every DNS
query for the same name, every SYN of the same host); the register gets one row each.

Three feeds, all called from the flow table's loop (so each keeps its per-call work small):

- :meth:`ObservationCollector.flow_observer`: the ``observe`` callable of a TCP analyzer's
  :class:`~monitor.parsers.base.FlowContext` (about the client or the server of the flow).
- :meth:`ObservationCollector.datagram`: UDP datagrams on the ports of a
  :class:`~monitor.parsers.base.DatagramSpec` (DHCP, DNS, mDNS, NBNS, SSDP, SNMP, ...).
- :meth:`ObservationCollector.syn` and :meth:`ObservationCollector.arp`: TCP SYN / SYN-ACK
  traits for an OS-family guess [p0f v3], and ARP address bindings.

The collector is bounded (``max_entries``); past the bound new facts are counted as the
anomaly ``observation.table_full`` and dropped, facts already kept are still updated.
Nothing here imports a later stage (STYLE S2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from monitor.parsers.base import DatagramContext, DatagramSpec

#: ``(ip, mac, kind, value)`` -> ``[first_ns, last_ns, count, flow_uid]``
Entry = list[Any]
#: What a datagram handler reported: ``(ip, mac, kind, value)``.
Fact = tuple[str | None, str | None, str, str]

ANOMALY_TABLE_FULL = "observation.table_full"
#: Datagrams remembered to skip parsing repeats (:attr:`DatagramSpec.id_bytes`): a bound on
#: the memory (about 16,384 x 512 bytes at most), cleared when full.
MEMO_MAX_ENTRIES = 16_384
MEMO_MAX_PAYLOAD = 512
ANOMALY_DATAGRAM_ERROR = "udp.datagram_handler_error"

_U16 = struct.Struct("!H").unpack_from

#: TCP option kinds by name, p0f v3 spelling (RFC 9293 §3.1, RFC 7323, RFC 2018).
TCP_OPTION_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "ws", 4: "sok", 5: "sack", 8: "ts"}


def initial_ttl(ttl: int) -> int:
    """The initial TTL a sender most likely used: the observed one rounded up to 32, 64, 128
    or 255 (p0f v3 ``ttl`` guess; hops only ever lower it)."""
    for guess in (32, 64, 128):
        if ttl <= guess:
            return guess
    return 255


def syn_traits(ttl: int, tcp_header: bytes) -> list[tuple[str, str]]:
    """``(suffix, value)`` traits of a SYN or SYN-ACK for an OS-family guess: ``ttl`` (initial
    TTL guess), ``window``, ``mss``, ``wscale`` and ``options`` (layout, p0f style).

    TCP header (RFC 9293 §3.1): 14 window(2), 12 data offset (high nibble, in 32-bit words),
    20 options: kind(1) [length(1) value]; EOL (0) and NOP (1) are one byte.
    """
    out = [("ttl", str(initial_ttl(ttl)))]
    if len(tcp_header) < 20:
        return out
    out.append(("window", str(_U16(tcp_header, 14)[0])))
    end = min(len(tcp_header), (tcp_header[12] >> 4) * 4)
    names: list[str] = []
    i = 20
    while i < end:
        kind = tcp_header[i]
        name = TCP_OPTION_NAMES.get(kind)
        names.append(name if name is not None else f"?{kind}")
        if kind == 0:
            # EOL: what follows is zero padding, one "eol" per byte (p0f writes ``eol+N``).
            names.extend("eol" for j in range(i + 1, end) if tcp_header[j] == 0)
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or tcp_header[i + 1] < 2:
            names.append("bad")
            break
        length = tcp_header[i + 1]
        if kind == 2 and length == 4 and i + 4 <= end:
            out.append(("mss", str(_U16(tcp_header, i + 2)[0])))
        elif kind == 3 and length == 3 and i + 3 <= end:
            out.append(("wscale", str(tcp_header[i + 2])))
        i += length
    out.append(("options", ",".join(names)))
    return out


class ObservationCollector:
    """Keeps the run's distinct observations; see the module docstring."""

    def __init__(
        self,
        datagram_specs: Sequence[DatagramSpec] = (),
        *,
        anomaly: Callable[[str, str | None, str | None], None] | None = None,
        max_entries: int = 1_000_000,
    ) -> None:
        self.entries: dict[tuple[str, str | None, str, str], Entry] = {}
        self.max_entries = max_entries
        self.dropped = 0
        self._anomaly = anomaly
        self._ip_text: dict[bytes, str] = {}
        self._mac_text: dict[bytes, str | None] = {}
        self._syn_seen: set[tuple[Any, ...]] = set()
        #: (spec, src, dst, payload less its ID) -> the facts its handler reported.
        self._datagram_memo: dict[
            tuple[Any, ...], list[tuple[str | None, str | None, str, str]]
        ] = {}
        self._arp_seen: set[bytes] = set()
        #: UDP port -> spec (the first spec listing a port wins, as for TCP).
        self.udp_specs: dict[int, DatagramSpec] = {}
        for spec in datagram_specs:
            for port in spec.udp_ports:
                self.udp_specs.setdefault(port, spec)
        #: The ports, for the flow table's membership test.
        self.udp_ports = frozenset(self.udp_specs)

    # -- the store --------------------------------------------------------------------------------

    def add(
        self,
        ip: str | None,
        mac: str | None,
        kind: str,
        value: str,
        ts_ns: int,
        flow_uid: str | None,
    ) -> None:
        """Record one fact (``ip`` text or None, ``mac`` text or None)."""
        key = (ip or "", mac, kind, value)
        e = self.entries.get(key)
        if e is not None:
            if ts_ns < e[0]:
                e[0] = ts_ns
            if ts_ns > e[1]:
                e[1] = ts_ns
            e[2] += 1
            return
        if len(self.entries) >= self.max_entries:
            self.dropped += 1
            if self._anomaly is not None:
                self._anomaly(ANOMALY_TABLE_FULL, flow_uid, f"{kind}={value[:40]}")
            return
        self.entries[key] = [ts_ns, ts_ns, 1, flow_uid]

    def rows(self, run_id: int) -> Iterator[tuple[Any, ...]]:
        """The kept facts as ``observations`` rows (column order of
        :class:`monitor.records.Observation`), in the order they were first seen."""
        for (ip, mac, kind, value), (first, last, count, uid) in self.entries.items():
            yield (run_id, uid, first, ip or None, mac, kind, value, last, count)

    def _ip(self, raw: bytes) -> str:
        text = self._ip_text.get(raw)
        if text is None:
            from monitor.flows import ip_text  # a cycle at import time otherwise

            text = self._ip_text[raw] = ip_text(raw)
        return text

    def _mac(self, raw: bytes) -> str | None:
        text = self._mac_text.get(raw, "")
        if text == "":
            text = self._mac_text[raw] = raw.hex(":") if raw else None
        return text

    # -- feeds ------------------------------------------------------------------------------------

    def flow_observer(self, flow: Any) -> Callable[[bool, str, str, int], None]:
        """The ``observe`` callable for an analyzer of ``flow`` (see ``FlowContext.observe``)."""
        uid = flow.uid
        add = self.add
        client = (self._ip(flow.client_ip), self._mac(flow.client_mac))
        server = (self._ip(flow.server_ip), self._mac(flow.server_mac))

        def observe(about_client: bool, kind: str, value: str, ts_ns: int) -> None:
            ip, mac = client if about_client else server
            add(ip, mac, kind, value, ts_ns, uid)

        return observe

    def syn(self, flow: Any, from_client: bool, ts_ns: int, ttl: int, tcp_header: bytes) -> None:
        """A SYN (from the client) or SYN-ACK (from the server) of ``flow``: its traits as
        ``tcp.syn_*`` / ``tcp.synack_*`` observations about the sender. The same sender with
        the same TTL, window and option bytes' length is parsed once per run."""
        ip = flow.client_ip if from_client else flow.server_ip
        key = (ip, from_client, ttl, tcp_header[14:16], tcp_header[20:24], len(tcp_header))
        if key in self._syn_seen:
            return
        self._syn_seen.add(key)
        prefix = "tcp.syn_" if from_client else "tcp.synack_"
        ip_text = self._ip(ip)
        mac = self._mac(flow.client_mac if from_client else flow.server_mac)
        for suffix, value in syn_traits(ttl, tcp_header):
            self.add(ip_text, mac, prefix + suffix, value, ts_ns, flow.uid)

    def arp(self, ts_ns: int, mac: bytes, ip: bytes) -> None:
        """An ARP packet: its sender claims ``ip`` (``arp.ip`` about the sender's MAC)."""
        if len(ip) != 4 or ip == b"\x00\x00\x00\x00":
            return  # an ARP probe (RFC 5227) claims nothing yet
        key = mac + ip
        if key in self._arp_seen:
            e = self.entries.get((self._ip(ip), self._mac(mac), "arp.ip", self._ip(ip)))
            if e is not None and ts_ns > e[1]:
                e[1] = ts_ns
                e[2] += 1
            return
        self._arp_seen.add(key)
        text = self._ip(ip)
        self.add(text, self._mac(mac), "arp.ip", text, ts_ns, None)

    def datagram(
        self, flow: Any, from_client: bool, ts_ns: int, sport: int, dport: int, payload: bytes
    ) -> str | None:
        """Hand one UDP datagram of ``flow`` to the spec of its port; returns the spec's name
        (the flow's application) or None when no spec wants it."""
        spec = self.udp_specs.get(dport) or self.udp_specs.get(sport)
        if spec is None:
            return None
        if from_client:
            src, dst, smac, dmac = flow.client_ip, flow.server_ip, flow.client_mac, flow.server_mac
        else:
            src, dst, smac, dmac = flow.server_ip, flow.client_ip, flow.server_mac, flow.client_mac
        uid = flow.uid
        add = self.add
        report = self._anomaly
        # The same query again (a new ID, the rest equal) says nothing new: count its facts.
        memo_key: tuple[Any, ...] | None = None
        if spec.id_bytes and len(payload) <= MEMO_MAX_PAYLOAD:
            memo_key = (spec.name, src, dst, smac, payload[spec.id_bytes :])
            known = self._datagram_memo.get(memo_key)
            if known is not None:
                for ip, mac, kind, value in known:
                    add(ip, mac, kind, value, ts_ns, uid)
                return spec.name
        facts: list[Fact] = []
        clean = True

        def observe(ip: str | None, mac: str | None, kind: str, value: str) -> None:
            facts.append((ip, mac, kind, value))
            add(ip, mac, kind, value, ts_ns, uid)

        def anomaly(name: str, detail: str | None) -> None:
            nonlocal clean
            clean = False
            if report is not None:
                report(name, uid, detail)

        ctx = DatagramContext(
            flow_uid=uid,
            ts_ns=ts_ns,
            src_ip=self._ip(src),
            dst_ip=self._ip(dst),
            src_mac=self._mac(smac),
            dst_mac=self._mac(dmac),
            sport=sport,
            dport=dport,
            observe=observe,
            anomaly=anomaly,
        )
        try:
            spec.handler(payload, ctx)
        except Exception as exc:  # a parser bug must not end the run (STYLE S3.4)
            anomaly(ANOMALY_DATAGRAM_ERROR, f"{spec.name}: {type(exc).__name__}: {exc}")
        if memo_key is not None and clean:  # a bad datagram is parsed (and counted) each time
            if len(self._datagram_memo) >= MEMO_MAX_ENTRIES:
                self._datagram_memo.clear()
            self._datagram_memo[memo_key] = facts
        return spec.name
