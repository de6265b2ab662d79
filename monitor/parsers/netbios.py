"""NetBIOS over TCP/IP on UDP: name service registrations and browser host announcements.

RFC 1002 §4.2 NetBIOS Name Service packets (§4.2.1.1 header, §4.2.1.2 question, §4.2.1.3
resource record, §4.2.2 registration request, §4.2.13 positive query response), RFC 1001 §14.1
first-level name encoding; RFC 1002 §4.4 NetBIOS Datagram Service; [MS-BRWS] §2.2.1
HostAnnouncement and §2.2.6 LocalMasterAnnouncement, carried in an SMB_COM_TRANSACTION
mailslot write ([MS-MAIL] §2.2.1, [MS-CIFS] §2.2.4.33.1) to ``\\MAILSLOT\\BROWSE``. Offsets::

    NBNS header (12)  0 NAME_TRN_ID(2)  2 flags(2): R(1) OPCODE(4) NM_FLAGS(7) RCODE(4)
                      4 QDCOUNT 6 ANCOUNT 8 NSCOUNT 10 ARCOUNT (2 each)
                      OPCODE 0 query, 5 registration, 6 release, 7 WACK, 8 refresh,
                      9 refresh (alternate code used by Windows and Samba)
    name              0x20, 32 bytes: each half-byte of the 16-byte name + 'A' (RFC 1001
                      §14.1), then scope labels, then 0; or a 2-byte pointer (RFC 1035 §4.1.4).
                      The 16 bytes are the 15-byte name padded with spaces and a suffix byte.
    question          QUESTION_NAME QUESTION_TYPE(2) QUESTION_CLASS(2)
    resource record   RR_NAME RR_TYPE(2) RR_CLASS(2) TTL(4) RDLENGTH(2) RDATA; for NB (0x0020)
                      RDATA is entries of NB_FLAGS(2: G(1) ONT(2) reserved(13)) NB_ADDRESS(4)

    datagram (§4.4.1) 0 MSG_TYPE(1) 0x10 direct unique, 0x11 direct group, 0x12 broadcast
                      1 FLAGS(1) 2 DGM_ID(2) 4 SOURCE_IP(4) 8 SOURCE_PORT(2) 10 DGM_LENGTH(2)
                      12 PACKET_OFFSET(2) 14 SOURCE_NAME DESTINATION_NAME USER_DATA (an SMB)
    SMB (MS-CIFS)     0 '\\xffSMB' 4 command (0x25 TRANSACTION) ... 32 WordCount(1) = 17
                      33 words: ... 22 DataCount(2) 24 DataOffset(2, from the SMB start) ...
                      then ByteCount(2) and the mailslot name '\\MAILSLOT\\BROWSE\\0'
    announcement      0 Opcode(1): 1 HostAnnouncement, 15 LocalMasterAnnouncement
                      1 UpdateCount(1) 2 Periodicity(4) 6 ServerName(16, NUL-padded)
                      22 OSVersionMajor(1) 23 OSVersionMinor(1) 24 ServerType(4) ...

Names are rendered ``NAME<xx>``: the 15-byte name without its padding spaces, the suffix as
two lower-case hex digits (``WKS-RAD-01<00>``, ``RADIOLOGY<1e>``); control characters (as in
``\\x01\\x02__MSBROWSE__\\x02<01>``) become '?'. Parsers are pure and never raise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from monitor.parsers.base import DatagramContext, DatagramSpec, ParseAnomaly
from monitor.parsers.text import LATIN1, clean_text

ANOMALY_MALFORMED = "netbios.malformed"
ANOMALY_BAD_NAME = "netbios.bad_name"

# RFC 1002 §4.2.1.1 header: NAME_TRN_ID flags QDCOUNT ANCOUNT NSCOUNT ARCOUNT.
UNPACK_HEADER = struct.Struct("!HHHHHH").unpack_from
HEADER_LENGTH = 12
UNPACK_RR_FIXED = struct.Struct("!HHIH").unpack_from  # RR_TYPE RR_CLASS TTL RDLENGTH
UNPACK_NB_ENTRY = struct.Struct("!H4s").unpack_from  # NB_FLAGS NB_ADDRESS

FLAG_R = 0x8000
OPCODE_SHIFT = 11
RCODE_MASK = 0x000F
OPCODE_QUERY = 0
OPCODE_REGISTRATION = 5
OPCODE_RELEASE = 6
OPCODE_REFRESH = 8
OPCODE_REFRESH_ALT = 9
#: Requests whose owner claims the names it carries.
CLAIM_OPCODES = frozenset((OPCODE_REGISTRATION, OPCODE_REFRESH, OPCODE_REFRESH_ALT))
RR_TYPE_NB = 0x0020
NB_FLAGS_G = 0x8000  #: group name
ENCODED_NAME_LENGTH = 32
MAX_POINTER_HOPS = 8

# RFC 1002 §4.4.1 datagram service.
DIRECT_UNIQUE = 0x10
DIRECT_GROUP = 0x11
BROADCAST_DATAGRAM = 0x12
DATAGRAM_TYPES = frozenset((DIRECT_UNIQUE, DIRECT_GROUP, BROADCAST_DATAGRAM))
DATAGRAM_HEADER_LENGTH = 14
SMB_HEADER_LENGTH = 32
SMB_PROTOCOL = b"\xffSMB"
SMB_COM_TRANSACTION = 0x25
TRANSACTION_WORD_COUNT = 17
#: SMB_COM_TRANSACTION request DataCount and DataOffset (MS-CIFS §2.2.4.33.1): byte offsets
#: from the SMB header start (33 = after WordCount) + words 11 and 12.
UNPACK_TRANS_DATA = struct.Struct("<HH").unpack_from
TRANS_DATA_COUNT_OFFSET = SMB_HEADER_LENGTH + 1 + 22
MAILSLOT_BROWSE = b"\\MAILSLOT\\BROWSE\x00"
# [MS-BRWS] §2.2 opcodes.
HOST_ANNOUNCEMENT = 1
LOCAL_MASTER_ANNOUNCEMENT = 15
ANNOUNCEMENT_OPCODES = frozenset((HOST_ANNOUNCEMENT, LOCAL_MASTER_ANNOUNCEMENT))
ANNOUNCEMENT_LENGTH = 24  # through OSVersionMinor
#: The suffix of a name announced as a server ([MS-BRWS] lists servers by their
#: file-server name, NetBIOS suffix 0x20).
SERVER_SUFFIX = 0x20


@dataclass(frozen=True, slots=True)
class NbName:
    """One NetBIOS name as carried in NBNS: who claims it, and whether it is a group."""

    name: str  #: rendered ``NAME<xx>``
    group: bool  #: NB_FLAGS G bit
    address: str | None  #: NB_ADDRESS, None when 0.0.0.0 or absent


@dataclass(frozen=True, slots=True)
class NbnsPacket:
    """RFC 1002 §4.2 name service packet: the header and the NB names it carries."""

    trn_id: int
    response: bool  #: R bit
    opcode: int
    rcode: int
    question: str | None  #: the first question's name, rendered
    #: Names with NB_FLAGS from the answer and additional records (a registration's
    #: additional record, a query response's answer), one per NB entry.
    names: tuple[NbName, ...]


@dataclass(frozen=True, slots=True)
class BrowserAnnouncement:
    """[MS-BRWS] §2.2.1 HostAnnouncement / §2.2.6 LocalMasterAnnouncement."""

    source_name: str | None  #: the datagram's SOURCE_NAME, rendered
    opcode: int
    server_name: str  #: ServerName without NUL padding
    os_version_major: int
    os_version_minor: int


def render_name(raw16: bytes) -> str:
    """``NAME<xx>`` from the 16 decoded bytes: padding spaces dropped, controls as '?'."""
    name = clean_text(raw16[:15].rstrip(b" \x00"), decoding=LATIN1)
    return f"{name}<{raw16[15]:02x}>"


def decode_first_level(encoded: bytes) -> bytes | None:
    """The 16 bytes of a first-level encoded name (RFC 1001 §14.1), None if not 'A'..'P'."""
    out = bytearray(16)
    for i in range(16):
        hi = encoded[2 * i] - 0x41
        lo = encoded[2 * i + 1] - 0x41
        if not (0 <= hi < 16 and 0 <= lo < 16):
            return None
        out[i] = (hi << 4) | lo
    return bytes(out)


def read_nb_name(buf: bytes, pos: int) -> tuple[str | ParseAnomaly, int]:
    """The rendered name at ``pos`` (scope dropped) and the offset after it."""
    hops = 0
    end = -1
    while pos < len(buf) and buf[pos] & 0xC0 == 0xC0:
        if pos + 1 >= len(buf) or hops >= MAX_POINTER_HOPS:
            return ParseAnomaly(ANOMALY_BAD_NAME, "a name pointer is cut or loops"), len(buf)
        if end < 0:
            end = pos + 2
        pos = ((buf[pos] & 0x3F) << 8) | buf[pos + 1]
        hops += 1
    if pos >= len(buf) or buf[pos] != ENCODED_NAME_LENGTH:
        return ParseAnomaly(ANOMALY_BAD_NAME, "the first label is not a 32-byte encoded name"), len(
            buf
        )
    if pos + 1 + ENCODED_NAME_LENGTH > len(buf):
        return ParseAnomaly(ANOMALY_MALFORMED, "a name runs past the end of the packet"), len(buf)
    raw = decode_first_level(buf[pos + 1 : pos + 1 + ENCODED_NAME_LENGTH])
    if raw is None:
        return ParseAnomaly(ANOMALY_BAD_NAME, "an encoded name has a byte outside 'A'..'P'"), len(
            buf
        )
    pos += 1 + ENCODED_NAME_LENGTH
    # Scope labels (RFC 1001 §14.1.1), skipped.
    while pos < len(buf) and buf[pos] != 0:
        if buf[pos] & 0xC0:
            if end < 0:
                end = pos + 2
            break
        pos += 1 + buf[pos]
    if pos >= len(buf):
        return ParseAnomaly(ANOMALY_MALFORMED, "a name runs past the end of the packet"), len(buf)
    return render_name(raw), (end if end >= 0 else pos + 1)


def parse_nbns(buf: bytes | memoryview) -> NbnsPacket | ParseAnomaly:
    """Decode one name service packet (see the module docstring). Never raises."""
    buf = bytes(buf)
    if len(buf) < HEADER_LENGTH:
        return ParseAnomaly(ANOMALY_MALFORMED, f"{len(buf)} bytes, shorter than the 12-byte header")
    trn_id, flags, qdcount, ancount, nscount, arcount = UNPACK_HEADER(buf)
    pos = HEADER_LENGTH
    question = None
    for i in range(qdcount):
        name, pos = read_nb_name(buf, pos)
        if isinstance(name, ParseAnomaly):
            return name
        if pos + 4 > len(buf):
            return ParseAnomaly(ANOMALY_MALFORMED, "a question runs past the end of the packet")
        pos += 4
        if i == 0:
            question = name
    names: list[NbName] = []
    for section, count in ((0, ancount), (1, nscount), (2, arcount)):
        for _ in range(count):
            rr_name, pos = read_nb_name(buf, pos)
            if isinstance(rr_name, ParseAnomaly):
                return rr_name
            if pos + 10 > len(buf):
                return ParseAnomaly(ANOMALY_MALFORMED, "a record header runs past the end")
            rr_type, _rr_class, _ttl, rdlength = UNPACK_RR_FIXED(buf, pos)
            pos += 10
            end = pos + rdlength
            if end > len(buf):
                return ParseAnomaly(ANOMALY_MALFORMED, "a record's RDATA runs past the end")
            if rr_type == RR_TYPE_NB and section != 1:
                for p in range(pos, end - 5, 6):
                    nb_flags, addr = UNPACK_NB_ENTRY(buf, p)
                    address = None if addr == b"\x00\x00\x00\x00" else ".".join(map(str, addr))
                    names.append(NbName(rr_name, bool(nb_flags & NB_FLAGS_G), address))
            pos = end
    return NbnsPacket(
        trn_id=trn_id,
        response=bool(flags & FLAG_R),
        opcode=(flags >> OPCODE_SHIFT) & 0xF,
        rcode=flags & RCODE_MASK,
        question=question,
        names=tuple(names),
    )


def handle_nbns(payload: bytes, ctx: DatagramContext) -> None:
    """Names a host registers or refreshes, and names a positive query response binds.

    A registration/refresh request is about its sender. A positive query response is about
    each NB_ADDRESS it gives (a WINS server answers for other hosts, so the responder's MAC is
    used only for its own address). Queries and releases say nothing about their sender.
    """
    pkt = parse_nbns(payload)
    if isinstance(pkt, ParseAnomaly):
        ctx.anomaly(pkt.name, pkt.detail)
        return
    if not pkt.response and pkt.opcode in CLAIM_OPCODES:
        for nb in pkt.names:
            kind = "netbios.group" if nb.group else "netbios.name"
            ctx.observe(ctx.src_ip, ctx.src_mac, kind, nb.name)
    elif pkt.response and pkt.opcode == OPCODE_QUERY and pkt.rcode == 0:
        for nb in pkt.names:
            if nb.address is None:
                continue
            kind = "netbios.group" if nb.group else "netbios.name"
            mac = ctx.src_mac if nb.address == ctx.src_ip else None
            ctx.observe(nb.address, mac, kind, nb.name)


def parse_browser_datagram(buf: bytes | memoryview) -> BrowserAnnouncement | ParseAnomaly | None:
    """A host or local master announcement from a datagram-service packet.

    None: a valid datagram that is not one (another mailslot, another browser opcode, a
    datagram error or query packet). Never raises.
    """
    buf = bytes(buf)
    if len(buf) < DATAGRAM_HEADER_LENGTH:
        return ParseAnomaly(
            ANOMALY_MALFORMED, f"{len(buf)} bytes, shorter than the datagram header"
        )
    if buf[0] not in DATAGRAM_TYPES:
        return None
    source, pos = read_nb_name(buf, DATAGRAM_HEADER_LENGTH)
    if isinstance(source, ParseAnomaly):
        return source
    destination, pos = read_nb_name(buf, pos)
    if isinstance(destination, ParseAnomaly):
        return destination
    smb = buf[pos:]
    if len(smb) < SMB_HEADER_LENGTH + 1 or smb[:4] != SMB_PROTOCOL:
        return ParseAnomaly(ANOMALY_MALFORMED, "the datagram's user data is not an SMB")
    if smb[4] != SMB_COM_TRANSACTION or smb[SMB_HEADER_LENGTH] != TRANSACTION_WORD_COUNT:
        return None
    words_end = SMB_HEADER_LENGTH + 1 + 2 * TRANSACTION_WORD_COUNT
    if len(smb) < words_end + 2 + len(MAILSLOT_BROWSE):
        return ParseAnomaly(ANOMALY_MALFORMED, "an SMB transaction is cut short")
    # Bytes: ByteCount(2), then the transaction name right after it (no Unicode: NetBIOS
    # datagrams carry OEM strings).
    if smb[words_end + 2 : words_end + 2 + len(MAILSLOT_BROWSE)] != MAILSLOT_BROWSE:
        return None
    data_count, data_offset = UNPACK_TRANS_DATA(smb, TRANS_DATA_COUNT_OFFSET)
    data = smb[data_offset : data_offset + data_count]
    if not data or data[0] not in ANNOUNCEMENT_OPCODES:
        return None
    if len(data) < ANNOUNCEMENT_LENGTH:
        return ParseAnomaly(ANOMALY_MALFORMED, f"a browser announcement of {len(data)} bytes")
    server = clean_text(data[6:22].split(b"\x00", 1)[0], decoding=LATIN1)
    return BrowserAnnouncement(
        source_name=source,
        opcode=data[0],
        server_name=server,
        os_version_major=data[22],
        os_version_minor=data[23],
    )


def handle_datagram(payload: bytes, ctx: DatagramContext) -> None:
    """A browser host/local master announcement: the server's name and OS version."""
    ann = parse_browser_datagram(payload)
    if ann is None:
        return
    if isinstance(ann, ParseAnomaly):
        ctx.anomaly(ann.name, ann.detail)
        return
    if ann.server_name:
        ctx.observe(
            ctx.src_ip, ctx.src_mac, "netbios.name", f"{ann.server_name}<{SERVER_SUFFIX:02x}>"
        )
    ctx.observe(
        ctx.src_ip,
        ctx.src_mac,
        "netbios.os_version",
        f"{ann.os_version_major}.{ann.os_version_minor}",
    )


NBNS_SPEC = DatagramSpec(
    name="nbns",
    description="NetBIOS Name Service (RFC 1002 §4.2): registered and resolved names",
    udp_ports=(137,),
    handler=handle_nbns,
    id_bytes=2,  # RFC 1002 §4.2.1.1 NAME_TRN_ID
)
NBDS_SPEC = DatagramSpec(
    name="nbds",
    description="NetBIOS Datagram Service (RFC 1002 §4.4): browser host announcements",
    udp_ports=(138,),
    handler=handle_datagram,
)
