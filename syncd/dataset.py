"""The dataset directory on disk (SPEC §2): media discovery, paths, sample files.

Media live anywhere below the root; beside each one sits ``<media name>.json``, a FiftyOne sample
dict. Sample files are shared with people and other tools, so every write here is a
read-modify-write that re-checks the file just before the atomic rename and re-applies the change
if somebody else wrote in between (``update_sample``); unknown keys always survive. Paths handed
in from outside go through ``safe_rel`` so nothing is ever read or written outside the root.
A media file's metadata and hash are ``media_metadata``'s job; mask PNGs are ``mask_files``'.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from syncd import fingerprint
from syncd.atomic import Staged, dumps_json, stage_bytes, write_bytes_atomic
from syncd.errors import SampleFileError, SyncdError
from syncd.fileio import read_to_end
# IMAGE_EXTS .. content_hash are re-exported: callers (tests, bench, tools) use ``dataset.<name>``
from syncd.media_metadata import (IMAGE_EXTS, MAX_IMAGE_PIXELS, MEDIA_EXTS, VIDEO_EXTS, compute_metadata,
                                  content_hash, media_ext)
from syncd.sample_check import check_depth, check_sample

__all__ = [
    "IMAGE_EXTS", "MAX_IMAGE_PIXELS", "MAX_PATH_BYTES", "MEDIA_EXTS", "SAMPLE_SUFFIX", "UPDATE_RETRIES",
    "VIDEO_EXTS", "PreparedUpdate", "commit_update", "compute_metadata", "content_hash", "discover",
    "finish_staged_update", "is_media", "new_sample", "prepare_update", "read_sample", "safe_rel",
    "sample_file", "set_tags", "stage_update", "update_sample",
]

SAMPLE_SUFFIX = ".json"
UPDATE_RETRIES = 20
MAX_PATH_BYTES = 4000  # below PATH_MAX (4096) with room for the root and ".json"


# ---------------------------------------------------------------------------------------------
# Discovery


def is_media(rel: str) -> bool:
    """Whether ``rel`` (relative, forward slashes) names a media file syncd handles."""
    parts = str(rel).replace(os.sep, "/").split("/")
    if any(p.startswith(".") for p in parts if p):
        return False
    return media_ext(parts[-1]) in MEDIA_EXTS


def _utf8_ok(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes come back as lone surrogates and fail here
        return True
    except UnicodeEncodeError:
        return False


def discover(root) -> Iterator[str]:
    """Yield media paths below ``root``, relative, with forward slashes, sorted.

    Skips hidden components, non-UTF-8 names and symlinks that resolve outside the root. Each
    directory is entered at most once (by device/inode), which makes symlink loops harmless.
    One ``os.scandir`` per directory and no per-file stat: 100k files take about a second.
    """
    if not os.path.isdir(root):
        raise SyncdError(f"{root}: dataset root is not a directory")
    root_real = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()
    found: list[str] = []

    def inside(target: str) -> bool:
        return target == root_real or target.startswith(root_real + os.sep)

    def walk(dir_path: str, prefix: str) -> None:
        try:
            st = os.stat(dir_path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(dir_path) as it:
                entries = list(it)
        except OSError:
            return  # unreadable directory: skip rather than abort the whole scan
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not _utf8_ok(name):
                continue
            rel = prefix + name
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not inside(target):
                        continue
                    if os.path.isdir(target):
                        walk(entry.path, rel + "/")
                    elif os.path.isfile(target) and media_ext(name) in MEDIA_EXTS:
                        found.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    walk(entry.path, rel + "/")
                elif media_ext(name) in MEDIA_EXTS and entry.is_file(follow_symlinks=False):
                    found.append(rel)
            except OSError:
                continue

    walk(str(root), "")
    found.sort()
    return iter(found)


# ---------------------------------------------------------------------------------------------
# Paths


def safe_rel(root, rel) -> str:
    """Normalise ``rel`` to a forward-slash path relative to ``root``, or raise SampleFileError.

    Rejected: empty, absolute, ``..`` components, NUL, non-UTF-8, and paths whose real location
    (after symlinks) is outside the root.
    """
    shown = repr(rel)
    if isinstance(rel, bytes):
        try:
            rel = rel.decode("utf-8")
        except UnicodeDecodeError:
            raise SampleFileError(f"{shown}: path is not valid UTF-8") from None
    try:
        rel = os.fspath(rel)
    except TypeError:  # None, numbers, lists from a hostile sample/run record
        raise SampleFileError(f"{shown}: path must be a string, got {type(rel).__name__}") from None
    if not isinstance(rel, str):
        raise SampleFileError(f"{shown}: path must be a string")
    if "\x00" in rel:
        raise SampleFileError(f"{shown}: path contains a NUL byte")
    if not _utf8_ok(rel):
        raise SampleFileError(f"{shown}: path is not valid UTF-8")
    rel = rel.replace(os.sep, "/")
    if rel.startswith("/"):
        raise SampleFileError(f"{shown}: path must be relative to the dataset root")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SampleFileError(f"{shown}: path must not contain '..'")
    if not parts:
        raise SampleFileError(f"{shown}: empty path")
    if len(rel.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > 255 for p in parts):
        shown = shown if len(shown) <= 80 else shown[:60] + "..." + shown[-12:]  # one short line
        raise SampleFileError(f"{shown}: path is too long ({len(rel.encode())} bytes)")
    norm = "/".join(parts)
    _check_inside(root, norm, shown)
    return norm


# root as given -> ((st_dev, st_ino) of what it names, its realpath): realpath costs an lstat
# per component, and every sample file checked below the same root asked for it again
_ROOT_REAL: dict[str, tuple[tuple[int, int], str]] = {}


def _root_real(root) -> str:
    key = os.fspath(root)
    try:
        st = os.stat(key)  # one syscall; a retargeted symlink names another directory
    except OSError:
        return os.path.realpath(key)
    hit = _ROOT_REAL.get(key)
    if hit is not None and hit[0] == (st.st_dev, st.st_ino):
        return hit[1]
    real = os.path.realpath(key)
    if len(_ROOT_REAL) > 256:
        _ROOT_REAL.clear()
    _ROOT_REAL[key] = ((st.st_dev, st.st_ino), real)
    return real


def _check_inside(root, norm: str, shown: str) -> None:
    root_real = _root_real(root)
    # ``norm`` has no "..": it can only lead out through a symlink. Walk it with one lstat per
    # component; only a symlink (or an error) needs the full realpath.
    path = root_real
    for part in norm.split("/"):
        path = path + os.sep + part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return  # what follows does not exist yet, so it cannot be a symlink
        except OSError:
            break
        if stat.S_ISLNK(mode):
            break
    else:
        return
    real = os.path.realpath(os.path.join(root_real, norm))
    if real != root_real and not real.startswith(root_real + os.sep):
        raise SampleFileError(f"{shown}: path leads outside the dataset root {root}")


def sample_file(root, rel) -> Path:
    """The sample file of media ``rel``: ``<root>/<rel>.json`` (itself checked: a sample file
    symlinked out of the root is refused, not read)."""
    return _sample_path(root, safe_rel(root, rel))


def _sample_path(root, rel_checked: str) -> Path:
    """``sample_file`` of a media path that already went through ``safe_rel``."""
    return Path(_sample_path_str(root, rel_checked))


def _sample_path_str(root, rel_checked: str) -> str:
    """``_sample_path`` as a plain string (reading every sample file of a dataset, building a
    Path per file was a third of the time)."""
    norm = rel_checked + SAMPLE_SUFFIX
    path = os.path.join(root, norm)
    # The directories were just checked with the media path; only the file itself can still
    # lead elsewhere, and only if it is a symlink (one lstat instead of a second realpath).
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            _check_inside(root, norm, repr(norm))
    except FileNotFoundError:
        pass
    return path


# ---------------------------------------------------------------------------------------------
# Sample files


def _loads(data: bytes):
    """JSON from bytes: orjson (faster on the bytes as they are), or json for what orjson
    refuses, so what json accepts still parses (NaN literals, refused later by check_sample;
    lone surrogates) and what neither accepts gets json's familiar message."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"))


