"""Work around PySide6 6.12.0's reference leaks on CPython < 3.12.

PySide6 6.12.0 returns ``None`` from void methods (``timer.stop()``, ``widget.setObjectName(...)``)
and ``True`` from ``Signal.emit()`` without taking a reference. From Python 3.12 on these objects
are immortal, so nothing happens; on 3.10 and 3.11 each call drops one reference, and after some
thousands of calls the interpreter aborts with "none_dealloc: deallocating None" (or True/False).
When the leak is detected we give the three singletons a huge reference count, which makes them
immortal in effect, as they are in 3.12.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_PAD = 1 << 40  # far more references than any session can leak


class _Probe(QObject):
    ping = Signal()


def pyside_drops_references() -> bool:
    """True if PySide's void methods or emit() leak references to None / True on this interpreter."""
    if sys.version_info >= (3, 12):
        return False
    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(100):
        probe.setObjectName("probe")
        probe.ping.emit()
    lost = (none_before - sys.getrefcount(None), true_before - sys.getrefcount(True))
    return max(lost) >= 90  # a few references may move on other threads meanwhile


def repair_singleton_refcounts() -> bool:
    """Pad the reference counts of None, True and False if PySide leaks them; returns whether it did."""
    if not pyside_drops_references():
        return False
    for singleton in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt is the first field of every object
        count.value += _PAD
    return True


REPAIRED = repair_singleton_refcounts()
