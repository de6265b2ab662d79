"""DNS, multicast DNS and LLMNR messages: query names, responders, mDNS announcements.

RFC 1035 §4.1 message format (§4.1.1 header, §4.1.2 question, §4.1.3 resource record, §4.1.4
message compression); RFC 6762 (mDNS) and RFC 6763 (DNS-SD: §4.1 service instance names, §6
TXT records, §9 service type enumeration); RFC 4795 §2.1 (LLMNR, the DNS header with other
flag meanings). Offsets::

    header (12 bytes)   0 ID(2)   2 flags(2): QR(1) Opcode(4) AA TC RD RA Z AD CD RCODE(4)
                        4 QDCOUNT(2)   6 ANCOUNT(2)   8 NSCOUNT(2)   10 ARCOUNT(2)
    question            QNAME(name) QTYPE(2) QCLASS(2)
    resource record     NAME(name) TYPE(2) CLASS(2) TTL(4) RDLENGTH(2) RDATA(RDLENGTH)
    name                labels: length(1, 0..63) octets; 0 ends the name; a byte 0b11xxxxxx
                        starts a 2-byte pointer (14-bit offset from the message start) that
                        ends the name; 0b01 and 0b10 prefixes are reserved (RFC 6891 §5)
    RDATA read here     A(1): 4-byte address   AAAA(28, RFC 3596): 16-byte address
                        PTR(12): a name        TXT(16): character-strings length(1) octets

A name is followed through at most :data:`MAX_POINTER_HOPS` pointers and :data:`MAX_NAME_LENGTH`
octets, so a pointer loop ends as ``dns.bad_name``; anything else cut short is
``dns.malformed``. :func:`parse_dns` is pure and never raises; the three handlers turn messages
into the ``dns.*``, ``mdns.*`` and ``llmnr.*`` observations of ``docs/observations.md``.
"""

from __future__ import annotations

import ipaddress
import struct

from monitor.parsers.base import DatagramContext, DatagramSpec, ParseAnomaly, Value
from monitor.parsers.text import clean_text, decode

ANOMALY_MALFORMED = "dns.malformed"
ANOMALY_BAD_NAME = "dns.bad_name"

# RFC 1035 §4.1.1 header: ID flags QDCOUNT ANCOUNT NSCOUNT ARCOUNT.
HEADER = struct.Struct("!HHHHHH")
UNPACK_HEADER = HEADER.unpack_from
HEADER_LENGTH = 12
# §4.1.2 question tail: QTYPE QCLASS.  §4.1.3 record fixed part: TYPE CLASS TTL RDLENGTH.
UNPACK_QUESTION_TAIL = struct.Struct("!HH").unpack_from
UNPACK_RR_FIXED = struct.Struct("!HHIH").unpack_from

FLAG_QR = 0x8000
OPCODE_SHIFT = 11
OPCODE_QUERY = 0
RCODE_MASK = 0x000F

# RFC 1035 §3.2.2 / RFC 3596 TYPE values (standard names, STYLE S4).
TYPE_A = 1
TYPE_PTR = 12
TYPE_TXT = 16
TYPE_AAAA = 28
#: The record types whose RDATA :func:`parse_dns` decodes.
DECODED_TYPES = frozenset((TYPE_A, TYPE_PTR, TYPE_TXT, TYPE_AAAA))
#: mDNS sets the top bit of CLASS as cache-flush (answers) / unicast-response (questions),
#: RFC 6762 §10.2 and §5.4.
CLASS_MASK = 0x7FFF

POINTER_MASK = 0xC0
#: Pointers followed per name at most; real encoders need one or two.
MAX_POINTER_HOPS = 16
#: RFC 1035 §3.1: a name is at most 255 octets on the wire.
MAX_NAME_LENGTH = 255
#: Resource records read per message at most (mDNS announcements carry tens).
MAX_RECORDS = 256

