"""Stream bypass (ParserSpec.skips): DICOM pixel data after the device attributes is dropped
before the analyzer, and with the C fast lane not even handed to Python. The records must be
those of a run without it; a loss inside the skipped bytes is no gap for the analyzer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monitor.flows import FlowTable, _flowcore
from monitor.parsers import REGISTRY
from monitor.parsers.base import ParserSpec
from monitor.source import CaptureReader
from monitor.streams import StreamManager

from conftest import PCAPS

Frame = tuple[int, int, bytes, int]
BULK = PCAPS / "dicom" / "bulk-store.pcap"


def _frames(path: Path) -> list[Frame]:
    with CaptureReader(str(path)) as r:
        return list(r)


class _Counting:
    """Wraps an analyzer; counts the bytes delivered to it."""

    delivered = 0

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        _Counting.delivered += len(data)
        self.inner.data(from_client, data, ts_ns)

    def gap(self, from_client: bool, size: int) -> None:
        self.inner.gap(from_client, size)

    def close(self) -> None:
        self.inner.close()

    def take_skip(self, from_client: bool) -> int:
        return int(self.inner.take_skip(from_client))

    @property
    def done(self) -> bool:
        return bool(self.inner.done)


def _run(frames: list[Frame], *, skips: bool, fast_lane: bool) -> dict[str, Any]:
    records: list[object] = []
    anomalies: list[tuple[str, str | None, str | None]] = []
    registry: list[ParserSpec] = []
    for spec in REGISTRY:
        if spec.name == "dicom":
            make = spec.analyzer
            assert make is not None
            spec = replace(spec, skips=skips, analyzer=lambda ctx, make=make: _Counting(make(ctx)))
        registry.append(spec)
    streams = StreamManager(
        tuple(registry), emit=records.append, anomaly=lambda *a: anomalies.append(a)
    )
    table = FlowTable(lambda f: None, streams=streams, fast_lane=fast_lane)
    _Counting.delivered = 0
    table.process(frames)
    table.flush()
    return {
        "records": [repr(r) for r in records],
        "anomalies": anomalies,
        "delivered": _Counting.delivered,
        "bypassing": streams.bypass is not None,
    }


@pytest.mark.parametrize("fast_lane", [False, True])
def test_the_records_are_those_of_a_run_without_bypass(fast_lane: bool) -> None:
    if fast_lane and _flowcore is None:
        pytest.skip("medmon was installed without the compiled modules")
    frames = _frames(BULK)
    plain = _run(frames, skips=False, fast_lane=fast_lane)
    skipping = _run(frames, skips=True, fast_lane=fast_lane)
    assert skipping["bypassing"] is fast_lane
    assert skipping["records"] == plain["records"] and len(plain["records"]) >= 2
    assert skipping["anomalies"] == plain["anomalies"]
    # 512x512x2-byte images: most of the bytes are pixel data, not delivered.
    assert skipping["delivered"] < plain["delivered"] / 10


class _Skipper:
    """A test analyzer: after its first delivery it skips the next 100 bytes."""

    def __init__(self, ctx: Any) -> None:
        self.got: list[tuple[str, Any]] = []
        self.done = False
        self._asked = False

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self.got.append(("data", bytes(data)))

    def gap(self, from_client: bool, size: int) -> None:
        self.got.append(("gap", size))

    def close(self) -> None:
        self.got.append(("close", None))

    def take_skip(self, from_client: bool) -> int:
        if self._asked:
            return 0
        self._asked = True
        return 100


def test_skipped_bytes_may_be_lost_and_a_gap_beyond_them_is_told() -> None:
    """Bytes lost inside the skipped span are no gap for the analyzer; the rest of a gap is.
    The stream reports its gaps either way."""
    made: list[_Skipper] = []

    def make(ctx: Any) -> _Skipper:
        made.append(_Skipper(ctx))
        return made[-1]

    spec = ParserSpec(name="skip", description="test", tcp_ports=(9,), analyzer=make, skips=True)
    anomalies: list[tuple[str, str | None, str | None]] = []
    manager = StreamManager((spec,), emit=lambda r: None, anomaly=lambda *a: anomalies.append(a))
    flow = SimpleNamespace(
        stream=None, server_port=9, client_port=40000, uid="C1", client_ip=b"\x7f\0\0\1",
        server_ip=b"\x7f\0\0\1", isn_client=0, isn_server=None, app=None, ckey=b"k",
    )  # fmt: skip
    # Data starts at seq 1 (ISN 0); seq 61-80 (inside the skip) and 131-160 (past it) are lost.
    for seq, payload in [(1, b"A" * 10), (11, b"B" * 50), (81, b"C" * 50), (161, b"D" * 10)]:
        manager.tcp(flow, True, 1, seq, 0x18, payload)
    manager.close(flow)
    # A: delivered; B: skipped; the first hole: skipped; C: 30 skipped, 20 delivered; the
    # second hole: a gap for the analyzer; then D.
    assert made[0].got == [("data", b"A" * 10), ("data", b"C" * 20), ("gap", 30),
                           ("data", b"D" * 10), ("close", None)]  # fmt: skip
    assert [a[0] for a in anomalies] == ["tcp.stream_gap", "tcp.stream_gap"]
