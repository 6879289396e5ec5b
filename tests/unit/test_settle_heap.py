"""A service process takes what it built at start-up out of the collector's view once started."""

from __future__ import annotations

import gc

from saas.common.process import GC_THRESHOLD, settle_heap


def test_once_started_the_start_up_heap_is_frozen_and_collections_come_less_often():
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
