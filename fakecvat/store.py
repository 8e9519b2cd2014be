"""All of fakecvat's state, behind one lock, with optional durable persistence.

State is a set of named tables, each a dict ``id -> document`` (plain JSON-able dicts).
Models read and write documents only through a :class:`Store`; Flask never touches it
directly.

Persistence (``data_dir`` given) is a write-ahead journal: every change appends one JSON
line (``put`` or ``delete`` of a whole document) and is fsync'ed before the request that made
it is answered, so an acknowledged write survives ``kill -9``. On open the journal is replayed
and compacted into a snapshot. A journal or snapshot that does not parse is reported with
:class:`CorruptStateError` rather than silently replaced. We do not use TinyDB here because it
rewrites its whole file on every write, which would make a 10k-shape PUT cost O(state).
"""
from __future__ import annotations

import copy
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from . import jsonenc

SNAPSHOT = "state.json"
JOURNAL = "journal.jsonl"


class CorruptStateError(RuntimeError):
    """The persisted state under --data-dir cannot be read; nothing was overwritten."""


class Store:
    """Tables of documents with integer (or string) ids, one re-entrant lock for all."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.lock = threading.RLock()
        self.data_dir = Path(data_dir) if data_dir else None
        self._tables: dict[str, dict[Any, dict]] = {}
        self._counters: dict[str, int] = {}
        self._journal = None
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._load()
            self._compact()

    # ---- reading -------------------------------------------------------------------------
    def get(self, table: str, key: Any) -> dict | None:
        with self.lock:
            return self._tables.get(table, {}).get(key)

    def all(self, table: str) -> list[dict]:
        with self.lock:
            return list(self._tables.get(table, {}).values())

    def find(self, table: str, pred: Callable[[dict], bool]) -> list[dict]:
        with self.lock:
            return [d for d in self._tables.get(table, {}).values() if pred(d)]

    def table(self, table: str) -> dict[Any, dict]:
        """The live mapping (callers must hold ``lock`` while iterating and must not mutate)."""
        return self._tables.setdefault(table, {})

    # ---- writing -------------------------------------------------------------------------
    def next_id(self, table: str) -> int:
        with self.lock:
            n = self._counters.get(table, 0) + 1
            self._counters[table] = n
            self._log({"op": "counter", "table": table, "value": n})
            return n

    def next_ids(self, table: str, n: int) -> range:
        """Reserve ``n`` consecutive ids with one journal entry (bulk annotation writes)."""
        with self.lock:
            start = self._counters.get(table, 0) + 1
            if n > 0:
                self._counters[table] = start + n - 1
                self._log({"op": "counter", "table": table, "value": start + n - 1})
            return range(start, start + max(n, 0))

    def insert(self, table: str, doc: dict) -> dict:
        """Store ``doc``; assigns ``doc['id']`` from the table's counter when absent."""
        with self.lock:
            if doc.get("id") is None:
                doc["id"] = self.next_id(table)
            return self.put(table, doc)

    def put(self, table: str, doc: dict, key: Any = None) -> dict:
        """Insert or replace a whole document (``key`` defaults to ``doc['id']``)."""
        with self.lock:
            key = doc["id"] if key is None else key
            self._tables.setdefault(table, {})[key] = doc
            self._log({"op": "put", "table": table, "key": key, "doc": doc})
            return doc

    def update(self, table: str, key: Any, **fields) -> dict:
        with self.lock:
            doc = self._tables[table][key]
            doc.update(fields)
            return self.put(table, doc, key)

    def delete(self, table: str, key: Any) -> dict | None:
        with self.lock:
            doc = self._tables.get(table, {}).pop(key, None)
            if doc is not None:
                self._log({"op": "delete", "table": table, "key": key})
            return doc

    def reset(self) -> None:
        """Forget everything (the control API's reset)."""
        with self.lock:
            self._tables.clear()
            self._counters.clear()
            if self.data_dir:
                self._compact()

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """Hold the lock across several reads and writes that must be seen together."""
        with self.lock:
            yield self

    def dump(self) -> dict:
        """A deep copy of all state (the control API's state dump)."""
        with self.lock:
            # A real copy: callers (the state endpoint) edit the dump, e.g. strip passwords.
            return {
                "tables": {t: {str(k): copy.deepcopy(v) for k, v in rows.items()}
                           for t, rows in self._tables.items()},
                "counters": dict(self._counters),
            }

    def snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy(self._tables)

    # ---- persistence ---------------------------------------------------------------------
    def _log(self, entry: dict) -> None:
        if self._journal is None:
            return
        self._journal.write(jsonenc.dumps(entry) + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _load(self) -> None:
        snap = self.data_dir / SNAPSHOT
        if snap.exists():
            try:
                data = json.loads(snap.read_text("utf-8"))
                for t, rows in data["tables"].items():
                    self._tables[t] = {_key(k): v for k, v in rows.items()}
                self._counters = dict(data["counters"])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise CorruptStateError(f"{snap}: cannot read fakecvat state ({e}); move it away to start afresh") from e
        journal = self.data_dir / JOURNAL
        if journal.exists():
            lines = journal.read_bytes().split(b"\n")
            for no, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    e = json.loads(line)
                    self._apply(e)
                except (ValueError, KeyError, TypeError) as err:
                    # A torn last line is what kill -9 during a write leaves: that write was
                    # never acknowledged, so dropping it is correct. Anything earlier is damage.
                    if no == len(lines) or (no == len(lines) - 1 and not lines[-1].strip()):
                        continue
                    raise CorruptStateError(f"{journal}:{no}: cannot read fakecvat journal ({err})") from err

    def _apply(self, e: dict) -> None:
        op, table = e["op"], e["table"]
        if op == "put":
            self._tables.setdefault(table, {})[e["key"]] = e["doc"]
        elif op == "delete":
            self._tables.get(table, {}).pop(e["key"], None)
        elif op == "counter":
            self._counters[table] = max(self._counters.get(table, 0), e["value"])
        else:
            raise KeyError(op)

    def _compact(self) -> None:
        """Write a snapshot atomically, then start an empty journal."""
        if self._journal is not None:
            self._journal.close()
        snap = self.data_dir / SNAPSHOT
        tmp = snap.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"tables": {t: {json.dumps(k): v for k, v in rows.items()} for t, rows in self._tables.items()},
                       "counters": self._counters}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, snap)
        _fsync_dir(self.data_dir)
        self._journal = open(self.data_dir / JOURNAL, "wb")
        _fsync_dir(self.data_dir)

    def close(self) -> None:
        with self.lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


def _key(k: str) -> Any:
    return json.loads(k)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