#: RFC 6763 §9 service type enumeration: PTR targets of this name are service types.
SERVICES_META_QUERY = "_services._dns-sd._udp.local"
#: RFC 6763 §7.1 subtype separator.
SUBTYPE_LABEL = "._sub."
#: TXT keys (RFC 6763 §6.4: case-insensitive) that name a device model: Apple's ``model``,
#: AirPlay/HomeKit ``md``, IPP Everywhere / Bonjour printing ``ty`` and ``product``.
MODEL_KEYS = frozenset((b"md", b"model", b"ty", b"product"))


class Question(Value):
    """RFC 1035 §4.1.2 question: QNAME as sent, dot-joined, no trailing dot ('' for the
    root); ``qclass`` without the mDNS unicast-response bit."""

    FIELDS = ("name", "qtype", "qclass")

    def __init__(self, name: str, qtype: int, qclass: int) -> None:
        self.name = name
        self.qtype = qtype
        self.qclass = qclass


class ResourceRecord(Value):
    """RFC 1035 §4.1.3 resource record: owner name dot-joined, no trailing dot; ``rclass``
    without the mDNS cache-flush bit; ``data`` decoded for A and AAAA (address text), PTR
    (the target name) and TXT (the character-strings) only, else None."""

    FIELDS = ("name", "rtype", "rclass", "ttl", "data")

    def __init__(
        self, name: str, rtype: int, rclass: int, ttl: int, data: str | tuple[bytes, ...] | None
    ) -> None:
        self.name = name
        self.rtype = rtype
        self.rclass = rclass
        self.ttl = ttl
        self.data = data


class DnsMessage(Value):
    """The parts of one DNS/mDNS/LLMNR message medmon reads (``qr`` True: a response;
    ``records``: answer, authority and additional records in order, empty when not asked
    for)."""

    FIELDS = ("id", "qr", "opcode", "rcode", "questions", "records")

    def __init__(
        self,
        id: int,
        qr: bool,
        opcode: int,
        rcode: int,
        questions: tuple[Question, ...],
        records: tuple[ResourceRecord, ...],
    ) -> None:
        self.id = id
        self.qr = qr
        self.opcode = opcode
        self.rcode = rcode
        self.questions = questions
        self.records = records


