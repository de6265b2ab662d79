"""DIMSE command sets (PS3.7 §6.3, §9.3, §10.3, Annex E) carried in command PDVs (PS3.8 Annex E).

A DIMSE message is a command set, optionally followed by a data set; each is sent as PDV
fragments on one presentation context, the last fragment flagged in the Message Control Header
(see :mod:`monitor.parsers.dicom.pdu`). The command set is always encoded in Implicit VR Little
Endian (PS3.7 §6.3.1) and holds group 0000 elements only. Each element (PS3.5 §7.1.3)::

    offset  size  field
    0       2     group number   uint16 LE (0x0000)
    2       2     element number uint16 LE
    4       4     value length   uint32 LE (even; never undefined in a command set)
    8       n     value

Elements read (PS3.7 Table E.1-1): CommandField (0000,0100) US, Status (0000,0900) US,
AffectedSOPClassUID (0000,0002) UI, RequestedSOPClassUID (0000,0003) UI, MoveDestination
(0000,0600) AE, CommandDataSetType (0000,0800) US (0x0101: no data set follows). Nothing else
is decoded (the SOP instance UIDs and the identifiers of C-FIND/C-MOVE travel in data sets,
which :mod:`monitor.parsers.dicom.dataset` reads only for device attributes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from monitor.parsers.dicom.pdu import Anomaly

ELEMENT_HEADER = struct.Struct("<HHL")
UNPACK_ELEMENT_HEADER = ELEMENT_HEADER.unpack_from
_U16LE = struct.Struct("<H").unpack_from

#: A command set is a few hundred bytes; more than this is not a command set.
MAX_COMMAND_LENGTH = 1 << 16

COMMAND_INVALID = "dicom.command_invalid"
COMMAND_TOO_LONG = "dicom.command_too_long"

# PS3.7 Table E.1-1 tags, as (group << 16 | element).
AFFECTED_SOP_CLASS_UID = 0x00000002
REQUESTED_SOP_CLASS_UID = 0x00000003
COMMAND_FIELD = 0x00000100
MOVE_DESTINATION = 0x00000600
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
#: CommandDataSetType value meaning "no data set" (PS3.7 Table E.1-1).
NO_DATA_SET = 0x0101

#: PS3.7 §9.3 and §10.3: Command Field values.
COMMAND_NAMES: dict[int, str] = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0100: "N-EVENT-REPORT-RQ",
    0x8100: "N-EVENT-REPORT-RSP",
    0x0110: "N-GET-RQ",
    0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ",
    0x8120: "N-SET-RSP",
    0x0130: "N-ACTION-RQ",
    0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ",
    0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ",
    0x8150: "N-DELETE-RSP",
    0x0FFF: "C-CANCEL-RQ",
}


def command_name(field: int) -> str:
    """The PS3.7 name of a Command Field, ``unknown-0x....`` for others (STYLE S4)."""
    return COMMAND_NAMES.get(field) or f"unknown-0x{field:04x}"


@dataclass(frozen=True, slots=True)
class CommandSet:
    """PS3.7 §6.3: the few command elements medmon reads."""

    command_field: int | None
    status: int | None
    affected_sop_class_uid: str | None
    requested_sop_class_uid: str | None
    move_destination: str | None
    data_set_type: int | None

    @property
    def name(self) -> str:
        f = self.command_field
        return "unknown" if f is None else command_name(f)

    @property
    def has_data_set(self) -> bool:
        """Whether a data set follows (CommandDataSetType other than 0x0101; absent: no)."""
        return self.data_set_type is not None and self.data_set_type != NO_DATA_SET

    @property
    def sop_class_uid(self) -> str | None:
        return self.affected_sop_class_uid or self.requested_sop_class_uid


def _text(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("latin-1").strip("\x00 ")


def parse_command_set(buf: bytes | memoryview, offset: int = 0) -> tuple[CommandSet | Anomaly, int]:
    """Parse a whole command set (Implicit VR LE, group 0000) from ``offset`` to the end.

    An element that overruns the buffer, or one outside group 0000, ends the walk with an
    anomaly when nothing was read, otherwise the elements read so far are returned.
    """
    end = len(buf)
    values: dict[int, int | str] = {}
    pos = offset
    problem: str | None = None
    while pos < end:
        if end - pos < 8:
            problem = f"{end - pos} bytes of an element header at the end"
            break
        group, element, length = UNPACK_ELEMENT_HEADER(buf, pos)
        if group != 0 or pos + 8 + length > end:
            problem = (
                f"element ({group:04X},{element:04X}) outside group 0000"
                if group != 0
                else f"element (0000,{element:04X}) length {length} overruns the command set"
            )
            break
        value = pos + 8
        if element in (0x0100, 0x0800, 0x0900):
            if length >= 2:
                values[element] = _U16LE(buf, value)[0]
        elif element in (0x0002, 0x0003, 0x0600):
            values[element] = _text(buf[value : value + length])
        pos = value + length
    if problem is not None and not values:
        return Anomaly(COMMAND_INVALID, pos, problem), pos

    def num(key: int) -> int | None:
        v = values.get(key)
        return v if isinstance(v, int) else None

    def txt(key: int) -> str | None:
        v = values.get(key)
        return v if isinstance(v, str) else None

    unit = CommandSet(
        command_field=num(0x0100),
        status=num(0x0900),
        affected_sop_class_uid=txt(0x0002),
        requested_sop_class_uid=txt(0x0003),
        move_destination=txt(0x0600),
        data_set_type=num(0x0800),
    )
    if problem is not None:
        return unit, pos  # partial: the caller may report COMMAND_INVALID with ``problem``
    return unit, end


class CommandAssembler:
    """Reassembles command-set PDV fragments per presentation context (bounded)."""

    __slots__ = ("_parts", "_too_long")

    def __init__(self) -> None:
        self._parts: dict[int, bytearray] = {}
        self._too_long: set[int] = set()

    def add(self, context_id: int, chunk: bytes | memoryview) -> Anomaly | None:
        """Append a fragment's bytes; an anomaly (once) when the command set grows too long."""
        if context_id in self._too_long:
            return None
        buf = self._parts.setdefault(context_id, bytearray())
        if len(buf) + len(chunk) > MAX_COMMAND_LENGTH:
            self._too_long.add(context_id)
            del self._parts[context_id]
            detail = f"command set on context {context_id} longer than {MAX_COMMAND_LENGTH} bytes"
            return Anomaly(COMMAND_TOO_LONG, 0, detail)
        buf += chunk
        return None

    def finish(self, context_id: int) -> tuple[CommandSet | Anomaly | None, bool]:
        """The last fragment arrived: the parsed command set (None if it was dropped as too
        long) and whether it was damaged (an element overran or left group 0000)."""
        if context_id in self._too_long:
            self._too_long.discard(context_id)
            return None, False
        buf = self._parts.pop(context_id, bytearray())
        unit, end = parse_command_set(bytes(buf))
        return unit, isinstance(unit, CommandSet) and end != len(buf)

    def clear(self) -> None:
        self._parts.clear()
        self._too_long.clear()
