"""SIGTERM/SIGINT handed to a thread, never handled inside the code they interrupt.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock the handler needs as well: the lock that masks secrets in every log line,
or the lock inside a ``threading.Event`` being waited on. Those locks are not reentrant, so a
handler that logs or sets an event can deadlock the process it was meant to stop (seen in CI:
a SIGTERM landing while the daemon formatted its "daemon ready" line left it hung).

``SignalRelay`` installs handlers that do nothing in Python. The interpreter writes each
signal's number to its wakeup descriptor (``signal.set_wakeup_fd``, from C, safe at any
instant); a thread reads it and calls ``on_signal(signum)`` like any other thread would, so
a lock the main thread holds makes it wait a moment instead of deadlocking.
"""
from __future__ import annotations

import os
import signal
import threading
import traceback
from typing import Callable

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_WAKE = 0  # not a signal number: the relay's own "stop reading"


def _nothing(_signum, _frame) -> None:
    """The Python-level handler: the wakeup descriptor already carries the signal."""


class SignalRelay:
    """``with SignalRelay(on_signal): ...``: SIGTERM and SIGINT call ``on_signal(signum)`` from
    the relay's thread for the duration of the block (from the main thread only, as
    ``signal.signal`` requires); the previous handlers are restored afterwards."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.on_signal = on_signal
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "SignalRelay":
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)  # (set_wakeup_fd requires it)
        self._previous_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, _nothing) for s in SIGNALS}
        self._thread = threading.Thread(target=self._relay, name="syncd-signals", daemon=True)
        self._thread.start()
        return self

    def _relay(self) -> None:
        while True:
            data = os.read(self._r, 64)
            for signum in data:
                if signum == _WAKE:
                    return
                if signum in SIGNALS:
                    try:
                        self.on_signal(signum)
                    except Exception:  # the relay must outlive it: the next signal still counts
                        traceback.print_exc()

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._previous_fd)
        try:
            os.write(self._w, bytes([_WAKE]))
        except BlockingIOError:  # 64 KiB of unread signals: the thread is stuck in on_signal
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._w)
        if self._thread is None or not self._thread.is_alive():
            os.close(self._r)  # (else the stuck thread still reads it; a daemon thread dies with us)
