"""Cyclic garbage is collected on the GUI thread, never on a worker (`cxr_viewer.qt.gui_gc`).

Without this, a worker thread crossing the collector's threshold freed Qt objects of closed windows on
the wrong thread; their timers then fired on freed memory (a segmentation fault in the Qt tests)."""

from __future__ import annotations

import gc
import threading
import time

from cxr_viewer.qt.gui_gc import FULL_MIN_INTERVAL_S, GuiThreadCollector, collect_on_gui_thread


class _Cycle:
    """Garbage in a reference cycle that records the thread that frees it."""

    def __init__(self, freed_on: list[int]) -> None:
        self.me = self
        self.freed_on = freed_on

    def __del__(self) -> None:
        self.freed_on.append(threading.get_ident())


def _churn(kept: list[object]) -> None:
    """Allocate (and keep) enough container objects to cross every generation's threshold."""
    for _ in range(20):
        kept.append([[i] for i in range(5_000)])


def test_cycles_made_garbage_while_a_worker_allocates_are_freed_on_the_gui_thread(qtbot, qapp) -> None:
    collector = collect_on_gui_thread()
    assert isinstance(collector, GuiThreadCollector)
    assert not gc.isenabled()
    assert collect_on_gui_thread() is collector  # installed once per application
    gui = threading.get_ident()
    freed_on: list[int] = []
    _Cycle(freed_on)  # unreachable at once, reclaimable only by the cyclic collector
    kept: list[object] = []
    worker = threading.Thread(target=_churn, args=(kept,), name="allocating-worker")
    worker.start()
    worker.join()
    assert freed_on == []  # the worker's allocations did not collect
    qtbot.waitUntil(lambda: freed_on != [], timeout=10_000)  # the GUI thread's timer did
    assert freed_on == [gui]


def test_full_collections_are_rate_limited(qapp, monkeypatch) -> None:
    collector = collect_on_gui_thread()
    assert collector is not None
    asked: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: asked.append(generation) or 0)
    over = tuple(t + 1 for t in collector.thresholds)  # every generation past its threshold
    monkeypatch.setattr(gc, "get_count", lambda: over)
    collector._last_full = time.monotonic()
    collector.check()
    collector._last_full = time.monotonic() - FULL_MIN_INTERVAL_S - 1
    collector.check()
    collector.check()
    assert asked == [1, 2, 1]  # a full collection once the interval has passed, not twice in a row
    monkeypatch.setattr(gc, "get_count", lambda: (collector.thresholds[0], 99, 99))
    collector.check()
    assert asked == [1, 2, 1]  # nothing when the youngest generation is not past its threshold


def test_long_lived_objects_are_frozen_once(qapp) -> None:
    collector = collect_on_gui_thread()
    assert collector is not None
    collector.freeze_long_lived()  # the first call in this process freezes; any later one does not
    assert collector.frozen and gc.get_freeze_count() > 0
    assert collector.freeze_long_lived() is False


def test_restore_gives_collection_back_and_installing_again_takes_it(qapp) -> None:
    collector = collect_on_gui_thread()
    assert collector is not None
    collector.restore()
    try:
        assert gc.isenabled() and not collector.timer.isActive()
    finally:
        assert collect_on_gui_thread() is collector
    assert not gc.isenabled() and collector.timer.isActive()


def test_not_installed_from_a_worker_thread(qapp) -> None:
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.append(collect_on_gui_thread()))
    worker.start()
    worker.join()
    assert found == [None]


def test_the_window_installs_the_collector_and_freezes_once_its_model_is_ready(
    qtbot, make_window, fake_predictor_cls
) -> None:
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    assert window.gc_collector is collect_on_gui_thread()  # the application's one collector
    assert not gc.isenabled()
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=30_000)
    assert window.gc_collector.frozen and gc.get_freeze_count() > 0
