"""Run records in ``<root>/.syncd/runs/`` (TinyDB, one file per run), and the per-root daemon lock.

A run is one batch of samples sent to CVAT, like a FiftyOne annotation run. Its record is a plain
JSON dict; this module stores whatever the caller puts in it. The shape the rest of syncd uses::

    {"key": "boxes-3",               # "<rule name>-<n>" for daemon runs, any key for one-shot runs
     "created": "2024-...Z", "updated": "2024-...Z",
     "status": "created",            # caller-defined lifecycle: created, uploading, annotating, ...
     "config": {...},                # label schema, rule / annotate() options, CVAT url, project
     "samples": ["street/0001.jpg"], # media paths (relative to the root) in this run
     "tasks": {"12": {...}},         # CVAT task id (string) -> state, jobs, frame map, ...
     "frames": {...},                # per-task CVAT frame -> sample (and video frame) map
     "sent": {...},                  # what was uploaded: field -> sample -> label id(s) (id_map)
     "intents": [...]}               # steps started but not yet confirmed (crash recovery)

Durability: TinyDB's stock JSONStorage rewrites the file in place, so a crash can leave it torn.
Every file here is replaced atomically instead (``atomic``). Every mutation is a
read-modify-write done under an flock on ``.syncd/runs.lock``, so the daemon and a CLI command
running at the same time never lose each other's updates. ``.syncd/`` is 0700, its files 0600.

A run file is a TinyDB file (``{"run": {"1": record}}``) but is read and replaced here
directly: through TinyDB's table API (uncached, as another process may write), one change
cost three parses, two encodings and two fsynced writes of a record that lists every sample
(~7 ms for 1000 samples, ten times per load); now it is one of each. The key counters, small
and rarely written, go through TinyDB (``AtomicJSONStorage``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from syncd.atomic import dumps_json, write_bytes_atomic, write_json_atomic
from syncd.errors import RunError, SyncdError

STATE_DIR = ".syncd"
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def state_dir(root) -> Path:
    """``<root>/.syncd``, created 0700 if missing (and tightened if it was looser)."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: dataset root is not a directory")
    path = root / STATE_DIR
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        if path.stat().st_mode & 0o777 != 0o700:
            path.chmod(0o700)
    except OSError as exc:
        raise RunError(f"{path}: cannot create state directory: {exc.strerror}") from None
    return path


