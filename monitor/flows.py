"""The bidirectional flow table: one :class:`Flow` per conversation, client = initiator.

Every decoded packet lands here once. The table counts it into its flow, keeps TCP facts (SYN
sequence numbers, flags each side sent), and hands TCP payload of flows that may interest a
protocol parser to :mod:`monitor.streams`. Flows end by idle timeout (per protocol), absolute
timeout, a short linger after FIN from both sides or a RST, eviction when the table is full
(least recently seen first), or the end of input; each ended flow goes to the ``sink`` once.

Who is the client [Zeek ``conn_id`` orig/resp]:
- TCP: the side that sent the SYN; a SYN-ACK seen first makes its receiver the client;
  mid-stream (SPAN joined late), the side with the ephemeral port (see :func:`_client_is_src`).
- UDP and others: the first sender, unless it sent from a service port to an ephemeral one
  (a response seen before its request).
- ICMP/ICMPv6: the first sender, unless its message is a reply (echo reply, 0 / 129).

SPAN duplicates: a mirror port often delivers the same packet twice, once per VLAN leg, the
copy with a lower TTL, other MACs and maybe another VLAN tag. The flow key holds no VLAN, MAC
or TTL, so both copies land in one flow, and a packet whose signature (addresses, IP id, IP
length, L4 checksum, TCP seq/ack) was seen within ``dedup_window`` is counted once (as
``duplicates`` in the run's totals) and not passed on. A genuine TCP retransmission differs in
IP id or checksum (new TSval) and arrives after a retransmission timeout, so it is not taken
for a copy.

IP fragments: the first fragment carries the ports and is counted into its flow; later
fragments are attributed to the same flow through ``(src, dst, proto, ip id)``. A later
fragment whose first fragment was not seen is the anomaly ``ip.fragment_orphan``.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from monitor import native_core
from monitor.decode import (
    ACK,
    FIN,
    FRAG_LATER,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    RST,
    SYN,
    RawPacket,
    decode,
)

NS = 1_000_000_000

_PORTS = struct.Struct("!HH").pack
_SIG_TAIL = struct.Struct("!IIIIII").pack


#: The C fast lane (monitor/_flowcore.c), or None: see monitor.native_core.
_flowcore = native_core()

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp6"}
_ICMP_REPLIES = frozenset((0, 14, 16, 18, 129))  # echo/timestamp/info/mask replies, ICMPv6 echo


@dataclass
class FlowConfig:
    """Timeouts and bounds of the flow table. Times are seconds of capture time."""

    tcp_idle: float = 900.0  #: an established TCP flow with no packet for this long ends
    udp_idle: float = 60.0  #: UDP flows end after this much silence
    other_idle: float = 60.0  #: ICMP and other protocols
    closed_linger: float = 5.0  #: after FIN from both sides or a RST, the flow ends this late
    absolute: float = 86400.0  #: no flow lives longer than this; later packets start a new one
    max_flows: int = 250_000  #: live flows held; beyond, the least recently seen are flushed
    dedup_window: float = 0.05  #: a packet seen again within this is a SPAN duplicate
    service_ports: frozenset[int] = frozenset()  #: ports above 1023 that still mark a server
    sweep_every: float = 10.0  #: seconds of capture time between timeout sweeps, at most
    sweep_min_packets: int = 50_000  #: and at least this many packets (sweeps walk all flows)


class Flow:
    """One conversation. Counters are per direction; ``client`` is the initiator."""

    __slots__ = (
        "app",
        "bytes_to_client",
        "bytes_to_server",
        "ckey",
        "client_ip",
        "client_mac",
        "client_port",
        "end_reason",
        "first_ns",
        "flags_client",
        "flags_server",
        "isn_client",
        "isn_server",
        "last_ns",
        "packets_to_client",
        "packets_to_server",
        "payload_to_client",
        "payload_to_server",
        "proto",
        "server_ip",
        "server_mac",
        "server_port",
        "skey",
        "stream",
        "uid",
        "vlan",
    )

    def __init__(
        self,
        ckey: bytes,
        skey: bytes,
        proto: int,
        client_ip: bytes,
        client_port: int,
        server_ip: bytes,
        server_port: int,
        vlan: int | None,
        ts_ns: int,
    ) -> None:
        self.ckey = ckey  # the client -> server direction's key in the flow index
        self.skey = skey  # the server -> client direction's key
        self.proto = proto
        self.client_ip = client_ip
        self.client_port = client_port
        self.server_ip = server_ip
        self.server_port = server_port
        self.vlan = vlan
        self.first_ns = ts_ns
        self.last_ns = ts_ns
        self.uid = flow_uid(proto, client_ip, client_port, server_ip, server_port, ts_ns)
        self.packets_to_server = 0
        self.packets_to_client = 0
        self.bytes_to_server = 0
        self.bytes_to_client = 0
        self.payload_to_server = 0
        self.payload_to_client = 0
        self.flags_client = 0
        self.flags_server = 0
        self.isn_client: int | None = None
        self.isn_server: int | None = None
        self.client_mac = b""
        self.server_mac = b""
        self.app: str | None = None
        # None: undecided; False: no parser wants it; anything else: streams' per-flow state.
        self.stream: Any = None if proto == PROTO_TCP else False
        self.end_reason = ""

    def row(self, run_id: int) -> tuple[Any, ...]:
        """This flow as a row of the register's ``flows`` table, in the column order of
        :class:`monitor.records.Flow` (tests/test_flows.py checks the two agree)."""
        return (
            run_id,
            self.uid,
            self.first_ns,
            self.last_ns,
            PROTO_NAMES.get(self.proto) or str(self.proto),
            _remembered(_IP_TEXTS, self.client_ip, ip_text),
            self.client_port,
            _remembered(_IP_TEXTS, self.server_ip, ip_text),
            self.server_port,
            self.vlan,
            self.app,
            self.packets_to_server,
            self.packets_to_client,
            self.bytes_to_server,
            self.bytes_to_client,
            self.payload_to_server,
            self.payload_to_client,
            self.state or None,
            self.end_reason,
            _remembered(_MAC_TEXTS, self.client_mac, mac_text) or None,
            _remembered(_MAC_TEXTS, self.server_mac, mac_text) or None,
        )

    @property
    def state(self) -> str:
        """TCP state from the flags each side sent (Zeek-like, coarse)."""
        if self.proto != PROTO_TCP:
            return ""
        fc, fs = self.flags_client, self.flags_server
        if (fc | fs) & RST:
            return "reset"
        if fc & FIN and fs & FIN:
            return "closed"
        if fc & SYN and fs & SYN and fs & ACK:
            return "established"
        if fc & SYN and not fs:
            return "attempted"
        if self.packets_to_server and self.packets_to_client:
            return "established" if (fc | fs) & ACK else "partial"
        return "partial"


def flow_uid(
    proto: int, client_ip: bytes, client_port: int, server_ip: bytes, server_port: int, ts_ns: int
) -> str:
    """A flow's id: deterministic from its 5-tuple and first packet time, so that replaying the
    same capture gives the same ids (golden files stay stable). 'C' + 16 hex digits."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"%d|%d|%d|%d|" % (proto, client_port, server_port, ts_ns))
    h.update(client_ip)
    h.update(server_ip)
    return "C" + h.hexdigest()


