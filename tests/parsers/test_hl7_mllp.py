"""MLLP deframing (monitor.parsers.hl7.mllp): HL7 Transport Specification, MLLP release 2.

Blocks come from python-hl7's MLLP client and server (tests/wire/hl7_frames.py); the defects are
derived from them and named for the defect.
"""

from __future__ import annotations

import tracemalloc

from wire import hl7_frames as w

from monitor.parsers.hl7.mllp import (
    CARRIAGE_RETURN,
    END_BLOCK,
    START_BLOCK,
    Anomaly,
    Deframer,
    Event,
    Frame,
)


def _feed_all(chunks: list[bytes], deframer: Deframer | None = None) -> list[Event]:
    d = deframer or Deframer()
    events: list[Event] = []
    for i, chunk in enumerate(chunks):
        events += d.feed(chunk, i)
    events += d.flush()
    return events


def _frames(events: list[Event]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def _names(events: list[Event]) -> list[str]:
    return [e.name for e in events if isinstance(e, Anomaly)]


def test_constants_are_the_mllp_release_2_bytes() -> None:
    assert (START_BLOCK, END_BLOCK, CARRIAGE_RETURN) == (b"\x0b", b"\x1c", b"\r")


def test_one_block() -> None:
    events = _feed_all([w.ADT_A01_V25_MLLP])
    assert events == [
        Frame(
            data=w.ADT_A01_V25_MLLP[1:-2],
            framing="mllp",
            size=len(w.ADT_A01_V25_MLLP) - 3,
            ts_ns=0,
            offset=1,
        )
    ]


def test_several_blocks_in_one_chunk() -> None:
    stream = b"".join(sent for sent, _ in w.RECORDED.values())
    frames = _frames(_feed_all([stream]))
    assert [f.data for f in frames] == [sent[1:-2] for sent, _ in w.RECORDED.values()]
    assert _names(_feed_all([stream])) == []


def test_byte_by_byte_gives_the_same_messages() -> None:
    stream = b"".join(sent for sent, _ in w.RECORDED.values())
    whole = _feed_all([stream])
    split = _feed_all([stream[i : i + 1] for i in range(len(stream))])
    assert [f.data for f in _frames(split)] == [f.data for f in _frames(whole)]
    assert [f.offset for f in _frames(split)] == [f.offset for f in _frames(whole)]
    assert _names(split) == []
    # ts: the chunk (here: the byte) that carried the message's last byte, just before <EB>.
    ends = [f.offset + f.size for f in _frames(split)]
    assert [f.ts_ns for f in _frames(split)] == ends


def test_missing_end_block_closes_the_open_message() -> None:
    events = _feed_all([w.ADT_MISSING_END_BLOCK_THEN_ORU])
    assert _names(events) == ["hl7.mllp_missing_end_block"]
    assert [f.data for f in _frames(events)] == [
        w.ADT_A01_V25_MLLP[1:-2],
        w.ORU_R01_V251_MLLP[1:-2],
    ]


def test_bytes_outside_blocks_are_skipped_once_per_run() -> None:
    stream = w.GARBAGE_THEN_ADT
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        events = _feed_all(chunks)
        assert _names(events) == ["hl7.mllp_bytes_outside_block"]
        anomaly = next(e for e in events if isinstance(e, Anomaly))
        assert anomaly.detail == "17 bytes outside MLLP blocks skipped at stream offset 0"
        assert [f.data for f in _frames(events)] == [w.ADT_A01_V25_MLLP[1:-2]]


def test_end_block_without_cr_and_lf_after_cr_are_tolerated() -> None:
    stream = w.ADT_A01_V25_MLLP[:-1] + w.ORU_R01_V251_MLLP + b"\n" + w.ORM_O01_V23_MLLP
    events = _feed_all([stream])
    assert _names(events) == []
    assert len(_frames(events)) == 3


def test_block_cut_by_end_of_stream_is_incomplete() -> None:
    events = _feed_all([w.ADT_A01_V25_MLLP[:-2]])
    assert _names(events) == ["hl7.message_incomplete"]
    (frame,) = _frames(events)
    assert frame.complete is False
    assert frame.data == w.ADT_A01_V25_MLLP[1:-2]


def test_gap_cuts_the_message_and_resyncs_silently_on_the_next_block() -> None:
    d = Deframer()
    events = d.feed(w.ADT_A01_V25_MLLP[:40], 1)
    events += d.gap(30)
    events += d.feed(w.ADT_A01_V25_MLLP[70:] + w.ORU_R01_V251_MLLP, 2)
    events += d.flush()
    assert _names(events) == ["hl7.message_incomplete"]
    frames = _frames(events)
    assert [f.complete for f in frames] == [False, True]
    assert frames[0].data == w.ADT_A01_V25_MLLP[1:40]
    assert frames[1].data == w.ORU_R01_V251_MLLP[1:-2]
    assert frames[1].offset == len(w.ADT_A01_V25_MLLP) + 1


def test_message_over_the_maximum_keeps_a_prefix() -> None:
    body = w.ORU_R01_V251_MLLP[1:-2]
    d = Deframer(max_size=200, keep=100)
    events = _feed_all([w.ORU_R01_V251_MLLP[:150], w.ORU_R01_V251_MLLP[150:]], d)
    assert _names(events) == ["hl7.message_too_large"]
    (frame,) = _frames(events)
    assert frame.data == body[:100]
    assert frame.size == len(body)
    assert frame.truncated and frame.complete


def test_block_that_never_ends_has_bounded_memory() -> None:
    """10 MB after <SB>MSH without <EB>: only the 8 MiB bound + the kept prefix are held."""
    d = Deframer()
    chunk = b"OBX|1|ED|PDF||" + b"A" * 65_522 + b"\r"  # 64 KiB
    tracemalloc.start()
    try:
        events = d.feed(w.ORU_R01_V251_MLLP[:-2], 0)
        for i in range(160):  # 10 MiB
            events += d.feed(chunk, i + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _names(events) == ["hl7.message_too_large"]
    assert peak < 9 * 1024 * 1024 + 3 * len(chunk)
    flushed = d.flush()
    assert _names(flushed) == ["hl7.message_incomplete"]
    (frame,) = _frames(flushed)
    assert len(frame.data) == 16 << 10
    assert frame.size == len(w.ORU_R01_V251_MLLP) - 3 + 160 * len(chunk)


def test_raw_hl7_without_mllp() -> None:
    stream = w.RAW_ADT_THEN_ORU
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        events = _feed_all(chunks)
        assert _names(events) == []
        frames = _frames(events)
        assert [f.data for f in frames] == [w.ADT_A01_V25_MLLP[1:-2], w.ORU_R01_V251_MLLP[1:-2]]
        assert [f.framing for f in frames] == ["raw", "raw"]
        assert [f.offset for f in frames] == [0, len(w.ADT_A01_V25_MLLP) - 3]


def test_raw_hl7_with_lf_line_ends() -> None:
    stream = w.RAW_ADT_THEN_ORU.replace(b"\r", b"\r\n")
    frames = _frames(_feed_all([stream]))
    assert len(frames) == 2
    assert frames[1].data.startswith(b"MSH|^~\\&|MONITOR")


def test_raw_message_without_final_segment_terminator_is_incomplete() -> None:
    events = _feed_all([w.RAW_ADT_THEN_ORU[:-1]])
    assert _names(events) == ["hl7.message_incomplete"]


def test_empty_and_tiny_input() -> None:
    assert _feed_all([]) == []
    assert _feed_all([b""]) == []
    assert _names(_feed_all([b"MS"])) == ["hl7.mllp_bytes_outside_block"]
