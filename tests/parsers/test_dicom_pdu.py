"""PS3.8 §9.3 framing (monitor.parsers.dicom.pdu): headers, bounds, incremental framing.

Fixtures: tests/wire/dicom_pdus.py (pynetdicom encoders; malformed units hand-built and named
for their defect).
"""

from __future__ import annotations

from typing import Any

import pytest
from wire import dicom_pdus as w

from monitor.parsers.dicom.pdu import (
    EV_ANOMALY,
    EV_PDATA,
    EV_PDU,
    EV_PDV_DATA,
    EV_PDV_END,
    EV_PDV_START,
    MAX_PDU_LENGTH,
    Anomaly,
    Framer,
    PduHeader,
    parse_pdu_header,
    parse_pdv_header,
)


def _summary(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Events with PDV data joined per PDV, so chunkings compare equal."""
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if ev[0] == EV_PDV_DATA:
            data = bytes(ev[1])
            if out and out[-1][0] == EV_PDV_DATA:
                out[-1] = (EV_PDV_DATA, out[-1][1] + data)
            else:
                out.append((EV_PDV_DATA, data))
        elif ev[0] == EV_ANOMALY:
            out.append((EV_ANOMALY, ev[1].name))
        else:
            out.append(ev)
    return out


def _frame(data: bytes, chunk: int) -> list[tuple[Any, ...]]:
    f = Framer()
    events: list[tuple[Any, ...]] = []
    for i in range(0, len(data), chunk):
        events += f.feed(data[i : i + chunk])
    return _summary(events)


def test_parse_pdu_header_of_an_associate_rq() -> None:
    unit, nxt = parse_pdu_header(w.ASSOCIATE_RQ)
    assert unit == PduHeader(0x01, len(w.ASSOCIATE_RQ) - 6)
    assert unit.name == "A-ASSOCIATE-RQ"
    assert nxt == 6


def test_parse_pdu_header_bounds() -> None:
    unit, nxt = parse_pdu_header(w.assoc_rq_length_4gb)
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdu_length_absurd"
    assert nxt == 0
    unit, _ = parse_pdu_header(w.pdu_unknown_type_0x09)
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdu_unknown_type"
    unit, _ = parse_pdu_header(b"\x01\x00\x00")
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdu_truncated"
    unit, _ = parse_pdu_header(b"\x02\x00" + (MAX_PDU_LENGTH + 1).to_bytes(4, "big"))
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdu_length_absurd"


def test_parse_pdv_header() -> None:
    pdu = w.c_echo_rq()[0]
    unit, nxt = parse_pdv_header(pdu, 6)
    assert not isinstance(unit, Anomaly)
    assert (unit.length, unit.context_id, unit.is_command, unit.is_last) == (
        len(pdu) - 10,
        9,
        True,
        True,
    )
    assert nxt == 12
    unit, _ = parse_pdv_header(w.p_data_pdv_length_1, 6)
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdv_length_invalid"


STREAM = b"".join(
    [w.ASSOCIATE_RQ, *w.c_store_rq(w.DATASETS[w.IMPLICIT_LE], 1, max_pdu=200), w.RELEASE_RQ]
)


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 64, 1000, len(STREAM)])
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    assert _frame(STREAM, chunk) == _frame(STREAM, len(STREAM))


def test_events_of_a_stream() -> None:
    events = _frame(STREAM, len(STREAM))
    kinds = [e[0] for e in events]
    assert kinds[0] == EV_PDU and events[0][2] == w.ASSOCIATE_RQ[6:]
    assert kinds[-1] == EV_PDU and events[-1][1] == PduHeader(0x05, 4)
    assert kinds.count(EV_PDATA) == len(w.c_store_rq(w.DATASETS[w.IMPLICIT_LE], 1, max_pdu=200))
    data = b"".join(e[1] for e in events if e[0] == EV_PDV_DATA)
    assert w.DATASETS[w.IMPLICIT_LE] in data
    assert kinds.count(EV_PDV_START) == kinds.count(EV_PDV_END)


def test_unknown_type_abandons_the_direction() -> None:
    events = _frame(w.pdu_unknown_type_0x09 + w.RELEASE_RQ, 3)
    assert events == [(EV_ANOMALY, "dicom.pdu_unknown_type")]


def test_absurd_length_abandons_the_direction() -> None:
    f = Framer()
    events = f.feed(w.assoc_rq_length_4gb)
    assert [e[1].name for e in events] == ["dicom.pdu_length_absurd"]
    assert f.dead


def test_pdv_overrun_skips_the_pdu_and_resyncs() -> None:
    events = _frame(w.p_data_pdv_length_overrun + w.RELEASE_RQ, 4)
    assert events == [
        (EV_PDATA, PduHeader(4, 20)),
        (EV_ANOMALY, "dicom.pdv_length_overrun"),
        (EV_PDU, PduHeader(5, 4), b"\x00" * 4),
    ]


def test_pdv_length_below_2_skips_the_pdu() -> None:
    events = _frame(w.p_data_pdv_length_1 + w.RELEASE_RP, 1)
    assert events == [
        (EV_PDATA, PduHeader(4, 10)),
        (EV_ANOMALY, "dicom.pdv_length_invalid"),
        (EV_PDU, PduHeader(6, 4), b"\x00" * 4),
    ]