def ip_text(raw: bytes) -> str:
    """An address's text form ('' for none)."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


def mac_text(raw: bytes) -> str:
    """A MAC address as lower-case colon-separated hex ('' for none)."""
    return raw.hex(":") if raw else ""


#: Texts of the addresses of recent flows: a site's hosts end thousands of flows each.
_IP_TEXTS: dict[bytes, str] = {}
_MAC_TEXTS: dict[bytes, str] = {}
_MAX_TEXTS = 1 << 16


def _remembered(texts: dict[bytes, str], raw: bytes, text_of: Callable[[bytes], str]) -> str:
    """``text_of(raw)``, kept in ``texts`` (emptied when full)."""
    text = texts.get(raw)
    if text is None:
        if len(texts) >= _MAX_TEXTS:
            texts.clear()
        text = texts[raw] = text_of(raw)
    return text


def signature(
    src: bytes, ip_id: int, ip_len: int, csum: int, seq: int, ack: int, frag: int
) -> bytes:
    """A packet's SPAN-duplicate signature when it has no full TCP header to serve as one (the
    header's 20 bytes are the signature of every other TCP packet): its source, IP id and
    length, L4 checksum, TCP seq/ack and fragment kind. The C fast lane builds the same bytes
    (monitor/_flowcore.c, parse())."""
    return b"\x00" + src + _SIG_TAIL(ip_id, ip_len, csum, seq, ack, frag)


class SignatureWindow:
    """The signatures of the packets seen in the last one to two ``window_ns`` of capture time:
    two generations, the older dropped at each rotation, bound the memory. The fast lane keeps
    its own in C; this one serves the plain-Python table."""

    def __init__(self, window_ns: int) -> None:
        self.window = window_ns
        self._recent: set[bytes] = set()
        self._older: set[bytes] = set()
        self._rotate_at = 0

    def seen(self, sig: bytes, ts: int) -> bool:
        """Whether ``sig`` was seen within the window before capture time ``ts`` (and
        remember it)."""
        if ts >= self._rotate_at:
            self._older = self._recent
            self._recent = set()
            self._rotate_at = ts + self.window
        if sig in self._recent or sig in self._older:
            return True
        self._recent.add(sig)
        return False


@dataclass
class TableStats:
    """What the flow table saw, for the run's totals."""

    packets: int = 0  #: frames read
    bytes: int = 0  #: sum of their original (wire) lengths
    duplicates: int = 0  #: SPAN duplicates counted once
    non_ip: int = 0  #: frames with no IP (ARP, other ethertypes)
    no_flow: int = 0  #: IP frames that could not be put in a flow (truncated before the ports)
    fragments: int = 0  #: IP fragments seen
    unsupported: Counter[int] = field(default_factory=Counter)  #: frames per unsupported linktype
    anomalies: Counter[str] = field(default_factory=Counter)  #: counts per anomaly name
    anomaly_first: dict[str, tuple[int, int]] = field(default_factory=dict)  #: name -> (ts, frame)
    flows: int = 0  #: flows ended and handed to the sink
    evicted: int = 0  #: flows flushed early because the table was full


