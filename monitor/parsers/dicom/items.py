"""DICOM Upper Layer PDU contents: association, release and abort PDUs (PS3.8 §9.3.2-§9.3.8).

Each ``parse_*`` takes the PDU *body* (the bytes after the 6-byte header of
:mod:`monitor.parsers.dicom.pdu`) and an offset into it, and returns ``(unit | Anomaly,
next_offset)`` (STYLE S3.1). Lenient: a unit whose variable items are damaged is still
returned with what could be read, and the damage listed in its ``anomalies``.

A-ASSOCIATE-RQ / -AC body (PS3.8 Tables 9-11 and 9-17; offsets from the body, i.e. PDU
offset - 6)::

    offset  size  field
    0       2     Protocol-version (bit 0 set)
    2       2     reserved
    4       16    Called-AE-title  (RQ; AC: reserved, echoes it)
    20      16    Calling-AE-title (RQ; AC: reserved, echoes it)
    36      32    reserved
    68      ...   Variable items

Every variable item / sub-item starts ``type(1) reserved(1) length(2, BE)`` (PS3.8 §9.3.2.x):

    0x10 Application Context (§9.3.2.1): UID
    0x20 Presentation Context RQ (§9.3.2.2, Table 9-13): ID(1) res(1) res(1) res(1) sub-items
         0x30 Abstract Syntax (one), 0x40 Transfer Syntax (one or more)
    0x21 Presentation Context AC (§9.3.3.2, Table 9-18): ID(1) res(1) result/reason(1) res(1)
         then one 0x40 Transfer Syntax sub-item
    0x50 User Information (§9.3.2.3, PS3.7 Annex D.3.3) with sub-items:
         0x51 Maximum Length: uint32     0x52 Implementation Class UID
         0x53 Asynchronous Operations Window: invoked uint16, performed uint16
         0x54 SCP/SCU Role Selection: UID-length uint16, SOP class UID, SCU-role(1), SCP-role(1)
         0x55 Implementation Version Name    0x56/0x57 SOP Class (Common) Extended Negotiation
         0x58 User Identity RQ: type(1) positive-response-requested(1) primary-length uint16
              primary, secondary-length uint16, secondary. Only the *type* is read: the
              primary and secondary fields (user names, passcodes, tokens) are never decoded.
         0x59 User Identity AC: server-response-length uint16, server response (not read)

A-ASSOCIATE-RJ body (Table 9-21): reserved(1) Result(1) Source(1) Reason/Diag.(1).
A-RELEASE-RQ/RP body (Tables 9-24, 9-25): reserved(4).
A-ABORT body (Table 9-26): reserved(1) reserved(1) Source(1) Reason/Diag.(1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from monitor.parsers.dicom.pdu import Anomaly

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">L").unpack_from
ITEM_HEADER = struct.Struct(">BBH")
UNPACK_ITEM_HEADER = ITEM_HEADER.unpack_from

#: Bytes of the A-ASSOCIATE-RQ/AC body before the variable items.
ASSOCIATE_FIXED_LENGTH = 68

PDU_TRUNCATED = "dicom.pdu_truncated"
ITEM_TRUNCATED = "dicom.item_truncated"
ITEM_LENGTH_OVERRUN = "dicom.item_length_overrun"
ITEM_UNKNOWN_TYPE = "dicom.item_unknown_type"
AE_TITLE_CONTROL_CHARS = "dicom.ae_title_control_chars"


class ItemType:
    """PS3.8 §9.3 / PS3.7 Annex D.3.3 item types (standard spelling, STYLE S4)."""

    APPLICATION_CONTEXT: Final = 0x10
    PRESENTATION_CONTEXT_RQ: Final = 0x20
    PRESENTATION_CONTEXT_AC: Final = 0x21
    ABSTRACT_SYNTAX: Final = 0x30
    TRANSFER_SYNTAX: Final = 0x40
    USER_INFORMATION: Final = 0x50
    MAXIMUM_LENGTH: Final = 0x51
    IMPLEMENTATION_CLASS_UID: Final = 0x52
    ASYNCHRONOUS_OPERATIONS_WINDOW: Final = 0x53
    SCP_SCU_ROLE_SELECTION: Final = 0x54
    IMPLEMENTATION_VERSION_NAME: Final = 0x55
    SOP_CLASS_EXTENDED_NEGOTIATION: Final = 0x56
    SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: Final = 0x57
    USER_IDENTITY_RQ: Final = 0x58
    USER_IDENTITY_AC: Final = 0x59


#: PS3.8 Table 9-18: Presentation Context AC Result/Reason.
PRESENTATION_RESULTS: dict[int, str] = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}
#: PS3.7 Table D.3-14: User Identity Type.
USER_IDENTITY_TYPES: dict[int, str] = {
    1: "username",
    2: "username+passcode",
    3: "kerberos",
    4: "saml",
    5: "jwt",
}
#: PS3.8 Table 9-21: A-ASSOCIATE-RJ Result.
REJECT_RESULTS: dict[int, str] = {1: "rejected-permanent", 2: "rejected-transient"}
#: PS3.8 Table 9-21: A-ASSOCIATE-RJ Source.
REJECT_SOURCES: dict[int, str] = {
    1: "service-user",
    2: "service-provider-acse",
    3: "service-provider-presentation",
}
#: PS3.8 Table 9-21: A-ASSOCIATE-RJ Reason/Diag., per Source.
REJECT_REASONS: dict[int, dict[int, str]] = {
    1: {
        1: "no-reason-given",
        2: "application-context-name-not-supported",
        3: "calling-ae-title-not-recognized",
        7: "called-ae-title-not-recognized",
    },
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}
#: PS3.8 Table 9-26: A-ABORT Source.
ABORT_SOURCES: dict[int, str] = {
    0: "service-user",
    1: "reserved",
    2: "service-provider",
}
#: PS3.8 Table 9-26: A-ABORT Reason/Diag. (meaningful when Source = 2).
ABORT_REASONS: dict[int, str] = {
    0: "reason-not-specified",
    1: "unrecognized-pdu",
    2: "unexpected-pdu",
    3: "reserved",
    4: "unrecognized-pdu-parameter",
    5: "unexpected-pdu-parameter",
    6: "invalid-pdu-parameter-value",
}


def code_name(table: dict[int, str], code: int) -> str:
    """``table[code]``, or ``unknown-0x..`` (STYLE S4: unknown codes are named, not dropped)."""
    return table.get(code) or f"unknown-0x{code:02x}"


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """PS3.8 §9.3.2.2: a proposed presentation context."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """PS3.8 §9.3.3.2: the acceptor's answer for one presentation context."""

    context_id: int
    result: int
    transfer_syntax: str

    @property
    def result_name(self) -> str:
        return code_name(PRESENTATION_RESULTS, self.result)


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """PS3.7 Annex D.3.3.4: SCP/SCU Role Selection sub-item."""

    sop_class_uid: str
    scu_role: int
    scp_role: int


