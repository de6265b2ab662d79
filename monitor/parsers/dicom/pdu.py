"""DICOM Upper Layer framing: PDU headers and P-DATA-TF PDV items (PS3.8 §9.3).

Every PDU starts with the same 6-byte header (PS3.8 §9.3.1, Tables 9-11 ff.)::

    offset  size  field
    0       1     PDU-type      0x01 A-ASSOCIATE-RQ  0x02 A-ASSOCIATE-AC  0x03 A-ASSOCIATE-RJ
                                0x04 P-DATA-TF       0x05 A-RELEASE-RQ    0x06 A-RELEASE-RP
                                0x07 A-ABORT
    1       1     reserved
    2       4     PDU-length    uint32 big endian: bytes that follow the header

A P-DATA-TF PDU (PS3.8 §9.3.5, Table 9-22) carries one or more PDV items (§9.3.5.1,
Table 9-23)::

    offset  size  field
    0       4     Item-length   uint32 big endian: bytes that follow (>= 2)
    4       1     Presentation-context-ID (odd, 1..255)
    5       1     Message Control Header (PS3.8 Annex E.2): bit 0 1=command 0=data set,
                  bit 1 1=last fragment; the other bits are 0
    6       n-2   Presentation data value fragment

:class:`Framer` is the incremental framing of one direction: fed arbitrary chunks (a PDU split
over segments, several PDUs in one), it returns whole non-P-DATA PDUs (bounded by
``MAX_PDU_LENGTH``) and *streams* PDV fragments as slices of the chunks it was given, so a
P-DATA-TF PDU of any size is never buffered. An unknown PDU type or an absurd length stops the
direction with an anomaly (no resync guessing); a PDV whose length overruns its PDU is reported
and the rest of that PDU skipped (the PDU length is trusted: a clear resync point).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from monitor.parsers.base import Value

# PS3.8 §9.3.1: the PDU header.
PDU_HEADER = struct.Struct(">BBL")
UNPACK_PDU_HEADER = PDU_HEADER.unpack_from
PDU_HEADER_LENGTH = PDU_HEADER.size  # 6
# PS3.8 Table 9-23: PDV item header (item length, presentation context ID, control header).
PDV_HEADER = struct.Struct(">LBB")
UNPACK_PDV_HEADER = PDV_HEADER.unpack_from
PDV_HEADER_LENGTH = PDV_HEADER.size  # 6

#: Largest non-P-DATA PDU buffered whole. A-ASSOCIATE-RQ/AC are a few hundred bytes to a few
#: tens of KiB (128 presentation contexts with many transfer syntaxes); 16 MiB only rejects
#: absurd lengths.
MAX_PDU_LENGTH = 16 << 20
#: Largest P-DATA-TF PDU-length taken as plausible. PS3.8 allows a maximum PDU length up to
#: 2^32-1 (0 = unlimited) but implementations use 16 KiB .. a few MiB; a P-DATA is never
#: buffered, so the bound only rejects lengths that mean the stream is not DICOM (any more).
MAX_PDATA_LENGTH = 256 << 20

#: Message Control Header bits (PS3.8 Annex E.2).
MCH_COMMAND = 0x01
MCH_LAST = 0x02


class PduType:
    """PS3.8 §9.3.1 PDU types (standard spelling, STYLE S4)."""

    A_ASSOCIATE_RQ: Final = 0x01
    A_ASSOCIATE_AC: Final = 0x02
    A_ASSOCIATE_RJ: Final = 0x03
    P_DATA_TF: Final = 0x04
    A_RELEASE_RQ: Final = 0x05
    A_RELEASE_RP: Final = 0x06
    A_ABORT: Final = 0x07


PDU_NAMES: dict[int, str] = {
    PduType.A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    PduType.A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    PduType.A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    PduType.P_DATA_TF: "P-DATA-TF",
    PduType.A_RELEASE_RQ: "A-RELEASE-RQ",
    PduType.A_RELEASE_RP: "A-RELEASE-RP",
    PduType.A_ABORT: "A-ABORT",
}

# Anomaly names (catalogued in monitor.anomalies).
PDU_UNKNOWN_TYPE = "dicom.pdu_unknown_type"
PDU_LENGTH_ABSURD = "dicom.pdu_length_absurd"
PDV_LENGTH_INVALID = "dicom.pdv_length_invalid"
PDV_LENGTH_OVERRUN = "dicom.pdv_length_overrun"


def pdu_name(pdu_type: int) -> str:
    """The PS3.8 name of a PDU type, ``unknown-0x..`` for others (STYLE S4)."""
    return PDU_NAMES.get(pdu_type) or f"unknown-0x{pdu_type:02x}"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A named parse anomaly (a name from :mod:`monitor.anomalies`) at a unit offset."""

    name: str
    offset: int
    detail: str


