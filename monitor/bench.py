"""What ``medmon bench`` measures, and the traffic it measures it on.

**The traffic.** :func:`generate_mix` writes a synthetic capture (classic little-endian
microsecond pcap, linktype 1 Ethernet) that looks like a hospital network seen from a SPAN
port: about 4,000 hosts in several ``10.x`` subnets (imaging modalities, PACS, clinical
devices, workstations, servers, switches), 50,000 flows of which 2,500-4,500 are live at any
moment, interleaved at ~100,000 packets per second of capture time. About 10% of the packets
(whole flows, also ~10% of them) are IPv6 (``2001:db8::/32``), 5% are in 802.1Q-tagged flows
(one VLAN id per client subnet). At 1M packets, by packets:

- TCP, ~76%: a 3-way handshake (SYN and SYN-ACK with an MSS option), request/response data,
  bare ACKs (one per two segments), a FIN/ACK teardown; some flows end with a RST, some are
  refused (SYN, RST), some are still open at the end. Sequence and acknowledgement numbers
  are consistent, so a reassembler sees ordered streams without gaps. A TLS 1.3 opening
  (ClientHello with SNI, ServerHello) then TLS records on 443, HTTP/1.1 on 80 and 8080, SSH
  banners on 22; opaque bytes on 445, 3389, 1433 and 5432.
- DICOM, ~16%, to PACS on 104 and 11112: A-ASSOCIATE-RQ (PS3.8 §9.3.2), A-ASSOCIATE-AC
  (§9.3.3), then C-STORE-RQ command sets and data sets in P-DATA-TF PDUs (§9.3.5) as bulk
  data, a C-STORE-RSP per object, A-RELEASE-RQ/RP. Objects are always complete.
- HL7 v2.5.1 over MLLP, ~2%, to an interface engine on 2575: ``0x0b MSH|^~\\&|... 0x1c
  0x0d`` messages, each answered by an ``ACK`` (``MSA|AA``).
- UDP, ~5%: DNS queries and answers (53), syslog (514), NTP (123); ICMP echo pairs.

TCP payloads run from 0 (bare ACKs) to the MSS (1460 bytes, 1440 over IPv6); ~40% of the
packets are bare ACKs and ~40% full-size segments. IPv4 header, TCP, UDP and ICMP checksums
are valid. Everything is synthetic: names say ``BENCH``/``bench.example``, UIDs are under
``2.25``, data sets carry device attributes only (no patient or study module), HL7 messages
have no PID segment. The capture is deterministic for a seed and written with precompiled
``struct`` layouts, byte joins and buffered writes (no scapy per packet): 1M packets
(~700 MB) take 7-10 s of CPU.

With ``flows`` fixed, a larger ``packets`` gives the *same* flows (hosts, 5-tuples, kinds),
each living longer with more packets: that is what :func:`memory_scaling` uses.

**The DICOM bulk mix.** :func:`generate_dicom_bulk` writes what a PACS's port shows while CT
scanners push studies: four scanners (10.20.0.1-4) store 512 x 512 16-bit CT images on one
PACS (10.30.0.1, ports 104 and 11112), each scanner one association after the other, the
scanners at the same time. Per association: TCP handshake, A-ASSOCIATE-RQ proposing CT Image
Storage, A-ASSOCIATE-AC accepting it with Explicit VR Little Endian; per image a C-STORE-RQ
command set (implicit VR LE), the data set (explicit VR LE: device attributes, a *canary*
patient ``CANARY^PHI``/``PHI-CANARY-0001``/``19000101`` that medmon must never store, study
and series UIDs, the image pixel module, 512 KiB of Pixel Data OW) in 16 KiB P-DATA-TF PDUs
sent as full 1460-byte segments at 1 Gbit/s, the PACS's ACK every second segment, its
C-STORE-RSP (success); A-RELEASE-RQ/RP and the scanner's FIN. ~550 images are ~300,000
packets and ~307 MB of frames, generated in ~1.6 s.

**The measurement.** :func:`run_bench` generates the mix (``mix``: generic, dicom-bulk or
both) once (cached in ``~/.cache/medmon/bench-<mix>-<packets>-<seed>.pcap``, or kept where
``keep`` says), reads it once so that every tool reads from the page cache, then runs, each
in a subprocess:

- ``python -m monitor replay FILE --db TMPDB --quiet --force``, end to end (decode, flows,
  parsers, register writes), with ``sys.executable``;
- ``tshark -n -r FILE -T fields -e ip.src -e ip.dst -e tcp.dstport`` (stdout to /dev/null) as
  a point of comparison, when tshark is installed.

Wall-clock time is ``time.perf_counter()`` around ``subprocess.Popen`` ... ``os.wait4``; CPU
time and peak RSS come from the ``rusage`` that ``os.wait4`` returns (``ru_maxrss`` is in KiB
on Linux). Rates are packets / wall second and frame bytes (the sum of the captured frames'
lengths) / wall second. On a shared machine, compare CPU seconds as well as wall seconds.
With both mixes, the report also gives dicom-bulk MB/s ÷ generic MB/s: medmon skips pixel
data without looking at it, so a capture of bulk DICOM should replay at least as fast, in
bytes, as the mix.

:func:`memory_scaling` replays the mix at two sizes (N and 4N packets, same flows) and
reports both peak RSS values: if memory is bounded by the flow table and not by the capture,
the two are close.

**Live capture.** :func:`live_bench` (``medmon bench --live``, root) measures ``medmon
sniff`` instead: two network namespaces of its own joined by a veth pair, the sensor on one
end, the generic mix replayed into the other with ``tcpreplay --pps=R``; rates from 25,000
packets/s doubling while nothing is lost (``--topspeed`` once tcpreplay falls behind), then a
bisection to about 10%, within a time budget. It reports the highest rate at which the kernel
dropped nothing and medmon read every packet (:func:`format_live_report`).

The tests (``tests/test_bench.py``) check the generated traffic against tshark and that the
report is complete; they never assert a time or a rate.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monitor import COMPILED, __version__

__all__ = [
    "BenchError",
    "BenchReport",
    "LiveBench",
    "LiveRung",
    "MachineInfo",
    "Measurement",
    "MemoryScaling",
    "MixRun",
    "MixStats",
    "ScalingPoint",
    "bulk_images_for",
    "cache_path",
    "format_live_report",
    "format_report",
    "generate_dicom_bulk",
    "generate_mix",
    "live_bench",
    "machine_info",
    "memory_scaling",
    "run_bench",
]

#: Bumped whenever the generated bytes change, so that cached captures are regenerated.
GENERATOR_VERSION = 1
DEFAULT_SEED = 1
#: Packets per second of capture time.
CAPTURE_RATE_PPS = 100_000
#: 2024-01-01T00:00:00Z, the capture's first second.
CAPTURE_EPOCH = 1_704_067_200
#: A flow gets at least this many packets on average: ``flows`` is capped at packets // 20.
PACKETS_PER_FLOW = 20
MIN_PACKETS = 100
MIN_HOSTS = 64
#: Maximum segment size over Ethernet (MTU 1500): IPv4, and IPv6 with its longer header.
MSS = 1460
MSS_IPV6 = 1440
#: The fastest a single flow goes: one packet per 10 µs of capture time (~1.2 Gbit/s).
MIN_FLOW_GAP_US = 10

# ---------------------------------------------------------------- wire layouts

# pcap (classic, little-endian, microseconds): magic, major, minor, thiszone, sigfigs,
# snaplen, linktype; then per record: ts_sec, ts_usec, incl_len, orig_len.
_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
_ETHERTYPE = struct.Struct(">H")
_VLAN_TAG = struct.Struct(">HHH")  # TPID 0x8100, TCI (PCP 0, DEI 0, VID), inner ethertype
# IPv4: version/IHL, DSCP/ECN, total length, identification, flags/fragment offset, TTL,
# protocol, header checksum, source, destination (RFC 791).
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
# IPv6: version/traffic class/flow label, payload length, next header, hop limit, src, dst.
_IPV6 = struct.Struct(">IHBB16s16s")
# TCP: ports, seq, ack, data offset << 4, flags, window, checksum, urgent pointer (RFC 9293).
_TCP = struct.Struct(">HHIIBBHHH")
_UDP = struct.Struct(">HHHH")  # ports, length, checksum (RFC 768)
_ICMP_ECHO = struct.Struct(">BBHHH")  # type, code, checksum, identifier, sequence (RFC 792)
_U16 = struct.Struct(">H")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
_SEQ_MASK = 0xFFFFFFFF

# ---------------------------------------------------------------- results


class BenchError(RuntimeError):
    """A measurement could not be made (the replay failed, a capture cannot be reused...)."""


@dataclass
class MixStats:
    """What :func:`generate_mix` wrote."""

    path: str
    #: Frames in the capture.
    packets: int
    #: Sum of the frames' lengths (Ethernet header included, pcap headers excluded).
    bytes: int
    #: Size of the pcap file.
    file_size: int
    #: Flows by kind: tcp (other TCP), dicom, hl7, dns, syslog, ntp, icmp.
    flows: dict[str, int] = field(default_factory=dict)
    #: All TCP flows (tcp + dicom + hl7): tshark's ``-z conv,tcp`` counts the same.
    tcp_flows: int = 0
    udp_flows: int = 0
    icmp_flows: int = 0
    #: Distinct hosts that appear in some flow.
    hosts: int = 0
    ipv6_packets: int = 0
    vlan_packets: int = 0
    #: Capture time from the first to the last frame.
    duration_s: float = 0.0
    seed: int = DEFAULT_SEED
    #: Wall-clock seconds the generation took (0 when the capture was reused).
    generation_s: float = 0.0
    generator_version: int = GENERATOR_VERSION
    #: Which mix: "generic" (:func:`generate_mix`) or "dicom-bulk" (:func:`generate_dicom_bulk`).
    mix: str = "generic"
    #: dicom-bulk: C-STORE objects (CT images) and the pixel bytes of each.
    images: int = 0
    image_bytes: int = 0

    @property
    def total_flows(self) -> int:
        return sum(self.flows.values())


@dataclass
class Measurement:
    """One tool's run over the capture."""

    tool: str
    command: list[str]
    #: Wall-clock seconds from Popen to wait4.
    seconds: float
    #: User + system CPU seconds of the process (and of children it waited for).
    cpu_s: float
    #: Peak resident set size (ru_maxrss) in MiB.
    peak_rss_mib: float
    packets: int
    #: Frame bytes in the capture (see :attr:`MixStats.bytes`).
    bytes: int
    exit_code: int = 0
    stderr_tail: str = ""

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Frame bytes per wall second, in MB (10^6 bytes)."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def mbit_per_s(self) -> float:
        """The link rate this corresponds to, in Mbit/s."""
        return 8 * self.mb_per_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["packets_per_s"] = round(self.packets_per_s, 1)
        d["mb_per_s"] = round(self.mb_per_s, 3)
        d["mbit_per_s"] = round(self.mbit_per_s, 3)
        return d


@dataclass
class MachineInfo:
    cpu_model: str
    #: Logical CPUs in the machine, and those this process may run on.
    cores: int
    cores_available: int
    memory_gib: float
    python: str
    medmon: str
    platform: str
    tshark: str | None
    #: 1-minute load average when the bench started: a busy machine gives slower numbers.
    load_1m: float


@dataclass
class ScalingPoint:
    packets: int
    flows: int
    capture_bytes: int
    peak_rss_mib: float
    seconds: float
    cpu_s: float


@dataclass
class MemoryScaling:
    """Peak RSS of the replay at two capture sizes with the same flows."""

    points: list[ScalingPoint]

    @property
    def capture_growth(self) -> float:
        first, last = self.points[0], self.points[-1]
        return last.capture_bytes / first.capture_bytes if first.capture_bytes else 0.0

    @property
    def rss_growth(self) -> float:
        first, last = self.points[0], self.points[-1]
        return last.peak_rss_mib / first.peak_rss_mib if first.peak_rss_mib else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [asdict(p) for p in self.points],
            "capture_growth": round(self.capture_growth, 3),
            "rss_growth": round(self.rss_growth, 3),
        }


@dataclass
class MixRun:
    """One mix measured: its capture, medmon's replay of it and tshark's run over it."""

    name: str
    mix: MixStats
    capture: str
    capture_origin: str
    replay: Measurement
    tshark: Measurement | None = None

    @property
    def ratio(self) -> float | None:
        """replay packets/s ÷ tshark packets/s (above 1: medmon is the faster)."""
        if self.tshark is None or self.tshark.packets_per_s == 0:
            return None
        return self.replay.packets_per_s / self.tshark.packets_per_s

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "name": self.name,
            "mix": asdict(self.mix),
            "capture": self.capture,
            "capture_origin": self.capture_origin,
            "replay": self.replay.to_dict(),
            "tshark": self.tshark.to_dict() if self.tshark else None,
            "replay_tshark_ratio": None if ratio is None else round(ratio, 4),
        }


@dataclass
class BenchReport:
    """Everything ``medmon bench`` prints. The first mix measured is in the top-level fields
    (``mix_name`` says which); a second one (``--mix both``: dicom-bulk) is in ``others``."""

    machine: MachineInfo
    mix: MixStats
    capture: str
    #: 'generated', 'cache' (reused from ~/.cache/medmon) or 'kept' (reused ``keep``).
    capture_origin: str
    replay: Measurement
    tshark: Measurement | None = None
    scaling: MemoryScaling | None = None
    mix_name: str = "generic"
    others: list[MixRun] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """replay packets/s ÷ tshark packets/s (above 1: medmon is the faster)."""
        return self.runs[0].ratio

    @property
    def runs(self) -> list[MixRun]:
        """Every mix measured, the first one first."""
        first = MixRun(
            self.mix_name, self.mix, self.capture, self.capture_origin, self.replay, self.tshark
        )
        return [first, *self.others]

    def run(self, name: str) -> MixRun | None:
        return next((r for r in self.runs if r.name == name), None)

    @property
    def bulk_ratio(self) -> float | None:
        """dicom-bulk replay MB/s ÷ generic replay MB/s, when both mixes were measured (at
        least 1: a capture of DICOM bulk replays at least as fast, in MB/s, as the mix)."""
        generic, bulk = self.run("generic"), self.run("dicom-bulk")
        if generic is None or bulk is None or generic.replay.mb_per_s == 0:
            return None
        return bulk.replay.mb_per_s / generic.replay.mb_per_s

    def to_dict(self) -> dict[str, Any]:
        ratio, bulk_ratio = self.ratio, self.bulk_ratio
        return {
            "machine": asdict(self.machine),
            "mix_name": self.mix_name,
            "mix": asdict(self.mix),
            "capture": self.capture,
            "capture_origin": self.capture_origin,
            "replay": self.replay.to_dict(),
            "tshark": self.tshark.to_dict() if self.tshark else None,
            "replay_tshark_ratio": None if ratio is None else round(ratio, 4),
            "scaling": self.scaling.to_dict() if self.scaling else None,
            "mixes": [r.to_dict() for r in self.runs],
            "dicom_bulk_generic_mb_ratio": None if bulk_ratio is None else round(bulk_ratio, 4),
        }


# ---------------------------------------------------------------- frames


def _ones_complement(x: int) -> int:
    """Internet checksum of words whose sum is ``x``: the sum modulo 0xFFFF equals the folded
    one's-complement sum (because 0x10000 ≡ 1), so any big integer built from the words'
    bytes can be reduced at once."""
    r = x % 0xFFFF
    return 0xFFFF - r if r else 0


def _bytes_sum(data: bytes) -> int:
    """``data`` as big-endian 16-bit words, summed modulo 0xFFFF (odd length: zero-padded)."""
    v = int.from_bytes(data, "big")
    return v << 8 if len(data) & 1 else v


