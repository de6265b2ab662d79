"""Device attributes from DICOM data sets, read incrementally as PDV fragments stream by.

This is medmon's PHI boundary for DICOM (STYLE S3.5): a data set (a C-STORE instance, a C-FIND
identifier, ...) is walked element by element, and only the whitelisted *device* elements of
the top level are ever copied or decoded. Every other element -- patient (0010,xxxx), visit
(0038,xxxx), procedure (0040,xxxx), study and series attributes, sequences and pixel data -- is
skipped by its length without being buffered. The walk stops for good at the first top-level
element of a group above 0018 (e.g. (0020,000D), or Pixel Data (7FE0,0010)), so a 500 MB data
set costs O(1) memory and the rest of its fragments are discarded unread.

Element encodings (PS3.5 §7.1; offsets from the element start)::

    Implicit VR Little Endian (PS3.5 §7.1.3, transfer syntax 1.2.840.10008.1.2):
        0 group uint16   2 element uint16   4 length uint32   8 value
    Explicit VR, VR with a 2-byte length (PS3.5 §7.1.2, Table 7.1-2), LE or BE:
        0 group   2 element   4 VR (2 ASCII chars)   6 length uint16   8 value
    Explicit VR, VR OB OD OF OL OV OW SQ SV UC UN UR UT UV (Table 7.1-1):
        0 group   2 element   4 VR   6 reserved(2)   8 length uint32   12 value
    Item / delimiters (PS3.5 §7.5), always: 0 (FFFE,E000|E00D|E0DD)   4 length uint32   8

Length 0xFFFFFFFF is undefined (PS3.5 §7.5): the content (a sequence's items, an item's
elements) ends with a delimitation item; an explicit-VR UN element of undefined length holds
Implicit VR Little Endian content (PS3.5 §6.2.2 Note 2). Deflated Explicit VR Little Endian
(1.2.840.10008.1.2.1.99, PS3.5 §A.5) is raw-inflated incrementally, in bounded steps.

Elements read (all at the top level of the data set):

    (0008,0005) Specific Character Set   only to decode the others (it names a character set)
    (0008,0060) Modality                 (0008,0070) Manufacturer
    (0008,0080) Institution Name         (0008,1010) Station Name
    (0008,1040) Institutional Department Name    (0008,1090) Manufacturer's Model Name
    (0018,1000) Device Serial Number     (0018,1020) Software Versions (every value)
"""

from __future__ import annotations

import struct
import zlib

from monitor.parsers.dicom.pdu import Anomaly

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

_LE = struct.Struct("<HHL")
_BE = struct.Struct(">HHL")
_LE16 = struct.Struct("<H").unpack_from
_BE16 = struct.Struct(">H").unpack_from
_LE32 = struct.Struct("<L").unpack_from
_BE32 = struct.Struct(">L").unpack_from

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
#: The walk stops at the first top-level element of a group above this one.
LAST_GROUP = 0x0018

#: PS3.5 Table 6.2-1 value representations.
VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)
#: PS3.5 Table 7.1-1: VRs with a reserved field and a 4-byte length.
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())

SPECIFIC_CHARACTER_SET = 0x00080005
#: Whitelisted device elements -> DicomDevice field.
DEVICE_TAGS: dict[int, str] = {
    0x00080060: "modality",
    0x00080070: "manufacturer",
    0x00080080: "institution_name",
    0x00081010: "station_name",
    0x00081040: "institutional_department_name",
    0x00081090: "model",
    0x00181000: "device_serial_number",
    0x00181020: "software_versions",
}
_READ_TAGS = frozenset((SPECIFIC_CHARACTER_SET, *DEVICE_TAGS))
#: These elements are LO/SH/CS (64 characters at most); longer values are not device names.
MAX_VALUE_LENGTH = 1024
#: Nesting of undefined-length sequences and items followed before giving up.
MAX_DEPTH = 32
#: Inflated bytes produced per step: bounds memory whatever the compression ratio.
INFLATE_STEP = 1 << 16

