"""SMB analyzer: dialects, SMB1 use, SMB1 NativeOS/NativeLanMan and NTLMSSP versions and host name.

Only the start of a connection is read: NEGOTIATE and SESSION_SETUP of SMB1 and SMB2/3. The
analyzer is ``done`` after the first SESSION_SETUP response, after 16 SMB messages, or when the
framing is lost; file data is never reassembled. User names, domains of users, passwords,
hashes and challenge responses are never read.

Framing (one direction), RFC 1002 §4.3.1 NetBIOS session service (TCP 139) and [MS-SMB2] §2.1
direct TCP (445); both are read as one 4-byte header::

    0 type uint8 (0x00 SESSION MESSAGE; 0x81 request, 0x82 positive response, 0x83 negative,
      0x84 retarget, 0x85 keep-alive: skipped)   1 length uint24 BE (RFC 1002: flags(1) with
      the length extension bit + length uint16)   4 message

SMB1 header, [MS-CIFS] §2.2.3.1 (little endian)::

    0 Protocol 0xff 'SMB'   4 Command uint8   5 Status uint32   9 Flags uint8 (0x80 REPLY)
    10 Flags2 uint16 (0x8000 UNICODE, 0x0800 EXTENDED_SECURITY)   12 PIDHigh   14
    SecurityFeatures(8)   22 Reserved   24 TID   26 PIDLow   28 UID   30 MID   32 WordCount uint8
    33 Words (2 x WordCount)   .. ByteCount uint16   .. Bytes

- NEGOTIATE (0x72) request, [MS-CIFS] §2.2.4.52.1: Bytes = { 0x02 dialect string NUL }*.
  Response §2.2.4.52.2: Words[0] DialectIndex (0xffff: none).
- SESSION_SETUP_ANDX (0x73) request, [MS-CIFS] §2.2.4.53.1 (WordCount 13; 10 for LAN Manager)
  and [MS-SMB] §2.2.4.6.1 (WordCount 12, extended security)::

      Words: 0 AndX(4)  4 MaxBufferSize  6 MaxMpxCount  8 VcNumber  10 SessionKey(4)
             14 SecurityBlobLength (12) | OEMPasswordLen (13) | PasswordLen (10)
             16 UnicodePasswordLen (13)
      Bytes: 12: SecurityBlob, NativeOS, NativeLanMan
             13: OEMPassword, UnicodePassword, AccountName, PrimaryDomain, NativeOS, NativeLanMan
             10: Password, AccountName, PrimaryDomain, NativeOS, NativeLanMan

  Response [MS-CIFS] §2.2.4.53.2 (WordCount 3) / [MS-SMB] §2.2.4.6.2 (WordCount 4)::

      Words: 0 AndX(4)  4 Action  6 SecurityBlobLength (4 only)
      Bytes: [SecurityBlob], NativeOS, NativeLanMan, PrimaryDomain

  Strings are NUL-terminated, UTF-16LE aligned to 2 bytes from the SMB header when Flags2 has
  UNICODE, else OEM. Account names and domains are stepped over, never kept.

SMB2 header, [MS-SMB2] §2.2.1 (64 bytes, little endian)::

    0 ProtocolId 0xfe 'SMB'   4 StructureSize (64)   6 CreditCharge   8 Status   12 Command
    14 CreditRequest   16 Flags (0x1 SERVER_TO_REDIR)   20 NextCommand   24 MessageId(8)
    32 Reserved/AsyncId   40 SessionId(8)   48 Signature(16)

- NEGOTIATE request §2.2.3: 64 StructureSize (36)  66 DialectCount  ...  100 Dialects (uint16).
  Response §2.2.4: 64 StructureSize (65)  66 SecurityMode  68 DialectRevision (0x02ff: SMB2
  wildcard answer to an SMB1 multi-protocol NEGOTIATE; the SMB2 NEGOTIATE that follows decides).
- SESSION_SETUP request §2.2.5: 76 SecurityBufferOffset  78 SecurityBufferLength (from the
  header); response §2.2.6: 68 SecurityBufferOffset  70 SecurityBufferLength.
- 0xfd 'SMB' (transform, encrypted) and 0xfc 'SMB' (compressed) messages are counted, not read.

NTLMSSP, [MS-NLMP] §2.2.1, found by its signature in a security blob (no SPNEGO parse)::

    0 Signature "NTLMSSP\\0"   8 MessageType uint32 (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE)
    NEGOTIATE     12 NegotiateFlags   32 Version(8)
    CHALLENGE     20 NegotiateFlags   40 TargetInfoFields (Len uint16, MaxLen, Offset uint32)
                  48 Version(8)
    AUTHENTICATE  60 NegotiateFlags   64 Version(8)

Version ([MS-NLMP] §2.2.2.10) is read when NegotiateFlags has NTLMSSP_NEGOTIATE_VERSION:
``0 ProductMajorVersion uint8  1 ProductMinorVersion uint8  2 ProductBuild uint16  4 Reserved(3)
7 NTLMRevisionCurrent``. Target info is a list of AV_PAIR ([MS-NLMP] §2.2.2.1): ``0 AvId uint16
2 AvLen uint16 4 Value``; MsvAvNbComputerName (1) is the server's NetBIOS name (UTF-16LE).

Observations: ``smb.dialects_offered`` (client), ``smb.dialect`` and ``smb.version1`` (both
ends), ``smb.native_os`` and ``smb.native_lanman`` (the sender), ``ntlm.os_version`` (the
sender), ``ntlm.hostname`` (server).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from monitor.parsers.base import FlowContext, ParserSpec, side, skip_pending
from monitor.parsers.text import clean_value

UNPACK_U16 = struct.Struct("<H").unpack_from
UNPACK_U32 = struct.Struct("<I").unpack_from
#: [MS-CIFS] §2.2.3.1: Protocol Command Status Flags Flags2 PIDHigh SecurityFeatures Reserved
#: TID PIDLow UID MID
UNPACK_SMB1_HEADER = struct.Struct("<4sBIBHH8sHHHHH").unpack_from
SMB1_HEADER_LENGTH = 32
#: [MS-SMB2] §2.2.1: ProtocolId StructureSize CreditCharge Status Command CreditRequest Flags
#: NextCommand MessageId Reserved TreeId SessionId Signature
UNPACK_SMB2_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s").unpack_from
SMB2_HEADER_LENGTH = 64
#: [MS-NLMP] §2.2.2.10 VERSION: major, minor, build (the reserved bytes and revision follow)
UNPACK_NTLM_VERSION = struct.Struct("<BBH").unpack_from
#: [MS-NLMP] §2.2.1.2 TargetInfoFields: Len, MaxLen, BufferOffset
UNPACK_NTLM_FIELDS = struct.Struct("<HHI").unpack_from

FRAME_HEADER_LENGTH = 4
SESSION_MESSAGE = 0x00
#: RFC 1002 §4.3.1 session packet types other than SESSION MESSAGE (skipped).
NBSS_CONTROL_TYPES = frozenset((0x81, 0x82, 0x83, 0x84, 0x85))

SMB1_PROTOCOL = b"\xffSMB"
SMB2_PROTOCOL = b"\xfeSMB"
SMB2_TRANSFORM_PROTOCOL = b"\xfdSMB"
SMB2_COMPRESSION_PROTOCOL = b"\xfcSMB"

# [MS-CIFS] §2.2.2.1 SMB_COM codes, §2.2.3.1 flags.
SMB_COM_NEGOTIATE = 0x72
SMB_COM_SESSION_SETUP_ANDX = 0x73
SMB_FLAGS_REPLY = 0x80
SMB_FLAGS2_UNICODE = 0x8000
DIALECT_BUFFER_FORMAT = 0x02
NO_DIALECT = 0xFFFF

# [MS-SMB2] §2.2.1.2 commands and flags.
SMB2_NEGOTIATE = 0x0000
SMB2_SESSION_SETUP = 0x0001
SMB2_FLAGS_SERVER_TO_REDIR = 0x00000001
SMB2_DIALECT_WILDCARD = 0x02FF
#: [MS-SMB2] §2.2.3 dialect revisions, named as in docs/observations.md.
SMB2_DIALECTS = {
    0x0202: "2.0.2",
    0x0210: "2.1",
    0x0222: "2.2.2",
    0x0224: "2.2.4",
    0x02FF: "2.???",
    0x0300: "3.0",
    0x0302: "3.0.2",
    0x0310: "3.1",
    0x0311: "3.1.1",
}

NTLMSSP_SIGNATURE = b"NTLMSSP\x00"
NTLMSSP_NEGOTIATE = 1
NTLMSSP_CHALLENGE = 2
NTLMSSP_AUTHENTICATE = 3
NTLMSSP_NEGOTIATE_VERSION = 0x02000000
#: Offsets of (NegotiateFlags, Version) per message type ([MS-NLMP] §2.2.1.1-§2.2.1.3).
NTLMSSP_LAYOUT = {
    NTLMSSP_NEGOTIATE: (12, 32),
    NTLMSSP_CHALLENGE: (20, 48),
    NTLMSSP_AUTHENTICATE: (60, 64),
}
NTLMSSP_TARGET_INFO_FIELDS = 40
MSV_AV_EOL = 0
MSV_AV_NB_COMPUTER_NAME = 1

#: SMB messages read per connection before giving up.
MAX_MESSAGES = 16
#: Largest message kept to be read; larger ones (file data) are counted and skipped.
MAX_MESSAGE_LENGTH = 64 << 10

ANOMALY_MALFORMED = "smb.malformed"


@dataclass(frozen=True, slots=True)
class NtlmMessage:
    """The parts of an NTLMSSP message that are recorded (never names of users or domains)."""

    message_type: int
    #: ``major.minor.build`` of the VERSION field, when present and not all zero
    os_version: str | None
    #: CHALLENGE target info MsvAvNbComputerName
    nb_computer_name: str | None


def dialect_name(revision: int) -> str:
    """``3.1.1`` for 0x0311; unknown revisions as ``0xXXXX``."""
    return SMB2_DIALECTS.get(revision) or f"0x{revision:04x}"


def parse_ntlmssp(blob: bytes) -> NtlmMessage | str | None:
    """The NTLMSSP message in a security blob: None without one, a detail string when it is
    truncated. Pure, never raises."""
    start = blob.find(NTLMSSP_SIGNATURE)
    if start < 0:
        return None
    msg = blob[start:]
    if len(msg) < 12:
        return "NTLMSSP message shorter than its signature and type"
    (message_type,) = UNPACK_U32(msg, 8)
    layout = NTLMSSP_LAYOUT.get(message_type)
    if layout is None:
        return f"NTLMSSP message type {message_type}"
    flags_at, version_at = layout
    if len(msg) < flags_at + 4:
        return f"NTLMSSP type {message_type} shorter than its NegotiateFlags"
    (flags,) = UNPACK_U32(msg, flags_at)
    os_version = None
    if flags & NTLMSSP_NEGOTIATE_VERSION and len(msg) >= version_at + 8:
        major, minor, build = UNPACK_NTLM_VERSION(msg, version_at)
        if major or minor or build:
            os_version = f"{major}.{minor}.{build}"
    name = None
    if message_type == NTLMSSP_CHALLENGE:
        if len(msg) < NTLMSSP_TARGET_INFO_FIELDS + 8:
            return "NTLMSSP CHALLENGE shorter than its TargetInfoFields"
        length, _, offset = UNPACK_NTLM_FIELDS(msg, NTLMSSP_TARGET_INFO_FIELDS)
        if offset + length > len(msg):
            return "NTLMSSP CHALLENGE target info runs past the message"
        info = msg[offset : offset + length]
        off = 0
        while off + 4 <= len(info):
            av_id, av_len = struct.unpack_from("<HH", info, off)
            if av_id == MSV_AV_EOL:
                break
            if av_id == MSV_AV_NB_COMPUTER_NAME:
                name = clean_value(info[off + 4 : off + 4 + av_len].decode("utf-16-le", "replace"))
            off += 4 + av_len
    return NtlmMessage(message_type, os_version, name or None)


def _smb1_string(msg: bytes, off: int, end: int, unicode: bool) -> tuple[str, int]:
    """A NUL-terminated SMB1 string at ``off`` (``msg`` starts at the SMB header): ``(text,
    offset after it)``. UTF-16LE strings are aligned to 2 bytes; a missing NUL ends at ``end``."""
    if unicode:
        off += off & 1
        i = off
        while i + 1 < end and (msg[i] or msg[i + 1]):
            i += 2
        return msg[off:i].decode("utf-16-le", "replace"), i + 2
    i = msg.find(b"\x00", off, end)
    if i < 0:
        i = end
    return msg[off:i].decode("latin-1"), i + 1


def probe_smb(first: bytes, from_client: bool) -> bool:
    """An SMB1 or SMB2 message behind a 4-byte session header, from either side."""
    return (
        len(first) >= 8
        and first[0] == SESSION_MESSAGE
        and (first[4:8] == SMB1_PROTOCOL or first[4:8] == SMB2_PROTOCOL)
    )


class SmbAnalyzer:
    """SMB session start analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = (
        "_buf",
        "_ctx",
        "_done",
        "_messages",
        "_offered",
        "_skip",
        "_smb1_dialects",
        "_version1",
    )

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._done = False
        self._buf = {True: bytearray(), False: bytearray()}
        #: bytes of an over-long message still to skip, per direction
        self._skip = {True: 0, False: 0}
        self._messages = 0
        #: whether the first NEGOTIATE was seen (its dialects are the ones recorded)
        self._offered = False
        #: dialect strings of the client's SMB1 NEGOTIATE (a response names one by index)
        self._smb1_dialects: list[str] = []
        self._version1 = False

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if self._skip[from_client]:
            data = skip_pending(self._skip, from_client, data)
            if not data:
                return
        buf = self._buf[from_client]
        buf += data
        off = 0
        while not self._done and len(buf) - off >= FRAME_HEADER_LENGTH:
            (word,) = struct.unpack_from(">I", buf, off)
            ftype, length = word >> 24, word & 0xFFFFFF
            end = off + FRAME_HEADER_LENGTH + length
            if ftype != SESSION_MESSAGE:
                if ftype not in NBSS_CONTROL_TYPES:
                    self._malformed(from_client, f"session packet type 0x{ftype:02x}")
                    break
            elif length > MAX_MESSAGE_LENGTH:
                self._messages += 1
                if len(buf) - off >= FRAME_HEADER_LENGTH + 5:
                    self._message(from_client, bytes(buf[off + 4 : off + 9]), ts_ns, True)
            else:
                if end > len(buf):
                    break
                self._messages += 1
                self._message(from_client, bytes(buf[off + 4 : end]), ts_ns, False)
            if self._messages >= MAX_MESSAGES:
                self._done = True
            if end > len(buf):
                self._skip[from_client] = end - len(buf)
                off = len(buf)
                break
            off = end
        if self._done:
            buf.clear()
        else:
            del buf[:off]

    def gap(self, from_client: bool, size: int) -> None:
        self._done = True  # message framing is lost (the stream layer reported the gap)

    def close(self) -> None:
        self._done = True
        self._buf[True].clear()
        self._buf[False].clear()

    def _malformed(self, from_client: bool, detail: str) -> None:
        self._ctx.anomaly(ANOMALY_MALFORMED, f"{side(from_client)}: {detail}")
        self._done = True

    def _both(self, kind: str, value: str, ts_ns: int) -> None:
        observe = self._ctx.observe
        observe(True, kind, value, ts_ns)
        observe(False, kind, value, ts_ns)

    def _smb1_used(self, ts_ns: int) -> None:
        if not self._version1:
            self._version1 = True
            self._both("smb.version1", "true", ts_ns)

    def _message(self, from_client: bool, msg: bytes, ts_ns: int, header_only: bool) -> None:
        protocol = msg[:4]
        if protocol == SMB1_PROTOCOL:
            if len(msg) > 4 and msg[4] != SMB_COM_NEGOTIATE:
                self._smb1_used(ts_ns)
            if not header_only:
                self._smb1(from_client, msg, ts_ns)
        elif protocol == SMB2_PROTOCOL:
            if not header_only:
                self._smb2(from_client, msg, ts_ns)
        elif protocol != SMB2_TRANSFORM_PROTOCOL and protocol != SMB2_COMPRESSION_PROTOCOL:
            self._malformed(from_client, f"message starts {msg[:4].hex()}, not an SMB protocol id")

    # -- SMB1 -----------------------------------------------------------------------------------

    def _smb1(self, from_client: bool, msg: bytes, ts_ns: int) -> None:
        if len(msg) < SMB1_HEADER_LENGTH + 3:
            self._malformed(from_client, f"SMB1 message of {len(msg)} bytes")
            return
        _, command, _, flags, flags2, *_ = UNPACK_SMB1_HEADER(msg, 0)
        reply = bool(flags & SMB_FLAGS_REPLY)
        words_off = SMB1_HEADER_LENGTH + 1
        wc = msg[SMB1_HEADER_LENGTH]
        bytes_off = words_off + 2 * wc + 2
        if bytes_off > len(msg):
            self._malformed(from_client, f"SMB1 command 0x{command:02x}: WordCount {wc} overruns")
            return
        (bc,) = UNPACK_U16(msg, bytes_off - 2)
        end = min(bytes_off + bc, len(msg))
        if command == SMB_COM_NEGOTIATE:
            if not reply:
                self._smb1_negotiate_request(msg, bytes_off, end, ts_ns)
            elif wc >= 1 and self._smb1_dialects:
                (index,) = UNPACK_U16(msg, words_off)
                if index < len(self._smb1_dialects):
                    self._both("smb.dialect", clean_value(self._smb1_dialects[index]), ts_ns)
                    self._smb1_used(ts_ns)
        elif command == SMB_COM_SESSION_SETUP_ANDX:
            unicode = bool(flags2 & SMB_FLAGS2_UNICODE)
            self._smb1_session_setup(from_client, msg, reply, wc, bytes_off, end, unicode, ts_ns)

    def _smb1_negotiate_request(self, msg: bytes, off: int, end: int, ts_ns: int) -> None:
        dialects = []
        while off < end and msg[off] == DIALECT_BUFFER_FORMAT:
            name, off = _smb1_string(msg, off + 1, end, False)
            dialects.append(name)
        if not self._smb1_dialects:
            self._smb1_dialects = dialects
        if not self._offered and dialects:
            self._offered = True
            offered = ",".join(dialects)
            self._ctx.observe(True, "smb.dialects_offered", clean_value(offered), ts_ns)

    def _smb1_session_setup(
        self,
        from_client: bool,
        msg: bytes,
        reply: bool,
        wc: int,
        off: int,
        end: int,
        unicode: bool,
        ts_ns: int,
    ) -> None:
        words = SMB1_HEADER_LENGTH + 1
        blob = b""
        skip_strings = 0
        if reply:
            self._done = True  # the first SESSION_SETUP response: all that is read
            if wc == 4:
                (blob_len,) = UNPACK_U16(msg, words + 6)
                blob = msg[off : off + blob_len]
                off += blob_len
            elif wc != 3:
                return  # an error response (WordCount 0) carries no strings
        elif wc == 12:
            (blob_len,) = UNPACK_U16(msg, words + 14)
            blob = msg[off : off + blob_len]
            off += blob_len
        elif wc == 13:
            oem_len, unicode_len = struct.unpack_from("<HH", msg, words + 14)
            off += oem_len + unicode_len
            skip_strings = 2  # AccountName, PrimaryDomain: never read
        elif wc == 10:
            (password_len,) = UNPACK_U16(msg, words + 14)
            off += password_len
            skip_strings = 2
        else:
            self._malformed(from_client, f"SMB1 SESSION_SETUP_ANDX with WordCount {wc}")
            return
        if blob:
            self._ntlmssp(from_client, blob, ts_ns)
        if off > end:
            self._malformed(from_client, "SMB1 SESSION_SETUP_ANDX blob or passwords overrun")
            return
        for _ in range(skip_strings):
            _, off = _smb1_string(msg, off, end, unicode)
        observe = self._ctx.observe
        for kind in ("smb.native_os", "smb.native_lanman"):
            if off >= end:
                break
            text, off = _smb1_string(msg, off, end, unicode)
            if value := clean_value(text):
                observe(from_client, kind, value, ts_ns)

    # -- SMB2 -----------------------------------------------------------------------------------

    def _smb2(self, from_client: bool, msg: bytes, ts_ns: int) -> None:
        if len(msg) < SMB2_HEADER_LENGTH + 8:
            self._malformed(from_client, f"SMB2 message of {len(msg)} bytes")
            return
        header = UNPACK_SMB2_HEADER(msg, 0)
        command, flags = header[4], header[6]
        reply = bool(flags & SMB2_FLAGS_SERVER_TO_REDIR)
        body = SMB2_HEADER_LENGTH
        if command == SMB2_NEGOTIATE:
            if not reply:
                (count,) = UNPACK_U16(msg, body + 2)
                start = body + 36
                if start + 2 * count > len(msg):
                    self._malformed(from_client, f"SMB2 NEGOTIATE: {count} dialects overrun")
                    return
                dialects = struct.unpack_from(f"<{count}H", msg, start)
                if not self._offered:
                    self._offered = True
                    offered = ",".join(dialect_name(d) for d in dialects)
                    self._ctx.observe(True, "smb.dialects_offered", offered, ts_ns)
            else:
                (revision,) = UNPACK_U16(msg, body + 4)
                if revision != SMB2_DIALECT_WILDCARD:
                    self._both("smb.dialect", dialect_name(revision), ts_ns)
        elif command == SMB2_SESSION_SETUP:
            at = body + (4 if reply else 12)
            if reply:
                self._done = True  # the first SESSION_SETUP response: all that is read
            if len(msg) < at + 4:
                self._malformed(from_client, "SMB2 SESSION_SETUP shorter than its buffer fields")
                return
            offset, length = struct.unpack_from("<HH", msg, at)
            if length:
                if offset + length > len(msg):
                    self._malformed(from_client, "SMB2 SESSION_SETUP security buffer overruns")
                    return
                self._ntlmssp(from_client, msg[offset : offset + length], ts_ns)

    # -- NTLMSSP --------------------------------------------------------------------------------

    def _ntlmssp(self, from_client: bool, blob: bytes, ts_ns: int) -> None:
        ntlm = parse_ntlmssp(blob)
        if ntlm is None:
            return
        if isinstance(ntlm, str):
            self._ctx.anomaly(ANOMALY_MALFORMED, f"{side(from_client)}: {ntlm}")
            return
        observe = self._ctx.observe
        if ntlm.os_version:
            observe(from_client, "ntlm.os_version", ntlm.os_version, ts_ns)
        if ntlm.nb_computer_name and not from_client:
            observe(False, "ntlm.hostname", ntlm.nb_computer_name, ts_ns)


SPEC = ParserSpec(
    name="smb",
    description="SMB1/SMB2/3 ([MS-CIFS], [MS-SMB2], [MS-NLMP]): dialects, NativeOS, NTLM version",
    tcp_ports=(445, 139),
    probe=probe_smb,
    analyzer=SmbAnalyzer,
)
