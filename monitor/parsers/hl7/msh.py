"""HL7 v2 message header (MSH) and the few device fields of an HL7 v2 message; nothing else.

HL7 v2.5 Chapter 2 (Control), §2.5 message construction rules and §2.14.9 MSH segment, which
versions 2.1 to 2.8 keep in the same positions. A message is segments, each ended by <CR>
(LF and CR LF are tolerated); a segment is a 3-character name and fields split by the field
separator. In MSH, the field separator itself is MSH-1, so ``MSH|^~\\&|A|...`` splits as::

    text index  0     1      2      3      4      5      6      7       8      9
                'MSH' MSH-2  MSH-3  MSH-4  MSH-5  MSH-6  MSH-7  MSH-8   MSH-9  MSH-10 ...
    MSH-1  field separator (byte 3 of the message, any character, normally '|')
    MSH-2  encoding characters: component '^', repetition '~', escape '\\', subcomponent '&'
           (v2.7+: a 5th, truncation '#')
    MSH-3/4/5/6  sending/receiving application/facility (HD: namespace^universal ID^type), kept
                 whole as sent, e.g. 'MONITOR^1.2.3^ISO'
    MSH-7  date/time of message (TS/DTM)      MSH-9  message type (MSG: type^trigger^structure;
    MSH-10 message control ID                         v2.1: the type alone)
    MSH-11 processing ID (PT)                 MSH-12 version ID (v2.1-2.3: ID; v2.3.1+: VID,
                                                     component 1 is the version)

Other segments are read for their **names only** (the PHI boundary is here, STYLE S3.5), except
three segments of device data:

- MSA (§2.14.8): MSA-1 acknowledgment code, MSA-2 message control ID acknowledged;
- EVN-1 (event type code): the trigger event of v2.1/v2.2 messages, whose MSH-9 has none;
- PRT (v2.7+, §7.4.4): PRT-10 participation device (EI), PRT-16..22 participation device
  identifier (UDI DI), manufacture date, expiry date, lot number, serial number, donation
  identification and device type;
- OBX (§7.4.2): OBX-18 equipment instance identifier (EI, repeating).

No other field of any other segment (PID, PD1, NK1, PV1, PV2, OBX-5, IN1, GT1, ...) is decoded
into a string. Escape sequences (§2.7.4 \\F\\ \\S\\ \\T\\ \\R\\ \\E\\) are replaced in the kept
fields; other escapes (\\H\\, \\Xhh\\, ...) are kept as sent.

:func:`parse_message` is pure and never raises: a bad MSH yields what could be read plus
``hl7.invalid_msh``; a message without MSH at its start yields the segment names plus
``hl7.no_msh``. It returns ``(Message, anomalies)`` rather than STYLE S3.1's ``(unit |
anomaly, offset)`` because a bad header still carries fields worth recording.
"""

from __future__ import annotations

import re

from monitor.parsers.base import Value
from monitor.parsers.hl7.mllp import Anomaly

ANOMALY_INVALID_MSH = "hl7.invalid_msh"
ANOMALY_NO_MSH = "hl7.no_msh"
ANOMALY_INVALID_SEGMENT = "hl7.invalid_segment"

MSH = b"MSH"
#: Encoding characters when MSH-2 is missing or short (HL7 v2.5 §2.5.4 recommended values).
DEFAULT_ENCODING_CHARACTERS = "^~\\&"
#: Segment names recorded per message at most (a message of tiny segments stays bounded).
MAX_SEGMENT_NAMES = 4096
#: Device identifiers recorded per message at most.
MAX_DEVICE_IDS = 64

# Field positions (1-based, as in the standard).
MSA_ACKNOWLEDGMENT_CODE = 1
MSA_MESSAGE_CONTROL_ID = 2
PRT_PARTICIPATION_DEVICE = 10
PRT_DEVICE_FIELDS = (10, 16, 17, 18, 19, 20, 21, 22)
OBX_EQUIPMENT_INSTANCE_IDENTIFIER = 18

_SEGMENT_SPLIT = re.compile(rb"\r\n|\r|\n")
_SEGMENT_NAME = re.compile(rb"[A-Z][A-Z0-9]{2}\Z")
UNKNOWN_SEGMENT = "???"


