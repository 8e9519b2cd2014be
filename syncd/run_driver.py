"""Driving the daemon's unfinished runs through CVAT: upload, completion polls, loading labels.

The CVAT side of a reconcile pass: ``reconcile.Reconciler`` keeps the dataset side (scanning,
auto-tagging, gathering and planning runs) and calls ``RunDriver.drive`` once per pass. For every
unfinished run made by a rule, ``drive`` advances its upload until all tasks are ready, polls
whether all jobs are complete (every ``poll_interval``, or at once after ``poke``, a webhook), and
loads the labels back, through the same ``syncd.ops`` steps the one-shot CLI uses.

Failure handling: an error in one run is reported (once per distinct message) and that run is
retried later with exponential backoff; other runs go on. CVAT unreachable or answering 5xx
pauses every CVAT call with a global backoff (jitter, capped) and resumes by itself; the dataset
side asks ``cvat_ready`` before planning a run.
"""
from __future__ import annotations

import inspect
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import syncd.logs as logs
import syncd.ops as ops
from syncd.errors import SyncdError
from syncd.runs import RunStore

log = logs.get("reconcile")  # the pass logs under one name, whichever half of it speaks

FINISHED = ("loaded", "failed")
UPLOADING = ("created", "planned", "uploading")
MAX_UPLOAD_STEPS = 200          # per run per pass; then yield so other runs and signals get a turn
BACKOFF_BASE, BACKOFF_CAP = 1.0, 300.0


def is_cvat_down(exc: BaseException) -> bool:
    """No answer (refused, lost, timed out), a gateway error, or CVAT saying it is overloaded
    (429/503): the server, not this run, is the problem. A 500/501 or any 4xx stays with the
    run: it is usually about that run's content and must not stall the others."""
    status = getattr(exc, "status", "absent")
    if status is None or status in (429, 502, 503, 504):
        return True
    try:
        import requests
        return isinstance(exc, (requests.ConnectionError, requests.Timeout))
    except ImportError:  # pragma: no cover
        return False