class PduHeader(Value):
    """PS3.8 §9.3.1: the 6-byte header every PDU starts with."""

    FIELDS = ("pdu_type", "length")

    def __init__(self, pdu_type: int, length: int) -> None:
        self.pdu_type = pdu_type
        self.length = length

    @property
    def name(self) -> str:
        return pdu_name(self.pdu_type)


class PdvHeader(Value):
    """PS3.8 Table 9-23: the header of one PDV item (``length`` counts context ID + MCH)."""

    FIELDS = ("length", "context_id", "control")

    def __init__(self, length: int, context_id: int, control: int) -> None:
        self.length = length
        self.context_id = context_id
        self.control = control

    @property
    def is_command(self) -> bool:
        return bool(self.control & MCH_COMMAND)

    @property
    def is_last(self) -> bool:
        return bool(self.control & MCH_LAST)


def parse_pdu_header(buf: bytes | memoryview, offset: int = 0) -> tuple[PduHeader | Anomaly, int]:
    """Parse and bound-check a PDU header at ``offset`` (needs 6 bytes there).

    Returns the header and the offset of its body, or an anomaly (unknown type, absurd length,
    too few bytes) and ``offset``.
    """
    if len(buf) - offset < PDU_HEADER_LENGTH:
        return Anomaly("dicom.pdu_truncated", offset, "fewer than 6 bytes of PDU header"), offset
    pdu_type, _reserved, length = UNPACK_PDU_HEADER(buf, offset)
    if pdu_type not in PDU_NAMES:
        return (
            Anomaly(PDU_UNKNOWN_TYPE, offset, f"PDU type 0x{pdu_type:02x}, length {length}"),
            offset,
        )
    limit = MAX_PDATA_LENGTH if pdu_type == PduType.P_DATA_TF else MAX_PDU_LENGTH
    if length > limit:
        return (
            Anomaly(PDU_LENGTH_ABSURD, offset, f"{pdu_name(pdu_type)} PDU-length {length}"),
            offset,
        )
    return PduHeader(pdu_type, length), offset + PDU_HEADER_LENGTH


def parse_pdv_header(buf: bytes | memoryview, offset: int = 0) -> tuple[PdvHeader | Anomaly, int]:
    """Parse a PDV item header at ``offset`` (needs 6 bytes there); item length >= 2."""
    if len(buf) - offset < PDV_HEADER_LENGTH:
        return Anomaly(PDV_LENGTH_INVALID, offset, "fewer than 6 bytes of PDV header"), offset
    length, context_id, control = UNPACK_PDV_HEADER(buf, offset)
    if length < 2:
        return Anomaly(PDV_LENGTH_INVALID, offset, f"PDV item length {length} < 2"), offset
    return PdvHeader(length, context_id, control), offset + PDV_HEADER_LENGTH


# Framer events: (kind, ...) tuples in stream order.
#: ``(EV_PDU, PduHeader, body bytes)``: a whole non-P-DATA PDU.
EV_PDU = 1
#: ``(EV_PDATA, PduHeader)``: a P-DATA-TF header; its PDVs follow as EV_PDV_* events.
EV_PDATA = 2
#: ``(EV_PDV_START, PdvHeader)``: a PDV item begins.
EV_PDV_START = 3
#: ``(EV_PDV_DATA, memoryview)``: the next bytes of the current PDV's value (a view of the
#: chunk passed to :meth:`Framer.feed`; valid until the next feed).
EV_PDV_DATA = 4
#: ``(EV_PDV_END, PdvHeader)``: the current PDV item is complete.
EV_PDV_END = 5
#: ``(EV_ANOMALY, Anomaly)``.
EV_ANOMALY = 6

# Framer states.
_HEAD = 0  # collecting a 6-byte PDU header
_BODY = 1  # collecting a non-P-DATA PDU body
_PDV_HEAD = 2  # inside a P-DATA-TF: collecting a 6-byte PDV header
_PDV_VALUE = 3  # inside a P-DATA-TF: streaming a PDV value
_SKIP = 4  # skipping the rest of a P-DATA-TF after a bad PDV
_DEAD = 5  # framing lost: everything is ignored

Event = tuple[Any, ...]


