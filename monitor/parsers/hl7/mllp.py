"""MLLP deframing: HL7 v2 messages out of one direction of a TCP stream.

HL7 Version 2 Transport Specification, Minimal Lower Layer Protocol (MLLP), release 2 (HL7 v2.5
Appendix C / "Transport Specification: MLLP, Release 2")::

    offset 0        1 .. n-2                   n-2       n-1
           <SB>     HL7 message (segments,     <EB>      <CR>
           0x0b     each ended by <CR> 0x0d)   0x1c      0x0d

The constants keep python-hl7's spelling (STYLE S3.3). The content never contains <SB> or <EB>.

Behaviour of :class:`Deframer` (fed arbitrary chunks, in stream order):

- A message may span many chunks, and a chunk may hold many messages.
- A new <SB> before the <EB> of the open block closes the open block as a message
  (``hl7.mllp_missing_end_block``).
- Bytes between blocks other than the <CR> (or LF) after an <EB> are skipped and counted, one
  ``hl7.mllp_bytes_outside_block`` per run of skipped bytes (never with their content).
- A message longer than ``max_size`` is not kept whole: only its first ``keep`` bytes are (what
  MSH parsing needs), ``hl7.message_too_large`` is reported once, and the rest is scanned for
  the <EB> without being stored, so memory stays bounded even for a block that never ends.
- A direction whose first byte is ``MSH`` carries raw HL7 (no MLLP): messages are split where a
  segment terminator (CR or LF) is followed by ``MSH`` and the first message's field separator;
  a raw message is complete when the next one starts, at a gap, or at the end of the stream.
- A gap (capture loss) or the end of the stream inside a message yields what was read, with
  ``hl7.message_incomplete``; after a gap the deframer silently resynchronizes on the next <SB>
  (raw: on the next ``MSH``).

Pure and incremental: no I/O, never raises on bad bytes (STYLE S3.1, S3.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.parsers.base import Value

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
LINE_FEED = b"\x0a"
MSH = b"MSH"

#: Largest message kept whole (8 MiB). Real HL7 messages are a few KiB; ORU messages with an
#: embedded PDF or image (OBX-5 ED) reach a few MiB.
MAX_MESSAGE_SIZE = 8 << 20
#: Bytes kept of a message over ``MAX_MESSAGE_SIZE``: MSH and the first segments' names.
KEEP_PREFIX = 16 << 10

FRAMING_MLLP = "mllp"
FRAMING_RAW = "raw"

ANOMALY_MISSING_END_BLOCK = "hl7.mllp_missing_end_block"
ANOMALY_OUTSIDE_BLOCK = "hl7.mllp_bytes_outside_block"
ANOMALY_TOO_LARGE = "hl7.message_too_large"
ANOMALY_INCOMPLETE = "hl7.message_incomplete"

_SB = START_BLOCK[0]
_EB = END_BLOCK[0]
_CR = CARRIAGE_RETURN[0]
_LF = LINE_FEED[0]

# Deframer states.
_START = 0  # nothing seen yet: decide MLLP or raw
_OUTSIDE = 1  # MLLP, between blocks
_BLOCK = 2  # MLLP, inside a block
_RAW = 3  # raw HL7, inside a message
_RESYNC = 4  # after a gap: skip silently to the next <SB> (raw: the next MSH)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A named parse anomaly (a name of :mod:`monitor.anomalies`); ``detail`` never holds
    message content."""

    name: str
    detail: str


class Frame(Value):
    """One HL7 message as framed on the wire.

    - ``data``: the message bytes without <SB>/<EB><CR> (only the first ``keep`` bytes when
      truncated);
    - ``framing``: 'mllp' or 'raw';
    - ``size``: the message's full length in bytes (larger than ``len(data)`` when truncated);
    - ``ts_ns``: timestamp of the chunk that completed the message (MLLP: carried its <EB>;
      raw: its last byte; cut messages: the last chunk that added to it);
    - ``offset``: stream offset of the message's first byte (after <SB>);
    - ``complete``: False when a gap or the end of the stream cut the message.
    """

    FIELDS = ("data", "framing", "size", "ts_ns", "offset", "complete")

    def __init__(
        self, data: bytes, framing: str, size: int, ts_ns: int, offset: int,
        complete: bool = True,
    ) -> None:  # fmt: skip
        self.data = data
        self.framing = framing
        self.size = size
        self.ts_ns = ts_ns
        self.offset = offset
        self.complete = complete

    @property
    def truncated(self) -> bool:
        """Only a prefix of the message was kept (it was larger than the maximum size)."""
        return self.size > len(self.data)


Event = Frame | Anomaly