#: PS3.3 C.12.1.1.2 Defined Terms for Specific Character Set -> Python codec (first value).
CHARSETS: dict[str, str] = {
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
    "ISO_IR 13": "shift_jis",
    "ISO_IR 166": "tis_620",
    "ISO_IR 192": "utf_8",
    "GB18030": "gb18030",
    "GBK": "gbk",
    "ISO 2022 IR 6": "ascii",
    "ISO 2022 IR 100": "latin_1",
    "ISO 2022 IR 192": "utf_8",
}

DATASET_INVALID = "dicom.dataset_invalid"
DEFLATE_ERROR = "dicom.deflate_error"
DEVICE_VALUE_TOO_LONG = "dicom.device_value_too_long"


class DeviceReader:
    """Walks one data set's bytes, fed in arbitrary chunks, keeping only device elements.

    ``transfer_syntax`` is the accepted transfer syntax of the PDV's presentation context; None
    when unknown (the association's AC was not seen): the first element header then tells
    explicit from implicit VR (little endian assumed). ``finished`` turns True at the first
    top-level element past group 0018, or when the walk is lost; later bytes are ignored.
    Memory is bounded: a 12-byte header buffer, the whitelisted values (<= 1 KiB each) and,
    for deflated data sets, one zlib window plus one inflate step.
    """

    __slots__ = (
        "_big",
        "_explicit",
        "_hdr",
        "_inflate",
        "_need_hdr",
        "_skip",
        "_stack",
        "_value",
        "_value_need",
        "_value_tag",
        "anomalies",
        "finished",
        "offset",
        "raw",
        "transfer_syntax",
    )

    def __init__(self, transfer_syntax: str | None) -> None:
        self.transfer_syntax = transfer_syntax
        self._explicit: bool | None = None
        self._big = False
        self._inflate: zlib._Decompress | None = None
        if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
            self._explicit = False
        elif transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
            self._explicit = True
            self._big = True
        elif transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            self._explicit = True
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        elif transfer_syntax is not None:
            self._explicit = True  # every other transfer syntax: Explicit VR Little Endian
        self._hdr = bytearray()
        self._need_hdr = 8
        self._skip = 0
        self._value_tag = 0
        self._value_need = 0
        self._value = bytearray()
        #: Encodings of the undefined-length contexts entered: (explicit, big endian).
        self._stack: list[tuple[bool, bool]] = []
        #: Raw values of the elements read, by tag.
        self.raw: dict[int, bytes] = {}
        self.anomalies: list[Anomaly] = []
        self.finished = False
        #: Bytes of the (inflated) data set walked.
        self.offset = 0

    # -- input -------------------------------------------------------------------------------

    def feed(self, chunk: bytes | memoryview) -> None:
        """Walk the next bytes of the data set (as sent: deflated if the syntax says so)."""
        if self.finished or not len(chunk):
            return
        inflate = self._inflate
        if inflate is None:
            self._walk(memoryview(chunk))
            return
        try:
            out = inflate.decompress(chunk, INFLATE_STEP)
            while True:
                if out:
                    self._walk(memoryview(out))
                if self.finished or not inflate.unconsumed_tail:
                    break
                out = inflate.decompress(inflate.unconsumed_tail, INFLATE_STEP)
        except zlib.error as exc:
            self._lost(DEFLATE_ERROR, f"raw inflate failed: {exc}")

    def _lost(self, name: str, detail: str) -> None:
        self.anomalies.append(Anomaly(name, self.offset, detail))
        self.finished = True
        self._inflate = None
        self._value = bytearray()

    def _walk(self, view: memoryview) -> None:
        pos = 0
        end = len(view)
        hdr = self._hdr
        while pos < end and not self.finished:
            if self._skip:
                n = min(self._skip, end - pos)
                pos += n
                self._skip -= n
                continue
            if self._value_need:
                n = min(self._value_need, end - pos)
                self._value += view[pos : pos + n]
                pos += n
                self._value_need -= n
                if not self._value_need:
                    self.raw[self._value_tag] = bytes(self._value)
                    self._value = bytearray()
                continue
            n = min(self._need_hdr - len(hdr), end - pos)
            hdr += view[pos : pos + n]
            pos += n
            if len(hdr) == self._need_hdr:
                self._header(pos)
        self.offset += pos

    def _header(self, pos: int) -> None:
        """A complete element header is in ``_hdr`` (8 bytes, or 12 for a long explicit VR)."""
        hdr = self._hdr
        stack = self._stack
        if self._explicit is None:
            self._explicit = bytes(hdr[4:6]) in VRS
        explicit, big = stack[-1] if stack else (self._explicit, self._big)
        group, element, length = (_BE if big else _LE).unpack_from(hdr)
        tag = group << 16 | element
        at = self.offset + pos - len(hdr)
        if group == 0xFFFE:
            hdr.clear()
            self._need_hdr = 8
            if tag == ITEM:
                if length == UNDEFINED_LENGTH:
                    self._push(explicit, big, at)
                else:
                    self._skip = length
            elif tag == ITEM_DELIMITATION or tag == SEQUENCE_DELIMITATION:
                if stack:
                    stack.pop()
            else:
                self._lost(DATASET_INVALID, f"unknown item tag ({group:04X},{element:04X})")
            return
        if not stack and group > LAST_GROUP:
            self.finished = True  # everything after this is study, series, image or pixels
            hdr.clear()
            return
        vr = b""
        if explicit:
            vr = bytes(hdr[4:6])
            if vr not in VRS:
                self._lost(DATASET_INVALID, f"element ({group:04X},{element:04X}): VR {vr!r}")
                return
            if vr in LONG_VRS:
                if len(hdr) < 12:
                    self._need_hdr = 12
                    return
                length = (_BE32 if big else _LE32)(hdr, 8)[0]
            else:
                length = (_BE16 if big else _LE16)(hdr, 6)[0]
        hdr.clear()
        self._need_hdr = 8
        if length == UNDEFINED_LENGTH:
            # A sequence (or UN, or encapsulated pixel data) of undefined length: its items
            # follow; UN content is Implicit VR Little Endian (PS3.5 §6.2.2).
            if vr == b"UN":
                self._push(False, False, at)
            else:
                self._push(explicit, big, at)
            return
        if not stack and tag in _READ_TAGS:
            if length > MAX_VALUE_LENGTH:
                detail = f"({group:04X},{element:04X}) of {length} bytes skipped unread"
                self.anomalies.append(Anomaly(DEVICE_VALUE_TOO_LONG, at, detail))
                self._skip = length
                return
            self._value_tag = tag
            self._value_need = length
            if not length:
                self.raw[tag] = b""
            return
        self._skip = length

    def _push(self, explicit: bool, big: bool, at: int) -> None:
        if len(self._stack) >= MAX_DEPTH:
            self._lost(DATASET_INVALID, f"sequences nested deeper than {MAX_DEPTH} at {at}")
            return
        self._stack.append((explicit, big))

    # -- output ------------------------------------------------------------------------------

    def device(self) -> dict[str, str | list[str]]:
        """The device attributes read so far: DicomDevice field -> value (only those present
        and non-empty; ``software_versions`` as a list of every value)."""
        codec = "latin_1"
        charset = self.raw.get(SPECIFIC_CHARACTER_SET)
        if charset:
            first = charset.decode("ascii", "replace").split("\\")[0].strip("\x00 ")
            codec = CHARSETS.get(first, "latin_1")
        out: dict[str, str | list[str]] = {}
        for tag, name in DEVICE_TAGS.items():
            raw = self.raw.get(tag)
            if raw is None:
                continue
            text = raw.decode(codec, "replace")
            if name == "software_versions":
                versions = [v.strip("\x00 ") for v in text.split("\\")]
                versions = [v for v in versions if v]
                if versions:
                    out[name] = versions
            else:
                value = text.strip("\x00 ")
                if value:
                    out[name] = value
        return out
