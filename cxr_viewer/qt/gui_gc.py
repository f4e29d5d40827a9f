"""Python's cyclic garbage collector runs only on the GUI thread while the viewer is up.

Python's cyclic collector runs in whichever thread happens to allocate when a threshold is crossed.
For the viewer that is often a worker: the loader decoding a file, the model thread, the export. If
that collection frees a Qt object of the GUI thread, for example part of a closed dialog or window
caught in a reference cycle, its destructor runs on the wrong thread. Qt cannot stop that object's
timers from there ("QObject::killTimer: Timers cannot be stopped from another thread"), so a timer
later fires on freed memory and the process dies with a segmentation fault in
``QApplication::notify`` (reproduced under gdb in the Qt tests, 2026-12-02).

`collect_on_gui_thread` turns the automatic collector off and collects from a QTimer on the GUI
thread instead, every `INTERVAL_MS`, by Python's own thresholds. Reference counting still frees most
objects at once, on any thread; only cycles wait for the timer. pyqtgraph's `GarbageCollector` does
the same; this one is owned by the QApplication, so it lives as long as the application does, and
installing it again does nothing. At quit, Python's automatic collector is turned back on.

Full collections cost time on the GUI thread: with the model loaded, the heap holds some 500,000
objects and a full collection took 340-560 ms here (timed with the bundled model loaded, two busy cores).
Python itself runs few of them (it skips a full collection until the objects that survived the
younger collections reach a quarter of the old generation). Two things keep the GUI thread
responsive instead:
- `freeze_long_lived`, called once when the first model is ready: one full collection, then
  `gc.freeze()` moves what is left (modules, the model, the window) out of every later collection.
  A full collection afterwards took 0.35 ms with a study analysed.
- at most one full collection every `FULL_MIN_INTERVAL_S`; in between, the oldest generation
  collected is the middle one.
"""

from __future__ import annotations

import gc
import logging
import time

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

__all__ = ["FULL_MIN_INTERVAL_S", "INTERVAL_MS", "GuiThreadCollector", "collect_on_gui_thread"]

log = logging.getLogger(__name__)

#: how often the GUI thread checks the collector's counts
INTERVAL_MS = 500
#: the least time between two full collections
FULL_MIN_INTERVAL_S = 30.0


class GuiThreadCollector(QObject):
    """Collects on a timer of the GUI thread, using Python's own thresholds."""

    def __init__(self, app: QCoreApplication) -> None:
        super().__init__(app)
        self.setObjectName("cxr-gui-thread-gc")
        self.thresholds = gc.get_threshold()
        self.frozen = False
        self._last_full = time.monotonic()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()
        app.aboutToQuit.connect(self.restore)

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (as Python would)."""
        counts = gc.get_count()
        generation = -1
        for g, (count, threshold) in enumerate(zip(counts, self.thresholds, strict=True)):
            if count <= threshold:
                break
            generation = g
        if generation == 2 and time.monotonic() - self._last_full < FULL_MIN_INTERVAL_S:
            generation = 1
        if generation >= 0:
            gc.collect(generation)
            if generation == 2:
                self._last_full = time.monotonic()

    def freeze_long_lived(self) -> bool:
        """Once, when the application is set up: collect everything, then freeze what survives.

        Returns True the first time (the freeze was done), False afterwards."""
        if self.frozen:
            return False
        start = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.frozen = True
        self._last_full = time.monotonic()
        log.debug(
            "froze %d long-lived objects in %.0f ms",
            gc.get_freeze_count(),
            (time.perf_counter() - start) * 1e3,
        )
        return True

    def restore(self) -> None:
        """Stop the timer and give collection back to Python (at quit)."""
        self.timer.stop()
        gc.enable()


def collect_on_gui_thread() -> GuiThreadCollector | None:
    """Install the collector on the running QApplication (once) and return it.

    Call from the GUI thread. Returns None when there is no application or when called from
    another thread; the automatic collector is then left as it is.
    """
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() != app.thread():
        return None
    existing = app.findChild(GuiThreadCollector, "cxr-gui-thread-gc")
    if isinstance(existing, GuiThreadCollector):
        gc.disable()
        if not existing.timer.isActive():
            existing.timer.start()
        return existing
    return GuiThreadCollector(app)
