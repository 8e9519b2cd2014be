"""Noticing changes in the dataset directory: a watchdog observer, per-path debounce, a periodic
full rescan, and the "stable file" check.

Events are only hints (level-triggered design): they tell the daemon *when* to look again, never
*what* to do. inotify drops events on queue overflow, emits ~8 raw events per atomic write and
fires "created" when a copy *starts*, so:

- events are debounced per path: a path is reported once it has been quiet for ``debounce`` s;
- a full rescan is requested every ``rescan_interval`` s regardless (and right away when the
  observer cannot start, e.g. inotify watch limit reached: we degrade to scanning, not crash);
- ``StableFiles`` decides whether a media file is finished: its size and mtime must be the same
  on two looks at least ``quiet`` seconds apart. A file still being written is not picked.

Fast path (measured: it takes ~1.5 s off drop → task): a media file *renamed into place* or
*closed after writing* is finished by the writer's own say-so (temp-file-then-rename is how
careful tools publish files; ``cp`` closes once). Such events are reported after ``FAST`` s
instead of the debounce, and ``StableFiles`` accepts the file at once as long as its size and
mtime are still those seen at the event; any later write voids that and the slow check applies.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Iterable

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
                             FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer

import syncd.logs as logs
from syncd.dataset import SAMPLE_SUFFIX, is_media

log = logs.get("watch")

# watchdog holds every inotify IN_MOVED_FROM for up to 0.5 s to pair it with its IN_MOVED_TO,
# and its queue's reader *sleeps* that long once such an event is at the head, even after the
# pair arrived (watchdog 7's DelayedQueue.get is not woken by remove; issue #649). A rename
# whose two halves land in different reads of the inotify descriptor (more likely while other
# files are renamed, e.g. syncd writing sample files) thus held back every later event by
# 0.5 s: ~2-6 of 50 drops took 1.6-1.7 s to reach CVAT instead of 1.15 s. The two halves are
# queued by one rename() in the kernel, so 50 ms is ample to pair them; an unpaired half is
# then a "deleted" plus a "created", which are only hints here anyway.
MOVE_PAIRING_DELAY = 0.05
try:
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
except ImportError:  # not Linux: no inotify
    pass
else:
    InotifyMoveEventGrouper.delay = min(InotifyMoveEventGrouper.delay, MOVE_PAIRING_DELAY)

# on_change(paths): paths is a set of media paths relative to the root, or None for "rescan all".
OnChange = Callable[["set[str] | None"], None]

FAST = 0.05  # coalescing delay for "write finished" events (a rename or close_write)

# Changes only. Not "opened" / "closed without writing": every read in the tree (syncd's own
# verifying, hashing and sample-file reads: several per new file) raised two such inotify
# events, each handled by watchdog's reader, its move-pairing queue and its dispatcher before
# our handler dropped it.
EVENTS = [FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, DirModifiedEvent, FileMovedEvent,
          DirMovedEvent, FileDeletedEvent, DirDeletedEvent, FileClosedEvent]


class StableFiles:
    """Size+mtime stability across two looks, per path (thread-safe, bounded)."""

    def __init__(self, quiet: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.quiet = quiet
        self._clock = clock
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}
        self._complete: dict[str, tuple[int, int]] = {}  # path -> (size, mtime) at close/rename
        self._lock = threading.Lock()

    def mark_complete(self, path) -> None:
        """The writer finished ``path`` (renamed it in, or closed it after writing): it counts as
        stable while its (size, mtime) stay what they are now."""
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except OSError:
            return
        with self._lock:
            if len(self._complete) > 200_000:
                self._complete.clear()
            self._complete[path] = (st.st_size, st.st_mtime_ns)

    def check(self, path) -> bool:
        """True once ``path`` showed the same (size, mtime) ``quiet`` seconds apart.

        The first look only records; a change restarts the clock; a missing file is not stable.
        """
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except OSError:
            with self._lock:
                self._seen.pop(path, None)
                self._complete.pop(path, None)
            return False
        sig = (st.st_size, st.st_mtime_ns)
        now = self._clock()
        with self._lock:
            done = self._complete.get(path)
            if done is not None:
                if done == sig:
                    return True
                del self._complete[path]  # written again since: back to the two-look check
            old = self._seen.get(path)
            if old is None or old[0] != sig:
                if len(self._seen) > 200_000:
                    self._seen.clear()
                self._seen[path] = (sig, now)
                return False
            return now - old[1] >= self.quiet

    def wait_hint(self) -> float:
        """How long until a file seen as changing might be stable (for the next look)."""
        return self.quiet

    def forget(self, path) -> None:
        with self._lock:
            self._seen.pop(os.fspath(path), None)
            self._complete.pop(os.fspath(path), None)


def media_of(rel: str) -> str | None:
    """The media path an event path concerns: itself, or the media beside a sample file."""
    if is_media(rel):
        return rel
    if rel.endswith(SAMPLE_SUFFIX) and is_media(rel[: -len(SAMPLE_SUFFIX)]):
        return rel[: -len(SAMPLE_SUFFIX)]
    return None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher"):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if getattr(event, "dest_path", ""):
            # renamed-in temp files arrive as moves: the destination is finished
            self.watcher._hint(os.fsdecode(event.src_path), event.is_directory)
            self.watcher._hint(os.fsdecode(event.dest_path), event.is_directory, complete=True)
        else:
            self.watcher._hint(os.fsdecode(event.src_path), event.is_directory,
                               complete=kind == "closed")


class Watcher:
    """Watch ``root`` recursively; call ``on_change`` with debounced media paths, and with
    ``None`` for a periodic full rescan. ``start()``/``stop()``; usable as a context manager.

    ``rescan_interval`` None: no periodic rescans until the owner sets one (the daemon does,
    after its first walk of the root, from what that walk cost); ``rescanned()`` tells the
    watcher the owner has just walked the root, so the next periodic rescan is a whole
    interval away."""

    def __init__(self, root, on_change: OnChange, *, debounce: float = 0.5,
                 rescan_interval: float | None = 60.0, use_observer: bool = True,
                 stable: StableFiles | None = None):
        self.root = os.path.realpath(root)
        self.stable = stable  # told about finished writes (see the module doc's fast path)
        self.on_change = on_change
        self.debounce = debounce
        self.rescan_interval = rescan_interval
        self.use_observer = use_observer
        self._pending: dict[str, float] = {}
        self._rescan = False
        self._last_rescan = time.monotonic()
        self._cond = threading.Condition()
        self._stop = False
        self._observer = None
        self._thread: threading.Thread | None = None

    # -- events -------------------------------------------------------------------------------

    def _hint(self, abs_path: str, is_dir: bool, complete: bool = False) -> None:
        rel = os.path.relpath(abs_path, self.root)
        if rel.startswith("..") or os.path.isabs(rel):
            return  # outside the root (symlinked elsewhere): not ours
        rel = rel.replace(os.sep, "/")
        if any(part.startswith(".") for part in rel.split("/")):
            return  # hidden: .syncd state, editor/rsync temp files (until renamed in)
        with self._cond:
            if is_dir:
                # A directory appeared, vanished or moved: cheaper to rescan than to walk it here.
                self._pending["\0rescan"] = time.monotonic()
            else:
                media = media_of(rel)
                if media is None:
                    return
                now = time.monotonic()
                if complete:
                    if media == rel and self.stable is not None:
                        self.stable.mark_complete(abs_path)
                    # due after FAST s, not the full debounce (never later than already due)
                    due_at = now - self.debounce + FAST
                    self._pending[media] = min(self._pending.get(media, due_at), due_at)
                else:
                    self._pending[media] = now
            self._cond.notify()

    def request_rescan(self) -> None:
        with self._cond:
            self._rescan = True
            self._cond.notify()

    def rescanned(self, interval: float | None = None) -> None:
        """The owner walked the whole root just now; ``interval``: the new rescan interval."""
        with self._cond:
            self._last_rescan = time.monotonic()
            if interval is not None:
                self.rescan_interval = interval
            self._cond.notify()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "Watcher":
        if self.use_observer:
            try:
                obs = Observer()
                obs.schedule(_Handler(self), self.root, recursive=True, event_filter=EVENTS)
                obs.start()
                self._observer = obs
            except OSError as exc:
                # e.g. inotify watch/instance limit: keep working by periodic rescans.
                logs.event(log, "file watcher unavailable, relying on periodic rescans",
                           level=30, root=self.root, cause=str(exc))
                self._observer = None
        self._thread = threading.Thread(target=self._run, name="syncd-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Watcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def observing(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    # read each time: the owner may retune the interval (e.g. to the root's size)
                    interval = self.rescan_interval
                    next_rescan = None if interval is None else self._last_rescan + interval
                    due = [p for p, t in self._pending.items() if now - t >= self.debounce]
                    rescan = self._rescan or (next_rescan is not None and now >= next_rescan)
                    if due or rescan:
                        break
                    waits = [60.0] if next_rescan is None else [next_rescan - now]
                    waits += [self.debounce - (now - t) for t in self._pending.values()]
                    self._cond.wait(max(0.01, min(waits)))
                for p in due:
                    del self._pending[p]
                self._rescan = False
                if rescan or "\0rescan" in due:
                    rescan = True
                    self._last_rescan = now
            # Call out without holding the lock: the callback may be slow or re-enter.
            try:
                if rescan:
                    self.on_change(None)
                paths = {p for p in due if p != "\0rescan"}
                if paths:
                    self.on_change(paths)
            except Exception:  # a bad callback must not kill the watcher thread
                log.exception("change callback failed")


def stable_media(root, rels: Iterable[str], stable: StableFiles) -> list[str]:
    """Those of ``rels`` whose media file is stable now."""
    return [r for r in rels if stable.check(os.path.join(root, r))]