@dataclass(frozen=True, slots=True)
class UserInformation:
    """PS3.8 §9.3.2.3 / PS3.7 Annex D.3.3: the user information item (credentials excluded)."""

    max_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    async_ops: tuple[int, int] | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    #: 0x58 User Identity type code (1..5); the identity fields themselves are never read.
    user_identity_type: int | None = None
    #: 0x59 seen (the acceptor answered a user identity request).
    user_identity_response: bool = False

    @property
    def user_identity_name(self) -> str | None:
        t = self.user_identity_type
        return None if t is None else code_name(USER_IDENTITY_TYPES, t)


@dataclass(frozen=True, slots=True)
class AssociateRQ:
    """PS3.8 §9.3.2: A-ASSOCIATE-RQ PDU (also used for the AC, §9.3.3, see ``is_ac``)."""

    protocol_version: int
    called_ae: str
    calling_ae: str
    application_context: str | None
    presentation_contexts: tuple[PresentationContextRQ, ...]
    presentation_results: tuple[PresentationContextAC, ...]
    user_info: UserInformation
    anomalies: tuple[Anomaly, ...]
    is_ac: bool = False


#: PS3.8 §9.3.3: A-ASSOCIATE-AC PDU (same fields; contexts in ``presentation_results``).
AssociateAC = AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """PS3.8 §9.3.4: A-ASSOCIATE-RJ PDU."""

    result: int
    source: int
    reason: int

    @property
    def result_name(self) -> str:
        return code_name(REJECT_RESULTS, self.result)

    @property
    def reason_name(self) -> str:
        """``source: reason``, both named per Table 9-21."""
        source = code_name(REJECT_SOURCES, self.source)
        return f"{source}: {code_name(REJECT_REASONS.get(self.source, {}), self.reason)}"


