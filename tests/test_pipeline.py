"""The pipeline's handling of the cyclic garbage collector (monitor.pipeline.gc_paused)."""

from __future__ import annotations

import gc

from monitor.pipeline import gc_paused


def _ids(generation: int) -> set[int]:
    return {id(o) for o in gc.get_objects(generation)}


def test_the_collector_is_paused_and_what_the_run_made_is_aged_at_once() -> None:
    """Inside, no automatic collection; on the way out the collector is on again, and what was
    made meanwhile sits in the oldest generation, so the next small collection walks none of
    it."""
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]
        assert id(kept[0]) in _ids(0)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert id(kept[0]) not in _ids(0) and id(kept[0]) in _ids(2)


def test_a_paused_or_freezing_caller_is_left_as_it_was() -> None:
    gc.disable()
    try:
        with gc_paused():
            inner = [[1]]
        assert not gc.isenabled()
        assert id(inner[0]) in _ids(0)  # not aged: the caller manages its collector
    finally:
        gc.enable()
    frozen = [[2]]
    gc.freeze()
    try:
        with gc_paused():
            pass
        assert gc.get_freeze_count() > 0  # the caller's frozen objects stay frozen
        assert id(frozen[0]) not in _ids(2)
    finally:
        gc.unfreeze()