def _parse_sample(path, data: bytes) -> dict:
    try:
        obj = _loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SampleFileError(f"{path}: invalid sample file: {reason}") from None
    except RecursionError:  # hostile nesting ([[[[...]]]]) exhausts the parser's stack
        raise SampleFileError(f"{path}: invalid sample file: nested too deeply") from None
    check_depth(path, obj)  # first: hostile nesting is the cause worth naming, whatever the top
    if not isinstance(obj, dict):
        raise SampleFileError(
            f"{path}: invalid sample file: expected a JSON object, got {type(obj).__name__}")  # deepcopy/json.dumps of the dict would recurse past the limit
    return obj


def new_sample(root, rel) -> dict:
    """A fresh sample dict for media ``rel`` (not written)."""
    rel = safe_rel(root, rel)
    return {"filepath": rel, "tags": [], "metadata": compute_metadata(Path(root) / rel)}


def read_sample(root, rel, *, create: bool = True) -> dict:
    """Parse the sample file of ``rel``.

    Missing file: a fresh sample dict when ``create`` (not written), else SampleFileError.
    Unparsable or non-object JSON, or not a regular file: SampleFileError; the file is left
    untouched.
    """
    return read_safe(root, safe_rel(root, rel), create=create)


def read_safe(root, rel_checked: str, *, create: bool = True) -> dict:
    """``read_sample`` of a path ``safe_rel`` just returned: its checks are not made twice
    (planning 1000 samples given by path made them twice: ~4 ms)."""
    try:
        return _read_checked(root, rel_checked)
    except FileNotFoundError:
        if not create:
            raise SampleFileError(f"{os.path.join(root, rel_checked + SAMPLE_SUFFIX)}: no sample file") from None
        return new_sample(root, rel_checked)