class Framer:
    """Incremental PDU framing of one direction of a DICOM stream (see the module docstring).

    ``offset`` counts the stream bytes consumed, so anomalies say where they happened.
    Memory: one header buffer, plus the body of the current non-P-DATA PDU (<= MAX_PDU_LENGTH).
    """

    __slots__ = ("_body", "_hdr", "_need", "_pdata_left", "_pdu", "_pdv", "offset", "state")

    def __init__(self) -> None:
        self.state = _HEAD
        self.offset = 0
        self._hdr = bytearray()
        self._body = bytearray()
        self._need = 0  # bytes still wanted by _BODY, _PDV_VALUE or _SKIP
        self._pdata_left = 0  # bytes of the current P-DATA-TF after what is consumed
        self._pdu: PduHeader | None = None
        self._pdv: PdvHeader | None = None

    @property
    def dead(self) -> bool:
        return self.state == _DEAD

    @property
    def at_boundary(self) -> bool:
        """True between PDUs (nothing of a PDU pending)."""
        return self.state == _HEAD and not self._hdr

    def skip_value(self, keep: int = 1) -> int:
        """Inside a PDV value: account for all of it but its last ``keep`` bytes as consumed
        and return how many that is (0 elsewhere). The caller drops that many bytes of the
        stream unseen; the value's last bytes are still fed, so the PDV ends as usual."""
        if self.state != _PDV_VALUE or self._need <= keep:
            return 0
        n = self._need - keep
        self._need = keep
        self._pdata_left -= n
        self.offset += n
        return n

    def kill(self) -> None:
        """Stop framing (an absurd header, or a gap: the position in the PDU stream is lost)."""
        self.state = _DEAD
        self._hdr.clear()
        self._body = bytearray()

    def feed(self, data: bytes | memoryview) -> list[Event]:
        """Consume ``data``; return the events it completes, in stream order."""
        events: list[Event] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        base = self.offset
        while pos < end:
            state = self.state
            if state == _PDV_VALUE:
                n = min(self._need, end - pos)
                events.append((EV_PDV_DATA, view[pos : pos + n]))
                pos += n
                self._need -= n
                self._pdata_left -= n
                if not self._need:
                    events.append((EV_PDV_END, self._pdv))
                    self._pdv = None
                    self._next_pdv(base + pos, events)
            elif state == _HEAD or state == _PDV_HEAD:
                hdr = self._hdr
                n = min(6 - len(hdr), end - pos)
                hdr += view[pos : pos + n]
                pos += n
                if len(hdr) == 6:
                    raw = bytes(hdr)
                    hdr.clear()
                    if state == _HEAD:
                        self._on_pdu_header(raw, base + pos - 6, events)
                    else:
                        self._on_pdv_header(raw, base + pos - 6, events)
            elif state == _BODY:
                n = min(self._need, end - pos)
                self._body += view[pos : pos + n]
                pos += n
                self._need -= n
                if not self._need:
                    body = bytes(self._body)
                    self._body = bytearray()
                    events.append((EV_PDU, self._pdu, body))
                    self.state = _HEAD
            elif state == _SKIP:
                n = min(self._need, end - pos)
                pos += n
                self._need -= n
                if not self._need:
                    self.state = _HEAD
            else:  # _DEAD
                pos = end
        self.offset = base + end
        return events

    def _on_pdu_header(self, raw: bytes, at: int, events: list[Event]) -> None:
        unit, _ = parse_pdu_header(raw)
        if isinstance(unit, Anomaly):
            events.append((EV_ANOMALY, Anomaly(unit.name, at, unit.detail)))
            self.kill()
            return
        if unit.pdu_type == PduType.P_DATA_TF:
            events.append((EV_PDATA, unit))
            self._pdata_left = unit.length
            self._next_pdv(at + PDU_HEADER_LENGTH, events)
            return
        if unit.length == 0:
            events.append((EV_PDU, unit, b""))
            return
        self._pdu = unit
        self._need = unit.length
        self.state = _BODY

    def _next_pdv(self, at: int, events: list[Event]) -> None:
        """After a P-DATA-TF header or a PDV: the next PDV header, or the next PDU."""
        left = self._pdata_left
        if not left:
            self.state = _HEAD
        elif left < PDV_HEADER_LENGTH:
            detail = f"{left} bytes left in the P-DATA-TF, too few for a PDV item"
            events.append((EV_ANOMALY, Anomaly(PDV_LENGTH_INVALID, at, detail)))
            self._skip_rest()
        else:
            self.state = _PDV_HEAD

    def _on_pdv_header(self, raw: bytes, at: int, events: list[Event]) -> None:
        unit, _ = parse_pdv_header(raw)
        self._pdata_left -= PDV_HEADER_LENGTH
        if isinstance(unit, Anomaly):
            events.append((EV_ANOMALY, Anomaly(unit.name, at, unit.detail)))
            self._skip_rest()
            return
        value = unit.length - 2
        if value > self._pdata_left:
            detail = (
                f"PDV item length {unit.length} overruns its P-DATA-TF by "
                f"{value - self._pdata_left} bytes"
            )
            events.append((EV_ANOMALY, Anomaly(PDV_LENGTH_OVERRUN, at, detail)))
            self._skip_rest()
            return
        events.append((EV_PDV_START, unit))
        if value == 0:
            events.append((EV_PDV_END, unit))
            self._next_pdv(at + PDV_HEADER_LENGTH, events)
            return
        self._pdv = unit
        self._need = value
        self.state = _PDV_VALUE

    def _skip_rest(self) -> None:
        self._need = self._pdata_left
        self._pdata_left = 0
        self.state = _SKIP if self._need else _HEAD
