"""``emit(signal, *args)``: emit a Qt signal from Python without PySide6 6.12.0's reference leak.

PySide6 6.12.0 returns the result of ``SignalInstance.emit()`` (``True``) without taking a
reference, so every emit from Python drops one reference to ``True``. On Python 3.10/3.11, where
``True`` is not immortal, a few hundred emits later the interpreter aborts with "bool_dealloc:
deallocating True or False". We detect the leak once and give the reference back after each emit.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def _emit_drops_a_reference() -> bool:
    if sys.version_info >= (3, 12):  # bools are immortal: nothing to repair
        return False
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(3):
        probe.ping.emit()
    return before - sys.getrefcount(True) == 3


_REPAIR = _emit_drops_a_reference()
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


def emit(signal: Any, *args: Any) -> None:
    """``signal.emit(*args)``, repairing the returned object's reference count where PySide leaks it."""
    result = signal.emit(*args)
    if _REPAIR:
        _incref(result)


def emitter(signal: Any) -> Any:
    """A slot that re-emits ``signal`` (instead of connecting ``signal.emit`` directly)."""
    return lambda *_args: emit(signal)