class _Bad(Exception):
    """Internal: the message is unreadable here (never leaves :func:`parse_dns`)."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail


def read_name(buf: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` and the offset after it (after its first pointer, if any).

    Raises the internal :class:`_Bad`; callers outside this module use :func:`parse_dns`.
    """
    labels: list[bytes] = []
    end = -1
    hops = 0
    total = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise _Bad(ANOMALY_MALFORMED, "a name runs past the end of the message")
        size = buf[pos]
        if size == 0:
            pos += 1
            break
        if size & POINTER_MASK == POINTER_MASK:
            if pos + 1 >= n:
                raise _Bad(ANOMALY_MALFORMED, "a name pointer is cut by the end of the message")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise _Bad(ANOMALY_BAD_NAME, f"more than {MAX_POINTER_HOPS} pointers in a name")
            target = ((size & 0x3F) << 8) | buf[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= n:
                raise _Bad(ANOMALY_BAD_NAME, f"a name pointer to {target} is outside the message")
            pos = target
            continue
        if size & POINTER_MASK:
            raise _Bad(ANOMALY_BAD_NAME, f"reserved label type 0x{size & POINTER_MASK:02x}")
        total += size + 1
        if total > MAX_NAME_LENGTH:
            raise _Bad(ANOMALY_BAD_NAME, f"a name is longer than {MAX_NAME_LENGTH} octets")
        if pos + 1 + size > n:
            raise _Bad(ANOMALY_MALFORMED, "a label runs past the end of the message")
        labels.append(buf[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return decode(b".".join(labels)), (end if end >= 0 else pos)


def parse_dns(buf: bytes | memoryview, *, records: bool = True) -> DnsMessage | ParseAnomaly:
    """Decode one message (see the module docstring). Never raises.

    ``records`` False: read the header and questions only (the hot path of plain DNS).
    """
    buf = bytes(buf)
    if len(buf) < HEADER_LENGTH:
        return ParseAnomaly(ANOMALY_MALFORMED, f"{len(buf)} bytes, shorter than the 12-byte header")
    ident, flags, qdcount, ancount, nscount, arcount = UNPACK_HEADER(buf)
    try:
        pos = HEADER_LENGTH
        questions: list[Question] = []
        for _ in range(qdcount):
            name, pos = read_name(buf, pos)
            if pos + 4 > len(buf):
                raise _Bad(ANOMALY_MALFORMED, "a question runs past the end of the message")
            qtype, qclass = UNPACK_QUESTION_TAIL(buf, pos)
            pos += 4
            questions.append(Question(name, qtype, qclass & CLASS_MASK))
        rrs: list[ResourceRecord] = []
        if records:
            count = ancount + nscount + arcount
            if count > MAX_RECORDS:
                raise _Bad(ANOMALY_MALFORMED, f"{count} records, more than {MAX_RECORDS}")
            for _ in range(count):
                rr, pos = _read_record(buf, pos)
                rrs.append(rr)
    except _Bad as bad:
        return ParseAnomaly(bad.name, bad.detail)
    return DnsMessage(
        id=ident,
        qr=bool(flags & FLAG_QR),
        opcode=(flags >> OPCODE_SHIFT) & 0xF,
        rcode=flags & RCODE_MASK,
        questions=tuple(questions),
        records=tuple(rrs),
    )


def _read_record(buf: bytes, pos: int) -> tuple[ResourceRecord, int]:
    """One resource record at ``pos`` and the offset after it."""
    name, pos = read_name(buf, pos)
    if pos + 10 > len(buf):
        raise _Bad(ANOMALY_MALFORMED, "a record header runs past the end of the message")
    rtype, rclass, ttl, rdlength = UNPACK_RR_FIXED(buf, pos)
    pos += 10
    end = pos + rdlength
    if end > len(buf):
        raise _Bad(ANOMALY_MALFORMED, f"a type {rtype} record's RDATA runs past the message")
    data: str | tuple[bytes, ...] | None = None
    if rtype == TYPE_A and rdlength == 4:
        data = f"{buf[pos]}.{buf[pos + 1]}.{buf[pos + 2]}.{buf[pos + 3]}"
    elif rtype == TYPE_AAAA and rdlength == 16:
        data = str(ipaddress.IPv6Address(buf[pos:end]))
    elif rtype == TYPE_PTR:
        target, after = read_name(buf, pos)
        if after > end:
            raise _Bad(ANOMALY_MALFORMED, "a PTR target runs past its RDATA")
        data = target
    elif rtype == TYPE_TXT:
        strings: list[bytes] = []
        p = pos
        while p < end:
            size = buf[p]
            if p + 1 + size > end:
                raise _Bad(ANOMALY_MALFORMED, "a TXT character-string runs past its RDATA")
            strings.append(buf[p + 1 : p + 1 + size])
            p += 1 + size
        data = tuple(strings)
    return ResourceRecord(name, rtype, rclass & CLASS_MASK, ttl, data), end


def _query_names(msg: DnsMessage) -> list[str]:
    """Distinct question names, lower case (no trailing dot: :func:`read_name` adds none)."""
    names: list[str] = []
    for q in msg.questions:
        name = clean_text(q.name.lower())
        if name and name not in names:
            names.append(name)
    return names


def handle_dns(payload: bytes, ctx: DatagramContext) -> None:
    """Plain DNS (port 53): ``dns.query`` of a standard query, ``dns.server`` of a response."""
    if len(payload) < HEADER_LENGTH:
        ctx.anomaly(ANOMALY_MALFORMED, f"{len(payload)} bytes, shorter than the 12-byte header")
        return
    flags = (payload[2] << 8) | payload[3]
    if flags & FLAG_QR:
        if ctx.sport == 53:
            ctx.observe(ctx.src_ip, ctx.src_mac, "dns.server", "true")
        return
    if (flags >> OPCODE_SHIFT) & 0xF != OPCODE_QUERY:
        return
    msg = parse_dns(payload, records=False)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    for name in _query_names(msg):
        ctx.observe(ctx.src_ip, ctx.src_mac, "dns.query", name)


def handle_llmnr(payload: bytes, ctx: DatagramContext) -> None:
    """LLMNR (port 5355): ``llmnr.query`` for each name a query asks."""
    if len(payload) >= HEADER_LENGTH and payload[2] & 0x80:
        return  # a response: nothing about the querier
    msg = parse_dns(payload, records=False)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    if msg.opcode != OPCODE_QUERY:
        return
    for name in _query_names(msg):
        ctx.observe(ctx.src_ip, ctx.src_mac, "llmnr.query", name)


def mdns_facts(msg: DnsMessage) -> list[tuple[str, str]]:
    """``(kind, value)`` facts of an mDNS response about its sender, distinct, in order.

    ``mdns.name``: owner names of A/AAAA records; ``mdns.service``: service types, i.e. the
    owner of a PTR whose first label starts with '_' (a subtype PTR's base type, RFC 6763
    §7.1) and the targets of the ``_services._dns-sd._udp.local`` meta-PTR (§9);
    ``mdns.model``: values of the :data:`MODEL_KEYS` of TXT records.
    """
    facts: list[tuple[str, str]] = []
    for rr in msg.records:
        rtype = rr.rtype
        if rtype == TYPE_A or rtype == TYPE_AAAA:
            fact = ("mdns.name", clean_text(rr.name.lower()))
        elif rtype == TYPE_PTR:
            owner = rr.name.lower()
            if owner == SERVICES_META_QUERY:
                if not isinstance(rr.data, str) or not rr.data.startswith("_"):
                    continue
                fact = ("mdns.service", clean_text(rr.data.lower()))
            elif owner.startswith("_"):
                sub = owner.find(SUBTYPE_LABEL)
                if sub >= 0:
                    owner = owner[sub + len(SUBTYPE_LABEL) :]
                fact = ("mdns.service", clean_text(owner))
            else:
                continue  # a reverse-mapping PTR (in-addr.arpa) names no service
        elif rtype == TYPE_TXT and isinstance(rr.data, tuple):
            for s in rr.data:
                eq = s.find(b"=")
                if eq > 0 and s[:eq].lower() in MODEL_KEYS and eq + 1 < len(s):
                    value = s[eq + 1 :]
                    if value[:1] == b"(" and value[-1:] == b")":
                        value = value[1:-1]  # Bonjour Printing 1.2 §9.2.6: product=(model)
                    fact = ("mdns.model", clean_text(value))
                    if fact not in facts:
                        facts.append(fact)
            continue
        else:
            continue
        if fact[1] and fact not in facts:
            facts.append(fact)
    return facts


def handle_mdns(payload: bytes, ctx: DatagramContext) -> None:
    """mDNS (port 5353): names, service types and models a responder announces."""
    if len(payload) >= HEADER_LENGTH and not payload[2] & 0x80:
        return  # a query: its known answers are other hosts' records
    msg = parse_dns(payload)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    for kind, value in mdns_facts(msg):
        ctx.observe(ctx.src_ip, ctx.src_mac, kind, value)


DNS_SPEC = DatagramSpec(
    name="dns",
    description="DNS (RFC 1035 §4): query names of standard queries, responders on port 53",
    udp_ports=(53,),
    handler=handle_dns,
    id_bytes=2,  # RFC 1035 §4.1.1 ID: a repeated query differs only there
)
MDNS_SPEC = DatagramSpec(
    name="mdns",
    description="Multicast DNS / DNS-SD (RFC 6762, RFC 6763): announced names, services, models",
    udp_ports=(5353,),
    handler=handle_mdns,
    id_bytes=2,
)
LLMNR_SPEC = DatagramSpec(
    name="llmnr",
    description="LLMNR (RFC 4795): names asked by queriers",
    udp_ports=(5355,),
    handler=handle_llmnr,
    id_bytes=2,
)