class FlowTable:
    """Turns frames into flows. ``sink`` receives each ended :class:`Flow` exactly once."""

    def __init__(
        self,
        sink: Callable[[Flow], None],
        *,
        streams: Any = None,
        config: FlowConfig | None = None,
        on_unsupported: Callable[[int], None] | None = None,
        observer: Any = None,
        fast_lane: bool = True,
    ) -> None:
        """``fast_lane``: use the C fast lane when it was built (False: plain Python only,
        for comparisons)."""
        self.sink = sink
        self.streams = streams
        #: An :class:`monitor.observations.ObservationCollector` (or None): gets SYN traits,
        #: ARP bindings and the UDP datagrams of its ports.
        self.observer = observer
        self.config = config or FlowConfig()
        self.on_unsupported = on_unsupported
        #: live flows by their client -> server key
        self.flows: dict[bytes, Flow] = {}
        # both directions' keys -> (flow, whether this direction is client -> server)
        self._index: dict[bytes, tuple[Flow, bool]] = {}
        self.stats = TableStats()
        self._frags: dict[tuple[Any, ...], tuple[Flow, int]] = {}
        cfg = self.config
        window = int(cfg.dedup_window * NS)
        self._tcp_idle = int(cfg.tcp_idle * NS)
        self._udp_idle = int(cfg.udp_idle * NS)
        self._other_idle = int(cfg.other_idle * NS)
        self._sweep_every = int(cfg.sweep_every * NS)
        self._udp_ports: frozenset[int] = (
            observer.udp_ports if observer is not None else frozenset()
        )
        self._sweep_at_ns = 0
        self._sweep_after_packets = 0
        #: The C fast lane (None: everything runs in Python). It owns the duplicate window.
        self._core: Any = None
        if fast_lane and _flowcore is not None:
            self._core = _flowcore.Core(
                window,
                self._tcp_idle,
                self._udp_idle,
                self._udp_ports,
                streams.tcp if streams is not None else None,
                observer.datagram if observer is not None else None,
                getattr(streams, "bypassed", None),
                observer.syn if observer is not None else None,
            )
            if streams is not None and hasattr(streams, "bypass"):
                streams.bypass = self._core.bypass
            self._seen: Callable[[bytes, int], bool] = self._core.seen
        else:
            self._seen = SignatureWindow(window).seen

    def process(
        self,
        frames: Iterable[Any],
        progress: Callable[[TableStats, int], None] | None = None,
        progress_every: int = 1 << 16,
    ) -> None:
        """Count every frame of ``frames`` into the table: ``(ts_ns, linktype, data,
        wirelen)`` tuples, or lists or blocks of them
        (:meth:`monitor.source.CaptureReader.batches`).

        With the C fast lane (:mod:`monitor._flowcore`) the core pulls the frames and calls
        :meth:`_frame` only for those it leaves to Python; without it, every frame goes
        through :meth:`_frame`. Either way, every ``check_every`` packets the table reports
        progress and sweeps timeouts."""
        cfg = self.config
        stats = self.stats
        npk = stats.packets
        nbytes = stats.bytes
        # Progress reports and timeout sweeps are looked at together, every `check_every`.
        check_every = max(1, min(progress_every, cfg.sweep_min_packets or 1))
        next_check = npk + check_every
        next_progress = npk + progress_every
        core = self._core
        frame = self._frame
        it = iter(frames)
        if core is None:  # the Python loop takes frames one by one
            it = _one_by_one(it)
        ts = 0
        while True:
            if core is not None:
                npk, nbytes, ts, more = core.run(it, frame, npk, nbytes, next_check)
                stats.duplicates += core.take_duplicates()
            else:
                more = False
                for ts, linktype, data, wirelen in it:
                    npk += 1
                    nbytes += wirelen
                    if frame(ts, linktype, data, wirelen, npk, False) and npk >= next_check:
                        more = True
                        break
            stats.packets, stats.bytes = npk, nbytes
            if not more:
                break
            next_check = npk + check_every
            if npk >= next_progress:
                next_progress = npk + progress_every
                if progress is not None:
                    progress(stats, len(self.flows))
            if ts >= self._sweep_at_ns and npk >= self._sweep_after_packets:
                self._sweep(ts)
                self._sweep_at_ns = ts + self._sweep_every
                # Amortise: a sweep walks every flow, so wait for at least as many packets.
                self._sweep_after_packets = npk + max(cfg.sweep_min_packets, 2 * len(self.flows))

    # Everything per packet is inlined here on purpose: a Python function call costs as much
    # as decoding a header, and this runs for every packet the C fast lane leaves to Python
    # (and for every packet without it).
    def _frame(
        self, ts: int, linktype: int, data: bytes, wirelen: int, npk: int, checked: bool
    ) -> bool:
        """Count one frame (the ``npk``-th) into the table. ``checked``: the fast lane has done
        the duplicate check. Returns whether the frame went through to the end (counted into
        a flow), after which the caller may do its periodic work."""
        stats = self.stats
        anomalies = stats.anomalies
        observer = self.observer
        core = self._core
        # Declared types of the locals: no cost in CPython, and when this module is compiled
        # with mypyc (see setup.py) they let it work on unboxed machine integers.
        ip_len: int
        frag: int
        sport: int
        dport: int
        seq: int
        hlen: int
        flags: int
        plen: int
        poff: int
        proto: int
        key: bytes
        sig: bytes
        end: int
        idle: int
        from_client: bool
        fl: Flow
        ip_id: int
        src: bytes
        dst: bytes
        l4off: int
        # Fast path for untagged Ethernet + IPv4 without options + TCP, most of the traffic:
        # a few byte reads and two slices instead of decode()'s call, tuple and unpacking,
        # which together cost more than the decoding. Its flow key is the 12 bytes that
        # hold the addresses and ports, its duplicate signature the 20-byte TCP header.
        # tests/test_flows.py checks that it agrees with decode().
        if (
            linktype == 1
            and len(data) >= 54
            and data[14] == 0x45
            and data[12] == 8
            and data[13] == 0
            and data[23] == 6
        ):
            # Read byte by byte: compiled, these are machine-integer operations, cheaper
            # than a struct call and its tuple of seven int objects.
            ip_len = data[16] << 8 | data[17]
            frag = data[20] << 8 | data[21]
            sport = data[34] << 8 | data[35]
            dport = data[36] << 8 | data[37]
            seq = data[38] << 24 | data[39] << 16 | data[40] << 8 | data[41]
            hlen = (data[46] >> 4) << 2
            flags = data[47]
            end = 14 + ip_len
            if end > len(data):
                end = len(data)
            plen = end - 34 - hlen
            if frag & 0x3FFF or hlen < 20 or plen < 0 or ip_len < 20:
                frag = -1  # not for the fast path after all
            else:
                frag = 0
                proto = 6
                poff = 34 + hlen
                key = data[26:38]
                sig = data[34:54]
                l4off = 34
                raw = None
        else:
            frag = -1
        if frag:
            raw = p = decode(linktype, data)
            if p is None:
                anomalies["frame.linktype_unsupported"] += 1
                stats.unsupported[linktype] += 1
                if self.on_unsupported is not None and stats.unsupported[linktype] == 1:
                    self.on_unsupported(linktype)
                return False
            (_smac, _dmac, _vlan, _etype, ipv, src, dst, proto, _ttl, ip_id, frag, sport,
             dport, flags, seq, ack, csum, l4off, poff, plen, ip_len, anomaly) = p  # fmt: skip
            if anomaly is not None:
                anomalies[anomaly] += 1
                if anomaly not in stats.anomaly_first:
                    stats.anomaly_first[anomaly] = (ts, npk)
            if not ipv:
                stats.non_ip += 1
                if _etype == 0x0806 and observer is not None:
                    observer.arp(ts, _smac, src)
                return False
            if proto == 6 and poff - l4off >= 20 and not frag:
                sig = data[l4off : l4off + 20]  # as the fast path's
            else:
                sig = signature(src, ip_id, ip_len, csum, seq, ack, frag)
            if frag == FRAG_LATER:
                key = b""
            elif proto == 6:
                key = src + dst + _PORTS(sport & 0xFFFF, dport & 0xFFFF)
            elif proto == 17:
                key = src + dst + _PORTS(sport & 0xFFFF, dport & 0xFFFF) + b"\x11"
            else:  # ICMP type/code and other protocols: one flow per address pair
                key = src + dst + bytes((proto,))
        # SPAN duplicates: the same packet again within the window (see SignatureWindow).
        if not checked and self._seen(sig, ts):
            stats.duplicates += 1
            return False
        if frag:
            stats.fragments += 1
            if frag == FRAG_LATER:
                hit = self._frags.get((src, dst, proto, ip_id))
                if hit is None:
                    anomalies["ip.fragment_orphan"] += 1
                    if "ip.fragment_orphan" not in stats.anomaly_first:
                        stats.anomaly_first["ip.fragment_orphan"] = (ts, npk)
                    stats.no_flow += 1
                    return False
                f = hit[0]
                if self.flows.get(f.ckey) is not f:  # the flow ended meanwhile
                    stats.no_flow += 1
                    return False
                if core is not None:
                    core.settle(f.ckey)
                f.last_ns = ts
                if src == f.client_ip:
                    f.packets_to_server += 1
                    f.bytes_to_server += wirelen
                    f.payload_to_server += plen
                else:
                    f.packets_to_client += 1
                    f.bytes_to_client += wirelen
                    f.payload_to_client += plen
                return False
            if sport < 0:
                stats.no_flow += 1
                return False
        elif sport < 0:
            stats.no_flow += 1
            return False
        hit = self._index.get(key)
        if hit is not None:
            fl, from_client = hit
            if core is not None and not checked:
                core.settle(key)  # the fast lane's counts of this flow, before reading them
            # Timeouts are enforced here too, not only by sweeps: a conversation that
            # resumes after its idle timeout is a new flow.
            idle = ts - fl.last_ns
            if proto == 6:
                if idle > self._tcp_idle:
                    self._end(fl, "idle")
                    hit = None
                elif (
                    flags & SYN
                    and not flags & ACK
                    and (fl.flags_client | fl.flags_server) & (FIN | RST)
                    and seq != fl.isn_client
                ):
                    self._end(fl, "closed")  # the ports were reused for a new connection
                    hit = None
            elif idle > (self._udp_idle if proto == 17 else self._other_idle):
                self._end(fl, "idle")
                hit = None
        if hit is None:
            fl = self._new_flow(data, key, proto, sport, dport, flags, ts, raw)
            from_client = fl.ckey == key
        else:
            fl.last_ns = ts
        if frag:
            self._frags[(src, dst, proto, ip_id)] = (fl, ts)
        if from_client:
            fl.packets_to_server += 1
            fl.bytes_to_server += wirelen
            fl.payload_to_server += plen
            fl.flags_client |= flags
        else:
            fl.packets_to_client += 1
            fl.bytes_to_client += wirelen
            fl.payload_to_client += plen
            fl.flags_server |= flags
        if proto == 6:
            if flags & SYN:
                if from_client:
                    if not flags & ACK:
                        fl.isn_client = seq
                        if observer is not None:
                            observer.syn(fl, True, ts, data[22] if raw is None else raw[8],
                                         data[l4off:poff])  # fmt: skip
                elif flags & ACK:
                    fl.isn_server = seq
                    if observer is not None:
                        observer.syn(fl, False, ts, data[22] if raw is None else raw[8],
                                     data[l4off:poff])  # fmt: skip
            if fl.stream is not False and self.streams is not None:
                self.streams.tcp(fl, from_client, ts, seq, flags, data[poff : poff + plen])
        elif (
            proto == 17
            and observer is not None
            and (dport in self._udp_ports or sport in self._udp_ports)
        ):
            app = observer.datagram(fl, from_client, ts, sport, dport, data[poff : poff + plen])
            if app is not None and fl.app is None:
                fl.app = app
        return True

    def _new_flow(
        self,
        data: bytes,
        key: bytes,
        proto: int,
        sport: int,
        dport: int,
        flags: int,
        ts: int,
        raw: RawPacket | None,
    ) -> Flow:
        """Start a flow for a packet whose key is not in the index (once per flow, so this
        may take its time)."""
        if raw is None:  # the fast path: Ethernet + IPv4 + TCP at fixed offsets
            smac, dmac, vlan = data[6:12], data[0:6], None
            src, dst = data[26:30], data[30:34]
        else:
            smac, dmac, vlan, src, dst = raw[0], raw[1], raw[2], raw[5], raw[6]
        n = len(src)
        rkey = key[n : 2 * n] + key[:n] + key[2 * n + 2 : 2 * n + 4] + key[2 * n : 2 * n + 2]
        if len(key) > 2 * n + 4:
            rkey += key[2 * n + 4 :]  # the UDP marker
        elif len(key) == 2 * n + 1:
            rkey = key[n : 2 * n] + key[:n] + key[2 * n :]  # address pair + protocol
        # (ICMP: the ports are the first message's type and code, as in Zeek.)
        if _client_is_src(proto, flags, sport, dport, self.config.service_ports):
            f = Flow(key, rkey, proto, src, sport, dst, dport, vlan, ts)
            f.client_mac, f.server_mac = smac, dmac
        else:
            f = Flow(rkey, key, proto, dst, dport, src, sport, vlan, ts)
            f.client_mac, f.server_mac = dmac, smac
        self.flows[f.ckey] = f
        self._index[f.ckey] = (f, True)
        self._index[f.skey] = (f, False)
        if self._core is not None:
            self._core.add(f.ckey, f.skey, f, ts)
        if len(self.flows) > self.config.max_flows:
            self._evict(ts)
        return f

    def _end(self, f: Flow, reason: str) -> None:
        """End one flow: forget it, close its stream, hand it to the sink."""
        if self.flows.get(f.ckey) is f:
            del self.flows[f.ckey]
            del self._index[f.ckey]
            self._index.pop(f.skey, None)  # the same key when a host talks to itself
            if self._core is not None:
                self._core.remove(f.ckey, f.skey)  # settles its counts first
        self._ended(f, reason)

    def _ended(self, f: Flow, reason: str) -> None:
        """A flow no longer in the table: close its stream, hand it to the sink."""
        f.end_reason = reason
        if f.stream is not None and f.stream is not False and self.streams is not None:
            self.streams.close(f)
        self.stats.flows += 1
        self.sink(f)

    def sweep(self, now_ns: int) -> None:
        """End the flows whose timeouts have passed at ``now_ns`` (a live capture calls this at
        each flush with the wall clock: a quiet network sweeps too)."""
        self._sweep(now_ns)

    def _sweep(self, now_ns: int) -> None:
        """End the flows whose idle, linger or absolute timeout has passed at capture time
        ``now_ns``, and forget stale fragment attributions."""
        cfg = self.config
        tcp_cut = now_ns - int(cfg.tcp_idle * NS)
        udp_cut = now_ns - int(cfg.udp_idle * NS)
        other_cut = now_ns - int(cfg.other_idle * NS)
        linger_cut = now_ns - int(cfg.closed_linger * NS)
        abs_cut = now_ns - int(cfg.absolute * NS)
        ended: list[tuple[Flow, str]] = []
        if self._core is not None:
            self._core.settle_all()
        for f in self.flows.values():
            last = f.last_ns
            if f.proto == 6:
                if last < linger_cut and (
                    (f.flags_client | f.flags_server) & RST
                    or (f.flags_client & FIN and f.flags_server & FIN)
                ):
                    ended.append((f, "closed"))
                elif last < tcp_cut:
                    ended.append((f, "idle"))
                elif f.first_ns < abs_cut:
                    ended.append((f, "absolute"))
            elif last < (udp_cut if f.proto == 17 else other_cut):
                ended.append((f, "idle"))
            elif f.first_ns < abs_cut:
                ended.append((f, "absolute"))
        for f, reason in ended:
            self._end(f, reason)
        frag_cut = now_ns - 60 * NS
        stale = [k for k, (_f, ts) in self._frags.items() if ts < frag_cut]
        for k in stale:
            del self._frags[k]

    def _evict(self, now_ns: int) -> None:
        """The table is full: end the least recently seen tenth of it."""
        self._sweep(now_ns)
        excess = len(self.flows) - self.config.max_flows
        if excess <= 0:
            return
        count = max(excess, self.config.max_flows // 10)
        victims = sorted(self.flows.values(), key=lambda f: f.last_ns)[:count]
        for f in victims:
            self._end(f, "evicted")
        self.stats.evicted += len(victims)
        self.stats.anomalies["flow.evicted"] += len(victims)

    def flush(self) -> None:
        """End every live flow (end of input), oldest first. The table is emptied at once,
        then each flow ends."""
        core = self._core
        if core is not None:
            core.settle_all()
            core.forget()
        live = sorted(self.flows.values(), key=lambda f: f.first_ns)
        self.flows.clear()
        self._index.clear()
        self._frags.clear()
        for f in live:
            self._ended(f, "end")


def _one_by_one(items: Iterator[Any]) -> Iterator[tuple[int, int, bytes, int]]:
    """Frames, and lists or blocks (``_flowcore.Records``) of frames, as frames."""
    for item in items:
        if item.__class__ is tuple:
            yield item
        else:
            yield from item


def _client_is_src(
    proto: int, flags: int, sport: int, dport: int, service_ports: frozenset[int]
) -> bool:
    """Whether the sender of a flow's first packet is its client."""
    if proto == 6:
        if flags & SYN:
            return not flags & ACK  # a SYN-ACK's receiver is the client
        return _ephemeral_side_is_src(sport, dport, service_ports)
    if proto == 1 or proto == 58:
        return sport not in _ICMP_REPLIES
    if proto == 17:
        s_service = sport < 1024 or sport in service_ports
        d_service = dport < 1024 or dport in service_ports
        # A response seen before its request comes from a service port to an ephemeral one.
        return not (s_service and not d_service)
    return True


def _ephemeral_side_is_src(sport: int, dport: int, service_ports: frozenset[int]) -> bool:
    """Mid-stream TCP: the side with the ephemeral port is the client."""
    s_service = sport < 1024 or sport in service_ports
    d_service = dport < 1024 or dport in service_ports
    if s_service != d_service:
        return d_service
    return sport >= dport
