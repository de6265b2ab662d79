"""The HL7 byte fixtures are what python-hl7 really puts on the wire: record the exchanges again
(python-hl7's MLLPClient -> a recording relay -> python-hl7's asyncio MLLP server, all on
127.0.0.1) and compare with the committed constants of tests/wire/hl7_frames.py."""

from __future__ import annotations

import pytest
from wire import hl7_frames as w


def test_fixtures_match_a_fresh_python_hl7_recording() -> None:
    pytest.importorskip("hl7", reason="python-hl7 (pip install hl7) records the fixtures")
    assert w.record_exchanges() == w.RECORDED


def test_fixtures_carry_the_phi_canaries() -> None:
    for name, (sent, _) in w.RECORDED.items():
        assert b"PHI-CANARY-0001" in sent, name
        assert b"19000101" in sent, name
    for name in ("ORU_R01_V251", "ORU_R01_V27_PRT"):
        assert b"CANARY-OBX-VALUE" in w.RECORDED[name][0]