def read_discovered(root, rel: str) -> dict:
    """``read_sample(root, rel, create=False)`` for a media path ``discover`` yielded (or one
    checked like it): its directories lie inside the root, so ``safe_rel``'s checks are not
    made again (they were ~60 % of the daemon's cold pass over 100k samples); the sample file
    itself is still refused if it leads out of the root."""
    try:
        return _read_checked(root, rel)
    except FileNotFoundError:
        raise SampleFileError(f"{os.path.join(root, rel + SAMPLE_SUFFIX)}: no sample file") from None


# O_NOFOLLOW: a symlinked sample file fails to open (ELOOP) and then gets the full check of where
# it leads; O_NONBLOCK: a FIFO by that name cannot block the reader (no effect on files).
_OPEN_SAMPLE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _read_checked(root, rel_checked: str) -> dict:
    """The parsed sample file of a media path whose directories are known to lie inside the root.
    FileNotFoundError if there is none; SampleFileError for anything else wrong with it. One open
    and one read: an ``lstat`` beforehand and Python's buffered file object were ~5 of the ~15 us
    a sample file took (``annotate`` by tag reads every sample file of the root)."""
    path = os.path.join(root, rel_checked + SAMPLE_SUFFIX)
    try:
        try:
            fd = os.open(path, _OPEN_SAMPLE)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path = _sample_path_str(root, rel_checked)  # a symlink: refused if it leads out
            fd = os.open(path, _OPEN_SAMPLE & ~os.O_NOFOLLOW)
        try:
            # a directory (or device...) by that name costs this sample, not a traceback
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SampleFileError(f"{path}: cannot read sample file: not a regular file")
            data = read_to_end(fd, st.st_size)  # one read, however big (a video's frames)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SampleFileError(f"{path}: cannot read sample file: {exc.strerror}") from None
    doc = _parse_sample(path, data)
    check_sample(path, doc)  # wrong types / NaN / out-of-image boxes: refused here, in one line
    return doc


def _snapshot(path: Path) -> tuple | None:
    """What identifies the file's current content: (mtime_ns, size, bytes, fingerprint) or
    None if absent. ``fingerprint``: the file's stat fingerprint when it is settled (see
    ``fingerprint``), else None."""
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            data = f.read()
            after = os.fstat(f.fileno())
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory by that name, no permission...: one line, not a traceback
        raise SampleFileError(f"{path}: cannot read sample file: {exc.strerror or exc}") from None
    return (before.st_mtime_ns, before.st_size, data, fingerprint.settled(before, after))


def _unchanged(path: Path, snap: tuple | None) -> bool:
    """Whether the file still holds what ``snap`` read (checked just before a rename over it).
    A settled fingerprint that the file's stat still equals proves it without reading the file
    again (no write since can have left the same stat); otherwise the bytes are compared."""
    if snap is not None and snap[3] is not None:
        try:
            if fingerprint.of(os.stat(path)) == snap[3]:
                return True
        except OSError:
            pass  # gone or unreadable: the full read below says which
    now = _snapshot(path)
    if now is None or snap is None:
        return now is snap
    return now[:3] == snap[:3]


# Serialises syncd's own writers in this process (daemon threads); writers in other processes
# and other tools are handled by the compare-before-rename check. Striped: bounded memory.
_path_locks = [threading.Lock() for _ in range(1024)]  # 16 load writers rarely share one


def _path_lock(path: Path) -> threading.Lock:
    return _path_locks[hash(str(path)) % len(_path_locks)]


class PreparedUpdate:
    """The first half of an ``update_sample``: the change applied to the file as read, encoded,
    nothing written yet (``prepare_update``); ``commit_update`` writes it if the file is still
    what was read. Lets a caller do the CPU work in one thread and the writes (fsync waits) in
    others."""

    __slots__ = ("root", "rel", "path", "snap", "new", "data")

    def __init__(self, root, rel: str, path: Path, snap: tuple | None, new: dict, data: bytes | None):
        self.root, self.rel, self.path, self.snap, self.new, self.data = root, rel, path, snap, new, data