def call_ops(fn: Callable, *args, **kwargs):
    """Call ``fn`` with only the keyword arguments it accepts (ops grows options over time;
    an option the current ops does not know must not break the daemon)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


@dataclass
class _RunState:
    retry_at: float = 0.0
    failures: int = 0
    polled_at: float = float("-inf")


class RunDriver:
    """What the CVAT side keeps between passes (in memory only; the truth is in the run records
    and in CVAT): the client, each run's retry and poll times, the global outage backoff."""

    def __init__(self, root: str, store: RunStore, client_factory: Callable[[], Any], *,
                 poll_interval: float, completion: str, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic, once: logs.Once,
                 report: Callable[..., None]):
        self.root = root
        self.store = store
        self.poll_interval = poll_interval
        self.completion = completion
        self.stop = stop
        self.clock = clock
        self.once = once
        self.report = report  # Reconciler._report: log once per (what, cause)
        self._client_factory = client_factory
        self._client = None
        self._runs: dict[str, _RunState] = {}
        self._cvat_retry_at = 0.0
        self._cvat_failures = 0
        self._poked = threading.Event()
        self.on_project: Callable[[int], None] | None = None  # webhooks hook: project seen

    def poke(self) -> None:
        """Something changed in CVAT (webhook): poll runs now, not at the next poll interval."""
        self._poked.set()

    def cvat_ready(self) -> bool:
        """False while CVAT calls are paused by the outage backoff."""
        return self.clock() >= self._cvat_retry_at

    def retry_in(self) -> float:
        """Seconds until CVAT calls resume (zero or less: they already may)."""
        return self._cvat_retry_at - self.clock()

    def _client_or_none(self):
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _cvat_failed(self, exc: BaseException, **fields) -> None:
        self._cvat_failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(self._cvat_failures - 1, 16))
        delay *= random.uniform(0.5, 1.0)  # jitter: many daemons must not retry in lockstep
        self._cvat_retry_at = self.clock() + delay
        if self.once.first("cvat", str(exc)):
            logs.event(log, "CVAT unreachable, backing off", level=30, cause=str(exc),
                       retry_in=round(delay, 1), **fields)

    def _cvat_ok(self) -> None:
        if self._cvat_failures:
            logs.event(log, "CVAT reachable again", failures=self._cvat_failures)
            self.once.clear("cvat")
        self._cvat_failures = 0

    def drive(self) -> list[float]:
        """Advance every unfinished daemon run as far as it goes now; the seconds until each
        wants another look."""
        try:
            runs = [r for r in self.store.list()
                    if r.get("status") not in FINISHED and (r.get("config") or {}).get("rule")]
        except Exception as exc:
            self.report("runs", "cannot read run records", exc)
            return [self.poll_interval]
        if not runs:
            self._poked.clear()
            return []
        if not self.cvat_ready():
            return [self.retry_in()]
        try:
            client = self._client_or_none()
        except Exception as exc:
            self._cvat_failed(exc)
            return [self.retry_in()]
        poked = self._poked.is_set()
        self._poked.clear()
        waits = []
        for run in runs:
            if self.stop.is_set():
                return [0.0]
            if not self.cvat_ready():
                waits.append(self.retry_in())
                break
            wait = self._drive_one(client, run, poked)
            if wait is not None:
                waits.append(wait)
        return waits

    def _drive_one(self, client, run: dict, poked: bool) -> float | None:
        key = run["key"]
        state = self._runs.setdefault(key, _RunState())
        now = self.clock()
        if now < state.retry_at:
            return state.retry_at - now
        try:
            status = run.get("status")
            if status in UPLOADING:
                for _ in range(MAX_UPLOAD_STEPS):
                    done = call_ops(ops.advance_upload, client, self.root, key, store=self.store)
                    # A step went through: CVAT answers. Without this, sporadic failures during
                    # a long upload added up and the outage backoff grew toward its cap.
                    self._cvat_ok()
                    if done:
                        break
                    if self.stop.is_set():
                        return 0.0
                else:
                    return 0.5  # not ready yet (CVAT still processing): look again soon
                logs.event(log, "run uploaded", key=key, tasks=self._task_ids(key))
                self._notify_project(key)
                state.polled_at = float("-inf")  # check completion once right away
            elif status != "loading":
                if not poked and now - state.polled_at < self.poll_interval:
                    return self.poll_interval - (now - state.polled_at)
            state.polled_at = self.clock()
            if status != "loading" and not call_ops(ops.is_complete, client, self.root, key,
                                                 completion=self.completion, store=self.store):
                state.failures = 0
                self._cvat_ok()
                return self.poll_interval
            if self.once.first(f"loading:{key}", True):
                logs.event(log, "run complete, loading labels", key=key)
            summary = call_ops(ops.load_run, client, self.root, key, unexpected="keep", store=self.store)
            owed = (summary or {}).get("skipped") or {}
            if owed:
                # load_run kept the run "loading" (their labels are only in CVAT): report it
                # once and retry with the backoff until the files are fixed
                raise SyncdError(f"run '{key}': {len(owed)} sample(s) not merged yet, their labels "
                                 "stay in CVAT until fixed: " + "; ".join(
                                     f"{why}" for why in list(owed.values())[:3]))
            logs.event(log, "run loaded", key=key)
            self._runs.pop(key, None)
            self.once.clear(f"run:{key}")
            self.once.clear(f"loading:{key}")
            self._cvat_ok()
            return None
        except Exception as exc:
            if is_cvat_down(exc):
                self._cvat_failed(exc, key=key)
                return self.retry_in()
            state.failures += 1
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(state.failures - 1, 16))
            delay *= random.uniform(0.5, 1.0)
            state.retry_at = self.clock() + delay
            self.report(f"run:{key}", "run step failed, will retry", exc, key=key,
                         retry_in=round(delay, 1))
            return delay

    def _task_ids(self, key: str) -> list[int]:
        try:
            return list(ops.task_ids_of(self.root, key, store=self.store))
        except Exception:
            return []

    def _notify_project(self, key: str) -> None:
        if self.on_project is None:
            return
        try:
            project = (self.store.get(key).get("project") or {}).get("id")
            if project:
                self.on_project(int(project))
        except Exception as exc:
            self.report(f"webhook:{key}", "cannot register webhook", exc)

    def projects(self) -> set[int]:
        """CVAT project ids of unfinished daemon runs (for webhook registration)."""
        out = set()
        for r in self.store.list():
            pid = (r.get("project") or {}).get("id") if isinstance(r.get("project"), dict) else None
            if pid and r.get("status") not in FINISHED:
                out.add(int(pid))
        return out
