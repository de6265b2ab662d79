"""SNMP messages: the version, well-known default communities, and an agent's system group.

RFC 1157 §4 (SNMPv1 Message and PDUs), RFC 1901 §3 (SNMPv2c Message), RFC 3416 §3 (PDUs),
RFC 3412 §6 (SNMPv3 message: only its version is read, the rest is often encrypted), encoded
with the Basic Encoding Rules of ITU-T X.690 §8 (definite lengths only, as RFC 3417 §8 and
RFC 1157 §4 require). Layout of the units read::

    TLV (X.690 §8.1)  identifier(1: class(2) constructed(1) tag(5); tag 31 = multi-byte form,
                      not used by SNMP and refused) length(1: < 0x80 short form; 0x81..0x84 long
                      form, that many length bytes follow; 0x80 indefinite: refused) value
    Message           SEQUENCE(0x30) { version INTEGER(0x02) 0 = v1, 1 = v2c, 3 = v3,
                                       community OCTET STRING(0x04) (v1/v2c), PDU }
    PDU (RFC 3416)    [0xa0 GetRequest 0xa1 GetNextRequest 0xa2 Response 0xa3 SetRequest
                       0xa4 v1 Trap 0xa5 GetBulkRequest 0xa6 InformRequest 0xa7 SNMPv2-Trap
                       0xa8 Report] { request-id INTEGER, error-status INTEGER,
                       error-index INTEGER, variable-bindings SEQUENCE OF VarBind }
    VarBind           SEQUENCE { name OBJECT IDENTIFIER(0x06), value }
    OBJECT IDENTIFIER X.690 §8.19: first byte 40 * arc1 + arc2, then base-128 arcs (high bit =
                      more)

The reader follows this fixed path (nesting depth :data:`MAX_DEPTH`), checks each length
against its enclosing TLV and never raises; anything else is ``snmp.malformed``.

The community string is a credential. :func:`parse_snmp` keeps it only when it is one of
:data:`DEFAULT_COMMUNITIES`; any other community is dropped in the parser and never reaches a
record, an observation or an anomaly detail.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.parsers.base import DatagramContext, DatagramSpec, ParseAnomaly
from monitor.parsers.text import clean_text

ANOMALY_MALFORMED = "snmp.malformed"

# X.690 universal tags and RFC 3416 PDU tags (context-specific, constructed).
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OBJECT_IDENTIFIER = 0x06
TAG_SEQUENCE = 0x30
GET_REQUEST = 0xA0
GET_NEXT_REQUEST = 0xA1
RESPONSE = 0xA2  #: GetResponse-PDU in RFC 1157
SET_REQUEST = 0xA3
TRAP_V1 = 0xA4
GET_BULK_REQUEST = 0xA5
INFORM_REQUEST = 0xA6
SNMPV2_TRAP = 0xA7
REPORT = 0xA8
#: PDUs shaped request-id, error-status, error-index, variable-bindings (all but the v1 Trap).
STANDARD_PDUS = frozenset(
    (GET_REQUEST, GET_NEXT_REQUEST, RESPONSE, SET_REQUEST, GET_BULK_REQUEST, INFORM_REQUEST,
     SNMPV2_TRAP, REPORT)
)  # fmt: skip

#: msgVersion / version values (RFC 1157, RFC 1901, RFC 3412) and their names.
VERSION_NAMES = {0: "1", 1: "2c", 3: "3"}

#: Well-known default community strings: vendor factory defaults and the values scanners try
#: first (CVE-1999-0516/0517; e.g. 'public'/'private' in net-snmp's and most agents' examples,
#: 'cisco' on older IOS, 'admin'/'manager'/'write'/'read' on printers and UPSs). Matched
#: case-sensitively, as agents compare them. Only these are ever recorded; any other community
#: is a site secret and is never recorded anywhere.
DEFAULT_COMMUNITIES = frozenset(
    ("public", "private", "community", "admin", "manager", "snmp", "cisco", "write", "read")
)

#: RFC 3418 system group objects read from Response PDUs, by their OID's value bytes.
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYSTEM_OBSERVATIONS = {
    SYS_DESCR: "snmp.sys_descr",
    SYS_OBJECT_ID: "snmp.sys_object_id",
    SYS_NAME: "snmp.sys_name",
}

#: Nesting depth of the deepest TLV read: Message > PDU > variable-bindings > VarBind > value.
MAX_DEPTH = 5
#: Length bytes of a long-form length at most (4: lengths up to 4 GiB, beyond any datagram).
MAX_LENGTH_BYTES = 4
#: Variable bindings read per PDU at most.
MAX_VARBINDS = 64
#: OBJECT IDENTIFIER arcs decoded at most (RFC 2578 §3.5: at most 128 sub-identifiers).
MAX_OID_ARCS = 128


@dataclass(frozen=True, slots=True)
class SnmpMessage:
    """What medmon keeps of one SNMP message."""

    version: str  #: '1', '2c', '3' or 'unknown-N'
    version_raw: int
    #: The community when it is in DEFAULT_COMMUNITIES, else None (never the real secret).
    default_community: str | None
    pdu_type: int | None  #: the PDU tag (0xa0..0xa8), None for v3 (encrypted or not read)
    #: ``(OID, value)`` of the system group objects of a Response PDU (SYSTEM_OBSERVATIONS).
    system: tuple[tuple[str, str], ...]


class _Bad(Exception):
    """Internal: the BER is unreadable (never leaves :func:`parse_snmp`)."""


def read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """``(tag, value start, value end)`` of the TLV at ``pos`` inside ``buf[:end]``.

    Raises the internal :class:`_Bad`; callers outside this module use :func:`parse_snmp`.
    """
    if pos + 2 > end:
        raise _Bad("a TLV header runs past its enclosing value")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _Bad("a multi-byte tag (X.690 §8.1.2.4), which SNMP does not use")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise _Bad("an indefinite length (X.690 §8.1.3.6), which SNMP forbids")
        if count > MAX_LENGTH_BYTES or pos + count > end:
            raise _Bad(f"a long-form length of {count} bytes")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise _Bad(f"a length of {length} runs past its enclosing value")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = read_tlv(buf, pos, end)
    if got != tag:
        raise _Bad(f"{what}: tag 0x{got:02x}, expected 0x{tag:02x}")
    return start, stop


def _integer(buf: bytes, start: int, stop: int) -> int:
    if not 0 < stop - start <= 8:
        raise _Bad(f"an INTEGER of {stop - start} bytes")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def decode_oid(raw: bytes) -> str | None:
    """Dotted text of an OBJECT IDENTIFIER's value bytes (X.690 §8.19), None if invalid."""
    if not raw or raw[-1] & 0x80:
        return None
    arcs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            if not arcs:
                first = min(value // 40, 2)
                arcs += (first, value - 40 * first)
            else:
                arcs.append(value)
            value = 0
            if len(arcs) > MAX_OID_ARCS:
                return None
    return ".".join(map(str, arcs))


def parse_snmp(buf: bytes | memoryview) -> SnmpMessage | ParseAnomaly:
    """Decode one SNMP message (see the module docstring). Never raises."""
    buf = bytes(buf)
    try:
        return _parse(buf)
    except _Bad as bad:
        return ParseAnomaly(ANOMALY_MALFORMED, str(bad))


def _parse(buf: bytes) -> SnmpMessage:
    start, end = _expect(buf, 0, len(buf), TAG_SEQUENCE, "Message")
    v_start, pos = _expect(buf, start, end, TAG_INTEGER, "version")
    version_raw = _integer(buf, v_start, pos)
    version = VERSION_NAMES.get(version_raw, f"unknown-{version_raw}")
    if version_raw not in (0, 1):
        return SnmpMessage(version, version_raw, None, None, ())
    c_start, pos = _expect(buf, pos, end, TAG_OCTET_STRING, "community")
    community = buf[c_start:pos].decode("latin-1")
    default = community if community in DEFAULT_COMMUNITIES else None
    del community  # a site's own community never leaves this function
    pdu_type, p_start, p_end = read_tlv(buf, pos, end)
    system: list[tuple[str, str]] = []
    if pdu_type == RESPONSE:
        system = _system_group(buf, p_start, p_end)
    elif pdu_type not in STANDARD_PDUS and pdu_type != TRAP_V1:
        raise _Bad(f"PDU tag 0x{pdu_type:02x} is not an SNMP PDU")
    return SnmpMessage(version, version_raw, default, pdu_type, tuple(system))


def _system_group(buf: bytes, pos: int, end: int) -> list[tuple[str, str]]:
    """The SYSTEM_OBSERVATIONS varbinds of a Response PDU's body ``buf[pos:end]``."""
    for what in ("request-id", "error-status", "error-index"):
        _start, pos = _expect(buf, pos, end, TAG_INTEGER, what)
    vb_pos, vb_end = _expect(buf, pos, end, TAG_SEQUENCE, "variable-bindings")
    found: list[tuple[str, str]] = []
    for _ in range(MAX_VARBINDS):
        if vb_pos >= vb_end:
            break
        b_start, vb_pos = _expect(buf, vb_pos, vb_end, TAG_SEQUENCE, "VarBind")
        n_start, n_end = _expect(buf, b_start, vb_pos, TAG_OBJECT_IDENTIFIER, "VarBind name")
        oid = decode_oid(buf[n_start:n_end])
        if oid is None:
            raise _Bad("a VarBind name is not a valid OBJECT IDENTIFIER")
        tag, v_start, v_end = read_tlv(buf, n_end, vb_pos)
        if oid not in SYSTEM_OBSERVATIONS:
            continue
        if tag == TAG_OCTET_STRING and oid != SYS_OBJECT_ID:
            found.append((oid, clean_text(buf[v_start:v_end])))
        elif tag == TAG_OBJECT_IDENTIFIER and oid == SYS_OBJECT_ID:
            value = decode_oid(buf[v_start:v_end])
            if value is not None:
                found.append((oid, value))
        # noSuchObject/noSuchInstance (0x80/0x81) or a wrong type: nothing to record.
    return found


def handle_snmp(payload: bytes, ctx: DatagramContext) -> None:
    """``snmp.version`` and ``snmp.default_community`` about both ends; the system group
    from a Response about its sender (the agent)."""
    msg = parse_snmp(payload)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    ends = ((ctx.src_ip, ctx.src_mac), (ctx.dst_ip, ctx.dst_mac))
    for ip, mac in ends:
        ctx.observe(ip, mac, "snmp.version", msg.version)
        if msg.default_community is not None:
            ctx.observe(ip, mac, "snmp.default_community", msg.default_community)
    for oid, value in msg.system:
        ctx.observe(ctx.src_ip, ctx.src_mac, SYSTEM_OBSERVATIONS[oid], value)


SPEC = DatagramSpec(
    name="snmp",
    description="SNMP v1/v2c/v3 (RFC 1157, RFC 3416): versions, default communities, system group",
    udp_ports=(161, 162),
    handler=handle_snmp,
)
