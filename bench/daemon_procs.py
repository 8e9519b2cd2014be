"""Real processes for the daemon benchmarks: a ``fakecvat serve`` subprocess (fakecvat's own
:class:`~fakecvat.FakeCVATProcess`, with the few extras the benchmarks use), a ``python -m
syncd run ROOT`` subprocess, a NOTIFY_SOCKET stand-in, and CPU/RSS sampling from /proc.

Everything runs on loopback with a free port, in temp dirs the caller owns, and every process
started here is stopped by the ``close()`` of the object that started it (context managers).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.core import env_with_pythonpath
from fakecvat.process import FakeCVATProcess

USER, PASSWORD = "admin", "admin"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    vals = sorted(values)
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, int(round(q / 100.0 * len(vals) + 0.5)) - 1))
    return vals[k]


def summary(values) -> dict:
    vals = list(values)
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "p50": round(percentile(vals, 50), 4),
            "p95": round(percentile(vals, 95), 4), "min": round(min(vals), 4),
            "max": round(max(vals), 4)}


def wait_for(pred, timeout: float, step: float = 0.01, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class FakeCVATProc(FakeCVATProcess):
    """``fakecvat serve`` (in memory unless ``data_dir``) on a free port, started on creation.

    :class:`fakecvat.FakeCVATProcess` plus what the daemon benchmarks lean on: ``.session`` is
    a logged-in requests session (an attribute here, not the method), ``.tasks()``, and
    ``close(keep_log)`` that also keeps the log when ``BENCH_KEEP_LOGS`` is set."""

    def __init__(self, data_dir: Path | None = None, threads: int = 8):
        super().__init__(data_dir=data_dir, threads=threads, users=[f"{USER}:{PASSWORD}"],
                         env=env_with_pythonpath())
        self.start()
        self.session = super().session()

    def tasks(self) -> list[dict]:
        return self.get("/api/tasks", page_size="all")["results"]

    def close(self, keep_log: bool = False) -> None:
        keep_log = keep_log or bool(os.environ.get("BENCH_KEEP_LOGS"))
        super().close(keep_log=keep_log)
        if keep_log:
            print(f"fakecvat log kept: {self.log_path}", file=sys.stderr)


class Notify:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records arrival times."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bsdn")  # short path: AF_UNIX paths max 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, str]] = []

    def wait(self, text: str, timeout: float) -> float:
        """Monotonic time the first message containing ``text`` arrived."""
        deadline = time.monotonic() + timeout
        while True:
            for t, m in self.messages:
                if text in m:
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {text!r} on NOTIFY_SOCKET within {timeout}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
                self.messages.append((time.monotonic(), data.decode()))
            except socket.timeout:
                pass

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonProc:
    """``python -m syncd run ROOT`` with CVAT_* env; stderr to a log file read while it runs."""

    def __init__(self, root: Path, url: str, notify: Notify | None = None):
        env = dict(os.environ, CVAT_URL=url, CVAT_USERNAME=USER, CVAT_PASSWORD=PASSWORD)
        for k in ("CVAT_TOKEN", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.path
        self.log_path = Path(root).parent / f"{Path(root).name}-daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        env["PYTHONPATH"] = env_with_pythonpath()["PYTHONPATH"]
        if os.environ.get("BENCH_SYNCD_PATH"):
            # before/after figures: run the daemon from another checkout (e.g. a git worktree)
            env["PYTHONPATH"] = os.environ["BENCH_SYNCD_PATH"] + os.pathsep + env["PYTHONPATH"]
        self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self._offset = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def cpu_seconds(self) -> float:
        """User+system CPU time the daemon used so far (from /proc/PID/stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CONFIG = """\
[cvat]
poll_interval = {poll}
{extra}

[[rule]]
name = "bench"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["incoming/**"]
label_field = "ground_truth"
label_type = "detections"
classes = ["cat", "dog"]
batch_window = {window}
task_size = {task_size}
cleanup = false
"""


def write_config(root: Path, *, poll: float, window: float, webhooks: bool = False,
                 task_size: int = 1000) -> None:
    extra = 'project_name = "bench"\nwebhook = "127.0.0.1:0"' if webhooks else ""
    (Path(root) / "syncd.toml").write_text(CONFIG.format(poll=poll, window=window, extra=extra,
                                                         task_size=task_size))