class Message(Value):
    """What medmon keeps of one HL7 v2 message (column names of ``records.Hl7Message``):
    ``delimiters`` MSH-1 + MSH-2 (e.g. '|^~\\&'), MSH-3 to MSH-7 (the date as sent), MSH-9.1
    to 9.3, MSH-10, MSH-11 (as sent), MSH-12.1, MSA-1 and MSA-2, the segment names in order,
    and the device identifiers (PRT-10, PRT-16..22, OBX-18 values, distinct, in order)."""

    FIELDS = ("delimiters", "sending_application", "sending_facility", "receiving_application",
              "receiving_facility", "message_datetime", "message_type", "trigger_event",
              "message_structure", "control_id", "processing_id", "version", "ack_code",
              "acknowledged_control_id", "segments", "device_ids")  # fmt: skip

    def __init__(
        self,
        delimiters: str | None = None,
        sending_application: str | None = None,
        sending_facility: str | None = None,
        receiving_application: str | None = None,
        receiving_facility: str | None = None,
        message_datetime: str | None = None,
        message_type: str | None = None,
        trigger_event: str | None = None,
        message_structure: str | None = None,
        control_id: str | None = None,
        processing_id: str | None = None,
        version: str | None = None,
        ack_code: str | None = None,
        acknowledged_control_id: str | None = None,
        segments: tuple[str, ...] = (),
        device_ids: tuple[str, ...] = (),
    ) -> None:
        self.delimiters = delimiters
        self.sending_application = sending_application
        self.sending_facility = sending_facility
        self.receiving_application = receiving_application
        self.receiving_facility = receiving_facility
        self.message_datetime = message_datetime
        self.message_type = message_type
        self.trigger_event = trigger_event
        self.message_structure = message_structure
        self.control_id = control_id
        self.processing_id = processing_id
        self.version = version
        self.ack_code = ack_code
        self.acknowledged_control_id = acknowledged_control_id
        self.segments = segments
        self.device_ids = device_ids


class Encoding(Value):
    """The delimiters of one message (MSH-1 and MSH-2)."""

    FIELDS = ("field", "component", "repetition", "escape", "subcomponent")

    def __init__(
        self, field: bytes, component: bytes, repetition: bytes, escape: bytes,
        subcomponent: bytes,
    ) -> None:  # fmt: skip
        self.field = field
        self.component = component
        self.repetition = repetition
        self.escape = escape
        self.subcomponent = subcomponent


def parse_message(buf: bytes, *, truncated: bool = False) -> tuple[Message, list[Anomaly]]:
    """Read the MSH segment and the device fields of one message (see the module docstring).

    ``truncated``: ``buf`` is only the message's prefix; its last segment may be cut and is
    not read for fields (its name is kept).
    """
    anomalies: list[Anomaly] = []
    segments = _SEGMENT_SPLIT.split(buf)
    while segments and not segments[-1]:
        segments.pop()
    if not segments:
        anomalies.append(Anomaly(ANOMALY_NO_MSH, "empty message"))
        return Message(), anomalies
    if truncated and len(segments) > 1:
        last_cut: int | None = len(segments) - 1
    else:
        last_cut = None

    first = segments[0]
    if not first.startswith(MSH):
        name = first[:3]
        shown = f" (first segment {name.decode('ascii')!r})" if _SEGMENT_NAME.match(name) else ""
        anomalies.append(Anomaly(ANOMALY_NO_MSH, f"the message does not start with MSH{shown}"))
        names, device_ids = _walk(segments, 0, None, last_cut, anomalies)
        return Message(segments=names, device_ids=device_ids), anomalies

    enc, delimiters, problem = _encoding(first)
    if enc is None:
        anomalies.append(Anomaly(ANOMALY_INVALID_MSH, problem or "bad delimiters"))
        names, device_ids = _walk(segments, 1, None, last_cut, anomalies)
        return Message(segments=("MSH", *names), device_ids=device_ids), anomalies
    if problem:
        anomalies.append(Anomaly(ANOMALY_INVALID_MSH, problem))

    fields = first.split(enc.field)
    # fields[0] = 'MSH', fields[1] = MSH-2, fields[n - 1] = MSH-n for n >= 2.

    def msh(n: int) -> bytes:
        return fields[n - 1] if n - 1 < len(fields) else b""

    message_type = _components(msh(9), enc)
    version = _components(msh(12), enc)
    msh_cut = truncated and len(segments) == 1  # the cut fell inside MSH: fields are missing
    if len(fields) < 12 and not msh_cut:
        anomalies.append(
            Anomaly(ANOMALY_INVALID_MSH, f"MSH has {len(fields)} fields; MSH-9..12 are required")
        )
    elif not message_type[0] and not msh_cut:
        anomalies.append(Anomaly(ANOMALY_INVALID_MSH, "MSH-9 message type is empty"))

    ack_code = acked = None
    trigger = message_type[1]
    names, device_ids = _walk(segments, 1, enc, last_cut, anomalies)
    for seg in segments[1:]:
        if seg[:3] == b"MSA" and seg[3:4] == enc.field and ack_code is None:
            msa = seg.split(enc.field, MSA_MESSAGE_CONTROL_ID + 1)
            ack_code = _text(msa[1], enc) if len(msa) > 1 else None
            acked = _text(msa[2], enc) if len(msa) > 2 else None
        elif seg[:3] == b"EVN" and seg[3:4] == enc.field and not trigger:
            # Before v2.3, MSH-9 had no trigger component: EVN-1 (event type code) held it.
            evn = seg.split(enc.field, 2)
            trigger = _text(evn[1], enc) if len(evn) > 1 else None

    return (
        Message(
            delimiters=delimiters,
            sending_application=_text(msh(3), enc),
            sending_facility=_text(msh(4), enc),
            receiving_application=_text(msh(5), enc),
            receiving_facility=_text(msh(6), enc),
            message_datetime=_text(msh(7), enc),
            message_type=message_type[0],
            trigger_event=trigger,
            message_structure=message_type[2],
            control_id=_text(msh(10), enc),
            processing_id=_text(msh(11), enc),
            version=version[0],
            ack_code=ack_code,
            acknowledged_control_id=acked,
            segments=("MSH", *names),
            device_ids=device_ids,
        ),
        anomalies,
    )


