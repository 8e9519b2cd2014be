"""One idempotent reconcile pass: desired state (files and tags on disk) vs run records vs CVAT.

A pass, for every rule of ``syncd.toml``:

1. auto-tags new media (no sample file yet) matching the rule's ``auto_tag`` globs, once the
   media file is stable (size+mtime unchanged across two looks), by creating the sample file
   with the trigger tag through ``dataset.set_tags`` (= ``dataset.update_sample``);
2. gathers the stable samples carrying the rule's trigger tag that no unfinished run holds,
   waits ``batch_window`` seconds after the newest arrival, then plans one run ``<rule>-<n>``;

then drives every unfinished daemon run (one made by a rule) through CVAT: upload, completion
polls, loading the labels back (``run_driver.RunDriver``, with the failure backoffs). The steps
are the ``syncd.ops`` functions the one-shot CLI uses; this module only decides *when* to call
them. Level-triggered: nothing here depends on which event caused the pass; running it twice in
a row does nothing the second time.

Cost of a pass (measured in bench/scale.py): with ``incremental`` on (the daemon turns it on
while its file watcher runs), a pass re-examines only the media paths ``hint()`` named since the
last pass, plus a full walk of the root when ``hint(None)`` asks (the watcher's periodic rescan,
a directory event) or ``full_rescan`` seconds have passed. Events are hints, so a missed one
costs at most a rescan interval. Without ``incremental``, every pass walks the whole root.
"""
from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import syncd.atomic as atomic
import syncd.dataset as dataset
import syncd.logs as logs
import syncd.ops as ops
from syncd.errors import MediaError, SampleFileError
from syncd.run_driver import RunDriver, call_ops
from syncd.runs import RunStore
from syncd.sample_index import SampleIndex, SampleInfo, tag_set
from syncd.watch import StableFiles


log = logs.get("reconcile")

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


class Reconciler:
    """Holds what must survive between passes (in memory only; the truth is on disk and in
    CVAT): sample-file cache, arrival times, what was already reported; the CVAT side's state
    (backoffs, poll times) is its ``driver``'s."""

    def __init__(self, root, config, client_factory: Callable[[], Any], *,
                 stop: threading.Event | None = None, stable: StableFiles | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = os.fspath(root)
        self.config = config
        self.rules = list(config.rules)
        self.poll_interval = float(getattr(config.cvat, "poll_interval", 10.0) or 10.0)
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
        self.driver = RunDriver(
            self.root, self.store, client_factory, poll_interval=self.poll_interval,
            completion=getattr(config.cvat, "completion", "completed") or "completed",
            stop=self.stop, clock=self.clock, once=self.once, report=self._report)
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
        self.driver.poke()

    def cvat_ready(self) -> bool:
        """False while CVAT calls are paused by the outage backoff."""
        return self.driver.cvat_ready()

    def projects(self) -> set[int]:
        """CVAT project ids of unfinished daemon runs (for webhook registration)."""
        return self.driver.projects()

    @property
    def on_project(self) -> Callable[[int], None] | None:
        """Webhooks hook: called with a CVAT project id once a run's upload is done."""
        return self.driver.on_project

    @on_project.setter
    def on_project(self, hook: Callable[[int], None] | None) -> None:
        self.driver.on_project = hook

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
        waits += self.driver.drive()
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
            sample = dataset.read_discovered(self.root, rel)
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
                return rel, dataset.set_tags(self.root, rel, add=[rule.tag], sync_dir=False), None
            except (MediaError, SampleFileError) as exc:
                return rel, None, exc

        # Each sample file write waits on an fsync: profiled, fsyncs were ~95% of auto-tagging
        # a 10k-file drop on a slow disk. Threads overlap those waits, and the renames are made
        # durable with one fsync per directory below instead of one per file.
        if len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(AUTO_TAG_THREADS, len(todo)),
                                    thread_name_prefix="syncd-tag") as pool:
                results = list(pool.map(tag, todo))
        else:
            results = [tag(rel) for rel in todo]
        self._sync_dirs(rel for rel, written, _ in results if written is not None)
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

    def _sync_dirs(self, rels) -> None:
        """Make the new sample files of ``rels`` durable: one fsync per directory (a crash
        before it only loses sample files the next pass makes again: their media are bare)."""
        for d in sorted({os.path.dirname(os.path.join(self.root, rel)) for rel in rels}):
            try:
                atomic.fsync_dir(d)
            except OSError as exc:  # (the directory went away meanwhile: nothing to keep)
                log.debug("fsync of %s failed: %s", d, exc)

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
        if not self.driver.cvat_ready():
            return [self.driver.retry_in()]
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
            record = call_ops(ops.plan_run, self.root, key, samples, store=self.store, **opts)
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

    # -- reporting ----------------------------------------------------------------------------

    def _report(self, what: str, message: str, exc: BaseException, *, cause_key=None,
                **fields) -> None:
        """Log a problem once per (what, cause): bad files must not flood the log every pass."""
        cause = str(exc) or type(exc).__name__
        if self.once.first(what, (cause_key, cause)):
            logs.event(log, message, level=40, cause=cause, **fields)
