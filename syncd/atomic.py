"""Crash-safe file writes: every file syncd writes goes through here.

A write goes to a temporary file in the same directory, is fsynced, renamed over the target with
``os.replace`` (atomic on POSIX), and the directory is fsynced so the rename itself survives a
crash. Readers therefore see either the old or the new content, never a torn file. The temporary
name starts with ``.`` so media discovery never picks it up.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sys
from typing import Any, Callable

from syncd.json_indent import dumps_indented_bytes


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename/creation inside it is durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP_SEQ = itertools.count()


def _create_temp(directory: str | os.PathLike, name: str, perm: int = 0o600) -> tuple[int, str]:
    """A new temp file ``.<name>.<pid>.<random>.tmp`` beside the target (``perm`` as for
    ``os.open``: the umask applies), like ``tempfile.mkstemp`` with fewer steps: the writer's
    pid (hex, so ``remove_dead_temps`` can tell a killed writer's leftovers), then a counter
    and urandom."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.getpid():x}.{next(_TEMP_SEQ):x}{os.urandom(3).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), perm), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temporary file name for {name}")


# what _create_temp makes for a sample file or a mask: .<name>.json|png.<pid>.<seq+6 random>.tmp
# (strict, so a hidden file of a user's that merely ends in .tmp is never taken for one)
_TEMP_NAME = re.compile(r"^\..+\.(?:json|png)\.([0-9a-f]{1,8})\.[0-9a-f]{7,}\.tmp$")


def remove_dead_temps(directory: str | os.PathLike) -> int:
    """Delete syncd's temporary sample-file and mask files in ``directory`` left by writers
    that no longer run (killed between writing and renaming); returns how many. A temp file of a live process (this one
    included) is never touched. Staged writes keep more temp files open at once than single
    writes did, so a kill leaves more of them: loading a run that an earlier load left part-way
    sweeps the directories of its samples (``ops.load``)."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None:
            continue
        if _alive(int(m.group(1), 16)):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


class Staged:
    """A temporary file written beside its target (``stage_bytes``), open, not yet fsynced
    nor renamed into place. ``sync`` makes its bytes durable (safe to call from any thread: it
    holds no Python state), ``finish`` renames it over the target, ``discard`` drops it. (A
    new file nothing refers to yet is written at its own name instead, ``stage_new``: then
    ``tmp`` is the target, and ``finish`` has nothing to rename.)

    Writing many files this way lets a caller fsync them side by side and rename them after:
    1000 sample files were ~0.3 s written one complete atomic write at a time in 16 threads,
    ~0.19 s staged, fsynced in threads, then renamed (and the threads, doing only fsync, no
    longer slow the thread preparing the next files through GIL hand-offs)."""

    __slots__ = ("path", "tmp", "fd")

    def __init__(self, path: str, tmp: str, fd: int):
        # (strings, not pathlib: a load stages 20,000 mask files, and building and printing
        # Path objects for them was about a fifth of the time the staging thread held the GIL)
        self.path, self.tmp, self.fd = path, tmp, fd

    @property
    def in_place(self) -> bool:
        """Written at its own name (``stage_new``): nothing to rename."""
        return self.tmp == self.path

    def sync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            return
        fd = os.open(self.tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))  # closed early (``close``)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the file now, to stage many at once without holding a descriptor for each;
        ``sync`` then reopens it, and ``sync_together`` needs no descriptor at all."""
        self._close()

    def finish(self, before_replace: Callable[[], bool] | None = None) -> bool:
        """Rename into place (the caller synced first); False, and nothing changed, when
        ``before_replace`` says no."""
        try:
            self._close()
            if before_replace is not None and not before_replace():
                os.unlink(self.tmp)
                return False
            if not self.in_place:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return True

    def discard(self) -> None:
        self._close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def _close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def stage_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Staged:
    """Write ``data`` to a new temporary file beside ``path`` (see ``Staged``). ``mode`` as in
    ``write_bytes_atomic``."""
    path = os.fspath(path)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            pass
    # A new file is created 0666 and the kernel applies the umask (and a directory's default
    # ACL, which a umask computed by hand ignored), exactly as open(..., "w") would. A file
    # that takes another file's mode starts private and gets that mode below.
    fd, tmp = _create_temp(*os.path.split(path), 0o600 if mode is not None else 0o666)
    staged = Staged(path, tmp, fd)
    try:
        view = memoryview(data)
        while view:  # plain os calls: each Python step here costs a GIL hand-over in threads
            view = view[os.write(fd, view):]
        if mode is not None:
            os.fchmod(fd, mode)
    except BaseException:
        # Never leave a temp file behind, whatever went wrong (including KeyboardInterrupt).
        staged.discard()
        raise
    return staged