@dataclass(frozen=True, slots=True)
class Abort:
    """PS3.8 §9.3.8: A-ABORT PDU."""

    source: int
    reason: int

    @property
    def source_name(self) -> str:
        return code_name(ABORT_SOURCES, self.source)

    @property
    def reason_name(self) -> str:
        """``source: reason``, named per Table 9-26 (the reason only means something when the
        source is the service provider; PS3.8 says it is 0 otherwise)."""
        return f"{self.source_name}: {code_name(ABORT_REASONS, self.reason)}"


def _uid(raw: bytes | memoryview) -> str:
    """A UID field: ASCII, padded with NUL (or, leniently, spaces)."""
    return bytes(raw).decode("latin-1").strip("\x00 ")


def _text(raw: bytes | memoryview) -> str:
    """An implementation version name or similar short text (trailing padding dropped)."""
    return bytes(raw).decode("latin-1").strip("\x00 ")


def parse_ae_title(raw: bytes | memoryview) -> tuple[str, bool]:
    """An AE title field (16 bytes, PS3.5 AE: leading/trailing spaces are not significant).

    Trailing NUL padding (a common deviation) is dropped. Other control characters are
    replaced with ``?``; the second value tells whether any were.
    """
    text = bytes(raw).decode("latin-1").rstrip("\x00").strip(" ")
    if any(c < " " or c == "\x7f" for c in text):
        return "".join("?" if (c < " " or c == "\x7f") else c for c in text), True
    return text, False


def _items(
    buf: bytes | memoryview, offset: int, end: int, anomalies: list[Anomaly], where: str
) -> list[tuple[int, int, int]]:
    """Split ``buf[offset:end]`` into ``(item type, value offset, value length)``.

    Stops (with an anomaly) at a truncated item header or an item that overruns ``end``.
    """
    out: list[tuple[int, int, int]] = []
    while offset < end:
        if end - offset < 4:
            anomalies.append(
                Anomaly(ITEM_TRUNCATED, offset, f"{where}: {end - offset} bytes of an item header")
            )
            break
        item_type, _res, length = UNPACK_ITEM_HEADER(buf, offset)
        if offset + 4 + length > end:
            detail = (
                f"{where}: item 0x{item_type:02x} length {length} overruns by "
                f"{offset + 4 + length - end} bytes"
            )
            anomalies.append(Anomaly(ITEM_LENGTH_OVERRUN, offset, detail))
            break
        out.append((item_type, offset + 4, length))
        offset += 4 + length
    return out


def _unknown(item_type: int, at: int, where: str, anomalies: list[Anomaly]) -> None:
    anomalies.append(
        Anomaly(ITEM_UNKNOWN_TYPE, at, f"{where}: unknown item type 0x{item_type:02x} skipped")
    )


