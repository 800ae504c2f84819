"""The process' one heap freeze: torch and transformers imported with the collector off, then frozen."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")
_FIRST_CALL_SECONDS: list[float] = []  # the one call that imported torch and transformers, timed


def import_seconds() -> float:
    """How long this process' first `imported_and_frozen` took (its imports): 0 until it ran."""
    return sum(_FIRST_CALL_SECONDS)


def imported_and_frozen(step: Callable[..., _T], *args: Any) -> _T:
    """`step(*args)`, which imports torch and transformers: ~1M objects that live as long as the process.

    No collections while they are built (each full one rescans them all and frees next to nothing); then what
    is there is frozen, once, so every later collection and the interpreter's exit skip it (on the MiniLM audit:
    0.3 s less importing, 1 s less at exit). It is frozen without a collection first (0.2 s saved), garbage
    included: the frames of ImportErrors that the imports caught. A frame links to its caller's, and a caller's
    frame pins its locals when it returns (here a model), so `step` runs in a thread of its own, waited for:
    a thread's first frame has no caller, and the garbage's chain of frames ends inside that thread.
    (A generator frame would end it on CPython 3.10 and 3.11 only.)
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(step(*args))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(error)

    started = time.perf_counter()
    collecting = gc.isenabled()
    gc.disable()
    try:
        importer = threading.Thread(target=run, name="bertprobe-imports", daemon=True)  # Ctrl-C need not wait for it
        importer.start()
        importer.join()
    finally:
        if collecting:
            gc.enable()
    (result,) = outcome
    if not _FIRST_CALL_SECONDS:
        _FIRST_CALL_SECONDS.append(time.perf_counter() - started)
    if isinstance(result, BaseException):
        raise result
    if gc.get_freeze_count() == 0:
        gc.freeze()
    return result  # type: ignore[no-any-return]
