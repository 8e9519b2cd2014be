"""Servers the benchmarks talk to, each in its own process (so client and server do not share
a GIL, and the server's memory can be measured): ``fakecvat serve`` (fakecvat's own public
:class:`fakecvat.FakeCVATProcess`, re-exported here) and a do-nothing HTTP endpoint that reads
and discards request bodies (the upload ceiling)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from fakecvat.process import FakeCVATProcess  # noqa: F401  (bench.servers.FakeCVATProcess)

from .core import env_with_pythonpath

__all__ = ["FakeCVATProcess", "NullServer", "peak_rss_mb"]


def peak_rss_mb(pid: int) -> float | None:
    """High-water resident set of a live process (Linux /proc), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _Process:
    """NullServer's base: a child that prints ``... serving on http://HOST:PORT`` when ready."""

    args: list[str] = []

    def __init__(self, log_path=None):
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log_path = log_path

    def start(self, timeout: float = 30.0):
        self.proc = subprocess.Popen([sys.executable, *self.args], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, env=env_with_pythonpath(), text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"{self.args} exited with {self.proc.wait()}")
            m = re.search(r"serving on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                # keep draining stderr so a chatty server never blocks on a full pipe
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise RuntimeError(f"{self.args} not ready after {timeout}s")

    def _drain(self):
        # keep the server's log (tracebacks of 500s) beside the benchmark's scratch files
        with open(self.log_path, "a") if self.log_path else open(os.devnull, "w") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class NullServer(_Process):
    """The upload ceiling: answers 201 to any POST after reading and discarding its body."""

    def __init__(self, log_path=None):
        super().__init__(log_path)
        self.args = ["-m", "bench.nullserver"]
