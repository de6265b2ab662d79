"""Per-direction TCP reassembly for the flows a protocol parser claims.

Data flow: source -> decode -> flows -> **streams** -> protocol parsers. The flow table calls
:meth:`StreamManager.tcp` for every TCP packet of a flow while ``flow.stream is not False``. The
manager claims a flow for the first :class:`~monitor.parsers.base.ParserSpec` of its registry
whose server port matches (decided on the flow's first packet) or whose probe matches the first
payload bytes of a direction, so DICOM and HL7 are found on any port. Only claimed flows with an
analyzer are reassembled; everything else is marked ``flow.stream = False`` and costs the flow
table nothing more.

Sequence space (RFC 9293 §3.4): sequence numbers are 32-bit and wrap. A :class:`Reassembler`
maps each segment onto an unbounded *stream offset* (bytes delivered or skipped so far) with a
signed 32-bit distance from the next expected sequence number, so wraparound needs no special
case. A SYN occupies one sequence number before the data (RFC 9293 §3.4), a FIN one after it.

Reassembly rules, chosen to match ``tshark -z follow,tcp`` (Wireshark 4.0 ``packet-tcp.c``
``follow_tcp_tap_listener``):

- Bytes already delivered are never delivered again. A retransmission that carries different
  bytes than the first copy keeps the first copy (tshark does too) and is reported as
  ``tcp.stream_overlap_mismatch``, as far as the delivered bytes are still in the short
  ``history`` kept for that comparison.
- A segment that starts exactly at the next expected byte is delivered whole. Out-of-order
  segments are kept whole in arrival order; once the stream reaches them, the first (in
  arrival order) that starts at or before the next byte is trimmed to its new bytes and
  delivered, again and again (tshark's order). Where a trimmed part differs from what was
  delivered, ``tcp.stream_overlap_mismatch`` is reported.
- Out-of-order segments are buffered until contiguous. When more than ``max_buffer`` bytes or
  ``max_segments`` segments are held, the stream skips the hole to the earliest buffered
  segment: a ``('gap', n)`` event and ``tcp.stream_buffer_full``. At the end of the flow,
  :meth:`Reassembler.flush` delivers what is buffered the same way, with ``tcp.stream_gap``.
  tshark instead skips a hole when the peer acknowledges the missing bytes and writes
  ``[N bytes missing in capture file]`` there; the bytes either side of a hole are the same.
- Keep-alive probes (RFC 9293 §3.8.4: zero or one garbage byte at SND.NXT-1) are dropped
  without a mismatch. Zero-window probes (§3.8.6.1: one new byte at SND.NXT) are data.
- Data past a FIN is dropped; a FIN before the bytes already delivered (a stale FIN) is ignored.
  A RST ends nothing here (the flow table closes the flow); data on a RST is delivered, as
  tshark does.
- Without a SYN (the SPAN session joined late) a direction starts at its first segment of two
  or more bytes. Payload cut by the snap length is not known to be short: the missing tail
  becomes a gap when later bytes arrive.

Memory per reassembled direction is bounded by ``max_buffer`` + ``history`` (+ one segment).
When the analyzer reports ``done``, the manager drops the flow's buffers and stops calling it;
the rest of the flow then costs only the flow table's counters.

Bypass: an analyzer of a spec with ``skips=True`` says after each delivery how many of the
direction's next bytes it does not need (``take_skip``: DICOM, the pixel data after a data
set's device attributes). Those bytes are dropped here undelivered (a gap inside them is no
gap for the analyzer); with the C fast lane, :attr:`StreamManager.bypass` lets the flow table
count them without handing them over at all, and :meth:`StreamManager.bypassed` moves the
stream past them afterwards.

Events: :meth:`Reassembler.add` and :meth:`Reassembler.flush` return ``(kind, value)`` tuples in
stream order: ``('data', bytes)``; ``('gap', n)`` for ``n`` bytes that never arrived; and an
anomaly, whose kind is its dotted name from :mod:`monitor.anomalies` and whose value is the
stream offset where it happened (a gap anomaly comes right before the ``('gap', n)`` it explains).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from monitor.parsers.base import Analyzer, FlowContext, ParserSpec, Skipping

#: One reassembly event: ``('data', bytes)``, ``('gap', n)`` or ``(anomaly name, stream offset)``.
Event = tuple[str, int | bytes]

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
SEQ_HALF = 1 << 31

# TCP flag bits (RFC 9293 §3.1), as in monitor.decode.
FIN = 0x01
SYN = 0x02

ANOMALY_GAP = "tcp.stream_gap"
ANOMALY_BUFFER_FULL = "tcp.stream_buffer_full"
ANOMALY_OVERLAP_MISMATCH = "tcp.stream_overlap_mismatch"
ANOMALY_ANALYZER_ERROR = "tcp.stream_analyzer_error"

DATA = "data"
GAP = "gap"

#: At most this many delivered segments are remembered for the overlap comparison.
HISTORY_CHUNKS = 128


class Reassembler:
    """One direction of one TCP connection (RFC 9293 sequence space, 32-bit wraparound).

    ``isn`` is the SYN's sequence number when the SYN was seen (data starts at ``isn + 1``).
    With ``isn=None`` (SYN not seen: the SPAN session joined late) the stream starts at the first
    segment that carries two or more bytes, so a keep-alive probe seen first (one garbage byte
    just before the real next byte) does not become the stream's first byte.

    :meth:`add` takes the sequence number of the segment's first *payload* byte (for a SYN that
    carries data, the caller passes ``seq + 1``).

    Out-of-order segments are kept whole, in arrival order, and delivered the way tshark's
    follow does: repeatedly, the first one (in arrival order) that starts at or before the next
    byte is trimmed to its new bytes and delivered. Their overlap with the delivered bytes is
    compared then, against ``history``.
    """

    __slots__ = (
        "_fin",
        "_frags",
        "_hist",
        "_hist_bytes",
        "_next",
        "buffered",
        "finished",
        "history",
        "max_buffer",
        "max_segments",
        "offset",
    )

    def __init__(
        self,
        isn: int | None,
        max_buffer: int = 1 << 20,
        max_segments: int = 1024,
        *,
        history: int = 1 << 14,
    ) -> None:
        #: Sequence number of the next byte to deliver; None until the stream starts.
        self._next: int | None = None if isn is None else (isn + 1) & SEQ_MASK
        #: Stream offset of the next byte: bytes delivered plus bytes skipped over gaps.
        self.offset = 0
        #: Out-of-order segments as (stream offset, bytes), in arrival order; may overlap.
        self._frags: list[tuple[int, bytes]] = []
        #: Bytes held in out-of-order segments (the bounded buffer).
        self.buffered = 0
        self.max_buffer = max_buffer
        self.max_segments = max_segments
        #: Recently delivered bytes, kept (about ``history`` bytes, at most HISTORY_CHUNKS
        #: segments) only to tell a retransmission with different bytes from a plain one.
        self.history = history
        self._hist: deque[tuple[int, bytes]] = deque()
        self._hist_bytes = 0
        #: Stream offset of the FIN, once seen.
        self._fin: int | None = None
        #: True once every byte before the FIN was delivered or skipped (or after flush()).
        self.finished = False

    def add(self, seq: int, payload: bytes, fin: bool = False) -> list[Event]:
        """Take one segment; return the events it makes available, in stream order."""
        nxt = self._next
        n = len(payload)
        if nxt is None:
            if n < 2 and not fin:
                return []  # see the class docstring: a keep-alive must not start the stream
            nxt = self._next = seq & SEQ_MASK
        rel = (seq - nxt) & SEQ_MASK
        if rel == 0 and not self._frags and self._fin is None and not fin:
            # Fast path: the next bytes, nothing buffered.
            if not n:
                return []
            self._take(nxt, payload)
            return [(DATA, payload)]
        if rel >= SEQ_HALF:
            rel -= SEQ_MOD  # before the next expected byte: (partly) old data
        if self.finished:
            return []
        events: list[Event] = []
        off = self.offset + rel
        if fin:
            self._note_fin(off + n)
        if self._fin is not None and off + n > self._fin:
            payload = payload[: max(0, self._fin - off)]
            n = len(payload)
        if n:
            if rel < 0:
                old = min(-rel, n)
                # A keep-alive probe repeats one garbage byte at SND.NXT-1: no comparison.
                if not (n == 1 and rel == -1) and self._hist and self._differs(off, payload[:old]):
                    events.append((ANOMALY_OVERLAP_MISMATCH, off))
                payload = payload[old:]
                off += old
            if payload:
                if off == self.offset:
                    self._deliver(payload, events)
                    self._drain(events)
                else:
                    self._frags.append((off, payload))
                    self.buffered += len(payload)
                    while self.buffered > self.max_buffer or len(self._frags) > self.max_segments:
                        self._skip_to_buffered(ANOMALY_BUFFER_FULL, events)
        self._check_fin()
        return events

    def take_next(self, seq: int, payload: bytes) -> bool:
        """:meth:`add`'s fast path on its own, for the stream manager: when ``payload`` (not
        empty, no FIN) holds the next bytes and nothing is buffered, deliver it and return
        True (its one event would be ``('data', payload)``); otherwise do nothing and return
        False (the caller uses :meth:`add`)."""
        nxt = self._next
        if nxt is None or seq != nxt or self._frags or self._fin is not None:
            return False
        self._take(nxt, payload)
        return True

    @property
    def next_seq(self) -> int | None:
        """Sequence number of the next byte to deliver (None before the stream started)."""
        return self._next

    def pass_over(self, nbytes: int) -> None:
        """The next ``nbytes`` bytes went by in order and are not needed (a bypass): move
        past them without remembering them (a later copy of them is not compared)."""
        self._next = ((self._next or 0) + nbytes) & SEQ_MASK
        self.offset += nbytes

    def _take(self, nxt: int, payload: bytes) -> None:
        n = len(payload)
        self._next = (nxt + n) & SEQ_MASK
        off = self.offset
        self.offset = off + n
        if self.history:
            self._remember(off, payload)

    def flush(self) -> list[Event]:
        """End of flow: deliver what is buffered, reporting each hole as ``tcp.stream_gap``.

        A hole between the last byte and a FIN seen ahead of it is reported too. The reassembler
        is finished afterwards.
        """
        events: list[Event] = []
        if self.finished:
            return events
        while self._frags:
            self._skip_to_buffered(ANOMALY_GAP, events)
        if self._fin is not None and self.offset < self._fin:
            events.append((ANOMALY_GAP, self.offset))
            events.append((GAP, self._fin - self.offset))
            self.offset = self._fin
        self._finish()
        return events

    # -- internals -------------------------------------------------------------------------

    def _deliver(self, data: bytes, events: list[Event]) -> None:
        off = self.offset
        n = len(data)
        self.offset = off + n
        self._next = ((self._next or 0) + n) & SEQ_MASK
        if self.history:
            self._remember(off, data)
        events.append((DATA, data))

    def _remember(self, off: int, data: bytes) -> None:
        hist = self._hist
        hist.append((off, data))
        self._hist_bytes += len(data)
        while len(hist) > HISTORY_CHUNKS or self._hist_bytes - len(hist[0][1]) >= self.history:
            self._hist_bytes -= len(hist.popleft()[1])

    def _differs(self, off: int, data: bytes) -> bool:
        """Whether ``data`` at stream offset ``off`` differs from the delivered bytes remembered."""
        end = off + len(data)
        for hoff, chunk in reversed(self._hist):
            hend = hoff + len(chunk)
            if hend <= off:
                break
            if hoff >= end:
                continue
            lo = max(off, hoff)
            hi = min(end, hend)
            if chunk[lo - hoff : hi - hoff] != data[lo - off : hi - off]:
                return True
        return False

    def _drain(self, events: list[Event]) -> None:
        """Deliver the buffered segments the stream has reached, in tshark's order."""
        frags = self._frags
        while frags:
            offset = self.offset
            i = 0
            n = len(frags)
            while i < n and frags[i][0] > offset:
                i += 1
            if i == n:
                return
            start, seg = frags.pop(i)
            self.buffered -= len(seg)
            skip = offset - start
            if skip:
                if self._hist and self._differs(start, seg[:skip]):
                    events.append((ANOMALY_OVERLAP_MISMATCH, start))
                if skip >= len(seg):
                    continue
                seg = seg[skip:]
            self._deliver(seg, events)

    def _skip_to_buffered(self, anomaly: str, events: list[Event]) -> None:
        """Skip the hole before the earliest buffered segment, then deliver what follows it."""
        gap = min(start for start, _ in self._frags) - self.offset
        events.append((anomaly, self.offset))
        events.append((GAP, gap))
        self.offset += gap
        self._next = ((self._next or 0) + gap) & SEQ_MASK
        self._drain(events)

    def _note_fin(self, fin_off: int) -> None:
        if self._fin is not None or fin_off < self.offset:
            return  # a retransmitted FIN, or a stale one before the delivered bytes
        self._fin = fin_off
        # Out-of-order bytes past the FIN are not part of this stream.
        kept: list[tuple[int, bytes]] = []
        for start, seg in self._frags:
            if start + len(seg) > fin_off:
                self.buffered -= len(seg)
                if start >= fin_off:
                    continue
                seg = seg[: fin_off - start]
                self.buffered += len(seg)
            kept.append((start, seg))
        self._frags = kept

    def _check_fin(self) -> None:
        if self._fin is not None and self.offset >= self._fin:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        if self._fin is None:
            self._fin = self.offset  # closes the fast path in add()
        self._frags.clear()
        self.buffered = 0
        self._hist.clear()
        self._hist_bytes = 0


