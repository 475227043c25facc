"""Process-level serving helpers."""

from __future__ import annotations

import gc

from gateway.app.serving import settle_heap


def test_settle_heap_freezes_what_start_up_left_alive() -> None:
    assert gc.get_freeze_count() == 0
    kept = [object() for _ in range(1000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
