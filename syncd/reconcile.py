"""One idempotent reconcile pass: desired state (files and tags on disk) vs run records vs CVAT.

A pass, for every rule of ``syncd.toml``:

1. auto-tags new media (no sample file yet) matching the rule's ``auto_tag`` globs, once the
   media file is stable (size+mtime unchanged across two looks), by creating the sample file
   with the trigger tag through ``dataset.set_tags`` (= ``dataset.update_sample``);
2. gathers the stable samples carrying the rule's trigger tag that no unfinished run holds,
   waits ``batch_window`` seconds after the newest arrival, then plans one run ``<rule>-<n>``;

then, for every unfinished daemon run (one made by a rule): advances its upload until all tasks
are ready, polls whether all jobs are complete (every ``poll_interval``, or at once after a
webhook), and loads the labels back. The steps are the ``syncd.ops`` functions the one-shot CLI
uses; this module only decides *when* to call them.

Failure handling: an error in one run is logged (once per distinct message) and that run is
retried later with exponential backoff; other runs go on. CVAT unreachable or answering 5xx
pauses every CVAT call with a global backoff (jitter, capped) and resumes by itself.
Level-triggered: nothing here depends on which event caused the pass; running it twice in a row
does nothing the second time.

Cost of a pass (measured in bench/scale.py): with ``incremental`` on (the daemon turns it on
while its file watcher runs), a pass re-examines only the media paths ``hint()`` named since the
last pass, plus a full walk of the root when ``hint(None)`` asks (the watcher's periodic rescan,
a directory event) or ``full_rescan`` seconds have passed. Events are hints, so a missed one
costs at most a rescan interval. Without ``incremental``, every pass walks the whole root.
"""
from __future__ import annotations

import errno
import inspect
import os
import random
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import syncd.dataset as dataset
import syncd.logs as logs
import syncd.ops as ops
from syncd.errors import MediaError, SampleFileError, SyncdError
from syncd.runs import RunStore
from syncd.sample_check import check_sample
from syncd.sample_index import SampleIndex, SampleInfo, tag_set
from syncd.watch import StableFiles

log = logs.get("reconcile")

FINISHED = ("loaded", "failed")
UPLOADING = ("created", "planned", "uploading")
MAX_UPLOAD_STEPS = 200          # per run per pass; then yield so other runs and signals get a turn
BACKOFF_BASE, BACKOFF_CAP = 1.0, 300.0
AUTO_TAG_THREADS = 8            # sample file writes in flight at once (fsync-bound)


def glob_regex(pattern: str) -> re.Pattern:
    """``auto_tag`` glob → regex on forward-slash relative paths. ``**`` spans directories
    (``a/**`` matches everything below ``a``; ``**/x.jpg`` matches ``x.jpg`` at any depth),
    ``*`` and ``?`` stay within one path component, ``[..]`` is a character class."""
    i, out = 0, []
    p = pattern.strip("/")
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[" and "]" in p[i + 1:]:
            j = p.index("]", i + 1)
            body = p[i + 1:j].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


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


def _call(fn: Callable, *args, **kwargs):
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