def _prepare(root, rel: str, path: Path, change: Callable[[dict], dict | None]) -> PreparedUpdate:
    snap = _snapshot(path)
    if snap is None:
        current = new_sample(root, rel)
        proposed = copy.deepcopy(current)
    else:
        current = _parse_sample(path, snap[2])
        proposed = _loads(snap[2])  # an independent copy, at C speed (deepcopy is not)
    result = change(proposed)
    new = proposed if result is None else result
    if not isinstance(new, dict):
        raise SampleFileError(f"{path}: update produced {type(new).__name__}, not a dict")
    if snap is not None and new == current:
        return PreparedUpdate(root, rel, path, snap, new, None)
    try:
        data = dumps_json(new)
    except (TypeError, ValueError) as exc:
        raise SampleFileError(f"{path}: cannot encode sample as JSON: {exc}") from None
    return PreparedUpdate(root, rel, path, snap, new, data)


def write_failed(prep: PreparedUpdate, exc: OSError) -> SampleFileError:
    """The error for a prepared update whose file could not be written (naming the file)."""
    return SampleFileError(f"{prep.path}: cannot write sample file: {exc.strerror or exc}")


def _commit(prep: PreparedUpdate, sync_dir: bool) -> bool:
    if prep.data is None:
        return True  # nothing changed: nothing to write
    try:
        return write_bytes_atomic(prep.path, prep.data, before_replace=lambda: _unchanged(prep.path, prep.snap),
                                  sync_dir=sync_dir)
    except OSError as exc:
        raise write_failed(prep, exc) from None


def prepare_update(root, rel, change: Callable[[dict], dict | None]) -> PreparedUpdate:
    """Read the sample file of ``rel`` and apply ``change`` as ``update_sample`` does, without
    writing; SampleFileError if the file cannot be read or the result encoded."""
    rel = safe_rel(root, rel)
    return _prepare(root, rel, _sample_path(root, rel), change)


def commit_update(prep: PreparedUpdate, *, sync_dir: bool = True) -> bool:
    """Write a prepared update atomically if the file still holds what was read (checked just
    before the rename, as ``update_sample`` does). False: the file changed meanwhile and nothing
    was written; redo it with ``update_sample``, which re-applies the change to the new content."""
    with _path_lock(prep.path):
        return _commit(prep, sync_dir)


def stage_update(prep: PreparedUpdate) -> Staged | None:
    """Write a prepared update to a temporary file beside the sample file (not fsynced, not in
    place: see ``atomic.Staged``); None when there is nothing to write."""
    if prep.data is None:
        return None
    try:
        return stage_bytes(prep.path, prep.data)
    except OSError as exc:
        raise write_failed(prep, exc) from None


def finish_staged_update(prep: PreparedUpdate, staged: Staged | None) -> bool:
    """Rename a staged (and synced) update into place if the file still holds what was read,
    as ``commit_update`` does; False (temp file dropped) when it changed meanwhile."""
    if staged is None:
        return True
    with _path_lock(prep.path):
        try:
            return staged.finish(before_replace=lambda: _unchanged(prep.path, prep.snap))
        except OSError as exc:
            raise write_failed(prep, exc) from None


def update_sample(root, rel, change: Callable[[dict], dict | None], *,
                  sync_dir: bool = True) -> dict:
    """Atomically read-modify-write the sample file of ``rel``; returns the dict written.

    ``change`` gets a deep copy of the current sample (a fresh one if the file is missing) and
    mutates it and/or returns a new dict. Just before the rename the file is checked again; if
    someone changed it meanwhile, ``change`` is re-applied to the fresh content, so neither edit
    is lost. ``change`` may therefore run more than once and must not have other side effects.
    If nothing changed and the file exists, nothing is written (no spurious watcher events).
    ``sync_dir=False``: the rename is not yet durable when this returns; the caller fsyncs the
    directory of the sample file once for many samples (``atomic.fsync_dir``) before relying on it.
    """
    rel = safe_rel(root, rel)
    path = _sample_path(root, rel)
    with _path_lock(path):
        for _ in range(UPDATE_RETRIES):
            prep = _prepare(root, rel, path, change)
            if _commit(prep, sync_dir):
                return prep.new
    raise SampleFileError(
        f"{path}: sample file kept changing while syncd tried to update it "
        f"({UPDATE_RETRIES} attempts); try again")


def set_tags(root, rel, add: Iterable[str] = (), remove: Iterable[str] = (), *, sync_dir: bool = True) -> dict:
    """Remove then add tags on the sample of ``rel`` (order kept, no duplicates). ``sync_dir``
    as in ``update_sample``."""
    add, remove = list(add), set(remove)
    for tag in [*add, *remove]:
        if not isinstance(tag, str) or not tag:
            raise SampleFileError(f"{rel}: tag must be a non-empty string, got {tag!r}")

    def change(sample: dict) -> None:
        tags = sample.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise SampleFileError(f"{sample_file(root, rel)}: 'tags' must be a list of strings")
        tags = [t for t in tags if t not in remove]
        tags += [t for t in dict.fromkeys(add) if t not in tags]
        sample["tags"] = tags

    return update_sample(root, rel, change, sync_dir=sync_dir)