class _Stream:
    """The manager's state for one claimed flow with an analyzer (stored in ``flow.stream``)."""

    __slots__ = (
        "analyzer",
        "client",
        "late_client",
        "late_server",
        "server",
        "skip_client",
        "skip_server",
        "spec",
        "take_skip",
        "ts_ns",
    )

    def __init__(self, spec: ParserSpec, analyzer: Analyzer) -> None:
        self.spec = spec
        self.analyzer = analyzer
        #: The analyzer's take_skip (ParserSpec.skips), and the bytes still to drop unseen
        #: per direction.
        self.take_skip: Callable[[bool], int] | None = (
            cast(Skipping, analyzer).take_skip if spec.skips else None
        )
        self.skip_client = 0
        self.skip_server = 0
        self.client: Reassembler | None = None
        self.server: Reassembler | None = None
        # A direction whose first payload was probed (and not claimed) before the other
        # direction claimed the flow: it starts at its next segment, after a gap.
        self.late_client = False
        self.late_server = False
        self.ts_ns = 0


class _Probing:
    """``flow.stream`` of an unclaimed flow whose first payloads are still being probed."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<streams.{self.name}>"


#: No payload probed yet in either direction.
PROBE_BOTH = _Probing("PROBE_BOTH")
#: The client's first payload matched no probe; waiting for the server's.
PROBE_SERVER = _Probing("PROBE_SERVER")
#: The server's first payload matched no probe; waiting for the client's.
PROBE_CLIENT = _Probing("PROBE_CLIENT")


class StreamManager:
    """Claims TCP flows for parsers, reassembles claimed flows and feeds their analyzers.

    ``emit`` receives the records analyzers emit; ``anomaly(name, flow_uid, detail)`` receives
    stream and analyzer anomalies. A flow is given up (``flow.stream = False``) when it has no
    port claim and the first payload of *each* direction matched no probe (both are probed, so
    a server-first protocol or a capture that missed the client's first bytes is still found);
    when its spec is detection-only; when its analyzer is done; or when its analyzer raised.

    ``flow.stream`` holds None (not seen yet), a probing marker, the per-flow state, or False.
    """

    def __init__(
        self,
        registry: Sequence[ParserSpec],
        emit: Callable[[object], None],
        anomaly: Callable[[str, str | None, str | None], None],
        *,
        max_buffer: int = 1 << 20,
        max_segments: int = 1024,
        probe_bytes: int = 16,
        strict: bool = False,
        observer: Callable[[Any], Callable[[bool, str, str, int], None]] | None = None,
    ) -> None:
        self._emit = emit
        #: ``flow -> observe`` for analyzers' FlowContext (an ObservationCollector's
        #: ``flow_observer``); None: observations are dropped.
        self._observer = observer
        self._anomaly = anomaly
        self._max_buffer = max_buffer
        self._max_segments = max_segments
        self._probe_bytes = probe_bytes
        #: Re-raise analyzer exceptions (tests); otherwise report them and stop the flow.
        self._strict = strict
        self._by_port: dict[int, ParserSpec] = {}
        for spec in registry:
            for port in spec.tcp_ports:
                self._by_port.setdefault(port, spec)
        self._probes: tuple[tuple[ParserSpec, Callable[[bytes, bool], bool]], ...] = tuple(
            (spec, spec.probe) for spec in registry if spec.probe is not None
        )
        #: ``(flow key, from_client, seq, nbytes)``: set by a flow table with the C fast lane,
        #: which then counts the bytes an analyzer skips without handing them over (and
        #: reports them through :meth:`bypassed`); None: they come here and are dropped.
        self.bypass: Callable[[bytes, bool, int, int], None] | None = None

    def tcp(
        self, flow: Any, from_client: bool, ts_ns: int, seq: int, flags: int, payload: bytes
    ) -> None:
        """Handle one TCP packet of ``flow`` (``seq`` and ``flags`` as on the wire)."""
        st = flow.stream
        if st.__class__ is _Stream:
            if payload or flags & FIN:
                self._feed(flow, st, from_client, ts_ns, seq, flags, payload)
            return
        if st is None:
            st = self._first_packet(flow)
            if st.__class__ is _Stream:
                if payload or flags & FIN:
                    self._feed(flow, st, from_client, ts_ns, seq, flags, payload)
                return
        if not payload or st is False:
            return
        if st is PROBE_BOTH or st is (PROBE_CLIENT if from_client else PROBE_SERVER):
            self._probe(flow, st, from_client, ts_ns, seq, flags, payload)

    def bypassed(self, flow: Any, from_client: bool, nbytes: int) -> None:
        """The C fast lane counted, without handing them over, the next ``nbytes`` bytes of a
        direction that :attr:`bypass` named: its stream moves past them as if they had been
        delivered and skipped."""
        st = flow.stream
        if st.__class__ is not _Stream:
            return
        r = st.client if from_client else st.server
        if r is None:
            return
        r.pass_over(nbytes)
        skip = st.skip_client if from_client else st.skip_server
        _set_skip(st, from_client, max(0, skip - nbytes))

    def close(self, flow: Any) -> None:
        """The flow ended or was evicted: flush its reassemblers, close its analyzer, drop state."""
        st = flow.stream
        flow.stream = False
        if st.__class__ is not _Stream:
            return
        for from_client, r in ((True, st.client), (False, st.server)):
            if r is not None and not r.finished:
                events = r.flush()
                if events and not self._dispatch(flow, st, from_client, st.ts_ns, events):
                    return  # the analyzer raised and was stopped
                if st.analyzer.done:
                    break
        self._close_analyzer(flow, st)

    # -- claiming ----------------------------------------------------------------------------

    def _first_packet(self, flow: Any) -> object:
        spec = self._by_port.get(flow.server_port)
        if spec is not None:
            return self._claim(flow, spec, None)
        st = PROBE_BOTH if self._probes else False
        flow.stream = st
        return st

    def _probe(
        self,
        flow: Any,
        st: object,
        from_client: bool,
        ts_ns: int,
        seq: int,
        flags: int,
        payload: bytes,
    ) -> None:
        first = payload[: self._probe_bytes]
        for spec, probe in self._probes:
            if probe(first, from_client):
                # The other direction's first payload was probed already: it starts late.
                late = None if st is PROBE_BOTH else not from_client
                new = self._claim(flow, spec, late)
                if isinstance(new, _Stream):
                    self._feed(flow, new, from_client, ts_ns, seq, flags, payload)
                return
        if st is PROBE_BOTH:
            flow.stream = PROBE_SERVER if from_client else PROBE_CLIENT
        else:
            flow.stream = False

    def _claim(self, flow: Any, spec: ParserSpec, late: bool | None) -> object:
        """Record ``spec`` as the flow's application; set up its analyzer if it has one."""
        flow.app = spec.name
        if spec.analyzer is None:
            flow.stream = False
            return False
        uid = flow.uid
        report = self._anomaly

        def anomaly(name: str, detail: str | None) -> None:
            report(name, uid, detail)

        ctx = FlowContext(
            flow_uid=uid,
            client_ip=flow.client_ip,
            server_ip=flow.server_ip,
            client_port=flow.client_port,
            server_port=flow.server_port,
            emit=self._emit,
            anomaly=anomaly,
        )
        if self._observer is not None:
            ctx.observe = self._observer(flow)
        try:
            analyzer = spec.analyzer(ctx)
        except Exception as exc:
            if self._strict:
                raise
            report(ANOMALY_ANALYZER_ERROR, uid, f"{spec.name}: start: {type(exc).__name__}: {exc}")
            flow.stream = False
            return False
        st = _Stream(spec, analyzer)
        if late is True:
            st.late_client = True
        elif late is False:
            st.late_server = True
        flow.stream = st
        return st

    # -- reassembly ----------------------------------------------------------------------------

    def _feed(
        self,
        flow: Any,
        st: _Stream,
        from_client: bool,
        ts_ns: int,
        seq: int,
        flags: int,
        payload: bytes,
    ) -> None:
        if flags & SYN:
            seq = (seq + 1) & SEQ_MASK  # the SYN occupies one sequence number before the data
        st.ts_ns = ts_ns
        r = st.client if from_client else st.server
        missed = 0
        if r is None:
            if not payload:
                return  # a FIN before any data: nothing to deliver
            isn = flow.isn_client if from_client else flow.isn_server
            if st.late_client if from_client else st.late_server:
                # Its first payload went to the probes before the other direction claimed the
                # flow: start at this segment, after a gap as long as what was probed.
                if isn is not None:
                    missed = (seq - isn - 1) & SEQ_MASK
                    if missed >= SEQ_HALF:
                        missed = 0
                isn = (seq - 1) & SEQ_MASK
            r = Reassembler(isn, self._max_buffer, self._max_segments)
            if from_client:
                st.client = r
            else:
                st.server = r
        if not missed and payload and not flags & FIN and r.take_next(seq, payload):
            # In order, the common case: straight to the analyzer, without the event list.
            try:
                self._give(st, from_client, payload, ts_ns)
            except Exception as exc:
                self._analyzer_failed(flow, st, exc)
                return
            if st.analyzer.done:
                self._close_analyzer(flow, st)
                return
            skip = st.skip_client if from_client else st.skip_server
            nxt = r.next_seq
            if skip and self.bypass is not None and nxt is not None:
                # Nothing is buffered (take_next): the skipped bytes start at the next seq.
                self.bypass(flow.ckey, from_client, nxt, skip)
            return
        events = r.add(seq, payload, bool(flags & FIN))
        if missed:
            events.insert(0, (GAP, missed))  # the segment(s) probed before the claim
        if events and self._dispatch(flow, st, from_client, ts_ns, events) and st.analyzer.done:
            self._close_analyzer(flow, st)

    def _dispatch(
        self, flow: Any, st: _Stream, from_client: bool, ts_ns: int, events: list[Event]
    ) -> bool:
        """Hand ``events`` to the analyzer; False when it raised (the flow is then given up)."""
        analyzer = st.analyzer
        pending: tuple[str, int] | None = None
        value: Any
        try:
            for kind, value in events:
                if kind == DATA:
                    self._give(st, from_client, value, ts_ns)
                elif kind == GAP:
                    self._gap(st, from_client, value)
                    if pending is not None:
                        self._anomaly(
                            pending[0],
                            flow.uid,
                            f"{_direction(from_client)}: {value} bytes missing at stream offset "
                            f"{pending[1]}",
                        )
                        pending = None
                elif kind == ANOMALY_OVERLAP_MISMATCH:
                    self._anomaly(
                        kind,
                        flow.uid,
                        f"{_direction(from_client)}: retransmitted bytes differ from the first "
                        f"copy at stream offset {value}; the first copy is kept",
                    )
                else:
                    pending = (kind, value)
                if analyzer.done:
                    break
        except Exception as exc:
            self._analyzer_failed(flow, st, exc)
            return False
        return True

    def _give(self, st: _Stream, from_client: bool, data: bytes, ts_ns: int) -> None:
        """Deliver the direction's next bytes, less those the analyzer asked to skip."""
        skip = st.skip_client if from_client else st.skip_server
        if skip:
            n = len(data)
            if n <= skip:
                _set_skip(st, from_client, skip - n)
                return
            data = data[skip:]
            _set_skip(st, from_client, 0)
        st.analyzer.data(from_client, data, ts_ns)
        if st.take_skip is not None:
            more = st.take_skip(from_client)
            if more:
                _set_skip(st, from_client, more)

    def _gap(self, st: _Stream, from_client: bool, size: int) -> None:
        """``size`` bytes of the direction never arrived: those the analyzer skips anyway are
        not a gap for it."""
        skip = st.skip_client if from_client else st.skip_server
        if skip:
            used = min(skip, size)
            _set_skip(st, from_client, skip - used)
            size -= used
            if not size:
                return
        st.analyzer.gap(from_client, size)

    def _analyzer_failed(self, flow: Any, st: _Stream, exc: Exception) -> None:
        """The analyzer raised: reported, and the flow is given up (raised again when strict)."""
        if self._strict:
            raise exc
        self._anomaly(
            ANOMALY_ANALYZER_ERROR,
            flow.uid,
            f"{st.spec.name}: {type(exc).__name__}: {exc}",
        )
        flow.stream = False

    def _close_analyzer(self, flow: Any, st: _Stream) -> None:
        flow.stream = False
        st.client = st.server = None
        try:
            st.analyzer.close()
        except Exception as exc:
            if self._strict:
                raise
            self._anomaly(
                ANOMALY_ANALYZER_ERROR,
                flow.uid,
                f"{st.spec.name}: close: {type(exc).__name__}: {exc}",
            )


def _set_skip(st: _Stream, from_client: bool, n: int) -> None:
    if from_client:
        st.skip_client = n
    else:
        st.skip_server = n


def _direction(from_client: bool) -> str:
    return "client->server" if from_client else "server->client"