class Reconciler:
    """Holds what must survive between passes (in memory only; the truth is on disk and in
    CVAT): sample-file cache, arrival times, backoffs, what was already reported."""

    def __init__(self, root, config, client_factory: Callable[[], Any], *,
                 stop: threading.Event | None = None, stable: StableFiles | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = os.fspath(root)
        self.config = config
        self.rules = list(config.rules)
        self.poll_interval = float(getattr(config.cvat, "poll_interval", 10.0) or 10.0)
        self.completion = getattr(config.cvat, "completion", "completed") or "completed"
        self._client_factory = client_factory
        self._client = None
        self.stop = stop or threading.Event()
        self.stable = stable or StableFiles(quiet=1.0)
        self.clock = clock
        self.store = RunStore(root)
        self.once = logs.Once()
        self._globs = {r.name: [glob_regex(g) for g in (r.auto_tag or ())] for r in self.rules}
        self._samples = SampleIndex(r.tag for r in self.rules)
        self._arrivals: dict[tuple[str, str], float] = {}
        # Samples plan_run refused (bad media/sample file), with the file versions it saw: not
        # offered again until one of the files changes (else every pass would burn a run key).
        self._refused: dict[str, tuple] = {}
        self._runs: dict[str, _RunState] = {}
        self._cvat_retry_at = 0.0
        self._cvat_failures = 0
        self._poked = threading.Event()
        self.on_project: Callable[[int], None] | None = None  # webhooks hook: project seen
        # Incremental scans: paths hinted since the last pass (None inside = walk everything).
        self.incremental = False
        self.full_rescan = 300.0
        self._dirty: set[str | None] = {None}
        self._dirty_lock = threading.Lock()
        self._full_at = float("-inf")
        self.full_scan_seconds = 0.0  # how long the last walk of the whole root took
        self.full_scans = 0           # how many walks of the whole root so far

    # -- outside signals ------------------------------------------------------------------------

    def hint(self, paths) -> None:
        """Media paths (relative) that may have changed, or None: anything may have (rescan)."""
        with self._dirty_lock:
            if paths is None:
                self._dirty.add(None)
            else:
                self._dirty.update(paths)

    @property
    def media_count(self) -> int:
        return len(self._samples)

    def poke(self) -> None:
        """Something changed in CVAT (webhook): poll runs now, not at the next poll interval."""
        self._poked.set()

    # -- the pass -------------------------------------------------------------------------------

    def pass_once(self) -> float | None:
        """Run one pass; return seconds until another pass is needed (None: only on events
        and the poll timer)."""
        waits: list[float] = []
        self._scan()
        try:
            active = set(ops.active_samples(self.root, store=self.store))
        except Exception as exc:
            self._report("runs", "cannot read run records", exc)
            return self.poll_interval
        for rule in self.rules:
            if self.stop.is_set():
                return 0.0
            waits += self._auto_tag(rule)
            waits += self._gather(rule, active)
        if self.stop.is_set():
            return 0.0
        waits += self._drive_runs()
        return max(0.0, min(waits)) if waits else None

    # -- dataset side -----------------------------------------------------------------------

    def _scan(self) -> None:
        """Bring ``self._samples`` up to date: every media path with its sample file's tags
        (re-read only when the file changed).

        Walks the root when needed (see the module doc), else looks only at hinted paths."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        now = self.clock()
        if (not self.incremental or None in dirty or now - self._full_at >= self.full_rescan):
            self._full_at = now
            started = time.monotonic()
            found: dict[str, SampleInfo] = {}
            for rel in dataset.discover(self.root):
                info = self._look(rel)
                if info is not None:
                    found[rel] = info
            self._samples.replace(found)
            self.full_scan_seconds = time.monotonic() - started
            self.full_scans += 1
            for rel in [r for r in self._refused if r not in found]:
                del self._refused[rel]  # gone from disk: forget
        else:
            for rel in dirty:
                info = self._look(rel) if self._is_media_file(rel) else None
                if info is None:
                    self._samples.pop(rel)
                    self._refused.pop(rel, None)
                else:
                    self._samples.set(rel, info)

    def _is_media_file(self, rel: str) -> bool:
        """What ``discover`` would list: a media name, no hidden part, a file inside the root."""
        if not dataset.is_media(rel):
            return False
        path = os.path.join(self.root, rel)
        if not os.path.isfile(path):
            return False
        if os.path.islink(path) or any(os.path.islink(os.path.join(self.root, *rel.split("/")[:i]))
                                       for i in range(1, rel.count("/") + 1)):
            real = os.path.realpath(path)
            root = os.path.realpath(self.root)
            return real.startswith(root + os.sep)
        return True

    def _read_sample(self, rel: str, path: str) -> dict:
        """``dataset.read_sample`` for a media path that came from ``discover`` (or was checked
        like it): its directories are known to lie inside the root, so only the sample file
        itself can lead out, and O_NOFOLLOW catches that (a symlinked one gets the full check).
        Profiled: the realpath checks were 60% of a cold pass over 100k samples."""
        try:
            # O_NONBLOCK: a FIFO by that name must not block the pass (no effect on files)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return dataset.read_sample(self.root, rel, create=False)
            if exc.errno == errno.ENOENT:
                raise SampleFileError(f"{path}: no sample file") from None
            raise SampleFileError(f"{path}: cannot read sample file: {exc.strerror}") from None
        # A directory (or other non-file) by that name costs this sample, not the whole pass;
        # the descriptor is closed whatever happens (the daemon runs for months).
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SampleFileError(f"{path}: cannot read sample file: not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
        except OSError as exc:
            raise SampleFileError(f"{path}: cannot read sample file: {exc.strerror}") from None
        finally:
            os.close(fd)
        doc = dataset._parse_sample(Path(path), data)
        check_sample(Path(path), doc)
        return doc

    def _look(self, rel: str) -> SampleInfo | None:
        """The sample-file state of media ``rel`` (cached while the file's signature holds);
        None when it cannot even be stat'ed (reported)."""
        path = os.path.join(self.root, rel + dataset.SAMPLE_SUFFIX)
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return SampleInfo(None)
        except OSError as exc:
            self._report(rel, "cannot stat sample file", exc, path=path)
            return None
        old = self._samples.get(rel)
        if old is not None and old.sig == sig:
            return old
        try:
            sample = self._read_sample(rel, path)
            tags = sample.get("tags") or []
            if not isinstance(tags, list):
                raise SampleFileError(f"{path}: 'tags' is not a list")
            info = SampleInfo(sig, tag_set(t for t in tags if isinstance(t, str)))
            self.once.clear(rel)
        except SampleFileError as exc:
            # Left untouched and reported once per version of the file.
            self._report(rel, "bad sample file, skipped", exc, cause_key=sig, path=path)
            info = SampleInfo(sig)
        return info

    def _auto_tag(self, rule) -> list[float]:
        globs = self._globs.get(rule.name) or []
        if not globs:
            return []
        waits, todo = [], []
        for rel in sorted(self._samples.bare()):  # media without a sample file yet
            if not any(g.match(rel) for g in globs):
                continue
            if not self.stable.check(os.path.join(self.root, rel)):
                waits.append(self.stable.quiet)  # look again once it may have settled
                continue
            todo.append(rel)

        def tag(rel: str):
            try:
                return rel, dataset.set_tags(self.root, rel, add=[rule.tag]), None
            except (MediaError, SampleFileError) as exc:
                return rel, None, exc

        # Each sample file write waits on two fsyncs (file, directory): profiled, that was
        # ~95% of auto-tagging a 10k-file drop. Threads overlap those waits.
        if len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(AUTO_TAG_THREADS, len(todo)),
                                    thread_name_prefix="syncd-tag") as pool:
                results = list(pool.map(tag, todo))
        else:
            results = [tag(rel) for rel in todo]
        for rel, written, exc in results:
            if exc is not None:
                self._report(rel, "cannot create sample file", exc,
                             cause_key=self._media_sig(rel), path=os.path.join(self.root, rel))
                continue
            # ("fresh",) matches no real signature: the next look re-reads the file.
            self._samples.set(rel, SampleInfo(("fresh",), tag_set(t for t in written.get("tags") or ()
                                                                   if isinstance(t, str))))
            logs.event(log, "auto-tagged", rule=rule.name, path=rel, tag=rule.tag)
        return waits

    def _media_sig(self, rel: str):
        try:
            st = os.stat(os.path.join(self.root, rel))
            return (st.st_size, st.st_mtime_ns)
        except OSError:
            return None

    def _gather(self, rule, active: set[str]) -> list[float]:
        now = self.clock()
        tagged = [rel for rel in sorted(self._samples.tagged(rule.tag))
                  if rel not in active
                  and not (rel in self._refused and self._refused[rel] == self._versions(rel))]
        seen = {(rule.name, rel) for rel in tagged}
        for k in [k for k in self._arrivals if k[0] == rule.name and k not in seen]:
            del self._arrivals[k]  # untagged or taken by a run: forget
        if not tagged:
            return []
        ready, waits = [], []
        for rel in tagged:
            self._arrivals.setdefault((rule.name, rel), now)
            if self.stable.check(os.path.join(self.root, rel)):
                ready.append(rel)
            else:
                waits.append(self.stable.quiet)
        newest = max(self._arrivals[(rule.name, rel)] for rel in tagged)
        left = float(rule.batch_window) - (now - newest)
        if left > 0 or not ready:
            # Still gathering: more samples may come; a batch is made once it has been quiet.
            return waits + ([left] if left > 0 else [])
        if waits:
            return waits  # some tagged media are still being written: wait for the whole batch
        if not self._cvat_ready():
            return [self._cvat_retry_at - self.clock()]
        self._plan(rule, sorted(ready))
        return [0.0]  # drive the new run right away

    def _plan(self, rule, samples: list[str]) -> None:
        key = self.store.next_key(rule.name)
        cvat = self.config.cvat
        opts = {name: getattr(rule, name) for name in (
            "label_schema", "label_field", "label_type", "classes", "attributes",
            "mask_targets", "segment_size", "task_size", "task_assignee", "job_assignees",
            "job_reviewers", "cleanup", "allow_additions", "allow_deletions",
            "allow_label_edits", "allow_index_edits", "allow_spatial_edits", "frame_start",
            "frame_stop", "frame_step") if hasattr(rule, name)}
        opts.update(rule_name=rule.name, trigger_tag=rule.tag, done_tag=rule.done_tag,
                    project_name=cvat.project_name or None,
                    organization=cvat.organization or None)
        opts.update(url=cvat.url or None,
                    share_root=str(cvat.share_root) if getattr(cvat, "share_root", None) else None)
        try:
            record = _call(ops.plan_run, self.root, key, samples, store=self.store, **opts)
        except Exception as exc:
            self._report(f"plan:{rule.name}", "cannot plan run", exc, key=key,
                         samples=len(samples), cause_key=tuple(samples))
            for rel in samples:
                self._refused[rel] = self._versions(rel)
            return
        skipped = dict((record or {}).get("skipped") or {})
        for rel in samples:
            self._arrivals.pop((rule.name, rel), None)
        for rel, why in skipped.items():
            self._refused[rel] = self._versions(rel)
            self._report(rel, "sample not sent to CVAT", SampleFileError(why), key=key,
                         cause_key=self._versions(rel))
        logs.event(log, "run planned", key=key, rule=rule.name,
                   samples=len(samples) - len(skipped))

    def _versions(self, rel: str) -> tuple:
        """What must change for a refused sample to be tried again: its media and its file."""
        info = self._samples.get(rel)
        return (self._media_sig(rel), info.sig if info else None)

    # -- CVAT side ----------------------------------------------------------------------------

    def cvat_ready(self) -> bool:
        """False while CVAT calls are paused by the outage backoff."""
        return self.clock() >= self._cvat_retry_at

    _cvat_ready = cvat_ready

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

    def _drive_runs(self) -> list[float]:
        try:
            runs = [r for r in self.store.list()
                    if r.get("status") not in FINISHED and (r.get("config") or {}).get("rule")]
        except Exception as exc:
            self._report("runs", "cannot read run records", exc)
            return [self.poll_interval]
        if not runs:
            self._poked.clear()
            return []
        if not self._cvat_ready():
            return [self._cvat_retry_at - self.clock()]
        try:
            client = self._client_or_none()
        except Exception as exc:
            self._cvat_failed(exc)
            return [self._cvat_retry_at - self.clock()]
        poked = self._poked.is_set()
        self._poked.clear()
        waits = []
        for run in runs:
            if self.stop.is_set():
                return [0.0]
            if not self._cvat_ready():
                waits.append(self._cvat_retry_at - self.clock())
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
                    done = _call(ops.advance_upload, client, self.root, key, store=self.store)
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
            if status != "loading" and not _call(ops.is_complete, client, self.root, key,
                                                 completion=self.completion, store=self.store):
                state.failures = 0
                self._cvat_ok()
                return self.poll_interval
            if self.once.first(f"loading:{key}", True):
                logs.event(log, "run complete, loading labels", key=key)
            summary = _call(ops.load_run, client, self.root, key, unexpected="keep", store=self.store)
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
                return self._cvat_retry_at - self.clock()
            state.failures += 1
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(state.failures - 1, 16))
            delay *= random.uniform(0.5, 1.0)
            state.retry_at = self.clock() + delay
            self._report(f"run:{key}", "run step failed, will retry", exc, key=key,
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
            self._report(f"webhook:{key}", "cannot register webhook", exc)

    def projects(self) -> set[int]:
        """CVAT project ids of unfinished daemon runs (for webhook registration)."""
        out = set()
        for r in self.store.list():
            pid = (r.get("project") or {}).get("id") if isinstance(r.get("project"), dict) else None
            if pid and r.get("status") not in FINISHED:
                out.add(int(pid))
        return out

    # -- reporting ----------------------------------------------------------------------------

    def _report(self, what: str, message: str, exc: BaseException, *, cause_key=None,
                **fields) -> None:
        """Log a problem once per (what, cause): bad files must not flood the log every pass."""
        cause = str(exc) or type(exc).__name__
        if self.once.first(what, (cause_key, cause)):
            logs.event(log, message, level=40, cause=cause, **fields)