class Deframer:
    """Incremental MLLP (or raw HL7) deframer for one direction of a stream."""

    __slots__ = (
        "_after_eb",
        "_buf",
        "_keep",
        "_marker",
        "_max",
        "_msg_offset",
        "_msg_size",
        "_msg_ts",
        "_offset",
        "_out_count",
        "_out_offset",
        "_raw",
        "_state",
        "_tail",
    )

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE, keep: int = KEEP_PREFIX) -> None:
        self._max = max_size
        self._keep = min(keep, max_size)
        self._state = _START
        self._raw = False  # raw HL7 (no MLLP) on this direction
        self._marker = MSH + b"|"  # raw framing: 'MSH' + the first message's field separator
        self._buf = bytearray()  # the open message (at most ``max_size`` bytes, then ``keep``)
        self._msg_size = 0  # full length of the open message so far
        self._msg_offset = 0
        self._msg_ts = 0
        self._offset = 0  # stream offset of the next byte fed
        self._out_count = 0  # bytes skipped outside blocks, not yet reported
        self._out_offset = 0
        self._tail = b""  # raw framing: the last bytes fed of the open message (boundary search)
        self._after_eb = False  # MLLP: only line ends seen since the last <EB>

    # -- public ------------------------------------------------------------------------------

    def feed(self, chunk: bytes, ts_ns: int) -> list[Event]:
        """Take the next bytes of the direction; return the messages and anomalies they end."""
        out: list[Event] = []
        if not chunk:
            return out
        if self._state == _START:
            head = bytes(self._buf) + chunk
            if len(head) < 4 and MSH.startswith(head[:3]):
                # Too short to tell raw HL7 ('MSH' + field separator) yet: wait for more.
                self._buf = bytearray(head)
                return out
            self._buf = bytearray()
            if head.startswith(MSH):
                self._raw = True
                self._marker = MSH + head[3:4]
                self._state = _RAW
                self._open(self._offset, ts_ns)
            else:
                self._state = _OUTSIDE
            chunk = head
        base = self._offset
        self._offset += len(chunk)
        if self._raw:
            self._feed_raw(chunk, base, ts_ns, out)
        else:
            self._feed_mllp(chunk, base, ts_ns, out)
        return out

    def gap(self, size: int) -> list[Event]:
        """``size`` bytes never arrived: close an open message as incomplete, then resync."""
        out: list[Event] = []
        self._report_outside(out)
        if self._state in (_BLOCK, _RAW) and self._msg_size:
            self._close(self._msg_ts, out, complete=False)
        if self._state == _START and self._buf:
            self._offset += len(self._buf)  # a partial 'MSH' before the gap: dropped
        self._buf = bytearray()
        self._tail = b""
        self._msg_size = 0
        self._state = _RESYNC
        self._offset += size
        return out

    def flush(self) -> list[Event]:
        """End of stream: return the open message (incomplete) and unreported skipped bytes."""
        out: list[Event] = []
        self._report_outside(out)
        if self._state == _RAW and self._msg_size:
            # A raw message ends with the stream; it is whole if its last segment was ended.
            last = self._tail[-1:]
            self._close(self._msg_ts, out, complete=last in (CARRIAGE_RETURN, LINE_FEED))
        elif self._state == _BLOCK and self._msg_size:
            self._close(self._msg_ts, out, complete=False)
        elif self._state == _START and self._buf:
            self._out_offset, self._out_count = self._offset, len(self._buf)
            self._report_outside(out)
            self._buf = bytearray()
        self._state = _RESYNC
        return out

    # -- MLLP ----------------------------------------------------------------------------------

    def _feed_mllp(self, chunk: bytes, base: int, ts_ns: int, out: list[Event]) -> None:
        pos = 0
        n = len(chunk)
        while pos < n:
            state = self._state
            if state == _BLOCK:
                eb = chunk.find(END_BLOCK, pos)
                sb = chunk.find(START_BLOCK, pos, eb if eb >= 0 else n)
                if sb >= 0:
                    self._append(chunk, pos, sb, out)
                    out.append(
                        Anomaly(
                            ANOMALY_MISSING_END_BLOCK,
                            f"a start block at stream offset {base + sb} opened before the end "
                            f"block of the message at offset {self._msg_offset}",
                        )
                    )
                    self._close(ts_ns if sb > pos else self._msg_ts, out, complete=True)
                    self._open(base + sb + 1, ts_ns)
                    pos = sb + 1
                elif eb >= 0:
                    self._append(chunk, pos, eb, out)
                    self._close(ts_ns, out, complete=True)
                    self._state = _OUTSIDE
                    self._after_eb = True
                    pos = eb + 1
                else:
                    self._append(chunk, pos, n, out)
                    self._msg_ts = ts_ns
                    pos = n
            else:  # _OUTSIDE or _RESYNC
                sb = chunk.find(START_BLOCK, pos)
                end = n if sb < 0 else sb
                if state == _OUTSIDE:
                    if self._after_eb:
                        # The <CR> after <EB> (and a tolerated LF) is framing, not stray bytes.
                        while pos < end and (chunk[pos] == _CR or chunk[pos] == _LF):
                            pos += 1
                        if pos < end or sb >= 0:
                            self._after_eb = False
                    if pos < end:
                        if not self._out_count:
                            self._out_offset = base + pos
                        self._out_count += end - pos
                if sb < 0:
                    return
                self._report_outside(out)
                self._open(base + sb + 1, ts_ns)
                self._state = _BLOCK
                pos = sb + 1

    # -- raw HL7 -------------------------------------------------------------------------------

    def _feed_raw(self, chunk: bytes, base: int, ts_ns: int, out: list[Event]) -> None:
        """Raw HL7 (no MLLP): a message starts at ``MSH<fs>`` right after a CR or LF.

        The boundary is searched in ``tail + chunk``, ``tail`` being the last bytes of the open
        message, so a boundary split across chunks is found. Each byte is searched once or twice.
        """
        marker = self._marker
        keep_tail = len(marker)
        pos = 0
        n = len(chunk)
        while pos < n:
            tail = self._tail
            window = tail + chunk[pos:]
            hit = _boundary(window, marker)
            if hit < 0:
                if self._state == _RAW:
                    self._append(chunk, pos, n, out)
                    self._msg_ts = ts_ns
                self._tail = window[-keep_tail:]
                return
            cut = hit - len(tail)  # the new message's first byte, relative to chunk[pos:]
            if self._state == _RAW:
                if cut < 0:
                    # Part of 'MSH<fs>' came in an earlier chunk: take it off the message.
                    if self._msg_size <= self._max:
                        del self._buf[cut:]
                    self._msg_size += cut
                    self._close(self._msg_ts, out, complete=True)
                else:
                    self._append(chunk, pos, pos + cut, out)
                    self._close(ts_ns if cut else self._msg_ts, out, complete=True)
            self._state = _RAW
            self._open(base + pos + cut, ts_ns)
            if cut < 0:
                self._buf += tail[cut:]
                self._msg_size = -cut
                self._tail = tail[cut:]
            else:
                pos += cut
                self._tail = b""
            # The new message's own 'MSH' is at window index 0 now: never a boundary.

    # -- shared --------------------------------------------------------------------------------

    def _open(self, offset: int, ts_ns: int) -> None:
        self._buf = bytearray()
        self._tail = b""
        self._msg_size = 0
        self._msg_offset = offset
        self._msg_ts = ts_ns

    def _append(self, chunk: bytes, start: int, end: int, out: list[Event]) -> None:
        """Add ``chunk[start:end]`` to the open message, within the size bound."""
        if end <= start:
            return
        size = self._msg_size
        new = size + end - start
        self._msg_size = new
        if new <= self._max:
            self._buf += chunk[start:end]
            return
        if size <= self._max:
            # Crossing the bound now: keep the prefix only, in a new small buffer.
            have = len(self._buf)
            if have < self._keep:
                prefix = bytes(self._buf) + chunk[start : start + self._keep - have]
            else:
                prefix = bytes(self._buf[: self._keep])
            self._buf = bytearray(prefix)
            out.append(
                Anomaly(
                    ANOMALY_TOO_LARGE,
                    f"message at stream offset {self._msg_offset} is over {self._max} bytes; "
                    f"only its first {len(prefix)} bytes are read",
                )
            )

    def _close(self, ts_ns: int, out: list[Event], *, complete: bool) -> None:
        frame = Frame(
            data=bytes(self._buf),
            framing=FRAMING_RAW if self._raw else FRAMING_MLLP,
            size=self._msg_size,
            ts_ns=ts_ns,
            offset=self._msg_offset,
            complete=complete,
        )
        if not complete:
            out.append(
                Anomaly(
                    ANOMALY_INCOMPLETE,
                    f"message at stream offset {frame.offset} was cut after {frame.size} bytes "
                    "(capture gap or end of stream)",
                )
            )
        out.append(frame)
        self._buf = bytearray()
        self._tail = b""
        self._msg_size = 0

    def _report_outside(self, out: list[Event]) -> None:
        if self._out_count:
            out.append(
                Anomaly(
                    ANOMALY_OUTSIDE_BLOCK,
                    f"{self._out_count} bytes outside MLLP blocks skipped at stream offset "
                    f"{self._out_offset}",
                )
            )
            self._out_count = 0


def _boundary(window: bytes, marker: bytes) -> int:
    """Index of the first ``marker`` in ``window`` right after a CR or LF (-1: none)."""
    start = 1
    while True:
        i = window.find(marker, start)
        if i < 0:
            return -1
        if window[i - 1] == _CR or window[i - 1] == _LF:
            return i
        start = i + 1