def _open_private(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces the file atomically (0600) instead of rewriting in place."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self):
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RunError(f"{self.path}: run records are corrupt: {exc}") from None

    def write(self, data):
        try:
            write_json_atomic(self.path, data, mode=0o600)
        except OSError as exc:
            raise RunError(f"{self.path}: cannot write run records: {exc.strerror or exc}") from None

    def close(self):
        pass


def _encode(value: Any, what: str) -> bytes:
    """The JSON a run file holds (``atomic.dumps_json``: indented, for people who read it);
    RunError naming ``what`` if ``value`` is not plain JSON (NaN included)."""
    try:
        return dumps_json(value)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{what}: value is not JSON-serialisable: {exc}") from None


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # (also integers beyond 64 bits): json decides, and words the error
        return json.loads(data)


class RunStore:
    """All run records of one dataset root: one TinyDB file per run, ``.syncd/runs/<key>.json``.

    TinyDB rewrites its whole file on every write; with every run in one file, each step of a
    new run would rewrite the history of all earlier ones (a daemon makes thousands). One file
    per run keeps a write proportional to that run. Key counters live in ``.syncd/counters.json``.
    """

    RUN_TABLE = "run"

    def __init__(self, root):
        self.root = Path(root)
        self.dir = state_dir(root)
        self.runs_dir = self.dir / "runs"
        try:
            self.runs_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RunError(f"{self.runs_dir}: cannot create run directory: {exc.strerror}") from None
        self._lock_path = self.dir / "runs.lock"
        self._thread_lock = threading.RLock()
        # cache_size=0: another process may write the file; never answer from a stale cache.
        self._counters = TinyDB(self.dir / "counters.json", storage=AtomicJSONStorage).table(
            "counters", cache_size=0)
        self._migrate_single_file()
        self._remove_torn_writes()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = _open_private(self._lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise RunError(f"invalid run key {key!r}: use letters, digits, '_', '-', '.'")
        return self.runs_dir / f"{key}.json"

    def _read(self, key: str) -> dict | None:
        found = self._read_doc(key)
        return found[1] if found else None

    def _read_doc(self, key: str) -> tuple[str, dict] | None:
        """(TinyDB document id, record) held by the run's file, or None if there is none."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunError(f"{path}: cannot read run records: {exc.strerror or exc}") from None
        if not data.strip():
            return None
        try:
            doc = _decode(data)
        except ValueError as exc:
            raise RunError(f"{path}: run records are corrupt: {exc}") from None
        table = doc.get(self.RUN_TABLE, {}) if isinstance(doc, dict) else None
        if not isinstance(table, dict):
            raise RunError(f"{path}: run records are corrupt: no '{self.RUN_TABLE}' table")
        for doc_id, record in table.items():  # (one document per file)
            if isinstance(record, dict):
                return doc_id, record
        return None

    def _write(self, key: str, record: dict, doc_id: str = "1") -> dict:
        """Replace the run's file with ``record`` (atomically, 0600); returns the record as a
        reload would give it (tuples as lists, ...). RunError if it is not JSON."""
        data = _encode({self.RUN_TABLE: {doc_id: record}}, f"run '{key}'")
        path = self._path(key)
        try:
            write_bytes_atomic(path, data, mode=0o600)
        except OSError as exc:
            raise RunError(f"{path}: cannot write run records: {exc.strerror or exc}") from None
        return _decode(data)[self.RUN_TABLE][doc_id]

    def _missing(self, key: str) -> RunError:
        return RunError(f"no run '{key}' in {self.root}")

    def _remove_torn_writes(self) -> None:
        """Delete temporary files left by a writer killed mid-write (``.<name>.XXXX.tmp``).

        Every write of a run file happens under the runs lock, so while we hold it no temporary
        file here belongs to a live writer; the records themselves are whole (atomic rename)."""
        with self._locked():
            for folder in (self.dir, self.runs_dir):
                for tmp in folder.glob(".*.tmp"):
                    try:
                        tmp.unlink()
                    except OSError:
                        pass

    def _migrate_single_file(self) -> None:
        """Runs kept by an earlier syncd in one ``runs.json`` move to one file each, once."""
        legacy = self.dir / "runs.json"
        if not legacy.exists():
            return
        with self._locked():
            if not legacy.exists():
                return
            data = AtomicJSONStorage(legacy).read() or {}
            for doc in (data.get("runs") or {}).values():
                if isinstance(doc, dict) and doc.get("key") and self._read(doc["key"]) is None:
                    self._write(doc["key"], doc)
            for doc in (data.get("counters") or {}).values():
                if isinstance(doc, dict) and doc.get("prefix") and not self._counters.search(
                        Query().prefix == doc["prefix"]):
                    self._counters.insert(doc)
            legacy.rename(legacy.with_name("runs.json.migrated"))

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> dict:
        doc = self._read(key)
        if doc is None:
            raise self._missing(key)
        return doc

    def exists(self, key: str) -> bool:
        return self._read(key) is not None

    def list(self) -> list[dict]:
        """Every run, oldest first."""
        docs = []
        for path in self.runs_dir.glob("*.json"):
            doc = self._read(path.stem) if _KEY_RE.match(path.stem) else None
            if doc is not None:
                docs.append(doc)
        return sorted(docs, key=lambda d: (d.get("created", ""), d.get("key", "")))

    # -- writing ------------------------------------------------------------------------------

    def create(self, key: str, config: dict, **fields) -> dict:
        """Add a run; RunError if ``key`` is taken or malformed. Extra fields are stored too."""
        self._path(key)
        now = _now()
        record = {"key": key, "created": now, "updated": now, "status": "created",
                  "config": config, "samples": [], "tasks": {}, "frames": {}, "sent": {},
                  "intents": []}
        record.update(fields)
        record["key"] = key
        with self._locked():
            if self._read(key) is not None:
                raise RunError(f"run '{key}' already exists in {self.root}")
            return self._write(key, record)

    def modify(self, key: str, change: Callable[[dict], dict | None]) -> dict:
        """Read-modify-write one record under the lock; ``change`` mutates or returns it."""
        with self._locked():
            found = self._read_doc(key)
            if found is None:
                raise self._missing(key)
            doc_id, record = found
            result = change(record)
            record = dict(record if result is None else result)
            if record.get("key") != key:
                raise RunError(f"run '{key}': use rename() to change a run's key")
            record["updated"] = _now()
            # one atomic replacement: there is no moment at which the file holds no run
            return self._write(key, record, doc_id)

    def update(self, key: str, **fields) -> dict:
        """Set top-level fields of a run."""
        return self.modify(key, lambda r: r.update(fields))

    def record(self, key: str, path: list[str], value) -> dict:
        """Set a nested value, creating dicts on the way: ``record(k, ["tasks", "12", "state"], v)``.

        Path parts are dict keys; ints are turned into strings (JSON objects have string keys).
        """
        if not path:
            raise RunError(f"run '{key}': empty record path")
        parts = [str(p) for p in path]
        if parts[0] == "key":
            raise RunError(f"run '{key}': use rename() to change a run's key")

        def change(rec: dict) -> None:
            node = rec
            for i, part in enumerate(parts[:-1]):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    where = ".".join(parts[: i + 1])
                    raise RunError(f"run '{key}': {where} is not an object")
            node[parts[-1]] = value

        return self.modify(key, change)

    def rename(self, key: str, new_key: str) -> dict:
        new_path = self._path(new_key)
        with self._locked():
            record = self._read(key)
            if record is None:
                raise self._missing(key)
            if self._read(new_key) is not None:
                raise RunError(f"run '{new_key}' already exists in {self.root}")
            record.update(key=new_key, updated=_now())
            self._write(new_key, record)  # the new file first: a crash leaves both, never neither
            self._path(key).unlink()
        assert new_path.exists()
        return self.get(new_key)

    def delete(self, key: str) -> None:
        with self._locked():
            if self._read(key) is None:
                raise self._missing(key)
            self._path(key).unlink()

    def next_key(self, prefix: str) -> str:
        """Reserve and return ``"<prefix>-<n>"``, n one above any number used for this prefix
        before (deleted runs included, so a key is never reused for a different run)."""
        if not isinstance(prefix, str) or not _KEY_RE.match(prefix + "-1"):
            raise RunError(f"invalid run key prefix {prefix!r}")
        pat = re.compile(re.escape(prefix) + r"-(\d+)$")
        with self._locked():
            used = [int(m.group(1)) for p in self.runs_dir.glob("*.json") if (m := pat.match(p.stem))]
            docs = self._counters.search(Query().prefix == prefix)
            last = max([docs[0]["last"] if docs else 0, *used])
            if docs:
                self._counters.update({"last": last + 1}, doc_ids=[docs[0].doc_id])
            else:
                self._counters.insert({"prefix": prefix, "last": last + 1})
        return f"{prefix}-{last + 1}"


@contextlib.contextmanager
def acquire_root_lock(root) -> Iterator[Path]:
    """Hold ``<root>/.syncd/daemon.lock`` (flock) for the ``with`` block; one daemon per root.

    The holder's pid is written into the file so a second acquirer can say who holds it. The
    kernel drops the lock when the process dies, so a kill -9 never leaves a stale lock.
    """
    path = state_dir(root) / "daemon.lock"
    fd = _open_private(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise SyncdError(f"another syncd daemon holds {root} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