def _parse_user_information(
    buf: bytes | memoryview, offset: int, end: int, anomalies: list[Anomaly]
) -> UserInformation:
    max_length = impl_uid = impl_version = None
    async_ops: tuple[int, int] | None = None
    roles: list[RoleSelection] = []
    identity: int | None = None
    identity_ac = False
    for item_type, at, length in _items(buf, offset, end, anomalies, "user information"):
        if item_type == ItemType.MAXIMUM_LENGTH:
            if length < 4:
                anomalies.append(Anomaly(ITEM_TRUNCATED, at, f"maximum length item of {length}"))
                continue
            max_length = _U32(buf, at)[0]
        elif item_type == ItemType.IMPLEMENTATION_CLASS_UID:
            impl_uid = _uid(buf[at : at + length])
        elif item_type == ItemType.IMPLEMENTATION_VERSION_NAME:
            impl_version = _text(buf[at : at + length])
        elif item_type == ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW:
            if length < 4:
                anomalies.append(Anomaly(ITEM_TRUNCATED, at, f"async ops item of {length}"))
                continue
            async_ops = (_U16(buf, at)[0], _U16(buf, at + 2)[0])
        elif item_type == ItemType.SCP_SCU_ROLE_SELECTION:
            uid_length = _U16(buf, at)[0] if length >= 2 else 0
            if length < 2 or uid_length + 4 > length:
                anomalies.append(
                    Anomaly(ITEM_TRUNCATED, at, f"role selection item of {length} bytes")
                )
                continue
            uid = _uid(buf[at + 2 : at + 2 + uid_length])
            roles.append(RoleSelection(uid, buf[at + 2 + uid_length], buf[at + 3 + uid_length]))
        elif item_type == ItemType.USER_IDENTITY_RQ:
            if length < 1:
                anomalies.append(Anomaly(ITEM_TRUNCATED, at, "empty user identity item"))
                continue
            identity = buf[at]  # the type only: never the primary or secondary field
        elif item_type == ItemType.USER_IDENTITY_AC:
            identity_ac = True  # the server response (a token or ticket) is not read
        elif item_type in (
            ItemType.SOP_CLASS_EXTENDED_NEGOTIATION,
            ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION,
        ):
            pass  # known, not recorded
        else:
            _unknown(item_type, at - 4, "user information", anomalies)
    return UserInformation(
        max_length=max_length,
        implementation_class_uid=impl_uid,
        implementation_version_name=impl_version,
        async_ops=async_ops,
        role_selections=tuple(roles),
        user_identity_type=identity,
        user_identity_response=identity_ac,
    )


