"""Content probes that name a flow's application, shared by the parsers' specs.

Each probe is a pure function ``probe_<app>(first: bytes, from_client: bool) -> bool`` over the
first payload bytes of one direction (at most ``StreamManager(probe_bytes=...)`` of them, from
the first segment that carried payload). Probes never raise and return False when the bytes are
too short to decide. The specs that use them are in the parsers' own modules.

Probe layouts (offsets from the start of the direction's first payload)::

    DICOM  PS3.8 §9.3.2 A-ASSOCIATE-RQ PDU (client):
             0 PDU-type 0x01   1 reserved 0x00   2 PDU-length uint32 BE (>= 68)
             6 protocol-version 0x0001 (bit 0)   8 reserved(2)   10 called AE(16)
             26 calling AE(16)   42 reserved(32)   74 variable items
           PS3.8 §9.3.3 A-ASSOCIATE-AC (server) has the same fixed layout with PDU-type 0x02;
           it is accepted from the server so that an association whose RQ was lost is found.
    HL7    HL7 Transport Specification: MLLP, release 2: <SB=0x0b> message <EB=0x1c><CR=0x0d>;
           an HL7 v2 message starts with the MSH segment: 0x0b 'M' 'S' 'H'. Without MLLP framing
           (raw HL7 over TCP) the stream starts 'MSH' + field separator, normally '|'.
    TLS    RFC 8446 §5.1 TLSPlaintext: 0 ContentType (22 handshake)  1 legacy_record_version
           0x03 0x00..0x04  3 length uint16 (1..2^14, 2^14+2048 tolerated as RFC 5246 §6.2.3)
           5 HandshakeType (1 client_hello, 2 server_hello), checked when present.
    SSH    RFC 4253 §4.2 protocol version exchange: 'SSH-protoversion-softwareversion ...'
           from either side (the server MAY send other lines first; those flows are missed).
    HTTP   RFC 9112 §3 request-line: method SP request-target SP HTTP-version (client);
           RFC 9112 §4 status-line: 'HTTP/1.' DIGIT SP status-code ... (server).
"""

from __future__ import annotations

import struct

_U32 = struct.Struct("!I").unpack_from
_U16 = struct.Struct("!H").unpack_from

# PS3.8 §9.3.1 PDU types (standard spelling, STYLE S4).
PDU_TYPE_A_ASSOCIATE_RQ = 0x01
PDU_TYPE_A_ASSOCIATE_AC = 0x02
#: Fixed part of an A-ASSOCIATE-RQ/AC after the PDU-length field (PS3.8 Table 9-11): version(2)
#: reserved(2) called AE(16) calling AE(16) reserved(32).
ASSOCIATE_FIXED_LENGTH = 68
#: Upper bound of a plausible A-ASSOCIATE-RQ/AC PDU-length. Real ones are a few hundred bytes to
#: a few tens of KiB (128 presentation contexts with several transfer syntaxes each); the bound
#: only rejects absurd lengths.
MAX_ASSOCIATE_LENGTH = 1 << 20
PROTOCOL_VERSION = 0x0001

# MLLP framing (HL7 Transport Specification: MLLP, release 2), python-hl7 spelling.
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"

# RFC 8446 §5.1 / §4.
CONTENT_TYPE_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
#: Largest TLS record length a peer may send (RFC 5246 §6.2.3 TLSCiphertext; 2^14 for
#: TLSPlaintext per RFC 8446 §5.1).
MAX_TLS_RECORD_LENGTH = (1 << 14) + 2048

SSH_BANNER_PREFIX = b"SSH-"

#: Request methods of the IANA HTTP Method Registry (RFC 9110 §16.1): RFC 9110 §9, PATCH
#: (RFC 5789), WebDAV (RFC 4918, 3253, 3648, 3744, 5323, 5842, 4791, 4437) and HTTP/2's
#: connection preface ``PRI`` (RFC 9113 §3.4). A closed list: an open token grammar would also
#: match SMTP, FTP and POP commands. Methods of 16 or more characters (BASELINE-CONTROL,
#: UPDATEREDIRECTREF) do not fit the default 16 probe bytes with their space and are left out.
HTTP_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
     b"PRI", b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
     b"SEARCH", b"REPORT", b"ACL", b"BIND", b"UNBIND", b"REBIND", b"LINK", b"UNLINK",
     b"CHECKIN", b"CHECKOUT", b"UNCHECKOUT", b"VERSION-CONTROL", b"MERGE", b"LABEL", b"UPDATE",
     b"MKACTIVITY", b"MKWORKSPACE", b"MKCALENDAR", b"MKREDIRECTREF", b"ORDERPATCH")
)  # fmt: skip
_LONGEST_METHOD = max(len(m) for m in HTTP_METHODS)
HTTP_VERSION_PREFIX = b"HTTP/1."


def probe_dicom(first: bytes, from_client: bool) -> bool:
    """An A-ASSOCIATE-RQ PDU header from the client, or an A-ASSOCIATE-AC from the server.

    Needs the 6-byte PDU header (a requestor may write the header in a segment of its own);
    the protocol version at offset 6 is checked when the segment carries it. The reserved byte
    at offset 1 must be 0x00: PS3.8 tells a receiver not to test reserved fields, but a probe
    that claims flows on any port needs the extra certainty.
    """
    if len(first) < 6 or first[1] != 0:
        return False
    if first[0] != (PDU_TYPE_A_ASSOCIATE_RQ if from_client else PDU_TYPE_A_ASSOCIATE_AC):
        return False
    length = _U32(first, 2)[0]
    if length < ASSOCIATE_FIXED_LENGTH or length > MAX_ASSOCIATE_LENGTH:
        return False
    # PS3.8 §9.3.2: bit 0 of the protocol version is set; other bits are reserved.
    return len(first) < 8 or _U16(first, 6)[0] & PROTOCOL_VERSION == PROTOCOL_VERSION


def probe_hl7(first: bytes, from_client: bool) -> bool:
    """An MLLP block starting with an MSH segment, or a raw ``MSH|`` message, from either side."""
    return first.startswith(b"\x0bMSH") or first.startswith(b"MSH|")


def probe_tls(first: bytes, from_client: bool) -> bool:
    """A TLS handshake record header (RFC 8446 §5.1) from either side."""
    if len(first) < 5 or first[0] != CONTENT_TYPE_HANDSHAKE or first[1] != 3 or first[2] > 4:
        return False
    length = _U16(first, 3)[0]
    if length == 0 or length > MAX_TLS_RECORD_LENGTH:
        return False
    if len(first) < 6:
        return True
    return first[5] == HANDSHAKE_CLIENT_HELLO or first[5] == HANDSHAKE_SERVER_HELLO


def probe_ssh(first: bytes, from_client: bool) -> bool:
    """An SSH protocol version exchange line (RFC 4253 §4.2) from either side."""
    return first.startswith(SSH_BANNER_PREFIX)


def probe_http(first: bytes, from_client: bool) -> bool:
    """A request-line (client) or a status-line (server) of HTTP/1.x (RFC 9112 §3, §4)."""
    if not from_client:
        return first.startswith(HTTP_VERSION_PREFIX)
    space = first.find(b" ", 0, _LONGEST_METHOD + 1)
    return space > 0 and first[:space] in HTTP_METHODS
