"""Layer 2-4 decoding of one captured frame into one small record, :class:`Packet`.

This is the hot path: every captured packet passes through :func:`decode` once. It uses
precompiled ``struct.Struct`` formats and builds one tuple per packet; it never builds a scapy
``Packet`` (scapy dissects ~3,000 packets/s here, this module several hundred thousand). Deep
parsing is left to the protocol parsers, which get ``l4_offset``/``payload_offset`` into the
frame's bytes.

Link types (https://www.tcpdump.org/linktypes.html)::

    1    EN10MB       Ethernet II: dst(6) src(6) ethertype(2)
    0    NULL         BSD loopback: address family, 4 bytes, host byte order
    108  LOOP         OpenBSD loopback: address family, 4 bytes, network byte order
    101  RAW          raw IPv4/IPv6 (also DLT 12 and 14 on some systems)
    228  IPV4, 229 IPV6
    113  LINUX_SLL    pkttype(2) arphrd(2) halen(2) addr(8) protocol(2)         = 16 bytes
    276  LINUX_SLL2   protocol(2) reserved(2) ifindex(4) arphrd(2) pkttype(1) halen(1) addr(8)
    239  NFLOG        family(1) version(1) res_id(2), then TLVs len(2,LE) type(2,LE), 4-aligned;
                      type 9 NFULA_PAYLOAD holds the IP packet
    258  PKTAP        Apple: header length(4,LE) dlt(4,LE) ..., then a frame of that dlt

Ethernet encapsulations: 802.1Q (0x8100), 802.1ad QinQ (0x88a8, 0x9100) stacks, MPLS unicast
and multicast (0x8847/0x8848, label(20) tc(3) s(1) ttl(8) per 4-byte entry), PPPoE session
(0x8864), ARP (0x0806).

IPv4 (RFC 791)::

    0 ver/ihl  1 tos  2 total length  4 id  6 flags/fragment offset  8 ttl  9 protocol
    10 checksum  12 source  16 destination  20 options...

IPv6 (RFC 8200): 0 ver/class/flow(4) 4 payload length 6 next header 7 hop limit 8 src(16)
24 dst(16); extension headers 0 (hop-by-hop), 43 (routing), 60 (destination options),
135 (mobility): (len+1)*8 bytes; 44 (fragment): 8 bytes, offset(13)<<3 | M, id(4);
51 (AH): (len+2)*4 bytes.

TCP (RFC 9293): 0 sport 2 dport 4 seq 8 ack 12 data offset(4 bits) 13 flags 14 window
16 checksum 18 urgent. UDP (RFC 768): 0 sport 2 dport 4 length 6 checksum. ICMP/ICMPv6:
0 type 1 code 2 checksum; medmon puts type and code into ``sport``/``dport`` as Zeek does.

Truncated frames (a short snaplen) decode as far as they go: the fields that were captured
are set, and ``anomaly`` names the first thing that was cut or wrong (see
:mod:`monitor.anomalies`).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

# Link types (LINKTYPE_* values from tcpdump.org).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_PKTAP = 258
LINKTYPE_LINUX_SLL2 = 276
DLT_RAW_ALIASES = (12, 14)

LINKTYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_ETHERNET: "EN10MB",
    LINKTYPE_RAW: "RAW",
    12: "RAW",
    14: "RAW",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    LINKTYPE_NFLOG: "NFLOG",
    LINKTYPE_PKTAP: "PKTAP",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}

# Ethertypes.
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_MPLS = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE = 0x8864

# IP protocol numbers.
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# TCP flag bits.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

# ``Packet.frag`` values.
FRAG_NONE = 0
FRAG_FIRST = 1  # offset 0 with More Fragments: carries the L4 header
FRAG_LATER = 2  # offset > 0: no L4 header

_U16 = struct.Struct("!H").unpack_from
_U16LE = struct.Struct("<H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
# ver/ihl, total length, id, flags/offset, ttl, protocol, checksum, src, dst
_IPV4 = struct.Struct("!BxHHHBBH4s4s").unpack_from
# payload length, next header, hop limit, src, dst
_IPV6 = struct.Struct("!4xHBB16s16s").unpack_from
_TCP = struct.Struct("!HHIIBBHH").unpack_from  # sport dport seq ack off flags window checksum
_UDP = struct.Struct("!HHHH").unpack_from
_ICMP = struct.Struct("!BBH").unpack_from
_ARP = struct.Struct("!HHBBH6s4s6s4s").unpack_from

_IPV6_EXT = frozenset((0, 43, 44, 51, 60, 135))


class Packet(NamedTuple):
    """One decoded frame. Offsets index into the frame's captured bytes.

    Addresses are raw bytes (4 or 16 for IP, 6 for MAC, ``b""`` when absent): they are turned
    into text once per flow, not once per packet.
    """

    src_mac: bytes  #: Ethernet/SLL source MAC, b"" when the link type has none
    dst_mac: bytes  #: Ethernet destination MAC, b"" when absent
    vlan: int | None  #: outermost 802.1Q/802.1ad VLAN id, None when untagged
    ethertype: int  #: L3 type: 0x0800 IPv4, 0x86DD IPv6, 0x0806 ARP, or another ethertype
    ip_version: int  #: 4 or 6; 0 when the frame carries no IP
    src: bytes  #: IP source address (ARP: sender protocol address)
    dst: bytes  #: IP destination address (ARP: target protocol address)
    proto: int  #: IP protocol number (6 TCP, 17 UDP, ...); -1 when there is no IP
    ttl: int  #: IPv4 TTL or IPv6 hop limit
    ip_id: int  #: IPv4 identification, or the IPv6 fragment header's identification
    frag: int  #: FRAG_NONE, FRAG_FIRST or FRAG_LATER
    sport: int  #: source port (ICMP: type); -1 when not captured
    dport: int  #: destination port (ICMP: code); -1 when not captured
    tcp_flags: int  #: TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...)
    seq: int  #: TCP sequence number
    ack: int  #: TCP acknowledgement number
    l4_checksum: int  #: TCP/UDP/ICMP checksum as sent (same in both copies of a SPAN duplicate)
    l4_offset: int  #: offset of the L4 header in the frame; -1 when absent
    payload_offset: int  #: offset of the L4 payload (IP payload for non-first fragments)
    payload_len: int  #: payload bytes present in the capture (clipped by snaplen and IP length)
    ip_len: int  #: L3 length the IP header declares (IPv4 total length, IPv6 40 + payload length)
    anomaly: str | None  #: the first anomaly met (see monitor.anomalies), or None


#: What :func:`decode` returns: a plain tuple with the fields of :class:`Packet` in order.
#: Building a ``NamedTuple`` costs twice a plain tuple on this path, so hot consumers unpack it
#: positionally and others wrap it with ``Packet._make(raw)``.
RawPacket = tuple[Any, ...]

EMPTY = b""


def _bare(smac: bytes, dmac: bytes, vlan: int | None, etype: int, anomaly: str | None) -> RawPacket:
    """A packet with nothing decoded above layer 2."""
    return (smac, dmac, vlan, etype, 0, EMPTY, EMPTY, -1, 0, 0, 0, -1, -1, 0, 0, 0, 0, -1, 0, 0,
            0, anomaly)  # fmt: skip


def decode(linktype: int, data: bytes) -> RawPacket | None:
    """Decode one frame of link type ``linktype`` into a :data:`RawPacket`.

    Returns None when the link type is not supported (the caller counts and skips it);
    otherwise the fields of :class:`Packet`, possibly partial with ``anomaly`` set. Never raises
    on any byte string.
    """
    if linktype == LINKTYPE_ETHERNET:
        # Fast path, inlined because it is most of the traffic: Ethernet with at most one
        # 802.1Q tag, then IPv4 without options and not fragmented or IPv6 without extension
        # headers, then TCP or UDP with the header captured. The rest takes the general path,
        # which also names what is wrong with a frame.
        n = len(data)
        if n >= 54:
            etype = data[12] << 8 | data[13]
            off = 14
            vlan = None
            if etype == ETH_VLAN:
                vlan = (data[14] << 8 | data[15]) & 0x0FFF
                etype = data[16] << 8 | data[17]
                off = 18
            l4 = 0
            if etype == ETH_IPV4 and data[off] == 0x45:
                _vihl, ip_len, ip_id, fragf, ttl, proto, _sum, src, dst = _IPV4(data, off)
                if not fragf & 0x3FFF and ip_len >= 20:
                    l4 = off + 20
                    end = off + ip_len
                    version = 4
            elif etype == ETH_IPV6 and data[off] >> 4 == 6 and n >= off + 48:
                plen, proto, ttl, src, dst = _IPV6(data, off)
                if plen and (proto == PROTO_TCP or proto == PROTO_UDP):
                    l4 = off + 40
                    end = l4 + plen
                    ip_id = 0
                    ip_len = 40 + plen
                    version = 6
            if l4:
                if end > n:
                    end = n
                if proto == PROTO_TCP:
                    if end - l4 >= 20:
                        sport, dport, seq, ack, doff, flags, _win, csum = _TCP(data, l4)
                        hlen = (doff >> 4) << 2
                        if 20 <= hlen <= end - l4:
                            return (data[6:12], data[0:6], vlan, etype, version, src, dst, 6, ttl,
                                    ip_id, 0, sport, dport, flags, seq, ack, csum, l4, l4 + hlen,
                                    end - l4 - hlen, ip_len, None)  # fmt: skip
                elif proto == PROTO_UDP and end - l4 >= 8:
                    sport, dport, ulen, csum = _UDP(data, l4)
                    if 8 <= ulen <= end - l4:
                        return (data[6:12], data[0:6], vlan, etype, version, src, dst, 17, ttl,
                                ip_id, 0, sport, dport, 0, 0, 0, csum, l4, l4 + 8, ulen - 8,
                                ip_len, None)  # fmt: skip
        return _ethernet(data, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return _bare(EMPTY, EMPTY, None, 0, "sll.truncated")
        smac = data[6:12] if _U16(data, 4)[0] == 6 else EMPTY
        return _ether_payload(data, 16, _U16(data, 14)[0], smac, EMPTY, None)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return _bare(EMPTY, EMPTY, None, 0, "sll.truncated")
        smac = data[12:18] if data[11] == 6 else EMPTY
        return _ether_payload(data, 20, _U16(data, 0)[0], smac, EMPTY, None)
    if linktype == LINKTYPE_RAW or linktype == 12 or linktype == 14:
        return _raw_ip(data, 0)
    if linktype == LINKTYPE_IPV4:
        return _ipv4(data, 0, EMPTY, EMPTY, None)
    if linktype == LINKTYPE_IPV6:
        return _ipv6(data, 0, EMPTY, EMPTY, None)
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if len(data) < 4:
            return _bare(EMPTY, EMPTY, None, 0, "eth.truncated")
        family = _U32(data, 0)[0] if linktype == LINKTYPE_LOOP else _U32LE(data, 0)[0]
        if family > 0xFFFF:  # written in the other byte order by the capturing host
            family = ((family >> 24) | (family >> 8 & 0xFF00)) & 0xFFFF
        if family == 2:
            return _ipv4(data, 4, EMPTY, EMPTY, None)
        if family in (10, 24, 28, 30):  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
            return _ipv6(data, 4, EMPTY, EMPTY, None)
        return _bare(EMPTY, EMPTY, None, 0, "null.unknown_family")
    if linktype == LINKTYPE_NFLOG:
        return _nflog(data)
    if linktype == LINKTYPE_PKTAP:
        if len(data) < 8:
            return _bare(EMPTY, EMPTY, None, 0, "pktap.bad_header")
        hdrlen = _U32LE(data, 0)[0]
        inner = _U32LE(data, 4)[0]
        if hdrlen < 8 or hdrlen > len(data) or inner == LINKTYPE_PKTAP:
            return _bare(EMPTY, EMPTY, None, 0, "pktap.bad_header")
        p = decode(inner, data[hdrlen:])
        if p is None or (p[17] < 0 and p[18] < 0):
            return p
        # Offsets are into the inner frame; the caller slices the whole PKTAP frame.
        (smac, dmac, vlan, etype, ipv, src, dst, proto, ttl, ip_id, frag, sport, dport, flags,
         seq, ack, csum, l4off, poff, plen, ip_len, anomaly) = p  # fmt: skip
        return (smac, dmac, vlan, etype, ipv, src, dst, proto, ttl, ip_id, frag, sport, dport,
                flags, seq, ack, csum, l4off + hdrlen if l4off >= 0 else l4off,
                poff + hdrlen if poff >= 0 else poff, plen, ip_len, anomaly)  # fmt: skip
    return None


def _ethernet(data: bytes, off: int) -> RawPacket:
    n = len(data)
    if n < off + 14:
        return _bare(EMPTY, EMPTY, None, 0, "eth.truncated")
    dmac = data[off : off + 6]
    smac = data[off + 6 : off + 12]
    etype = data[off + 12] << 8 | data[off + 13]
    off += 14
    vlan = None
    while etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD:
        if n < off + 4:
            return _bare(smac, dmac, vlan, etype, "vlan.truncated")
        if vlan is None:
            vlan = (data[off] << 8 | data[off + 1]) & 0x0FFF
        etype = data[off + 2] << 8 | data[off + 3]
        off += 4
    return _ether_payload(data, off, etype, smac, dmac, vlan)


def _ether_payload(
    data: bytes, off: int, etype: int, smac: bytes, dmac: bytes, vlan: int | None
) -> RawPacket:
    if etype == ETH_IPV4:
        return _ipv4(data, off, smac, dmac, vlan)
    if etype == ETH_IPV6:
        return _ipv6(data, off, smac, dmac, vlan)
    n = len(data)
    if etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD:  # tag after SLL header
        if n < off + 4:
            return _bare(smac, dmac, vlan, etype, "vlan.truncated")
        if vlan is None:
            vlan = (data[off] << 8 | data[off + 1]) & 0x0FFF
        return _ether_payload(data, off + 4, data[off + 2] << 8 | data[off + 3], smac, dmac, vlan)
    if etype == ETH_MPLS or etype == ETH_MPLS_MC:
        while True:
            if n < off + 4:
                return _bare(smac, dmac, vlan, etype, "mpls.truncated")
            bottom = data[off + 2] & 0x01
            off += 4
            if bottom:
                break
        if n <= off:
            return _bare(smac, dmac, vlan, etype, "mpls.truncated")
        version = data[off] >> 4
        if version == 4:
            return _ipv4(data, off, smac, dmac, vlan)
        if version == 6:
            return _ipv6(data, off, smac, dmac, vlan)
        if version == 0 and n >= off + 4 + 14:
            # Ethernet pseudowire behind a zero control word (RFC 4448): an inner frame whose
            # addresses are the real hosts'.
            inner = _ethernet(data[off + 4 :], 0)
            if inner[4]:
                return inner[:2] + (vlan,) + inner[3:17] + tuple(
                    v + off + 4 if v >= 0 else v for v in inner[17:19]
                ) + inner[19:]  # fmt: skip
            return inner
        return _bare(smac, dmac, vlan, etype, None)
    if etype == ETH_PPPOE:
        if n >= off + 8:
            ppp = _U16(data, off + 6)[0]
            if ppp == 0x0021:
                return _ipv4(data, off + 8, smac, dmac, vlan)
            if ppp == 0x0057:
                return _ipv6(data, off + 8, smac, dmac, vlan)
        return _bare(smac, dmac, vlan, etype, None)
    if etype == ETH_ARP and n >= off + 28:
        _htype, ptype, hlen, plen, _op, _sha, spa, _tha, tpa = _ARP(data, off)
        if ptype == ETH_IPV4 and hlen == 6 and plen == 4:
            return (smac, dmac, vlan, ETH_ARP, 0, spa, tpa, -1, 0, 0, 0, -1, -1, 0, 0, 0, 0, -1,
                    off, 0, 0, None)  # fmt: skip
    return _bare(smac, dmac, vlan, etype, None)


def _raw_ip(data: bytes, off: int) -> RawPacket:
    if len(data) <= off:
        return _bare(EMPTY, EMPTY, None, 0, "ipv4.truncated")
    version = data[off] >> 4
    if version == 4:
        return _ipv4(data, off, EMPTY, EMPTY, None)
    if version == 6:
        return _ipv6(data, off, EMPTY, EMPTY, None)
    return _bare(EMPTY, EMPTY, None, 0, "ip.bad_version")


def _nflog(data: bytes) -> RawPacket:
    n = len(data)
    if n < 4:
        return _bare(EMPTY, EMPTY, None, 0, "nflog.bad_tlv")
    family = data[0]
    off = 4
    while off + 4 <= n:
        tlv_len, tlv_type = _U16LE(data, off)[0], _U16LE(data, off + 2)[0]
        if tlv_len < 4 or off + tlv_len > n:
            return _bare(EMPTY, EMPTY, None, 0, "nflog.bad_tlv")
        if tlv_type == 9:  # NFULA_PAYLOAD
            # Offsets stay relative to the whole frame; the slice only bounds the IP packet.
            bounded = data[: off + tlv_len]
            if family == 10:
                return _ipv6(bounded, off + 4, EMPTY, EMPTY, None)
            return _ipv4(bounded, off + 4, EMPTY, EMPTY, None)
        off += (tlv_len + 3) & ~3
    return _bare(EMPTY, EMPTY, None, 0, "nflog.no_payload")


def _ipv4(data: bytes, off: int, smac: bytes, dmac: bytes, vlan: int | None) -> RawPacket:
    n = len(data)
    if n < off + 20:
        return _bare(smac, dmac, vlan, ETH_IPV4, "ipv4.truncated")
    vihl, total, ip_id, fragf, ttl, proto, _sum, src, dst = _IPV4(data, off)
    if vihl >> 4 != 4:
        return _bare(smac, dmac, vlan, ETH_IPV4, "ip.bad_version")
    ihl = (vihl & 0x0F) << 2
    anomaly = None
    if total < ihl:
        # Zero is what TSO/offloaded super-frames carry; either way use the captured size.
        anomaly = None if total == 0 else "ipv4.bad_total_length"
        end = n
    else:
        end = off + total
        if end > n:
            end = n
    l4 = off + ihl
    if ihl < 20 or l4 > end:
        return (smac, dmac, vlan, ETH_IPV4, 4, src, dst, proto, ttl, ip_id, 0, -1, -1, 0, 0, 0, 0,
                -1, end, 0, total, "ipv4.bad_header_length")  # fmt: skip
    frag = FRAG_NONE
    if fragf & 0x3FFF:
        if fragf & 0x1FFF:
            return (smac, dmac, vlan, ETH_IPV4, 4, src, dst, proto, ttl, ip_id, FRAG_LATER, -1, -1,
                    0, 0, 0, 0, -1, l4, end - l4, total, anomaly)  # fmt: skip
        frag = FRAG_FIRST
    return _l4(data, l4, end, (smac, dmac, vlan, ETH_IPV4, 4, src, dst, proto, ttl, ip_id, frag),
               total, anomaly)  # fmt: skip


def _ipv6(data: bytes, off: int, smac: bytes, dmac: bytes, vlan: int | None) -> RawPacket:
    n = len(data)
    if n < off + 40:
        return _bare(smac, dmac, vlan, ETH_IPV6, "ipv6.truncated")
    if data[off] >> 4 != 6:
        return _bare(smac, dmac, vlan, ETH_IPV6, "ip.bad_version")
    plen, nh, hlim, src, dst = _IPV6(data, off)
    end = off + 40 + plen
    if end > n or plen == 0:  # plen 0: jumbogram or offloaded super-frame; use what was captured
        end = n
    l4 = off + 40
    frag = FRAG_NONE
    ip_id = 0
    while nh in _IPV6_EXT:
        if l4 + 8 > end:
            return (smac, dmac, vlan, ETH_IPV6, 6, src, dst, nh, hlim, ip_id, frag, -1, -1, 0, 0,
                    0, 0, -1, min(l4, end), 0, 40 + plen, "ipv6.truncated")  # fmt: skip
        if nh == 44:  # fragment header: next(1) reserved(1) offset<<3|M (2) identification(4)
            offm = _U16(data, l4 + 2)[0]
            ip_id = _U32(data, l4 + 4)[0]
            nh = data[l4]
            l4 += 8
            if offm & 0xFFF8:
                return (smac, dmac, vlan, ETH_IPV6, 6, src, dst, nh, hlim, ip_id, FRAG_LATER, -1,
                        -1, 0, 0, 0, 0, -1, l4, end - l4, 40 + plen, None)  # fmt: skip
            if offm & 1:
                frag = FRAG_FIRST
            # Offset 0 without M is an atomic fragment (RFC 6946): a whole datagram.
        elif nh == 51:  # authentication header: length in 4-byte words minus 2
            nh, l4 = data[l4], l4 + ((data[l4 + 1] + 2) << 2)
        else:  # hop-by-hop, routing, destination options, mobility: length in 8-byte words - 1
            nh, l4 = data[l4], l4 + ((data[l4 + 1] + 1) << 3)
    if l4 > end:
        return (smac, dmac, vlan, ETH_IPV6, 6, src, dst, nh, hlim, ip_id, frag, -1, -1, 0, 0, 0, 0,
                -1, end, 0, 40 + plen, "ipv6.truncated")  # fmt: skip
    return _l4(data, l4, end, (smac, dmac, vlan, ETH_IPV6, 6, src, dst, nh, hlim, ip_id, frag),
               40 + plen, None)  # fmt: skip


def _l4(
    data: bytes, l4: int, end: int, head: tuple[Any, ...], ip_len: int, anomaly: str | None
) -> RawPacket:
    """Decode the transport header at ``l4``; ``head`` holds the first 11 Packet fields."""
    proto = head[7]
    frag = head[10]
    avail = end - l4
    if proto == PROTO_TCP:
        if avail >= 20:
            sport, dport, seq, ack, doff, flags, _win, csum = _TCP(data, l4)
            hlen = (doff >> 4) << 2
            if 20 <= hlen <= avail:
                return head + (sport, dport, flags, seq, ack, csum, l4, l4 + hlen, avail - hlen,
                               ip_len, anomaly)  # fmt: skip
            # The header runs past what was captured (snaplen) or its length field is bad.
            cut = end == len(data) and hlen >= 20
            anomaly = anomaly or ("tcp.truncated" if cut else "tcp.bad_header_length")
            return head + (sport, dport, flags, seq, ack, csum, l4, end, 0, ip_len, anomaly)
        # Decode as far as the capture goes: ports, then seq, ack, flags.
        sport = dport = -1
        seq = ack = flags = 0
        if avail >= 4:
            sport, dport = _U16(data, l4)[0], _U16(data, l4 + 2)[0]
        if avail >= 8:
            seq = _U32(data, l4 + 4)[0]
        if avail >= 12:
            ack = _U32(data, l4 + 8)[0]
        if avail >= 14:
            flags = data[l4 + 13]
        if frag != FRAG_FIRST:
            anomaly = anomaly or "tcp.truncated"
        return head + (sport, dport, flags, seq, ack, 0, l4, end, 0, ip_len, anomaly)
    if proto == PROTO_UDP:
        if avail >= 8:
            sport, dport, ulen, csum = _UDP(data, l4)
            pend = end
            if frag == FRAG_NONE:
                if ulen < 8 or (ulen > avail and end < len(data)):
                    anomaly = anomaly or "udp.bad_length"
                elif l4 + ulen < end:
                    pend = l4 + ulen
            return head + (sport, dport, 0, 0, 0, csum, l4, l4 + 8, pend - l4 - 8, ip_len, anomaly)
        sport = dport = -1
        if avail >= 4:
            sport, dport = _U16(data, l4)[0], _U16(data, l4 + 2)[0]
        return head + (sport, dport, 0, 0, 0, 0, l4, end, 0, ip_len, anomaly or "udp.truncated")
    if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        if avail >= 4:
            itype, code, csum = _ICMP(data, l4)
            return head + (itype, code, 0, 0, 0, csum, l4, l4 + 4, avail - 4, ip_len, anomaly)
        return head + (-1, -1, 0, 0, 0, 0, l4, end, 0, ip_len, anomaly or "icmp.truncated")
    return head + (-1, -1, 0, 0, 0, 0, l4, l4, max(0, avail), ip_len, anomaly)