def _parse_associate(
    buf: bytes | memoryview, offset: int, is_ac: bool
) -> tuple[AssociateRQ | Anomaly, int]:
    end = len(buf)
    name = "A-ASSOCIATE-AC" if is_ac else "A-ASSOCIATE-RQ"
    if end - offset < ASSOCIATE_FIXED_LENGTH:
        detail = f"{name} body of {end - offset} bytes, fewer than {ASSOCIATE_FIXED_LENGTH}"
        return Anomaly(PDU_TRUNCATED, offset, detail), end
    anomalies: list[Anomaly] = []
    version = _U16(buf, offset)[0]
    called, bad_called = parse_ae_title(buf[offset + 4 : offset + 20])
    calling, bad_calling = parse_ae_title(buf[offset + 20 : offset + 36])
    if bad_called or bad_calling:
        which = " and ".join(
            n for n, bad in (("called", bad_called), ("calling", bad_calling)) if bad
        )
        anomalies.append(Anomaly(AE_TITLE_CONTROL_CHARS, offset + 4, f"{name}: {which} AE title"))
    app_context: str | None = None
    rq_contexts: list[PresentationContextRQ] = []
    ac_contexts: list[PresentationContextAC] = []
    user_info = UserInformation()
    for item_type, at, length in _items(buf, offset + ASSOCIATE_FIXED_LENGTH, end, anomalies, name):
        if item_type == ItemType.APPLICATION_CONTEXT:
            app_context = _uid(buf[at : at + length])
        elif item_type == ItemType.PRESENTATION_CONTEXT_RQ and not is_ac:
            if length < 4:
                anomalies.append(Anomaly(ITEM_TRUNCATED, at, f"presentation context of {length}"))
                continue
            abstract = ""
            transfers: list[str] = []
            for sub, sat, slen in _items(buf, at + 4, at + length, anomalies, "context"):
                if sub == ItemType.ABSTRACT_SYNTAX:
                    abstract = _uid(buf[sat : sat + slen])
                elif sub == ItemType.TRANSFER_SYNTAX:
                    transfers.append(_uid(buf[sat : sat + slen]))
                else:
                    _unknown(sub, sat - 4, "presentation context RQ", anomalies)
            rq_contexts.append(PresentationContextRQ(buf[at], abstract, tuple(transfers)))
        elif item_type == ItemType.PRESENTATION_CONTEXT_AC and is_ac:
            if length < 4:
                anomalies.append(Anomaly(ITEM_TRUNCATED, at, f"presentation context of {length}"))
                continue
            transfer = ""
            for sub, sat, slen in _items(buf, at + 4, at + length, anomalies, "context"):
                if sub == ItemType.TRANSFER_SYNTAX:
                    transfer = _uid(buf[sat : sat + slen])
                else:
                    _unknown(sub, sat - 4, "presentation context AC", anomalies)
            ac_contexts.append(PresentationContextAC(buf[at], buf[at + 2], transfer))
        elif item_type == ItemType.USER_INFORMATION:
            user_info = _parse_user_information(buf, at, at + length, anomalies)
        else:
            _unknown(item_type, at - 4, name, anomalies)
    unit = AssociateRQ(
        protocol_version=version,
        called_ae=called,
        calling_ae=calling,
        application_context=app_context,
        presentation_contexts=tuple(rq_contexts),
        presentation_results=tuple(ac_contexts),
        user_info=user_info,
        anomalies=tuple(anomalies),
        is_ac=is_ac,
    )
    return unit, end


def parse_associate_rq(
    buf: bytes | memoryview, offset: int = 0
) -> tuple[AssociateRQ | Anomaly, int]:
    """PS3.8 §9.3.2: an A-ASSOCIATE-RQ body (after the PDU header) at ``offset``."""
    return _parse_associate(buf, offset, False)


def parse_associate_ac(
    buf: bytes | memoryview, offset: int = 0
) -> tuple[AssociateRQ | Anomaly, int]:
    """PS3.8 §9.3.3: an A-ASSOCIATE-AC body (after the PDU header) at ``offset``."""
    return _parse_associate(buf, offset, True)


def parse_associate_rj(
    buf: bytes | memoryview, offset: int = 0
) -> tuple[AssociateRJ | Anomaly, int]:
    """PS3.8 §9.3.4: an A-ASSOCIATE-RJ body: reserved, Result, Source, Reason/Diag."""
    if len(buf) - offset < 4:
        detail = f"A-ASSOCIATE-RJ body of {len(buf) - offset} bytes, fewer than 4"
        return Anomaly(PDU_TRUNCATED, offset, detail), len(buf)
    return AssociateRJ(buf[offset + 1], buf[offset + 2], buf[offset + 3]), offset + 4


def parse_abort(buf: bytes | memoryview, offset: int = 0) -> tuple[Abort | Anomaly, int]:
    """PS3.8 §9.3.8: an A-ABORT body: reserved, reserved, Source, Reason/Diag."""
    if len(buf) - offset < 4:
        detail = f"A-ABORT body of {len(buf) - offset} bytes, fewer than 4"
        return Anomaly(PDU_TRUNCATED, offset, detail), len(buf)
    return Abort(buf[offset + 2], buf[offset + 3]), offset + 4
