"""Crash-safe file writes: every file syncd writes goes through here.

A write goes to a temporary file in the same directory, is fsynced, renamed over the target with
``os.replace`` (atomic on POSIX), and the directory is fsynced so the rename itself survives a
crash. Readers therefore see either the old or the new content, never a torn file. The temporary
name starts with ``.`` so media discovery never picks it up.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable

from syncd.json_indent import dumps_indented


def _default_mode() -> int:
    # What open(..., "w") would give a new file: 0666 minus the umask. Linux shows the umask in
    # /proc; elsewhere reading it needs setting it (restored at once), which is process-wide: a
    # file or directory another thread creates in between would get mode 0666/0777.
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename/creation inside it is durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP_SEQ = itertools.count()


def _create_temp(directory: Path, name: str) -> tuple[int, str]:
    """A new private (0600) temp file ``.<name>.<random>.tmp`` beside the target, like
    ``tempfile.mkstemp`` with fewer steps: random part from the pid, a counter and urandom."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.getpid():x}{next(_TEMP_SEQ):x}{os.urandom(3).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temporary file name for {name}")


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
    path = Path(path)
    directory = path.parent
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = _default_mode()
    fd, tmp = _create_temp(directory, path.name)
    try:
        try:
            view = memoryview(data)
            while view:  # plain os calls: each Python step here costs a GIL hand-over in threads
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None and not before_replace():
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
    except BaseException:
        # Never leave a temp file behind, whatever went wrong (including KeyboardInterrupt).
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(directory)
    return True


def dumps_json(obj: Any) -> bytes:
    """The one JSON encoding syncd writes: UTF-8, indented, key order kept, trailing newline
    (``json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)``, by a faster encoder)."""
    return (dumps_indented(obj) + "\n").encode("utf-8")


def write_json_atomic(
    path: str | os.PathLike,
    obj: Any,
    *,
    mode: int | None = None,
    before_replace: Callable[[], bool] | None = None,
) -> bool:
    """``write_bytes_atomic`` of ``obj`` encoded as JSON (see ``dumps_json``)."""
    return write_bytes_atomic(path, dumps_json(obj), mode=mode, before_replace=before_replace)