def _encoding(msh: bytes) -> tuple[Encoding | None, str | None, str | None]:
    """``(encoding, delimiters text, problem)`` from an MSH segment; encoding None: unusable."""
    if len(msh) < 4:
        return None, None, "MSH segment ends before MSH-1 (field separator)"
    fs = msh[3:4]
    if fs.isalnum() or fs in (b" ", b"\t"):
        return None, None, f"MSH-1 field separator {fs.decode('latin-1')!r} is not a delimiter"
    end = msh.find(fs, 4)
    chars = msh[4:] if end < 0 else msh[4:end]
    problem = None
    # MSH-2: 4 characters (v2.7+: 5); each distinct, none alphanumeric, none the separator.
    if (
        not 2 <= len(chars) <= 5
        or len(set(chars)) != len(chars)
        or any(bytes((c,)).isalnum() or c in (0x20, 0x09) for c in chars)
    ):
        return None, None, f"MSH-2 encoding characters are not usable ({len(chars)} characters)"
    if len(chars) < 4:
        problem = f"MSH-2 has {len(chars)} encoding characters; the missing ones are taken as none"
    padded = chars + b"\x00" * (4 - len(chars)) if len(chars) < 4 else chars
    enc = Encoding(
        field=fs,
        component=padded[0:1],
        repetition=padded[1:2],
        escape=padded[2:3],
        subcomponent=padded[3:4],
    )
    return enc, (fs + chars).decode("latin-1"), problem


def _walk(
    segments: list[bytes],
    start: int,
    enc: Encoding | None,
    last_cut: int | None,
    anomalies: list[Anomaly],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of ``segments[start:]`` and the device identifiers of PRT and OBX segments."""
    names: list[str] = []
    ids: list[str] = []
    bad = 0
    for i in range(start, len(segments)):
        seg = segments[i]
        if not seg:
            continue
        head = seg[:3]
        if not _SEGMENT_NAME.match(head) or (enc is not None and seg[3:4] not in (b"", enc.field)):
            bad += 1
            name = UNKNOWN_SEGMENT
        else:
            name = head.decode("ascii")
        if len(names) < MAX_SEGMENT_NAMES:
            names.append(name)
        if enc is None or i == last_cut or name == UNKNOWN_SEGMENT:
            continue
        if name == "PRT":
            positions: tuple[int, ...] = PRT_DEVICE_FIELDS
        elif name == "OBX":
            positions = (OBX_EQUIPMENT_INSTANCE_IDENTIFIER,)
        else:
            continue
        parts = seg.split(enc.field, positions[-1] + 1)
        for n in positions:
            if n < len(parts) and parts[n] and len(ids) < MAX_DEVICE_IDS:
                for rep in parts[n].split(enc.repetition):
                    value = _text(rep, enc)
                    if value and value not in ids:
                        ids.append(value)
    if bad:
        anomalies.append(
            Anomaly(
                ANOMALY_INVALID_SEGMENT,
                f"{bad} segment(s) without a 3-character name and field separator, listed as "
                f"{UNKNOWN_SEGMENT!r} and not read",
            )
        )
    return tuple(names), tuple(ids[:MAX_DEVICE_IDS])


def _components(value: bytes, enc: Encoding) -> tuple[str | None, str | None, str | None]:
    """Components 1-3 of the first repetition of a field."""
    first = value.split(enc.repetition, 1)[0] if value else b""
    parts = first.split(enc.component)
    got = [_text(p, enc) for p in parts[:3]]
    got += [None] * (3 - len(got))
    return got[0], got[1], got[2]


def _text(value: bytes, enc: Encoding) -> str | None:
    """A kept field as text, escape sequences replaced; None when empty."""
    if not value:
        return None
    esc = enc.escape
    if esc != b"\x00" and esc in value:
        value = _unescape(value, enc)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _unescape(value: bytes, enc: Encoding) -> bytes:
    """Replace \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (HL7 v2.5 §2.7.4); other sequences stay as sent."""
    esc = enc.escape
    table = {
        b"F": enc.field,
        b"S": enc.component,
        b"T": enc.subcomponent,
        b"R": enc.repetition,
        b"E": esc,
    }
    out = bytearray()
    pos = 0
    n = len(value)
    while pos < n:
        i = value.find(esc, pos)
        if i < 0:
            out += value[pos:]
            break
        out += value[pos:i]
        code = value[i + 1 : i + 2]
        if value[i + 2 : i + 3] == esc and code in table:
            out += table[code]
            pos = i + 3
        else:
            out += esc
            pos = i + 1
    return bytes(out)
