"""Pausing Python's cycle collector while a download turns CVAT's answer into labels.

Converting one job's 20,000 shapes allocates ~200,000 dicts and lists in a few tenths of a
second. Each allocation burst triggers the cycle collector, and its full passes walk every live
container, the freshly built labels included: measured on 1000 samples x 20 boxes, the
download step took 0.25-0.33 s with the collector and 0.20-0.21 s without. JSON trees hold no
reference cycles, so nothing waits on the collector meanwhile; reference counting still frees
everything as usual, and whatever cycles arise are collected once it runs again.

The collector is process-wide and the daemon loads several runs from several threads, so the
pause is counted: the first ``paused()`` to enter turns it off, the last to leave turns it back
on, and it stays off if something else had already turned it off.
"""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_restore = False  # whether the last one out turns the collector back on


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cycle collector off (see the module docstring)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()