class _Dir:
    """One direction of a flow: its link-layer header and checksum sums, computed once."""

    __slots__ = (
        "dport",
        "dst",
        "ident",
        "ip_sum",
        "l2",
        "l4_sum",
        "proto",
        "sport",
        "src",
        "v6",
        "v6_word",
        "win",
    )

    def __init__(
        self,
        *,
        src_mac: bytes,
        dst_mac: bytes,
        vlan: int,
        v6: bool,
        src: bytes,
        dst: bytes,
        proto: int,
        sport: int = 0,
        dport: int = 0,
        win: int = 0,
        ident: int = 0,
        flow_label: int = 0,
    ) -> None:
        ethertype = ETHERTYPE_IPV6 if v6 else ETHERTYPE_IPV4
        if vlan:
            self.l2 = dst_mac + src_mac + _VLAN_TAG.pack(ETHERTYPE_VLAN, vlan, ethertype)
        else:
            self.l2 = dst_mac + src_mac + _ETHERTYPE.pack(ethertype)
        self.v6, self.src, self.dst, self.proto = v6, src, dst, proto
        self.sport, self.dport, self.win, self.ident = sport, dport, win, ident
        self.v6_word = 6 << 28 | flow_label
        addresses = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
        # IPv4 header words other than total length, identification and checksum.
        self.ip_sum = (0x4500 + 0x4000 + (64 << 8 | proto) + addresses) % 0xFFFF
        # Pseudo-header (addresses, protocol) and the constant L4 header words.
        if proto == PROTO_TCP:
            l4 = addresses + proto + sport + dport + win
        elif proto == PROTO_UDP:
            l4 = addresses + proto + sport + dport
        elif proto == PROTO_ICMPV6:
            l4 = addresses + proto
        else:  # ICMPv4 has no pseudo-header
            l4 = 0
        self.l4_sum = l4 % 0xFFFF

    def _ip(self, l4len: int, l4: bytes, payload: bytes) -> bytes:
        if self.v6:
            ip = _IPV6.pack(self.v6_word, l4len, self.proto, 64, self.src, self.dst)
            return b"".join((self.l2, ip, l4, payload))
        self.ident = ident = (self.ident + 1) & 0xFFFF
        total = 20 + l4len
        csum = _ones_complement(self.ip_sum + total + ident)
        ip = _IPV4.pack(0x45, 0, total, ident, 0x4000, 64, self.proto, csum, self.src, self.dst)
        return b"".join((self.l2, ip, l4, payload))

    def tcp(self, flags: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
        """A TCP segment without options. The hot path: ``_ip`` and the checksums inlined."""
        n = len(payload)
        x = self.l4_sum + 20 + n + seq + ack + (0x5000 | flags)
        if n:
            x += int.from_bytes(payload, "big") << 8 if n & 1 else int.from_bytes(payload, "big")
        r = x % 0xFFFF
        hdr = _TCP.pack(
            self.sport, self.dport, seq, ack, 0x50, flags, self.win, 0xFFFF - r if r else 0, 0
        )
        if self.v6:
            ip = _IPV6.pack(self.v6_word, 20 + n, PROTO_TCP, 64, self.src, self.dst)
            return b"".join((self.l2, ip, hdr, payload))
        self.ident = ident = (self.ident + 1) & 0xFFFF
        total = 40 + n
        r = (self.ip_sum + total + ident) % 0xFFFF
        ip = _IPV4.pack(
            0x45, 0, total, ident, 0x4000, 64, PROTO_TCP, 0xFFFF - r if r else 0, self.src, self.dst
        )
        return b"".join((self.l2, ip, hdr, payload))

    def tcp_syn(self, flags: int, seq: int, ack: int, mss: int) -> bytes:
        """SYN or SYN-ACK with an MSS option (kind 2, length 4; data offset 6)."""
        x = self.l4_sum + 24 + seq + ack + (0x6000 | flags) + 0x0204 + mss
        hdr = _TCP.pack(
            self.sport, self.dport, seq, ack, 0x60, flags, self.win, _ones_complement(x), 0
        )
        return self._ip(24, hdr + b"\x02\x04" + _U16.pack(mss), b"")

    def udp(self, payload: bytes) -> bytes:
        length = 8 + len(payload)
        r = (self.l4_sum + 2 * length + _bytes_sum(payload)) % 0xFFFF
        # A computed 0 is sent as 0xFFFF (RFC 768), which 0xFFFF - r gives for r == 0.
        return self._ip(length, _UDP.pack(self.sport, self.dport, length, 0xFFFF - r), payload)

    def icmp_echo(self, icmp_type: int, ident: int, seq: int, payload: bytes) -> bytes:
        length = 8 + len(payload)
        x = (icmp_type << 8) + ident + seq + _bytes_sum(payload)
        if self.v6:
            x += self.l4_sum + length
        hdr = _ICMP_ECHO.pack(icmp_type, 0, _ones_complement(x), ident, seq)
        return self._ip(length, hdr, payload)


class _Conn:
    """A TCP connection's next sequence numbers; frames in either direction."""

    __slots__ = ("cseq", "fwd", "mss", "rev", "sseq")

    def __init__(self, fwd: _Dir, rev: _Dir, cseq: int, sseq: int) -> None:
        self.fwd, self.rev, self.cseq, self.sseq = fwd, rev, cseq, sseq
        self.mss = MSS_IPV6 if fwd.v6 else MSS

    def c(self, payload: bytes, flags: int = PSH | ACK) -> bytes:
        """Client to server, with data."""
        seq = self.cseq
        self.cseq = (seq + len(payload)) & _SEQ_MASK
        return self.fwd.tcp(flags, seq, self.sseq, payload)

    def s(self, payload: bytes, flags: int = PSH | ACK) -> bytes:
        """Server to client, with data."""
        seq = self.sseq
        self.sseq = (seq + len(payload)) & _SEQ_MASK
        return self.rev.tcp(flags, seq, self.cseq, payload)

    def c_ack(self) -> bytes:
        return self.fwd.tcp(ACK, self.cseq, self.sseq)

    def s_ack(self) -> bytes:
        return self.rev.tcp(ACK, self.sseq, self.cseq)


class _Stream:
    """One direction's application bytes: ``pending`` (an opening or a header) first, then
    the cyclic 64 KiB block. A segment of ``size`` never grows past the pending bytes."""

    __slots__ = ("block", "off", "pending")

    def __init__(self, block: bytes) -> None:
        self.block, self.off, self.pending = block, 0, b""

    def take(self, size: int) -> bytes:
        pos = self.off & 0xFFFF
        if self.pending:
            head, self.pending = self.pending, b""
            size = max(0, size - len(head))
            self.off += size
            return head + self.block[pos : pos + size]
        self.off += size
        return self.block[pos : pos + size]


# ---------------------------------------------------------------- DICOM (PS3.8, PS3.7)

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
#: Modality -> (storage SOP class, rows, columns, bytes per pixel) of its objects.
_MODALITIES: dict[str, tuple[str, int, int, int]] = {
    "CT": ("1.2.840.10008.5.1.4.1.1.2", 512, 512, 2),
    "MR": ("1.2.840.10008.5.1.4.1.1.4", 256, 256, 2),
    "US": ("1.2.840.10008.5.1.4.1.1.6.1", 480, 640, 1),
    "CR": ("1.2.840.10008.5.1.4.1.1.1", 1024, 512, 2),
}
#: Synthetic implementations (class UID under the UUID root 2.25, version name).
_IMPLEMENTATIONS = (
    ("2.25.100000000000000000000000000000001", "BENCH_SCU_1_0"),
    ("2.25.200000000000000000000000000000002", "BENCH_MOD_2_4"),
    ("2.25.300000000000000000000000000000003", "BENCH_IMG_3_1"),
    ("2.25.400000000000000000000000000000004", "BENCH_TOOLKIT_9"),
)
PDU_A_ASSOCIATE_RQ, PDU_A_ASSOCIATE_AC, PDU_P_DATA_TF = 0x01, 0x02, 0x04
PDU_A_RELEASE_RQ, PDU_A_RELEASE_RP = 0x05, 0x06
ITEM_APPLICATION_CONTEXT, ITEM_PRESENTATION_CONTEXT_RQ = 0x10, 0x20
ITEM_PRESENTATION_CONTEXT_AC, ITEM_ABSTRACT_SYNTAX, ITEM_TRANSFER_SYNTAX = 0x21, 0x30, 0x40
ITEM_USER_INFORMATION, ITEM_MAXIMUM_LENGTH = 0x50, 0x51
ITEM_IMPLEMENTATION_CLASS_UID, ITEM_IMPLEMENTATION_VERSION_NAME = 0x52, 0x55
MAX_PDU_LENGTH = 16384
#: The largest PDV fragment in a P-DATA-TF of MAX_PDU_LENGTH: PDV length (4), context id
#: (1) and message control header (1) take 6 bytes.
_MAX_FRAGMENT = MAX_PDU_LENGTH - 6
_CMD_CONTEXT, _ECHO_CONTEXT = 1, 3
_PDU_HEADER = struct.Struct(">BBI")  # PDU type, reserved, PDU length
_ITEM_HEADER = struct.Struct(">BBH")  # item type, reserved, item length
_PDV_HEADER = struct.Struct(">IBB")  # PDV item length, presentation context id, control
_ELEMENT = struct.Struct("<HHI")  # implicit VR little endian: group, element, length


def _ae_title(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM_HEADER.pack(item_type, 0, len(value)) + value


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pdu_type, 0, len(body)) + body


def _associate_header(pdu_type: int, called: str, calling: str, items: list[bytes]) -> bytes:
    """A-ASSOCIATE-RQ/AC (PS3.8 §9.3.2, §9.3.3):

    =======  ====  ==========================================
    offset   size  field
    =======  ====  ==========================================
    0        1     PDU-type (0x01 RQ, 0x02 AC)
    1        1     reserved
    2        4     PDU-length, big-endian, bytes that follow
    6        2     protocol-version 0x0001
    8        2     reserved
    10       16    called AE title (space-padded)
    26       16    calling AE title
    42       32    reserved
    74       ...   variable items
    =======  ====  ==========================================
    """
    fixed = struct.pack(">HH", 1, 0) + _ae_title(called) + _ae_title(calling) + bytes(32)
    return _pdu(pdu_type, fixed + b"".join(items))


def _user_information(impl_uid: str, impl_version: str) -> bytes:
    return _item(
        ITEM_USER_INFORMATION,
        _item(ITEM_MAXIMUM_LENGTH, struct.pack(">I", MAX_PDU_LENGTH))
        + _item(ITEM_IMPLEMENTATION_CLASS_UID, impl_uid.encode("ascii"))
        + _item(ITEM_IMPLEMENTATION_VERSION_NAME, impl_version.encode("ascii")),
    )


def _associate_rq(called: str, calling: str, sop_class: str, impl: tuple[str, str]) -> bytes:
    contexts = (
        (_CMD_CONTEXT, sop_class, (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)),
        (_ECHO_CONTEXT, VERIFICATION_SOP_CLASS, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    )
    items = [_item(ITEM_APPLICATION_CONTEXT, APPLICATION_CONTEXT_NAME.encode("ascii"))]
    for ctx_id, abstract, transfers in contexts:
        sub = _item(ITEM_ABSTRACT_SYNTAX, abstract.encode("ascii")) + b"".join(
            _item(ITEM_TRANSFER_SYNTAX, t.encode("ascii")) for t in transfers
        )
        items.append(_item(ITEM_PRESENTATION_CONTEXT_RQ, bytes((ctx_id, 0, 0, 0)) + sub))
    items.append(_user_information(*impl))
    return _associate_header(PDU_A_ASSOCIATE_RQ, called, calling, items)


def _associate_ac(
    called: str,
    calling: str,
    impl: tuple[str, str],
    transfer_syntax: str = IMPLICIT_VR_LITTLE_ENDIAN,
) -> bytes:
    """Both proposed contexts accepted: the storage one with ``transfer_syntax``,
    Verification with Implicit VR Little Endian."""
    items = [_item(ITEM_APPLICATION_CONTEXT, APPLICATION_CONTEXT_NAME.encode("ascii"))]
    for ctx_id in (_CMD_CONTEXT, _ECHO_CONTEXT):  # result 0: acceptance
        chosen = transfer_syntax if ctx_id == _CMD_CONTEXT else IMPLICIT_VR_LITTLE_ENDIAN
        ts = _item(ITEM_TRANSFER_SYNTAX, chosen.encode("ascii"))
        items.append(_item(ITEM_PRESENTATION_CONTEXT_AC, bytes((ctx_id, 0, 0, 0)) + ts))
    items.append(_user_information(*impl))
    return _associate_header(PDU_A_ASSOCIATE_AC, called, calling, items)


def _element(group: int, elem: int, value: bytes, pad: bytes = b" ") -> bytes:
    if len(value) & 1:
        value += pad
    return _ELEMENT.pack(group, elem, len(value)) + value


def _uid(uid: str) -> bytes:
    return uid.encode("ascii")


def _command_set(elements: Sequence[tuple[int, bytes, bytes]]) -> bytes:
    """A DIMSE command set (PS3.7 §9.3), group 0000 in implicit VR little endian."""
    body = b"".join(_element(0x0000, e, v, pad) for e, v, pad in elements)
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def _pdata(ctx_id: int, control: int, fragment: bytes) -> bytes:
    """One P-DATA-TF PDU (PS3.8 §9.3.5) with one PDV; control bit 0: command, bit 1: last."""
    return _pdu(PDU_P_DATA_TF, _PDV_HEADER.pack(len(fragment) + 2, ctx_id, control) + fragment)


def _c_store_rq(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    return _pdata(
        _CMD_CONTEXT,
        0x03,
        _command_set(
            (
                (0x0002, _uid(sop_class), b"\0"),  # Affected SOP Class UID
                (0x0100, struct.pack("<H", 0x0001), b""),  # Command Field: C-STORE-RQ
                (0x0110, struct.pack("<H", message_id & 0xFFFF), b""),  # Message ID
                (0x0700, struct.pack("<H", 0x0000), b""),  # Priority: medium
                (0x0800, struct.pack("<H", 0x0000), b""),  # Command Data Set Type: present
                (0x1000, _uid(sop_instance), b"\0"),  # Affected SOP Instance UID
            )
        ),
    )


def _c_store_rsp(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    return _pdata(
        _CMD_CONTEXT,
        0x03,
        _command_set(
            (
                (0x0002, _uid(sop_class), b"\0"),
                (0x0100, struct.pack("<H", 0x8001), b""),  # C-STORE-RSP
                (0x0120, struct.pack("<H", message_id & 0xFFFF), b""),  # Message ID Responded To
                (0x0800, struct.pack("<H", 0x0101), b""),  # no data set
                (0x0900, struct.pack("<H", 0x0000), b""),  # Status: success
                (0x1000, _uid(sop_instance), b"\0"),
            )
        ),
    )


def _c_echo(response: bool, message_id: int) -> bytes:
    elements = [(0x0002, _uid(VERIFICATION_SOP_CLASS), b"\0")]
    if response:
        elements += [
            (0x0100, struct.pack("<H", 0x8030), b""),
            (0x0120, struct.pack("<H", message_id & 0xFFFF), b""),
            (0x0800, struct.pack("<H", 0x0101), b""),
            (0x0900, struct.pack("<H", 0x0000), b""),
        ]
    else:
        elements += [
            (0x0100, struct.pack("<H", 0x0030), b""),
            (0x0110, struct.pack("<H", message_id & 0xFFFF), b""),
            (0x0800, struct.pack("<H", 0x0101), b""),
        ]
    return _pdata(_ECHO_CONTEXT, 0x03, _command_set(elements))


_A_RELEASE_RQ = _pdu(PDU_A_RELEASE_RQ, bytes(4))
_A_RELEASE_RP = _pdu(PDU_A_RELEASE_RP, bytes(4))


def _dataset_header(
    modality: str, sop_instance: str, station: str, rows: int, cols: int, pixel_len: int
) -> bytes:
    """Device attributes and the Pixel Data header, implicit VR little endian. No patient,
    study or series module: nothing about a person."""
    sop_class, _, _, bpp = _MODALITIES[modality]
    us = struct.Struct("<H").pack
    return b"".join(
        (
            _element(0x0008, 0x0016, _uid(sop_class), b"\0"),  # SOP Class UID
            _element(0x0008, 0x0018, _uid(sop_instance), b"\0"),  # SOP Instance UID
            _element(0x0008, 0x0060, modality.encode()),  # Modality
            _element(0x0008, 0x0070, b"MEDMON BENCH"),  # Manufacturer
            _element(0x0008, 0x1010, station.encode()),  # Station Name
            _element(0x0008, 0x1090, f"SYNTHETIC {modality}".encode()),  # Model Name
            _element(0x0018, 0x1020, b"BENCH 1.0"),  # Software Versions
            _element(0x0028, 0x0002, us(1)),  # Samples per Pixel
            _element(0x0028, 0x0004, b"MONOCHROME2"),  # Photometric Interpretation
            _element(0x0028, 0x0010, us(rows)),  # Rows
            _element(0x0028, 0x0011, us(cols)),  # Columns
            _element(0x0028, 0x0100, us(8 * bpp)),  # Bits Allocated
            _element(0x0028, 0x0101, us(8 * bpp)),  # Bits Stored
            _element(0x0028, 0x0102, us(8 * bpp - 1)),  # High Bit
            _element(0x0028, 0x0103, us(0)),  # Pixel Representation
            _ELEMENT.pack(0x7FE0, 0x0010, pixel_len),  # Pixel Data (value follows)
        )
    )


def _framed_len(dataset_len: int) -> int:
    """Bytes of P-DATA-TF PDUs that carry a data set of ``dataset_len`` bytes."""
    return dataset_len + 12 * max(1, -(-dataset_len // _MAX_FRAGMENT))


# ---------------------------------------------------------------- HL7 (v2.5.1 ch. 2) over MLLP

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
_HL7_APPS = ("BENCH_ADT", "BENCH_LIS", "BENCH_RIS", "BENCH_PHARM")
_HL7_EVENTS = (
    ("ADT", "A01", "ADT_A01"),
    ("ADT", "A08", "ADT_A01"),
    ("ORM", "O01", "ORM_O01"),
    ("ORU", "R01", "ORU_R01"),
    ("SIU", "S12", "SIU_S12"),
    ("MDM", "T02", "MDM_T02"),
)
_HL7_TS = "20240101120000"


def _mllp(segments: Sequence[str]) -> bytes:
    body = CARRIAGE_RETURN.join(s.encode("ascii") for s in segments) + CARRIAGE_RETURN
    return START_BLOCK + body + END_BLOCK + CARRIAGE_RETURN


def _hl7_pair(
    app: str, control_id: str, event: tuple[str, str, str], filler: int
) -> tuple[bytes, bytes]:
    """One message and its ACK, MLLP-framed. Synthetic: no PID, NK1 or OBX segment."""
    code, trigger, structure = event
    segments = [
        f"MSH|^~\\&|{app}|BENCH_HOSP|BENCH_ENGINE|BENCH_HOSP|{_HL7_TS}||"
        f"{code}^{trigger}^{structure}|{control_id}|P|2.5.1"
    ]
    if code == "ADT":
        segments.append(f"EVN|{trigger}|{_HL7_TS}")
    segments.append("NTE|1||synthetic medmon benchmark message, no patient data")
    segments.append(f"ZBM|1|{'X' * filler}")
    ack = [
        f"MSH|^~\\&|BENCH_ENGINE|BENCH_HOSP|{app}|BENCH_HOSP|{_HL7_TS}||"
        f"ACK^{trigger}^ACK|ACK{control_id}|P|2.5.1",
        f"MSA|AA|{control_id}",
    ]
    return _mllp(segments), _mllp(ack)


# ---------------------------------------------------------------- TLS 1.3, HTTP/1.1, SSH openings

_TLS_CCS = bytes((0x14, 0x03, 0x03, 0x00, 0x01, 0x01))  # ChangeCipherSpec (compatibility)


def _tls_record(payload: bytes, content_type: int = 0x17) -> bytes:
    """A TLS record (RFC 8446 §5.1): type, legacy version 0x0303, length, payload."""
    return struct.pack(">BHH", content_type, 0x0303, len(payload)) + payload


def _tls_handshake(msg_type: int, body: bytes) -> bytes:
    return _tls_record(bytes((msg_type,)) + len(body).to_bytes(3, "big") + body, 0x16)


def _tls_ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(data)) + data


def _tls_client_hello(sni: str, rnd: bytes) -> bytes:
    """ClientHello (RFC 8446 §4.1.2) with SNI, x25519 key share, TLS 1.3 and 1.2."""
    name = sni.encode("ascii")
    exts = b"".join(
        (
            _tls_ext(0x0000, struct.pack(">HBH", len(name) + 3, 0, len(name)) + name),
            _tls_ext(0x000A, struct.pack(">HH", 2, 0x001D)),  # supported_groups: x25519
            _tls_ext(
                0x000D, struct.pack(">HHHH", 6, 0x0403, 0x0804, 0x0401)
            ),  # signature_algorithms
            _tls_ext(0x002B, b"\x04" + struct.pack(">HH", 0x0304, 0x0303)),  # supported_versions
            _tls_ext(0x0033, struct.pack(">HHH", 36, 0x001D, 32) + rnd[32:64]),  # key_share
        )
    )
    body = b"".join(
        (
            struct.pack(">H", 0x0303),
            rnd[:32],
            b"\x20",
            rnd[32:64],  # random, session id
            struct.pack(">HHHHH", 8, 0x1301, 0x1302, 0x1303, 0xC02F),  # cipher suites
            b"\x01\x00",
            struct.pack(">H", len(exts)),
            exts,  # compression: null; extensions
        )
    )
    return _tls_handshake(0x01, body)


def _tls_server_hello(rnd: bytes, session_id: bytes) -> bytes:
    """ServerHello (RFC 8446 §4.1.3) choosing TLS 1.3 and TLS_AES_128_GCM_SHA256."""
    exts = _tls_ext(0x002B, struct.pack(">H", 0x0304)) + _tls_ext(
        0x0033, struct.pack(">HH", 0x001D, 32) + rnd[:32]
    )
    body = b"".join(
        (
            struct.pack(">H", 0x0303),
            rnd[:32],
            b"\x20",
            session_id[:32],
            struct.pack(">HB", 0x1301, 0),
            struct.pack(">H", len(exts)),
            exts,
        )
    )
    return _tls_handshake(0x02, body)


def _tls_block(rng: random.Random) -> bytes:
    """64 KiB of application-data records (4 x 16,384 bytes), so that any stream cut from
    the cyclic block from offset 0 is a valid record sequence."""
    return b"".join(_tls_record(rng.randbytes(16384 - 5)) for _ in range(4))


def _http_request(host: str, k: int) -> bytes:
    return (
        f"GET /bench/{k:06d}.bin HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: medmon-bench/1.0 (synthetic)\r\nAccept: */*\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode("ascii")


def _http_response_head(total: int) -> bytes:
    """A 200 response head whose Content-Length makes head + body ``total`` bytes (or just
    the head, with an empty body, when ``total`` is smaller than the head)."""
    n, head = 0, b""
    for _ in range(4):  # the length's digits change the head's length: settle them
        head = (
            "HTTP/1.1 200 OK\r\nServer: bench-httpd/1.0\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
        ).encode("ascii")
        n = max(0, total - len(head))
    return head


SSH_CLIENT_BANNER = b"SSH-2.0-BENCH_Client_1.0\r\n"
SSH_SERVER_BANNER = b"SSH-2.0-BENCH_Server_1.0\r\n"


# ---------------------------------------------------------------- DNS, NTP, syslog


def _dns_templates(name: str, answer: bytes) -> tuple[bytes, bytes]:
    """A query and its answer for ``name`` (type A, class IN), without the 2-byte ID."""
    qname = b"".join(bytes((len(p),)) + p.encode("ascii") for p in name.split(".")) + b"\0"
    question = qname + struct.pack(">HH", 1, 1)
    query = struct.pack(">HHHHH", 0x0100, 1, 0, 0, 0) + question
    rr = struct.pack(">HHHIH", 0xC00C, 1, 1, 300, 4) + answer
    response = struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + rr
    return query, response


# NTPv4 (RFC 5905): LI/VN/mode, stratum, poll, precision, root delay, root dispersion,
# reference id, then the reference, origin, receive and transmit timestamps.
_NTP = struct.Struct(">BBbbIII8s8s8s8s")
_NTP_ERA_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def _ntp_pair(k: int, fraction: int) -> tuple[bytes, bytes]:
    """Client request (mode 3) and server reply (mode 4) for the ``k``-th poll; timestamps
    differ from poll to poll, as on the wire (a monitor may drop identical frames as SPAN
    duplicates)."""
    sent = struct.pack(">II", CAPTURE_EPOCH + _NTP_ERA_OFFSET + 64 * k, fraction)
    received = struct.pack(">II", CAPTURE_EPOCH + _NTP_ERA_OFFSET + 64 * k, fraction + 4096)
    ref = struct.pack(">II", CAPTURE_EPOCH + _NTP_ERA_OFFSET, 0)
    zero = bytes(8)
    client = _NTP.pack(0x23, 0, 6, -20, 0, 0, 0, zero, zero, zero, sent)
    server = _NTP.pack(0x24, 2, 6, -20, 0x100, 0x200, 0x0A320001, ref, sent, received, received)
    return client, server


# ---------------------------------------------------------------- the plan


@dataclass(slots=True)
class _Host:
    ip4: bytes
    ip6: bytes
    mac: bytes
    role: str
    name: str
    index: int
    modality: str = ""


@dataclass(slots=True)
class _Flow:
    kind: str
    client: _Host
    server: _Host
    sport: int
    dport: int
    base: int
    weight: float
    duration: float  # fraction of the capture's duration
    start: float  # where in the remaining time it starts, 0..1
    end: str = "open"  # TCP: fin, rst, open, refused
    pattern: str = ""  # generic TCP: download, upload, interactive
    style: str = "raw"  # generic TCP: tls, http, ssh, raw (opaque bytes)
    v6: bool = False
    vlan: int = 0
    n: int = 0


_NETS = {"workstation": 10, "imaging": 20, "pacs": 30, "clinical": 40, "server": 50, "network": 60}
_VLAN_OF_NET = {10: 110, 20: 120, 30: 130, 40: 140, 50: 150, 60: 160}
_SERVERS = (
    ("dns", 2),
    ("ntp", 1),
    ("syslog", 1),
    ("hl7", 2),
    ("web", 8),
    ("file", 4),
    ("db", 2),
    ("jump", 2),
)
#: Flow kinds by share of the flows; generic TCP takes the rest.
_KIND_SHARES = (
    ("dns", 0.30),
    ("ntp", 0.03),
    ("syslog", 0.04),
    ("icmp", 0.01),
    ("dicom", 0.012),
    ("hl7", 0.03),
)
#: Generic TCP: (server port, server role, share, pattern choices).
_TCP_SERVICES: tuple[tuple[int, str, float, tuple[str, ...]], ...] = (
    (443, "web", 0.45, ("download",) * 4 + ("upload",)),
    (80, "web", 0.10, ("download",)),
    (8080, "web", 0.05, ("download",)),
    (445, "file", 0.15, ("download", "upload")),
    (3389, "jump", 0.05, ("interactive",)),
    (22, "jump", 0.05, ("interactive",)),
    (1433, "db", 0.08, ("download",)),
    (5432, "db", 0.07, ("download",)),
)
_STYLES = {443: "tls", 80: "http", 8080: "http", 22: "ssh"}
_TEARDOWN = {"fin": 4, "rst": 1, "open": 0, "refused": 0}


def _make_hosts(hosts: int) -> tuple[dict[str, list[_Host]], dict[str, list[_Host]]]:
    """Hosts by role, and servers by service. Addresses are 10.<net>.<i/250>.<i%250+1> and
    2001:db8:0:<net>::<i+1>; MACs are locally administered 02:00:0a:<net>:<i>."""
    pacs = 4
    n_servers = sum(c for _, c in _SERVERS)
    imaging = max(4, hosts * 5 // 100)
    network = max(2, hosts * 3 // 100)
    clinical = max(8, hosts * 35 // 100)
    workstation = max(8, hosts - pacs - n_servers - imaging - network - clinical)
    counts = {
        "pacs": pacs,
        "server": n_servers,
        "imaging": imaging,
        "network": network,
        "clinical": clinical,
        "workstation": workstation,
    }
    by_role: dict[str, list[_Host]] = {}
    modalities = tuple(_MODALITIES)
    index = 0
    for role, count in counts.items():
        net = _NETS[role]
        hs = []
        for i in range(count):
            ip4 = bytes((10, net, i // 250, i % 250 + 1))
            ip6 = bytes.fromhex(f"20010db80000{net:04x}") + (i + 1).to_bytes(8, "big")
            mac = bytes((0x02, 0x00, 0x0A, net)) + i.to_bytes(2, "big")
            modality = modalities[i % len(modalities)] if role == "imaging" else ""
            prefix = {
                "imaging": modality.lower(),
                "pacs": "pacs",
                "network": "sw",
                "clinical": "dev",
                "workstation": "ws",
                "server": "srv",
            }[role]
            hs.append(_Host(ip4, ip6, mac, role, f"{prefix}{i + 1:04d}", index, modality))
            index += 1
        by_role[role] = hs
    services: dict[str, list[_Host]] = {}
    it = iter(by_role["server"])
    for service, count in _SERVERS:
        services[service] = [next(it) for _ in range(count)]
        for i, h in enumerate(services[service]):
            h.name = f"{service}{i + 1:02d}"
    services["pacs"] = by_role["pacs"]
    return by_role, services


def _plan_flows(
    n_flows: int,
    by_role: dict[str, list[_Host]],
    services: dict[str, list[_Host]],
    rng: random.Random,
) -> list[_Flow]:
    """Who talks to whom, how, and how much of the capture each flow gets (as a weight)."""
    ch = rng.choice
    rand = rng.random
    anyone = by_role["workstation"] + by_role["clinical"] + by_role["imaging"] + by_role["network"]
    tcp_clients = by_role["workstation"] * 2 + by_role["clinical"]
    hl7_clients = services["db"] + services["web"] + by_role["clinical"][:40]
    syslog_clients = by_role["network"] + by_role["server"] + by_role["pacs"]
    used: set[tuple[int, int, int, int, int]] = set()

    def ephemeral(proto: int, c: _Host, s: _Host, dport: int) -> int:
        while True:
            sport = rng.randint(32768, 60999)
            key = (proto, c.index, s.index, sport, dport)
            if key not in used:
                used.add(key)
                return sport

    def loguniform(lo: float, hi: float) -> float:
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    flows: list[_Flow] = []
    for _ in range(n_flows):
        r = rand()
        kind = "tcp"
        for k, share in _KIND_SHARES:
            if r < share:
                kind = k
                break
            r -= share
        if kind == "dns":
            c, s = ch(anyone), ch(services["dns"])
            pairs = 1 if rand() < 0.7 else (2 if rand() < 0.85 else 3)
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_UDP, c, s, 53),
                53,
                2 * pairs,
                0.0,
                loguniform(1e-5, 1e-3),
                rand(),
            )
        elif kind == "ntp":
            c, s = ch(anyone), ch(services["ntp"])
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_UDP, c, s, 123),
                123,
                2 if rand() < 0.8 else 4,
                0.0,
                loguniform(1e-5, 1e-3),
                rand(),
            )
        elif kind == "syslog":
            c, s = ch(syslog_clients), ch(services["syslog"])
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_UDP, c, s, 514),
                514,
                1,
                0.5 * rng.lognormvariate(0, 1),
                rng.uniform(0.2, 1.0),
                rand(),
            )
        elif kind == "icmp":
            c, s = ch(by_role["workstation"]), ch(anyone + by_role["server"])
            ident = rng.randint(1, 0xFFFF)
            f = _Flow(
                kind, c, s, ident, 0, 2 * rng.randint(1, 4), 0.0, loguniform(1e-4, 1e-2), rand()
            )
        elif kind == "dicom":
            c, s = ch(by_role["imaging"]), ch(services["pacs"])
            dport = 104 if rand() < 0.6 else 11112
            end = "fin" if rand() < 0.85 else ("rst" if rand() < 0.35 else "open")
            base = 3 + 2 + _TEARDOWN[end] + (2 if end == "fin" else 0)
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_TCP, c, s, dport),
                dport,
                base,
                20 * min(50.0, rng.paretovariate(1.5)),
                loguniform(0.01, 0.3),
                rand(),
                end,
            )
        elif kind == "hl7":
            c, s = ch(hl7_clients), ch(services["hl7"])
            end = "open" if rand() < 0.4 else ("fin" if rand() < 0.9 else "rst")
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_TCP, c, s, 2575),
                2575,
                3 + 3 + _TEARDOWN[end],
                1.5 * rng.lognormvariate(0, 0.5),
                rng.uniform(0.1, 1.0),
                rand(),
                end,
            )
        else:
            r = rand()
            port, role, _, patterns = _TCP_SERVICES[-1]
            for service in _TCP_SERVICES:
                if r < service[2]:
                    port, role, _, patterns = service
                    break
                r -= service[2]
            c = ch(tcp_clients)
            s = ch(services[role]) if rand() < 0.9 or role == "jump" else ch(anyone)
            r = rand()
            end = "fin" if r < 0.78 else "rst" if r < 0.86 else "open" if r < 0.97 else "refused"
            if end == "refused":
                base, weight = 2, 0.0
            else:
                base, weight = 3 + 2 + _TEARDOWN[end], min(200.0, rng.paretovariate(1.2))
            f = _Flow(
                kind,
                c,
                s,
                ephemeral(PROTO_TCP, c, s, port),
                port,
                base,
                weight,
                loguniform(1e-3, 0.3),
                rand(),
                end,
                ch(patterns),
                _STYLES.get(port, "raw"),
            )
        flows.append(f)
    return flows


def _allocate(flows: list[_Flow], packets: int) -> None:
    """Give each flow its packet count: its base, plus a share of the rest by weight."""
    base = sum(f.base for f in flows)
    if base > packets:
        raise ValueError(f"{len(flows)} flows need at least {base} packets, not {packets}")
    extra = packets - base
    weighted = [f for f in flows if f.weight > 0]
    if not weighted:  # tiny mixes only
        weighted = flows
        for f in flows:
            f.weight = 1.0
    total = sum(f.weight for f in weighted)
    given = 0
    for f in flows:
        f.n = f.base + (int(extra * f.weight / total) if f.weight > 0 else 0)
        given += f.n
    for f in weighted[: packets - given]:
        f.n += 1


def _pick(flows: list[_Flow], share: float, reference: int, rng: random.Random) -> list[_Flow]:
    """Flows (in random order) whose expected packets add up to ``share`` of ``reference``
    packets. Expectations use a reference size, not the real one, so that the same flows are
    picked at every capture size."""
    base = sum(f.base for f in flows)
    total = sum(f.weight for f in flows) or 1.0
    extra = max(0, reference - base)
    order = list(range(len(flows)))
    rng.shuffle(order)
    target, acc, picked = share * reference, 0.0, []
    for i in order:
        f = flows[i]
        expected = f.base + extra * f.weight / total
        if acc + expected <= target:
            acc += expected
            picked.append(f)
    return picked


# ---------------------------------------------------------------- the generator


class _Content:
    """Payload material built once per generation, the same at every capture size."""

    def __init__(self, rng: random.Random, by_role: dict[str, list[_Host]]) -> None:
        # TLS application-data records: valid after a TLS opening, opaque bulk elsewhere,
        # and never the first bytes of a DICOM PDU or an MLLP block. Doubled, for slicing.
        self.client_block = _tls_block(rng) * 2
        self.server_block = _tls_block(rng) * 2
        self.pixels = rng.randbytes(max(r * c * b for _, r, c, b in _MODALITIES.values()))
        hosts = [h for hs in by_role.values() for h in hs]
        self.dns = [
            _dns_templates(f"{h.name}.bench.example", h.ip4) for h in rng.sample(hosts, 256)
        ]
        self.hl7: dict[str, list[tuple[bytes, bytes]]] = {}
        for app in _HL7_APPS:
            self.hl7[app] = [
                _hl7_pair(
                    app, f"BENCH{app[6:9]}{k:06d}", rng.choice(_HL7_EVENTS), rng.randint(40, 900)
                )
                for k in range(1, 33)
            ]
        self.syslog = [
            (
                f"<{rng.choice((134, 165, 189, 190))}>Jan  1 12:00:{k % 60:02d} bench-sw-{k:03d} "
                f"%LINK-3-UPDOWN: Interface port{k % 48 + 1}, changed state to "
                f"{rng.choice(('up', 'down'))} {'synthetic ' * rng.randint(0, 20)}"
            ).encode()
            for k in range(64)
        ]
        self.icmp = bytes(range(0x10, 0x38)).rjust(56, b"\0")


class _Mix:
    """Turns the plan into frames: one generator per flow, merged by time."""

    def __init__(self, content: _Content, rng: random.Random) -> None:
        self.content = content
        self.rng = rng

    def frames(self, f: _Flow) -> Iterator[bytes]:
        rng = self.rng
        c, s = f.client, f.server
        csrc, cdst = (c.ip6, s.ip6) if f.v6 else (c.ip4, s.ip4)
        proto = {
            "dns": PROTO_UDP,
            "ntp": PROTO_UDP,
            "syslog": PROTO_UDP,
            "icmp": PROTO_ICMPV6 if f.v6 else PROTO_ICMP,
        }.get(f.kind, PROTO_TCP)
        sport, dport = (0, 0) if f.kind == "icmp" else (f.sport, f.dport)
        win_c, win_s = (64240, 65160) if proto == PROTO_TCP else (0, 0)
        fwd = _Dir(
            src_mac=c.mac,
            dst_mac=s.mac,
            vlan=f.vlan,
            v6=f.v6,
            src=csrc,
            dst=cdst,
            proto=proto,
            sport=sport,
            dport=dport,
            win=win_c,
            ident=rng.getrandbits(16),
            flow_label=rng.getrandbits(20),
        )
        rev = _Dir(
            src_mac=s.mac,
            dst_mac=c.mac,
            vlan=f.vlan,
            v6=f.v6,
            src=cdst,
            dst=csrc,
            proto=proto,
            sport=dport,
            dport=sport,
            win=win_s,
            ident=rng.getrandbits(16),
            flow_label=rng.getrandbits(20),
        )
        if proto == PROTO_TCP:
            return self._tcp(f, fwd, rev)
        if f.kind == "dns":
            return self._dns(f.n, fwd, rev)
        if f.kind == "ntp":
            return self._ntp(f.n, fwd, rev)
        if f.kind == "syslog":
            return self._syslog(f.n, fwd)
        return self._icmp(f, fwd, rev)

    # ---- UDP, ICMP

    def _dns(self, n: int, fwd: _Dir, rev: _Dir) -> Iterator[bytes]:
        query, response = self.rng.choice(self.content.dns)
        first = self.rng.getrandbits(16)
        for i in range(n):
            txid = _U16.pack((first + i // 2) & 0xFFFF)  # a new ID for every query
            yield fwd.udp(txid + query) if i % 2 == 0 else rev.udp(txid + response)

    def _ntp(self, n: int, fwd: _Dir, rev: _Dir) -> Iterator[bytes]:
        fraction = self.rng.getrandbits(28)
        for i in range(n):
            client, server = _ntp_pair(i // 2, fraction)
            yield fwd.udp(client) if i % 2 == 0 else rev.udp(server)

    def _syslog(self, n: int, fwd: _Dir) -> Iterator[bytes]:
        """Lines from the pool, each with its own sequence number (no two frames alike)."""
        lines, ch = self.content.syslog, self.rng.choice
        for k in range(1, n + 1):
            yield fwd.udp(b"%s seq=%d" % (ch(lines), k))

    def _icmp(self, f: _Flow, fwd: _Dir, rev: _Dir) -> Iterator[bytes]:
        request, reply = (
            (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
            if f.v6
            else (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
        )
        data = self.content.icmp
        for i in range(f.n):
            seq = i // 2 + 1
            if i % 2 == 0:
                yield fwd.icmp_echo(request, f.sport, seq, data)
            else:
                yield rev.icmp_echo(reply, f.sport, seq, data)

    # ---- TCP

    def _tcp(self, f: _Flow, fwd: _Dir, rev: _Dir) -> Iterator[bytes]:
        rng = self.rng
        cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
        if f.end == "refused":
            for _ in range(f.n - 1):  # more than one SYN only in mixes too small to weigh
                yield fwd.tcp_syn(SYN, cisn, 0, MSS_IPV6 if f.v6 else MSS)
            yield rev.tcp(RST | ACK, 0, (cisn + 1) & _SEQ_MASK)
            return
        conn = _Conn(fwd, rev, (cisn + 1) & _SEQ_MASK, (sisn + 1) & _SEQ_MASK)
        yield fwd.tcp_syn(SYN, cisn, 0, conn.mss)
        yield rev.tcp_syn(SYN | ACK, sisn, conn.cseq, conn.mss)
        yield conn.c_ack()
        m = f.n - 3 - _TEARDOWN[f.end]
        if f.kind == "dicom":
            yield from self._dicom(f, conn, m)
        elif f.kind == "hl7":
            yield from self._hl7(f, conn, m)
        else:
            yield from self._generic(f, conn, m)
        client_closes = f.kind in ("dicom", "hl7") or rng.random() < 0.7
        a, b = (fwd, rev) if client_closes else (rev, fwd)
        aseq, bseq = (conn.cseq, conn.sseq) if client_closes else (conn.sseq, conn.cseq)
        if f.end == "fin":
            yield a.tcp(FIN | ACK, aseq, bseq)
            yield b.tcp(ACK, bseq, (aseq + 1) & _SEQ_MASK)
            yield b.tcp(FIN | ACK, bseq, (aseq + 1) & _SEQ_MASK)
            yield a.tcp(ACK, (aseq + 1) & _SEQ_MASK, (bseq + 1) & _SEQ_MASK)
        elif f.end == "rst":
            yield a.tcp(RST | ACK, aseq, bseq)

    def _generic(self, f: _Flow, conn: _Conn, m: int) -> Iterator[bytes]:
        """An opening (TLS 1.3 hello, SSH banners) if the service has one, then the pattern."""
        cs = _Stream(self.content.client_block)
        ss = _Stream(self.content.server_block)
        if f.style == "tls" and m >= 2:
            rnd = self.rng.randbytes(160)
            yield conn.c(_tls_client_hello(f"{f.server.name}.bench.example", rnd[:64]))
            yield conn.s(
                _tls_server_hello(rnd[64:128], rnd[32:64]) + _TLS_CCS + _tls_record(rnd[128:] * 36)
            )
            cs.pending = _TLS_CCS + _tls_record(rnd[:53])  # the client's Finished
            m -= 2
        elif f.style == "ssh" and m >= 2:
            yield conn.c(SSH_CLIENT_BANNER)
            yield conn.s(SSH_SERVER_BANNER)
            m -= 2
        if f.pattern == "upload":
            yield from self._upload(conn, m, cs, ss)
        elif f.pattern == "interactive":
            yield from self._interactive(conn, m, cs, ss)
        else:
            host = f"{f.server.name}.bench.example" if f.style == "http" else ""
            yield from self._download(conn, m, cs, ss, host)

    def _segments(self) -> int:
        """Segments in a response: heavy-tailed, at least 2, median ~4."""
        return min(3000, int(2 * self.rng.paretovariate(1.0)))

    def _download(
        self, conn: _Conn, m: int, cs: _Stream, ss: _Stream, http_host: str
    ) -> Iterator[bytes]:
        """Requests from the client, responses of many full segments, one ACK per two.
        With ``http_host``: HTTP/1.1 GETs and responses with a right Content-Length."""
        rand, randint, mss = self.rng.random, self.rng.randint, conn.mss
        k = 0
        while m > 0:
            k += 1
            if http_host:
                yield conn.c(_http_request(http_host, k))
            else:
                yield conn.c(cs.take(randint(60, 700)))
            m -= 1
            r = self._segments()
            last = randint(1, mss)
            if http_host:
                ss.pending = _http_response_head((r - 1) * mss + last)
            unacked = 0
            while r > 0 and m > 0:
                r -= 1
                yield conn.s(ss.take(mss if r else last), ACK if r else PSH | ACK)
                m -= 1
                unacked += 1
                if unacked == 2 and m > 0:
                    yield conn.c_ack()
                    m -= 1
                    unacked = 0
            ss.pending = b""  # a response cut short by the end of the capture
            if unacked and m > 0 and rand() < 0.5:
                yield conn.c_ack()
                m -= 1

    def _upload(self, conn: _Conn, m: int, cs: _Stream, ss: _Stream) -> Iterator[bytes]:
        """The client's bulk data, the server's ACKs and short answer."""
        randint, mss = self.rng.randint, conn.mss
        while m > 0:
            r = self._segments() + 1
            unacked = 0
            while r > 0 and m > 0:
                r -= 1
                yield conn.c(cs.take(mss if r else randint(100, 400)), ACK if r else PSH | ACK)
                m -= 1
                unacked += 1
                if unacked == 2 and m > 0:
                    yield conn.s_ack()
                    m -= 1
                    unacked = 0
            if m > 0:
                yield conn.s(ss.take(randint(60, 200)))
                m -= 1

    def _interactive(self, conn: _Conn, m: int, cs: _Stream, ss: _Stream) -> Iterator[bytes]:
        """Keystrokes and screen updates: small packets both ways, some bare ACKs."""
        rand, randint = self.rng.random, self.rng.randint
        while m > 0:
            if rand() < 0.5:
                yield conn.c(cs.take(randint(36, 160)))
                m -= 1
                continue
            yield conn.s(ss.take(randint(36, 1200) if rand() < 0.8 else conn.mss))
            m -= 1
            if m > 0 and rand() < 0.4:
                yield conn.c_ack()
                m -= 1

    def _hl7(self, f: _Flow, conn: _Conn, m: int) -> Iterator[bytes]:
        """Message, ACK message, bare ACK: whole MLLP blocks, each in one segment."""
        pairs = self.content.hl7[_HL7_APPS[f.client.index % len(_HL7_APPS)]]
        k = self.rng.randrange(len(pairs))
        while m > 0:
            message, ack = pairs[k % len(pairs)]
            k += 1
            yield conn.c(message)
            m -= 1
            if m > 0:
                yield conn.s(ack)
                m -= 1
            if m > 0:
                yield conn.c_ack()
                m -= 1

    def _dicom(self, f: _Flow, conn: _Conn, m: int) -> Iterator[bytes]:
        """Association, C-STORE objects (each complete), C-ECHO fill-ins, release."""
        rng, mss = self.rng, conn.mss
        modality = f.client.modality
        sop_class, rows, cols, bpp = _MODALITIES[modality]
        called = f"BENCH_{f.server.name.upper()}"
        calling = f"BENCH_{f.client.name.upper()}"
        impl = _IMPLEMENTATIONS[f.client.index % len(_IMPLEMENTATIONS)]
        release = f.end == "fin"
        if release:
            m -= 2
        yield conn.c(_associate_rq(called, calling, sop_class, impl))
        m -= 1
        if m > 0:
            yield conn.s(_associate_ac(called, calling, _IMPLEMENTATIONS[0]))
            m -= 1
        natural = rows * cols * bpp
        message_id = 0
        while m > 0:
            message_id += 1
            if m < 3:  # room for a C-ECHO, not for an object
                yield conn.c(_c_echo(False, message_id))
                if m == 2:
                    yield conn.s(_c_echo(True, message_id))
                m = 0
                break
            instance = f"2.25.{f.client.index}{f.sport:05d}{message_id:06d}"
            station = f"BENCH-{f.client.name.upper()}"
            header_len = len(_dataset_header(modality, instance, station, rows, cols, 0))
            full = _framed_len(header_len + natural)
            segments = -(-full // mss)
            budget = m - 2  # the C-STORE-RQ command and the C-STORE-RSP
            if segments + (segments + 1) // 2 <= budget:
                pixel_len, final_ack = natural, True
            else:  # the last object: as many segments as the budget holds, ACKs included
                segments, final_ack = _fit_segments(budget)
                target = segments * mss - rng.randint(0, 900)
                dataset_len = target - 12 * (-(-target // (_MAX_FRAGMENT + 12)))
                while _framed_len(dataset_len) > target:
                    dataset_len -= 2
                pixel_len = max(2, (dataset_len - header_len) & ~1)
            data = self._pdata_object(modality, instance, station, rows, cols, pixel_len)
            if not (segments - 1) * mss < len(data) <= segments * mss:
                raise AssertionError(f"{len(data)} bytes do not fill {segments} segments")
            yield conn.c(_c_store_rq(sop_class, instance, message_id))
            m -= 1
            sent = 0
            for i in range(segments):
                last = i == segments - 1
                yield conn.c(data[sent : sent + mss], PSH | ACK if last else ACK)
                sent += mss
                m -= 1
                if (i % 2 == 1) or (last and final_ack):
                    yield conn.s_ack()
                    m -= 1
            yield conn.s(_c_store_rsp(sop_class, instance, message_id))
            m -= 1
        if release:
            yield conn.c(_A_RELEASE_RQ)
            yield conn.s(_A_RELEASE_RP)

    def _pdata_object(
        self, modality: str, instance: str, station: str, rows: int, cols: int, pixel_len: int
    ) -> bytes:
        """A data set in P-DATA-TF PDUs of at most MAX_PDU_LENGTH, the last one flagged."""
        header = _dataset_header(modality, instance, station, rows, cols, pixel_len)
        pixels = memoryview(self.content.pixels)[:pixel_len]
        dataset = header + pixels
        pdus = []
        for off in range(0, len(dataset), _MAX_FRAGMENT):
            frag = dataset[off : off + _MAX_FRAGMENT]
            pdus.append(
                _pdata(_CMD_CONTEXT, 0x02 if off + _MAX_FRAGMENT >= len(dataset) else 0, frag)
            )
        return b"".join(pdus)


def _fit_segments(budget: int) -> tuple[int, bool]:
    """Segments ``s`` and whether the server ACKs the last odd one, so that the data packets
    plus the server's ACKs (one per two segments) make exactly ``budget`` (>= 1) packets."""
    for s in range(max(1, 2 * budget // 3 - 2), 2 * budget // 3 + 3):
        if s + s // 2 == budget:
            return s, False
        if s + (s + 1) // 2 == budget:
            return s, True
    raise AssertionError(f"no segment count fits {budget}")  # unreachable: all budgets fit


def generate_mix(
    path: str,
    *,
    packets: int = 1_000_000,
    hosts: int = 4000,
    flows: int = 50_000,
    seed: int = DEFAULT_SEED,
    ipv6_share: float = 0.10,
    vlan_share: float = 0.05,
    rate_pps: int = CAPTURE_RATE_PPS,
) -> MixStats:
    """Write a synthetic hospital capture of exactly ``packets`` frames to ``path``.

    ``flows`` is capped at ``packets // 20`` (a flow needs a few packets to have a handshake
    and a teardown). The same ``seed``, ``hosts`` and ``flows`` give the same flows at every
    ``packets``: a bigger capture has longer-lived flows, not more of them. ``ipv6_share`` and
    ``vlan_share`` are shares of the packets, given to whole flows. The capture starts on
    2024-01-01 and runs at about ``rate_pps`` packets per second of capture time.
    """
    if packets < MIN_PACKETS:
        raise ValueError(f"packets must be at least {MIN_PACKETS}")
    if hosts < MIN_HOSTS:
        raise ValueError(f"hosts must be at least {MIN_HOSTS}")
    if flows < 1:
        raise ValueError("flows must be at least 1")
    started = time.perf_counter()
    n_flows = min(flows, packets // PACKETS_PER_FLOW)
    plan_rng = random.Random(seed)
    by_role, services = _make_hosts(hosts)
    plan = _plan_flows(n_flows, by_role, services, plan_rng)
    reference = n_flows * PACKETS_PER_FLOW
    for f in _pick(plan, ipv6_share, reference, plan_rng):
        f.v6 = True
    for f in _pick(plan, vlan_share, reference, plan_rng):
        f.vlan = _VLAN_OF_NET[f.client.ip4[1]]
    content = _Content(random.Random(seed * 7919 + 1), by_role)
    _allocate(plan, packets)

    rng = random.Random(seed * 1_000_003 + packets)
    span = max(1, round(packets * 1_000_000 / rate_pps))  # µs of capture time
    heap: list[tuple[int, int]] = []
    left: list[int] = []  # packets each flow still has to send
    ends: list[int] = []  # when each flow's last packet is due, µs
    for i, f in enumerate(plan):
        duration = min(span, max(int(f.duration * span), f.n * MIN_FLOW_GAP_US))
        start = int(f.start * (span - duration))
        heap.append((start, i))
        left.append(f.n)
        ends.append(start + duration)
    heapq.heapify(heap)
    mix = _Mix(content, rng)
    live: dict[int, Iterator[bytes]] = {}
    get = live.get
    rand = rng.random
    record = _PCAP_RECORD.pack
    heapreplace, heappop = heapq.heapreplace, heapq.heappop

    written = total_bytes = 0
    first_ts = heap[0][0] if heap else 0
    last_ts = first_ts
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb", buffering=0) as out:
            out.write(_PCAP_HEADER.pack(PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
            parts: list[bytes] = []
            while heap:
                t, i = heap[0]
                gen = get(i)
                if gen is None:
                    gen = live[i] = mix.frames(plan[i])
                frame = next(gen, None)
                if frame is None:
                    raise AssertionError(f"flow {i} ended {left[i]} packets early")
                size = len(frame)
                parts.append(record(CAPTURE_EPOCH + t // 1_000_000, t % 1_000_000, size, size))
                parts.append(frame)
                total_bytes += size
                written += 1
                if len(parts) >= 8192:
                    out.write(b"".join(parts))
                    parts.clear()
                r = left[i] - 1
                left[i] = r
                if r:
                    # The next of r times uniform in (t, end]: their minimum (order statistics).
                    gap = int((ends[i] - t) * (1.0 - rand() ** (1.0 / r)))
                    heapreplace(heap, (t + (gap if gap > 0 else 1), i))
                else:
                    heappop(heap)
                    if next(gen, None) is not None:
                        raise AssertionError(f"flow {i} has more packets than planned")
                    del live[i]
                    last_ts = max(last_ts, t)
            out.write(b"".join(parts))
        if written != packets:  # a bug in a flow generator
            raise AssertionError(f"generated {written} packets, planned {packets}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    kinds = ("tcp", "dicom", "hl7", "dns", "syslog", "ntp", "icmp")
    by_kind = {k: sum(1 for f in plan if f.kind == k) for k in kinds}
    used_hosts = {f.client.index for f in plan} | {f.server.index for f in plan}
    return MixStats(
        path=str(path),
        packets=written,
        bytes=total_bytes,
        file_size=os.path.getsize(path),
        flows=by_kind,
        tcp_flows=by_kind["tcp"] + by_kind["dicom"] + by_kind["hl7"],
        udp_flows=by_kind["dns"] + by_kind["syslog"] + by_kind["ntp"],
        icmp_flows=by_kind["icmp"],
        hosts=len(used_hosts),
        ipv6_packets=sum(f.n for f in plan if f.v6),
        vlan_packets=sum(f.n for f in plan if f.vlan),
        duration_s=(last_ts - first_ts) / 1e6,
        seed=seed,
        generation_s=round(time.perf_counter() - started, 3),
    )


# ---------------------------------------------------------------- the DICOM bulk mix

#: The mixes ``medmon bench`` knows; run_bench also takes "both".
MIXES = ("generic", "dicom-bulk")
#: Packets of the DICOM bulk capture when run_bench is not told (at most ``packets``).
DEFAULT_BULK_PACKETS = 300_000
#: One 512 x 512 CT slice, 16 bits per pixel.
BULK_IMAGE_BYTES = 512 * 512 * 2
BULK_MODALITIES = 4
#: Images per association when ``associations`` is not given (a series or a part of one).
BULK_IMAGES_PER_ASSOCIATION = 100
#: The PACS acknowledges every second segment (delayed ACK, RFC 1122 §4.2.3.2); its
#: C-STORE-RSP acknowledges what is left of the object.
BULK_ACK_EVERY = 2
#: A modality sends at line rate on 1 Gbit/s: a 1514-byte frame every 12 µs.
_BULK_GAP_US = 12
CT_IMAGE_STORAGE = _MODALITIES["CT"][0]
#: (manufacturer, model, software versions, implementation) of the bulk mix's CT scanners.
_BULK_DEVICES = (
    ("BENCH MEDICAL SYSTEMS", "BENCH CT 64", b"BENCH_RECON 2.1\\BENCH_ACQ 7.4", 0),
    ("SYNTHETIC IMAGING", "SYNTH-CT 128", b"SYN 5.0.2", 1),
    ("EXAMPLE HEALTHCARE", "EXAMPLE CT 256", b"EX-CT 11\\EX-RECON 3", 2),
    ("MEDMON TEST DEVICES", "TEST CT 16", b"TEST 0.9", 3),
)
# Explicit VR little endian (PS3.5 §7.1.2): tag, VR, 2-byte length; or tag, VR, 2 reserved
# bytes, 4-byte length for the VRs of Table 7.1-1.
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2s2xI")
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
#: The (synthetic) patient of every bulk image: PHI canaries, which medmon must never store.
BULK_PATIENT_CANARIES = (b"CANARY^PHI", b"PHI-CANARY-0001", b"19000101")


def _explicit(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) & 1:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return _EXPLICIT_LONG.pack(group, elem, vr, len(value)) + value
    return _EXPLICIT_SHORT.pack(group, elem, vr, len(value)) + value


def _bulk_image_shape(image_bytes: int) -> tuple[int, int]:
    """Rows and columns of 16-bit pixels that make ``image_bytes`` (512 columns when they
    divide it, else a single row of at most 65,535 columns: Rows and Columns are US)."""
    pixels = image_bytes // 2
    if pixels % 512 == 0 and pixels // 512 <= 0xFFFF:
        return pixels // 512, 512
    return 1, min(pixels, 0xFFFF)


def _bulk_header(
    device: int,
    station: str,
    study: str,
    series: str,
    instance: str,
    number: int,
    shape: tuple[int, int],
    pixel_len: int,
) -> bytes:
    """A CT image's data set up to the Pixel Data header, explicit VR little endian: device
    attributes, a canary patient, study and series, the image pixel module."""
    manufacturer, model, software, _ = _BULK_DEVICES[device % len(_BULK_DEVICES)]
    us = struct.Struct("<H").pack
    rows, cols = shape
    return b"".join(
        (
            _explicit(0x0008, 0x0008, b"CS", b"ORIGINAL\\PRIMARY\\AXIAL"),  # Image Type
            _explicit(0x0008, 0x0016, b"UI", _uid(CT_IMAGE_STORAGE)),  # SOP Class UID
            _explicit(0x0008, 0x0018, b"UI", _uid(instance)),  # SOP Instance UID
            _explicit(0x0008, 0x0020, b"DA", b"20240101"),  # Study Date
            _explicit(0x0008, 0x0060, b"CS", b"CT"),  # Modality
            _explicit(0x0008, 0x0070, b"LO", manufacturer.encode()),  # Manufacturer
            _explicit(0x0008, 0x0080, b"LO", b"BENCH HOSPITAL"),  # Institution Name
            _explicit(0x0008, 0x1010, b"SH", station.encode()),  # Station Name
            _explicit(0x0008, 0x1090, b"LO", model.encode()),  # Manufacturer's Model Name
            _explicit(0x0010, 0x0010, b"PN", BULK_PATIENT_CANARIES[0]),  # Patient's Name
            _explicit(0x0010, 0x0020, b"LO", BULK_PATIENT_CANARIES[1]),  # Patient ID
            _explicit(0x0010, 0x0030, b"DA", BULK_PATIENT_CANARIES[2]),  # Patient's Birth Date
            _explicit(0x0010, 0x0040, b"CS", b"O"),  # Patient's Sex
            _explicit(0x0018, 0x0050, b"DS", b"1.25"),  # Slice Thickness
            _explicit(0x0018, 0x1000, b"LO", f"{station}-SN".encode()),  # Device Serial Number
            _explicit(0x0018, 0x1020, b"LO", software),  # Software Versions
            _explicit(0x0020, 0x000D, b"UI", _uid(study)),  # Study Instance UID
            _explicit(0x0020, 0x000E, b"UI", _uid(series)),  # Series Instance UID
            _explicit(0x0020, 0x0013, b"IS", b"%08d" % number),  # Instance Number
            _explicit(0x0028, 0x0002, b"US", us(1)),  # Samples per Pixel
            _explicit(0x0028, 0x0004, b"CS", b"MONOCHROME2"),  # Photometric Interpretation
            _explicit(0x0028, 0x0010, b"US", us(rows)),  # Rows
            _explicit(0x0028, 0x0011, b"US", us(cols)),  # Columns
            _explicit(0x0028, 0x0100, b"US", us(16)),  # Bits Allocated
            _explicit(0x0028, 0x0101, b"US", us(12)),  # Bits Stored
            _explicit(0x0028, 0x0102, b"US", us(11)),  # High Bit
            _explicit(0x0028, 0x0103, b"US", us(0)),  # Pixel Representation
            _EXPLICIT_LONG.pack(0x7FE0, 0x0010, b"OW", pixel_len),  # Pixel Data (value follows)
        )
    )


def _pdata_pdus(ctx_id: int, dataset: bytes) -> bytes:
    """A data set in P-DATA-TF PDUs of at most MAX_PDU_LENGTH, the last one flagged."""
    return b"".join(
        _pdata(
            ctx_id,
            0x02 if off + _MAX_FRAGMENT >= len(dataset) else 0x00,
            dataset[off : off + _MAX_FRAGMENT],
        )
        for off in range(0, len(dataset), _MAX_FRAGMENT)
    )


@dataclass(slots=True)
class _BulkAssociation:
    """One association of the bulk mix: a modality sends ``images`` CT images to the PACS."""

    number: int
    modality: int
    images: int
    first_image: int
    sport: int = 0


class _BulkPlan:
    """Who sends what in the DICOM bulk mix: ``modalities`` CT scanners 10.20.0.1.. (port 104
    for the odd ones, 11112 for the even ones) to one PACS 10.30.0.1; associations dealt to
    the scanners in turn, images dealt to the associations evenly."""

    def __init__(
        self, images: int, image_bytes: int, associations: int, modalities: int, seed: int
    ) -> None:
        self.images, self.image_bytes, self.seed = images, image_bytes, seed
        self.modalities = modalities
        self.shape = _bulk_image_shape(image_bytes)
        base, extra = divmod(images, associations)
        first = 0
        self.associations: list[_BulkAssociation] = []
        for a in range(associations):
            n = base + (1 if a < extra else 0)
            self.associations.append(_BulkAssociation(a, a % modalities, n, first))
            first += n
        # UIDs under 2.25 with fixed-width components: every header of a plan has one length.
        self.uid_root = f"2.25.{seed % 100_000 + 100_000}"

    def station(self, modality: int) -> str:
        return f"BENCH_CT{modality + 1:02d}"

    def port(self, modality: int) -> int:
        return 104 if modality % 2 == 0 else 11112

    def uids(self, a: _BulkAssociation, k: int) -> tuple[str, str, str]:
        """Study, series and SOP instance UIDs of the association's ``k``-th image."""
        study = f"{self.uid_root}.1{a.number:06d}"
        return study, f"{study}.1", f"{study}.1.{a.first_image + k + 1_000_000:07d}"

    def header(self, a: _BulkAssociation, k: int) -> bytes:
        study, series, instance = self.uids(a, k)
        station = self.station(a.modality)
        return _bulk_header(
            a.modality, station, study, series, instance, k + 1, self.shape, self.image_bytes
        )

    def image_segments(self) -> int:
        """TCP segments of one image's data set (every header has the same length)."""
        a = self.associations[0]
        return -(-_framed_len(len(self.header(a, 0)) + self.image_bytes) // MSS)

    def packets(self) -> int:
        """Frames the plan makes: handshake 3, A-ASSOCIATE-RQ/AC 2, A-RELEASE-RQ/RP 2,
        FIN teardown 4 per association; per image the C-STORE-RQ command, the data segments,
        the PACS's ACKs and the C-STORE-RSP."""
        s = self.image_segments()
        per_image = 2 + s + s // BULK_ACK_EVERY
        return 11 * len(self.associations) + per_image * self.images


def _bulk_associations(images: int, associations: int | None, modalities: int) -> int:
    if associations is None:
        associations = max(modalities, -(-images // BULK_IMAGES_PER_ASSOCIATION))
    return max(1, min(images, associations))


def bulk_images_for(
    packets: int, *, image_bytes: int = BULK_IMAGE_BYTES, modalities: int = BULK_MODALITIES
) -> int:
    """The number of images that makes a DICOM bulk capture of about ``packets`` frames
    (with the default associations; at least one image)."""
    images = 1
    for _ in range(3):  # associations depend on images, overhead on associations: settle
        plan = _BulkPlan(images, image_bytes, 1, modalities, DEFAULT_SEED)
        per_image = plan.packets() - 11
        n = _bulk_associations(images, None, modalities)
        images = max(1, (packets - 11 * n) // per_image)
    return images


def _bulk_plan(
    images: int, image_bytes: int, associations: int | None, modalities: int, seed: int
) -> _BulkPlan:
    if images < 1:
        raise ValueError("images must be at least 1")
    if image_bytes < 2 or image_bytes & 1:
        raise ValueError("image_bytes must be even and at least 2 (OW pixel data)")
    if modalities < 1:
        raise ValueError("modalities must be at least 1")
    if associations is not None and associations < 1:
        raise ValueError("associations must be at least 1")
    n = _bulk_associations(images, associations, modalities)
    return _BulkPlan(images, image_bytes, n, modalities, seed)


def _bulk_frames(
    plan: _BulkPlan, a: _BulkAssociation, start: int, pixels: bytes, rng: random.Random
) -> Iterator[tuple[int, bytes]]:
    """One association's frames with their capture times (µs from the capture's start)."""
    m = a.modality
    pacs_ip, pacs_mac = bytes((10, 30, 0, 1)), bytes((0x02, 0x00, 0x0A, 30, 0, 0))
    mod_ip = bytes((10, 20, m // 250, m % 250 + 1))
    mod_mac = bytes((0x02, 0x00, 0x0A, 20)) + m.to_bytes(2, "big")
    dport = plan.port(m)
    fwd = _Dir(
        src_mac=mod_mac,
        dst_mac=pacs_mac,
        vlan=0,
        v6=False,
        src=mod_ip,
        dst=pacs_ip,
        proto=PROTO_TCP,
        sport=a.sport,
        dport=dport,
        win=64240,
        ident=rng.getrandbits(16),
    )
    rev = _Dir(
        src_mac=pacs_mac,
        dst_mac=mod_mac,
        vlan=0,
        v6=False,
        src=pacs_ip,
        dst=mod_ip,
        proto=PROTO_TCP,
        sport=dport,
        dport=a.sport,
        win=65160,
        ident=rng.getrandbits(16),
    )
    cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
    conn = _Conn(fwd, rev, (cisn + 1) & _SEQ_MASK, (sisn + 1) & _SEQ_MASK)
    rtt = 150  # µs, modality to PACS and back
    t = start
    yield t, fwd.tcp_syn(SYN, cisn, 0, MSS)
    t += rtt // 2
    yield t, rev.tcp_syn(SYN | ACK, sisn, conn.cseq, MSS)
    t += rtt // 2
    yield t, conn.c_ack()
    called, calling = "BENCH_PACS", plan.station(m)
    impl = _IMPLEMENTATIONS[_BULK_DEVICES[m % len(_BULK_DEVICES)][3]]
    t += 20
    yield t, conn.c(_associate_rq(called, calling, CT_IMAGE_STORAGE, impl))
    t += rtt // 2 + 200
    yield t, conn.s(_associate_ac(called, calling, _IMPLEMENTATIONS[0], EXPLICIT_VR_LITTLE_ENDIAN))
    every, size = BULK_ACK_EVERY, plan.image_bytes
    window = len(pixels) - size  # pixel data starts at an even offset below this
    for k in range(a.images):
        t += rtt // 2 + rng.randint(20, 400)
        _, _, instance = plan.uids(a, k)
        message_id = k + 1
        yield t, conn.c(_c_store_rq(CT_IMAGE_STORAGE, instance, message_id))
        off = 2 * rng.randrange(window // 2 + 1)
        data = _pdata_pdus(_CMD_CONTEXT, plan.header(a, k) + pixels[off : off + size])
        sent, end, unacked = 0, len(data), 1
        while sent < end:
            t += _BULK_GAP_US
            nxt = sent + MSS
            last = nxt >= end
            yield t, conn.c(data[sent:nxt], PSH | ACK if last else ACK)
            sent = nxt
            unacked += 1
            if unacked == every and not last:
                yield t + 4, conn.s_ack()
                unacked = 0
        t += rtt // 2 + rng.randint(100, 1500)  # the PACS stores the image, then answers
        yield t, conn.s(_c_store_rsp(CT_IMAGE_STORAGE, instance, message_id))
    t += rtt // 2 + 50
    yield t, conn.c(_A_RELEASE_RQ)
    t += rtt // 2 + 50
    yield t, conn.s(_A_RELEASE_RP)
    # The requestor closes the transport connection after A-RELEASE-RP (PS3.8 §7.2).
    t += rtt // 2
    yield t, fwd.tcp(FIN | ACK, conn.cseq, conn.sseq)
    t += rtt // 2
    yield t, rev.tcp(ACK, conn.sseq, (conn.cseq + 1) & _SEQ_MASK)
    yield t + 5, rev.tcp(FIN | ACK, conn.sseq, (conn.cseq + 1) & _SEQ_MASK)
    t += rtt
    yield t, fwd.tcp(ACK, (conn.cseq + 1) & _SEQ_MASK, (conn.sseq + 1) & _SEQ_MASK)


def _bulk_modality(
    plan: _BulkPlan, modality: int, pixels: bytes, rng: random.Random
) -> Iterator[tuple[int, bytes]]:
    """A scanner's associations one after the other, a few milliseconds apart."""
    t = modality * 997 + rng.randint(0, 500)
    for a in plan.associations:
        if a.modality != modality:
            continue
        last = t
        for last, frame in _bulk_frames(plan, a, t, pixels, rng):
            yield last, frame
        t = last + rng.randint(2_000, 20_000)


def generate_dicom_bulk(
    path: str,
    *,
    images: int = 550,
    image_bytes: int = BULK_IMAGE_BYTES,
    associations: int | None = None,
    modalities: int = BULK_MODALITIES,
    seed: int = DEFAULT_SEED,
) -> MixStats:
    """Write a capture of DICOM bulk traffic to ``path``: ``modalities`` CT scanners storing
    ``images`` CT images of ``image_bytes`` pixel bytes each on one PACS (port 104 or 11112).

    Per association (``associations`` of them, by default one per 100 images and at least
    one per scanner; a scanner's associations follow each other, the scanners' overlap): the
    TCP handshake, A-ASSOCIATE-RQ proposing CT Image Storage (implicit and explicit VR LE)
    and Verification, A-ASSOCIATE-AC accepting CT Image Storage with Explicit VR Little
    Endian; per image a C-STORE-RQ command (implicit VR LE, one segment), the data set
    (explicit VR LE: device attributes, a canary patient ``CANARY^PHI``, study and series
    UIDs, the image pixel module, Pixel Data OW) in P-DATA-TF PDUs of 16 KiB sent as
    1460-byte segments at 1 Gbit/s, the PACS's ACK every second segment and its C-STORE-RSP
    (status 0x0000); then A-RELEASE-RQ/RP and the requestor's FIN. IPv4, no VLAN tag,
    valid checksums, consistent sequence numbers. The default, 550 images, is about 300,000
    packets (~305 MB of frames); :func:`bulk_images_for` gives the images for a packet count.
    """
    plan = _bulk_plan(images, image_bytes, associations, modalities, seed)
    started = time.perf_counter()
    rng = random.Random(seed * 7_919 + 104)
    pixels = rng.randbytes(image_bytes + 65_536)
    ports: set[tuple[int, int]] = set()
    for a in plan.associations:  # an ephemeral port, not reused by the same scanner
        while (a.modality, a.sport) in ports or not a.sport:
            a.sport = rng.randint(32768, 60999)
        ports.add((a.modality, a.sport))
    used = sorted({a.modality for a in plan.associations})
    streams = [_bulk_modality(plan, m, pixels, random.Random(rng.getrandbits(64))) for m in used]
    expected = plan.packets()
    record = _PCAP_RECORD.pack
    written = total_bytes = 0
    first_ts = last_ts = -1
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb", buffering=0) as out:
            out.write(_PCAP_HEADER.pack(PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
            parts: list[bytes] = []
            for t, frame in heapq.merge(*streams, key=lambda x: x[0]):
                if first_ts < 0:
                    first_ts = t
                last_ts = t
                size = len(frame)
                parts.append(record(CAPTURE_EPOCH + t // 1_000_000, t % 1_000_000, size, size))
                parts.append(frame)
                total_bytes += size
                written += 1
                if len(parts) >= 8192:
                    out.write(b"".join(parts))
                    parts.clear()
            out.write(b"".join(parts))
        if written != expected:  # a bug in the plan's arithmetic or in the frames
            raise AssertionError(f"generated {written} packets, planned {expected}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return MixStats(
        path=str(path),
        packets=written,
        bytes=total_bytes,
        file_size=os.path.getsize(path),
        flows={"dicom": len(plan.associations)},
        tcp_flows=len(plan.associations),
        hosts=len(used) + 1,
        duration_s=(last_ts - first_ts) / 1e6,
        seed=seed,
        generation_s=round(time.perf_counter() - started, 3),
        mix="dicom-bulk",
        images=images,
        image_bytes=image_bytes,
    )


# ---------------------------------------------------------------- captures on disk


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medmon"


def _default_flows(packets: int) -> int:
    return min(50_000, packets // PACKETS_PER_FLOW)


def cache_path(
    packets: int, seed: int = DEFAULT_SEED, flows: int | None = None, mix: str = "generic"
) -> Path:
    """Where a generated capture is cached:
    ``~/.cache/medmon/bench-<mix>-<packets>-<seed>.pcap`` (``$XDG_CACHE_HOME`` is honoured; a
    non-default flow count of the generic mix is part of the name). For the dicom-bulk mix,
    ``packets`` is the packet count asked for (the capture holds whole images: about that)."""
    _check_mix(mix)
    default = flows is None or flows == _default_flows(packets) or mix != "generic"
    suffix = "" if default else f"-{flows}flows"
    return _cache_dir() / f"bench-{mix}-{packets}-{seed}{suffix}.pcap"


def _check_mix(mix: str, allowed: Sequence[str] = MIXES) -> None:
    if mix not in allowed:
        raise ValueError(f"mix must be one of {', '.join(allowed)}, not {mix!r}")


def _sidecar(path: str | Path) -> Path:
    return Path(f"{path}.json")


def _params(packets: int, seed: int, flows: int, mix: str = "generic") -> dict[str, Any]:
    if mix == "dicom-bulk":
        return {
            "mix": mix,
            "packets": packets,
            "images": bulk_images_for(packets),
            "image_bytes": BULK_IMAGE_BYTES,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
        }
    return {
        "mix": mix,
        "packets": packets,
        "seed": seed,
        "flows": flows,
        "generator_version": GENERATOR_VERSION,
    }


def _generate(path: str, params: dict[str, Any]) -> MixStats:
    if params["mix"] == "dicom-bulk":
        return generate_dicom_bulk(
            path, images=params["images"], image_bytes=params["image_bytes"], seed=params["seed"]
        )
    return generate_mix(path, packets=params["packets"], flows=params["flows"], seed=params["seed"])


def _expected_packets(params: dict[str, Any]) -> int:
    """Frames the capture ``params`` describe holds (dicom-bulk: whole images)."""
    if params["mix"] == "dicom-bulk":
        plan = _bulk_plan(
            params["images"], params["image_bytes"], None, BULK_MODALITIES, params["seed"]
        )
        return plan.packets()
    return int(params["packets"])


def _write_sidecar(stats: MixStats, params: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        _sidecar(stats.path).write_text(json.dumps({"params": params, "stats": asdict(stats)}))


def _read_sidecar(path: str | Path, params: dict[str, Any]) -> MixStats | None:
    """The stats saved beside a capture we generated, if they still describe it."""
    try:
        saved = json.loads(_sidecar(path).read_text())
        if saved["params"] != params:
            return None
        stats = MixStats(**saved["stats"])
        if stats.file_size != os.path.getsize(path):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stats.path, stats.generation_s = str(path), 0.0
    return stats


def _scan_pcap(path: str | Path) -> tuple[int, int] | None:
    """(frames, frame bytes) of a classic pcap, or None when it is not one."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return None
        magic = int.from_bytes(head[:4], "little")
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            rec = struct.Struct("<IIII")
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            rec = struct.Struct(">IIII")
        else:
            return None
        n = total = 0
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n, total
            _, _, incl, _ = rec.unpack(h)
            f.seek(incl, 1)
            n += 1
            total += incl


def _obtain_capture(
    packets: int, seed: int, flows: int, keep: str | None, mix: str = "generic"
) -> tuple[str, MixStats, str]:
    """The capture to measure: reused when it is there and right, generated otherwise."""
    params = _params(packets, seed, flows, mix)
    if keep is None:
        path = cache_path(packets, seed, flows, mix)
        path.parent.mkdir(parents=True, exist_ok=True)
        stats = _read_sidecar(path, params) if path.exists() else None
        if stats is not None:
            return str(path), stats, "cache"
    else:
        path = Path(keep)
        if path.exists():
            stats = _read_sidecar(path, params)
            if stats is not None:
                return str(path), stats, "kept"
            scanned = _scan_pcap(path)
            if scanned is None:
                raise BenchError(f"{keep}: exists and is not a classic pcap; not overwriting it")
            if scanned[0] == _expected_packets(params):
                stats = MixStats(
                    path=str(path),
                    packets=scanned[0],
                    bytes=scanned[1],
                    file_size=os.path.getsize(path),
                    seed=seed,
                    mix=mix,
                )
                return str(path), stats, "kept"
    stats = _generate(str(path), params)
    _write_sidecar(stats, params)
    return str(path), stats, "generated"


def _read_through(path: str) -> None:
    """Read the file once so that every measured tool finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


# ---------------------------------------------------------------- measuring


def _measure(
    tool: str, cmd: list[str], packets: int, frame_bytes: int, env: dict[str, str] | None = None
) -> Measurement:
    """Run ``cmd`` with its output discarded; wall time, CPU time and peak RSS."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: do not leave the child behind
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    return Measurement(
        tool=tool,
        command=cmd,
        seconds=round(seconds, 4),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 4),
        peak_rss_mib=round(usage.ru_maxrss / 1024, 2),  # KiB on Linux
        packets=packets,
        bytes=frame_bytes,
        exit_code=proc.returncode,
        stderr_tail=tail,
    )


def _replay_env() -> dict[str, str]:
    """The environment for ``python -m monitor``: this checkout's package comes first."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.pop("MEDMON_DB", None)
    return env


def _replay(
    capture: str, packets: int, frame_bytes: int, workdir: str, replay_cmd: list[str] | None
) -> Measurement:
    db = os.path.join(workdir, f"bench-{os.getpid()}-{time.monotonic_ns()}.duckdb")
    prefix = replay_cmd or [sys.executable, "-m", "monitor", "replay"]
    cmd = [*prefix, capture, "--db", db, "--quiet", "--force"]
    try:
        m = _measure("medmon replay", cmd, packets, frame_bytes, _replay_env())
    finally:
        for leftover in (db, db + ".wal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    if m.exit_code != 0:
        raise BenchError(f"replay exited with {m.exit_code}: {m.stderr_tail.strip()[-500:]}")
    return m


def _tshark(capture: str, packets: int, frame_bytes: int) -> Measurement | None:
    exe = shutil.which("tshark")
    if exe is None:
        return None
    cmd = [
        exe,
        "-n",
        "-r",
        capture,
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "tcp.dstport",
    ]
    return _measure("tshark", cmd, packets, frame_bytes)


def machine_info() -> MachineInfo:
    """This machine, as the report describes it."""
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                cpu = value.strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024 / 1024
                break
    tshark_version = None
    exe = shutil.which("tshark")
    if exe:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
            tshark_version = (out.stdout.splitlines() or [""])[0].strip().rstrip(".") or None
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 0
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return MachineInfo(
        cpu_model=cpu or platform.processor() or platform.machine(),
        cores=os.cpu_count() or 0,
        cores_available=available,
        memory_gib=round(memory, 1),
        python=platform.python_version(),
        medmon=f"{__version__} ({'compiled with mypyc' if COMPILED else 'plain Python'})",
        platform=platform.platform(),
        tshark=tshark_version,
        load_1m=round(load, 2),
    )


def memory_scaling(
    packets: int = 1_000_000,
    *,
    factor: int = 4,
    seed: int = DEFAULT_SEED,
    workdir: str | None = None,
    replay_cmd: list[str] | None = None,
) -> MemoryScaling:
    """Replay the mix at ``packets`` and ``factor * packets`` with the same flows and hosts;
    the peak RSS of both. The small capture comes from (and goes to) the cache; the big one
    is generated in a temporary directory and deleted afterwards."""
    return _scaling(packets, factor, seed, workdir, replay_cmd, None)


def _point(stats: MixStats, m: Measurement) -> ScalingPoint:
    return ScalingPoint(
        stats.packets, stats.total_flows, stats.bytes, m.peak_rss_mib, m.seconds, m.cpu_s
    )


def _scaling(
    packets: int,
    factor: int,
    seed: int,
    workdir: str | None,
    replay_cmd: list[str] | None,
    base: tuple[MixStats, Measurement] | None,
) -> MemoryScaling:
    """memory_scaling; ``base`` is a replay of the small capture already measured."""
    flows = _default_flows(packets)
    with tempfile.TemporaryDirectory(prefix="medmon-bench-", dir=workdir) as tmp:
        if base is None:
            small, stats, _ = _obtain_capture(packets, seed, flows, None)
            _read_through(small)
            base = stats, _replay(small, stats.packets, stats.bytes, tmp, replay_cmd)
        big = os.path.join(tmp, f"bench-{factor * packets}-{seed}-{flows}flows.pcap")
        big_stats = generate_mix(big, packets=factor * packets, flows=flows, seed=seed)
        _read_through(big)
        m = _replay(big, big_stats.packets, big_stats.bytes, tmp, replay_cmd)
        return MemoryScaling([_point(*base), _point(big_stats, m)])


def _keep_for(keep: str | None, name: str, several: bool) -> str | None:
    """Where ``keep`` puts a mix's capture: as given, or with ``-dicom-bulk`` before the
    suffix for the second mix of ``--mix both``."""
    if keep is None or not several or name == "generic":
        return keep
    p = Path(keep)
    return str(p.with_name(f"{p.stem}-{name}{p.suffix}"))


def run_bench(
    *,
    packets: int = 1_000_000,
    keep: str | None = None,
    tshark: bool = True,
    workdir: str | None = None,
    replay_cmd: list[str] | None = None,
    scaling: bool = False,
    seed: int = DEFAULT_SEED,
    mix: str = "generic",
    bulk_packets: int | None = None,
) -> BenchReport:
    """Measure ``medmon replay`` (and tshark) end to end on a generated mix.

    ``mix`` is "generic" (:func:`generate_mix`, ``packets`` frames), "dicom-bulk"
    (:func:`generate_dicom_bulk`, about ``bulk_packets`` frames of whole images; by default
    ``min(packets, DEFAULT_BULK_PACKETS)``) or "both", measured in that order: the report's
    :attr:`BenchReport.bulk_ratio` then compares their MB/s.

    Each capture is ``keep`` when given (for "both", the dicom-bulk one is ``keep`` with
    ``-dicom-bulk`` before the suffix; reused if it already holds the mix, generated there
    otherwise, never overwritten when it is not a classic pcap), else a cached one in
    ``~/.cache/medmon`` named after the mix. A generated capture gets its :class:`MixStats`
    beside it in ``FILE.json``. ``replay_cmd`` replaces the command prefix
    ``[sys.executable, "-m", "monitor", "replay"]``; the capture and
    ``--db TMPDB --quiet --force`` are appended. ``workdir`` holds the temporary register
    and the scaling capture (default: the system's temporary directory). ``scaling`` adds
    :func:`memory_scaling` of the generic mix (N and 4N packets); its N point is this run's
    replay when the generic capture's flows are known. Raises :class:`BenchError` when a
    replay fails.
    """
    _check_mix(mix, (*MIXES, "both"))
    names = list(MIXES) if mix == "both" else [mix]
    machine = machine_info()
    flows = _default_flows(packets)
    if bulk_packets is None:
        bulk_packets = min(packets, DEFAULT_BULK_PACKETS)
    runs: list[MixRun] = []
    for name in names:
        n = packets if name == "generic" else bulk_packets
        where = _keep_for(keep, name, len(names) > 1)
        capture, stats, origin = _obtain_capture(n, seed, flows, where, name)
        _read_through(capture)
        with tempfile.TemporaryDirectory(prefix="medmon-bench-", dir=workdir) as tmp:
            replay = _replay(capture, stats.packets, stats.bytes, tmp, replay_cmd)
        ts = _tshark(capture, stats.packets, stats.bytes) if tshark else None
        runs.append(MixRun(name, stats, capture, origin, replay, ts))
    first = runs[0]
    report = BenchReport(
        machine,
        first.mix,
        first.capture,
        first.capture_origin,
        first.replay,
        first.tshark,
        mix_name=first.name,
        others=runs[1:],
    )
    if scaling:
        generic = report.run("generic")
        base = None
        if generic is not None:
            stats = generic.mix
            if stats.seed == seed and stats.total_flows == flows:
                base = (stats, generic.replay)
        report.scaling = _scaling(packets, 4, seed, workdir, replay_cmd, base)
    return report


# ---------------------------------------------------------------- the report


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widths: the first ``left`` ones left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for k, row in enumerate((header, *rows)):
        cells = [
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _capture_lines(run: MixRun, label: str) -> list[str]:
    mix = run.mix
    lines = [
        f"capture   {label}{run.capture} ({run.capture_origin}"
        + (f" in {mix.generation_s:.1f} s" if run.capture_origin == "generated" else "")
        + ")",
        f"          {mix.packets:,} packets, {mix.bytes / 1e6:,.1f} MB of frames, "
        f"file {mix.file_size / 1e6:,.1f} MB"
        + (f", {mix.duration_s:,.1f} s of capture time" if mix.duration_s else ""),
    ]
    if mix.mix == "dicom-bulk" and mix.images:
        lines.append(
            f"          {mix.total_flows:,} DICOM associations from {mix.hosts - 1} CT scanners "
            f"to a PACS (104, 11112), {mix.images:,} C-STOREs of {mix.image_bytes:,}-byte "
            "images (explicit VR LE, 16 KiB P-DATA-TF)"
        )
    elif mix.flows:
        kinds = ", ".join(f"{k} {v:,}" for k, v in mix.flows.items())
        lines.append(
            f"          {mix.total_flows:,} flows ({kinds}), {mix.hosts:,} hosts, "
            f"IPv6 {100 * mix.ipv6_packets / mix.packets:.1f}% and VLAN "
            f"{100 * mix.vlan_packets / mix.packets:.1f}% of packets"
        )
    return lines


def format_report(report: BenchReport) -> str:
    """The report as plain text: machine, captures, a table of the mixes and tools, the
    dicom-bulk/generic ratio, memory scaling."""
    m = report.machine
    runs = report.runs
    several = len(runs) > 1
    lines = [
        f"machine   {m.cpu_model}, {m.cores} cores ({m.cores_available} available), "
        f"{m.memory_gib:g} GiB, load {m.load_1m:g}",
        f"software  medmon {m.medmon}, Python {m.python}, {m.tshark or 'tshark not installed'}",
    ]
    for run in runs:
        lines += _capture_lines(run, f"{run.name}: " if several else "")
    lines.append("")
    rows = []
    for run in runs:
        for t in (run.replay, run.tshark):
            if t is None:
                continue
            rows.append(
                [
                    run.name,
                    t.tool,
                    f"{t.seconds:,.2f}",
                    f"{t.cpu_s:,.2f}",
                    f"{t.packets_per_s:,.0f}",
                    f"{t.mb_per_s:,.1f}",
                    f"{t.mbit_per_s:,.0f}",
                    f"{t.peak_rss_mib:,.1f}",
                ]
            )
    lines += _table(
        ["mix", "tool", "wall s", "cpu s", "packets/s", "MB/s", "Mbit/s", "peak RSS MiB"],
        rows,
        left=2,
    )
    for run in runs:
        name = f" ({run.name})" if several else ""
        if run.tshark is not None and run.tshark.exit_code:
            lines.append(f"(tshark{name} exited with {run.tshark.exit_code})")
        ratio = run.ratio
        if ratio is not None:
            lines.append(
                f"replay/tshark speed{name}: {ratio:.2f}x (packets/s; above 1: medmon is faster)"
            )
        elif run.tshark is None:
            lines.append(f"tshark{name}: not measured")
    bulk_ratio = report.bulk_ratio
    if bulk_ratio is not None:
        lines.append(
            f"dicom-bulk/generic replay speed: {bulk_ratio:.2f}x "
            "(MB/s; at least 1: DICOM bulk replays at least as fast as the mix)"
        )
    if report.scaling is not None:
        sc = report.scaling
        lines += ["", f"memory scaling (generic mix, same {sc.points[0].flows:,} flows):"]
        lines += _table(
            ["packets", "capture MB", "wall s", "peak RSS MiB"],
            [
                [
                    f"{p.packets:,}",
                    f"{p.capture_bytes / 1e6:,.1f}",
                    f"{p.seconds:,.2f}",
                    f"{p.peak_rss_mib:,.1f}",
                ]
                for p in sc.points
            ],
        )
        lines.append(
            f"peak RSS grew {sc.rss_growth:.2f}x while the capture grew {sc.capture_growth:.1f}x"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- live capture speed

#: The ladder's first rate, packets per second; each next rung doubles it.
LIVE_START_PPS = 25_000
#: The bisection stops when the first dropping rate is within this factor of the best one.
LIVE_PRECISION = 1.10
#: The whole search's time budget, seconds (``medmon bench --live-budget``).
DEFAULT_LIVE_BUDGET_S = 600.0
#: The veth pair's MTU: room for every frame of the mixes (the largest is checked).
LIVE_MTU = 9000
#: Below this the ladder does not go down any further.
LIVE_MIN_PPS = 1_000
#: A --pps rung whose achieved rate is below this share of the asked one: tcpreplay's top.
_SENDER_KEEPS_UP = 0.9
#: Ethernet header with one 802.1Q tag: a frame may be this much longer than the MTU.
_L2_OVERHEAD = 18
_RATED = re.compile(r"Rated:.*?([\d.]+)\s*pps")
_ACTUAL = re.compile(r"Actual:\s*(\d+)\s*packets.*?sent in\s*([\d.]+)\s*seconds")
_SUCCESSFUL = re.compile(r"Successful packets:\s*(\d+)")
_FAILED = re.compile(r"Failed packets:\s*(\d+)")


@dataclass
class LiveRung:
    """One rate tried: the mix replayed once into the veth while ``medmon sniff`` captured."""

    #: The ``--pps`` asked of tcpreplay; None for ``--topspeed``.
    rate_asked: int | None
    #: What tcpreplay says it achieved ("Rated: ... pps").
    rate_achieved: float
    #: Packets tcpreplay sent ("Successful packets"), and those it could not send.
    sent: int
    send_failed: int
    #: The run's counters in the register: packets the capture received, dropped by the
    #: kernel and by the interface, and the packets medmon's pipeline read.
    received: int
    dropped_kernel: int
    dropped_interface: int
    packets: int
    #: tcpreplay's own seconds ("sent in ... seconds") and the whole rung's wall seconds
    #: (sensor start, replay, catching up, final write).
    replay_s: float
    seconds: float
    #: The sensor process's peak RSS (VmHWM) in MiB, None when it could not be read.
    peak_rss_mib: float | None
    #: Every packet of the mix reached medmon, none dropped.
    zero_drop: bool

    @property
    def dropped(self) -> int:
        return self.dropped_kernel + self.dropped_interface

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped"] = self.dropped
        return d


@dataclass
class LiveBench:
    """What ``medmon bench --live`` found: the highest tcpreplay rate at which ``medmon
    sniff`` received and read every packet of the generic mix."""

    machine: MachineInfo
    mix: MixStats
    capture: str
    capture_origin: str
    #: Packets in the mix (every rung replays all of them).
    packets: int
    largest_frame: int
    rungs: list[LiveRung]
    #: The highest zero-drop rung's achieved rate (packets/s), 0 when no rung was clean.
    best_pps: float
    #: The asked rate of that rung (None: ``--topspeed``).
    best_asked: int | None
    #: The lowest rate asked that dropped (None: no rung dropped).
    first_drop_asked: int | None
    #: The highest zero-drop rung was tcpreplay's ``--topspeed``: the sender is the limit.
    capped_by_sender: bool
    #: Why the search ended: "precision", "sender", "budget" or "floor".
    stopped: str
    budget_s: float
    seconds: float
    #: The highest VmHWM of the sensor over all rungs, MiB.
    peak_rss_mib: float | None
    mtu: int
    offloads_off: bool
    tcpreplay: str
    tcpdump: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rungs"] = [r.to_dict() for r in self.rungs]
        return d


def _tool_version(exe: str, flag: str = "--version") -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([exe, flag], capture_output=True, text=True, timeout=30)
        for line in (out.stdout + out.stderr).splitlines():
            if "version" in line:
                return line.strip()
    return exe


def _largest_frame(path: str) -> int:
    """The longest captured frame of a classic pcap."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic = int.from_bytes(head[:4], "little") if len(head) == 24 else 0
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            rec = struct.Struct("<IIII")
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            rec = struct.Struct(">IIII")
        else:
            raise BenchError(f"{path}: not a classic pcap")
        largest = 0
        while len(h := f.read(16)) == 16:
            incl = rec.unpack(h)[2]
            largest = max(largest, incl)
            f.seek(incl, 1)
    return largest


def _run_ip(*argv: str) -> None:
    out = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise BenchError(f"ip {' '.join(argv)}: {out.stderr.strip() or out.returncode}")


class _Lab:
    """Two network namespaces of our own joined by a veth pair: ``medmon sniff`` captures on
    ``if_a`` in ``ns_a``, tcpreplay sends on ``if_b`` in ``ns_b``. Nothing leaves them."""

    def __init__(self, mtu: int) -> None:
        pid = os.getpid()
        self.ns_a, self.ns_b = f"mmb{pid}a", f"mmb{pid}b"
        self.if_a, self.if_b = "mmb-span", "mmb-feed"
        self.mtu = mtu
        self.offloads_off = False
        self.made: list[str] = []

    def setup(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            _run_ip("netns", "add", ns)
            self.made.append(ns)
        _run_ip(
            "link", "add", self.if_a, "netns", self.ns_a, "type", "veth",
            "peer", "name", self.if_b, "netns", self.ns_b,
        )  # fmt: skip
        for ns, ifname in ((self.ns_a, self.if_a), (self.ns_b, self.if_b)):
            # No IPv6 on the lab's interfaces: their router solicitations and MLD reports would
            # be packets that the mix does not have.
            for key in ("all", "default", ifname):
                _run_ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
            _run_ip("-n", ns, "link", "set", ifname, "mtu", str(self.mtu), "up")
            _run_ip("-n", ns, "link", "set", "lo", "up")
        # As on a sensor NIC (docs/sensor.md): offloads off on the capture end, so that
        # libpcap sizes its ring's slots for one MTU rather than a 64 KiB super-frame.
        ethtool = shutil.which("ethtool")
        if ethtool is not None:
            ok = True
            for feature in ("gro", "tso", "gso"):
                out = subprocess.run(
                    ["ip", "netns", "exec", self.ns_a, ethtool, "-K", self.if_a, feature, "off"],
                    capture_output=True,
                    timeout=30,
                )
                ok = ok and out.returncode == 0
            self.offloads_off = ok

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()


def _proc_status_kib(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _cpu_ticks(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return None


def _packet_sockets(pid: int) -> int:
    """Packet sockets open in ``pid``'s network namespace (tcpdump's, in the lab's)."""
    try:
        with open(f"/proc/{pid}/net/packet") as f:
            return max(0, len(f.readlines()) - 1)
    except OSError:
        return 0


def _run_row(db: str) -> tuple[int, int, int, int] | None:
    """(received, dropped_kernel, dropped_interface, packets) of the register's last run;
    None while there is none or the sensor holds the register."""
    import duckdb

    if not os.path.exists(db):
        return None
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute(
            "SELECT coalesce(received, 0), coalesce(dropped_kernel, 0), "
            "coalesce(dropped_interface, 0), coalesce(packets, 0) "
            "FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


class _Sensor:
    """``medmon sniff`` in the lab's capture namespace, a subprocess of ours."""

    def __init__(self, lab: _Lab, db: str, err: Any) -> None:
        argv = ["ip", "netns", "exec", lab.ns_a, sys.executable, "-m", "monitor", "sniff"]
        argv += ["-i", lab.if_a, "--db", db, "-q", "--flush-every", "3600"]
        # `ip netns exec` execs the command: this PID is the Python process's.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=_replay_env(),
        )  # fmt: skip
        self.db, self.err = db, err
        self.hwm_kib: int | None = None

    def _sample(self) -> None:
        hwm = _proc_status_kib(self.proc.pid, "VmHWM")
        if hwm is not None:
            self.hwm_kib = max(hwm, self.hwm_kib or 0)

    def _failed(self, what: str) -> BenchError:
        self.err.seek(0)
        tail = self.err.read()[-1000:].decode("utf-8", "replace").strip()
        return BenchError(f"medmon sniff {what} (exit {self.proc.returncode}): {tail}")

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Until the run row exists and tcpdump's packet socket is open in the namespace."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise self._failed("exited before capturing")
            if _run_row(self.db) is not None and _packet_sockets(self.proc.pid) > 0:
                time.sleep(1.0)  # tcpdump sets its ring up and says it is listening
                return
            time.sleep(0.1)
        raise BenchError(f"medmon sniff did not start capturing within {timeout:.0f} s")

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until the sensor has read what was sent: its CPU use falls below 10% of a core."""
        hz = os.sysconf("SC_CLK_TCK")
        end = time.monotonic() + timeout
        before = _cpu_ticks(self.proc.pid)
        while time.monotonic() < end and self.proc.poll() is None:
            time.sleep(0.5)
            self._sample()
            now = _cpu_ticks(self.proc.pid)
            if before is not None and now is not None and now - before < 0.05 * hz:
                return
            before = now

    def stop(self, timeout: float = 600.0) -> None:
        """SIGTERM (this PID only), then wait for exit 0 while sampling the peak RSS."""
        self._sample()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.kill()
                raise BenchError(f"medmon sniff did not exit within {timeout:.0f} s of SIGTERM")
            self._sample()
            time.sleep(0.05)
        if self.proc.returncode != 0:
            raise self._failed("failed")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _parse_tcpreplay(out: str) -> tuple[float, int, int, float]:
    """(achieved packets/s, packets sent, packets not sent, seconds) from tcpreplay's
    summary; the last "Rated:" line gives the rate."""
    rated = _RATED.findall(out)
    actual = _ACTUAL.findall(out)
    if not rated or not actual:
        raise BenchError(f"cannot read tcpreplay's summary: {out.strip()[-500:]!r}")
    sent, seconds = int(actual[-1][0]), float(actual[-1][1])
    ok = _SUCCESSFUL.findall(out)
    failed = _FAILED.findall(out)
    return (
        float(rated[-1]),
        int(ok[-1]) if ok else sent,
        int(failed[-1]) if failed else 0,
        seconds,
    )


def _live_rung(lab: _Lab, capture: str, packets: int, rate: int | None, tmp: str) -> LiveRung:
    started = time.perf_counter()
    db = os.path.join(tmp, f"live-{time.monotonic_ns()}.duckdb")
    with tempfile.TemporaryFile() as err:
        sensor = _Sensor(lab, db, err)
        try:
            sensor.wait_listening()
            argv = ["ip", "netns", "exec", lab.ns_b, "tcpreplay", "-q", "--no-flow-stats"]
            argv += ["-i", lab.if_b, f"--pps={rate}" if rate else "--topspeed", capture]
            expected = packets / rate if rate else packets / 50_000
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=3 * expected + 120, check=False
            )
            if out.returncode != 0:
                raise BenchError(
                    f"tcpreplay exited with {out.returncode}: {out.stderr.strip()[-500:]}"
                )
            achieved, sent, failed, replay_s = _parse_tcpreplay(out.stdout + out.stderr)
            sensor.wait_idle()
            sensor.stop()
        finally:
            sensor.kill()
        row = _run_row(db)
    for leftover in (db, db + ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
    if row is None:
        raise BenchError("medmon sniff recorded no run")
    received, dropped_kernel, dropped_interface, medmon_packets = row
    return LiveRung(
        rate_asked=rate,
        rate_achieved=round(achieved, 1),
        sent=sent,
        send_failed=failed,
        received=received,
        dropped_kernel=dropped_kernel,
        dropped_interface=dropped_interface,
        packets=medmon_packets,
        replay_s=round(replay_s, 3),
        seconds=round(time.perf_counter() - started, 2),
        peak_rss_mib=None if sensor.hwm_kib is None else round(sensor.hwm_kib / 1024, 1),
        zero_drop=(
            dropped_kernel + dropped_interface == 0
            and failed == 0
            and sent >= packets
            and received >= packets
            and medmon_packets >= packets
        ),
    )


def _live_check() -> None:
    if os.geteuid() != 0:
        raise BenchError("medmon bench --live needs root (it makes network namespaces)")
    for tool, package in (("ip", "iproute2"), ("tcpdump", "tcpdump"), ("tcpreplay", "tcpreplay")):
        if shutil.which(tool) is None:
            raise BenchError(f"medmon bench --live needs {tool} (install {package})")


def _nice(rate: float) -> int:
    """A rate rounded to 1,000 packets/s (100 below 10,000)."""
    step = 1000 if rate >= 10_000 else 100
    return max(step, round(rate / step) * step)


def live_bench(
    *,
    packets: int = 1_000_000,
    keep: str | None = None,
    budget_s: float = DEFAULT_LIVE_BUDGET_S,
    start_pps: int = LIVE_START_PPS,
    precision: float = LIVE_PRECISION,
    seed: int = DEFAULT_SEED,
    workdir: str | None = None,
    mtu: int = LIVE_MTU,
    progress: Any = None,
) -> LiveBench:
    """The highest tcpreplay rate at which ``medmon sniff`` loses nothing of the generic mix.

    Root only, with ``ip``, ``tcpdump`` and ``tcpreplay`` (:class:`BenchError` otherwise).
    Makes two network namespaces ``mmb<pid>a``/``mmb<pid>b`` joined by a veth pair (IPv6
    off, MTU ``mtu``, offloads off on the capture end when ethtool is there), deleted at the
    end whatever happens. The mix is the cached one (or ``keep``), as for :func:`run_bench`.

    Each rung starts ``medmon sniff -i <veth a> --db TMP -q --flush-every 3600`` in namespace
    a, waits until it captures, replays the whole mix from namespace b with ``tcpreplay
    --pps=R`` (``--topspeed`` at the top), waits until the sensor is idle, stops it with
    SIGTERM and reads the run's counters. A rung is *zero-drop* when nothing was dropped and
    medmon read every packet of the mix. The rates: ``start_pps``, doubling while zero-drop
    (halving instead while the first rungs drop), ``--topspeed`` once tcpreplay cannot send
    the rate asked; then a bisection between the best zero-drop rate and the first dropping
    one until they are within ``precision``. A rung is not started when the time used plus
    its expected duration would pass ``budget_s`` (the first rung always runs): the report
    then says what was found. ``progress`` (optional) is called with each :class:`LiveRung`.
    """
    _live_check()
    began = time.perf_counter()
    machine = machine_info()
    capture, stats, origin = _obtain_capture(packets, seed, _default_flows(packets), keep)
    largest = _largest_frame(capture)
    if largest > mtu + _L2_OVERHEAD:
        raise BenchError(f"{capture}: a {largest}-byte frame does not fit the veth's MTU {mtu}")
    _read_through(capture)
    n = stats.packets
    rungs: list[LiveRung] = []
    overhead: list[float] = []  # seconds a rung takes besides the replay itself, seen so far
    lab = _Lab(mtu)
    stopped = "precision"

    def affordable(rate: int | None) -> bool:
        if not rungs:
            return True
        top = max(r.rate_achieved for r in rungs)
        expected = n / (rate or max(top, 1.0)) + max(overhead, default=15.0)
        return time.perf_counter() - began + expected <= budget_s

    def attempt(rate: int | None) -> LiveRung | None:
        nonlocal stopped
        if not affordable(rate):
            stopped = "budget"
            return None
        rung = _live_rung(lab, capture, n, rate, tmp)
        overhead.append(max(0.0, rung.seconds - rung.replay_s))
        rungs.append(rung)
        if progress is not None:
            progress(rung)
        return rung

    try:
        with tempfile.TemporaryDirectory(prefix="medmon-bench-", dir=workdir) as tmp:
            lab.setup()
            best: LiveRung | None = None
            hi: int | None = None  # the lowest rate that dropped
            rate: int | None = start_pps
            # The ladder: up while clean, down while the first rungs drop.
            while True:
                rung = attempt(rate)
                if rung is None:
                    break
                if rung.zero_drop:
                    best = rung
                    if rate is None:
                        stopped = "sender"
                        break
                    if hi is not None:  # coming down: the first clean rate
                        break
                    if rung.rate_achieved < _SENDER_KEEPS_UP * rate:
                        rate = None  # tcpreplay cannot go faster: its top speed next
                    else:
                        rate *= 2
                else:
                    hi = rate if rate is not None else _nice(rung.rate_achieved)
                    if best is not None:
                        break
                    rate = (rate or _nice(rung.rate_achieved)) // 2
                    if rate < LIVE_MIN_PPS:
                        stopped = "floor"
                        break
            # The bisection between the best clean rate and the first dropping one.
            while stopped == "precision" and best is not None and hi is not None:
                lo = best.rate_asked or _nice(best.rate_achieved)
                mid = _nice((lo + hi) / 2)
                if hi <= lo * precision or not lo < mid < hi:
                    break
                rung = attempt(mid)
                if rung is None:
                    break
                if rung.zero_drop:
                    best = rung
                else:
                    hi = mid
    finally:
        lab.close()
    clean = [r for r in rungs if r.zero_drop]
    top = max(clean, key=lambda r: (r.rate_asked is None, r.rate_asked or 0), default=None)
    drops = [r.rate_asked for r in rungs if not r.zero_drop and r.rate_asked is not None]
    rss = [r.peak_rss_mib for r in rungs if r.peak_rss_mib is not None]
    return LiveBench(
        machine=machine,
        mix=stats,
        capture=capture,
        capture_origin=origin,
        packets=n,
        largest_frame=largest,
        rungs=rungs,
        best_pps=top.rate_achieved if top else 0.0,
        best_asked=top.rate_asked if top else None,
        first_drop_asked=min(drops) if drops else None,
        capped_by_sender=bool(top and top.rate_asked is None),
        stopped=stopped,
        budget_s=budget_s,
        seconds=round(time.perf_counter() - began, 1),
        peak_rss_mib=max(rss) if rss else None,
        mtu=mtu,
        offloads_off=lab.offloads_off,
        tcpreplay=_tool_version("tcpreplay"),
        tcpdump=_tool_version("tcpdump"),
    )


def _rate(r: int | None) -> str:
    return "top speed" if r is None else f"{r:,}"


_STOPPED = {
    "precision": "the best and the first dropping rate are within the precision asked",
    "sender": "tcpreplay's top speed was clean: the sender, not medmon, is the limit",
    "budget": "the time budget would have run out with the next rung",
    "floor": f"still dropping at {LIVE_MIN_PPS:,} packets/s",
}


def format_live_report(report: LiveBench) -> str:
    """The live benchmark as plain text: machine, capture, the lab, a table of the rungs, the
    highest zero-drop rate."""
    m, mix = report.machine, report.mix
    lines = [
        f"machine   {m.cpu_model}, {m.cores} cores ({m.cores_available} available), "
        f"{m.memory_gib:g} GiB, load {m.load_1m:g}",
        f"software  medmon {m.medmon}, Python {m.python}, {report.tcpreplay}, {report.tcpdump}",
        f"capture   {report.capture} ({report.capture_origin})",
        f"          {mix.packets:,} packets, {mix.bytes / 1e6:,.1f} MB of frames, largest "
        f"frame {report.largest_frame:,} bytes",
        f"lab       veth pair between two network namespaces, MTU {report.mtu}, offloads "
        f"{'off' if report.offloads_off else 'on'} on the capture end; medmon sniff -q "
        "--flush-every 3600 on one end, tcpreplay on the other",
        "",
    ]
    rows = []
    for r in report.rungs:
        verdict = "zero drops" if r.zero_drop else "DROPS"
        if r.send_failed:
            verdict += f" ({r.send_failed:,} not sent)"
        rows.append(
            [
                _rate(r.rate_asked),
                f"{r.rate_achieved:,.0f}",
                f"{r.sent:,}",
                f"{r.received:,}",
                f"{r.dropped:,}",
                f"{r.packets:,}",
                f"{r.replay_s:,.1f}",
                f"{r.seconds:,.1f}",
                "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:,.0f}",
                verdict,
            ]
        )
    lines += _table(
        [
            "rate asked",
            "pps sent",
            "sent",
            "received",
            "dropped",
            "medmon packets",
            "replay s",
            "rung s",
            "peak RSS MiB",
            "result",
        ],
        rows,
        left=0,
    )
    lines.append("")
    if report.best_pps > 0:
        mb = report.best_pps * mix.bytes / max(mix.packets, 1) / 1e6
        asked = "" if report.best_asked is None else f", --pps={report.best_asked:,}"
        lines.append(
            f"highest zero-drop rate: {report.best_pps:,.0f} packets/s{asked} "
            f"({mb:,.1f} MB/s, {8 * mb:,.0f} Mbit/s) over {report.packets:,} packets"
        )
    else:
        lines.append("highest zero-drop rate: none (every rung dropped packets)")
    if report.first_drop_asked is not None:
        lines.append(f"lowest rate with drops: {report.first_drop_asked:,} packets/s")
    if report.peak_rss_mib is not None:
        lines.append(f"sensor peak RSS: {report.peak_rss_mib:,.0f} MiB")
    lines.append(
        f"search ended: {_STOPPED.get(report.stopped, report.stopped)} "
        f"({report.seconds:,.0f} s of a {report.budget_s:,.0f} s budget)"
    )
    return "\n".join(lines) + "\n"