def sync_together(staged: list[Staged]) -> None:
    """Make the bytes of many staged files durable at once: one ``syncfs(2)`` of each
    filesystem they lie on (Linux), else an fsync of each.

    One fsync per file costs a journal commit and a disk cache flush per file; a load writes
    20 mask files per sample, and those fsyncs were a third of its threads' time. The price of
    syncfs: it also writes whatever else is dirty on that filesystem, so callers use it for a
    batch (a group of samples), not per file. On kernels before 5.8 syncfs reports no
    writeback errors (fsync does)."""
    if len(staged) < 2 or _syncfs() is None:
        for item in staged:
            item.sync()
        return
    by_device: dict[int, str] = {}
    for directory in {os.path.dirname(item.tmp) for item in staged}:
        by_device.setdefault(os.stat(directory).st_dev, directory)
    for directory in by_device.values():
        syncfs(directory)


def syncfs(directory: str | os.PathLike) -> None:
    """``syncfs(2)`` of the filesystem holding ``directory``: everything dirty on it is written
    and flushed (Linux; elsewhere ``os.sync()``, which does it for every filesystem)."""
    fn = _syncfs()
    if fn is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fn(fd) != 0:
            import ctypes
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(directory))
    finally:
        os.close(fd)


@functools.cache
def _syncfs():
    """libc's ``syncfs`` (Python has no ``os.syncfs``), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


def stage_new(path: str | os.PathLike, data: bytes) -> Staged | None:
    """``stage_bytes`` for a file nothing refers to yet (a new mask file, before the sample
    file that will name it is written): created at its own name, so there is no temporary
    file to rename; None, and nothing done, if ``path`` exists. Made durable like any staged
    file before anything refers to it, it needs no rename to be crash-safe: a crash leaves at
    worst a torn file nothing refers to, which the next write replaces atomically (it exists
    then). 20,000 masks: 2.8-3.0 s instead of 3.6-4.0 s."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        return None
    staged = Staged(path, path, fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        staged.discard()
        raise
    return staged


def write_bytes_atomic(
    path: str | os.PathLike,
    data: bytes,
    *,
    mode: int | None = None,
    before_replace: Callable[[], bool] | None = None,
    sync_dir: bool = True,
) -> bool:
    """Atomically replace ``path`` with ``data``.

    ``mode``: force this permission mode; by default an existing file keeps its mode and a new
    file gets the usual ``0666 & ~umask``. ``before_replace``: called after the data is durable
    and just before the rename; if it returns False the write is abandoned (temp file removed) and
    the function returns False. That is the compare-and-swap hook ``dataset.update_sample`` uses.
    ``sync_dir=False`` leaves the directory fsync to the caller, who writes many files into the
    same directory and fsyncs it once (``fsync_dir``) before relying on any of the renames.
    Returns True when the file was replaced.
    """
    staged = stage_bytes(path, data, mode=mode)
    try:
        staged.sync()
    except BaseException:
        staged.discard()
        raise
    if not staged.finish(before_replace):
        return False
    if sync_dir:
        fsync_dir(os.path.dirname(staged.path))
    return True


def dumps_json(obj: Any) -> bytes:
    """The one JSON encoding syncd writes: UTF-8, indented, key order kept, trailing newline
    (``json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)``, by a faster encoder)."""
    return dumps_indented_bytes(obj) + b"\n"


def write_json_atomic(
    path: str | os.PathLike,
    obj: Any,
    *,
    mode: int | None = None,
    before_replace: Callable[[], bool] | None = None,
) -> bool:
    """``write_bytes_atomic`` of ``obj`` encoded as JSON (see ``dumps_json``)."""
    return write_bytes_atomic(path, dumps_json(obj), mode=mode, before_replace=before_replace)
