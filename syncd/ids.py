"""FiftyOne-compatible label ids: 24-hex strings shaped like MongoDB ObjectIds.

FiftyOne stores every label's id as an ObjectId (4-byte big-endian Unix time + 8 more bytes).
syncd never talks to MongoDB, but it must mint ids FiftyOne accepts when the sample files are
loaded with ``fiftyone.Sample.from_dict()``, and it must recognise ids that came back from CVAT
in the ``label_id`` attribute (which annotators can edit freely, so anything may arrive there).
"""
from __future__ import annotations

import itertools
import os
import re
import threading
import time

_HEX24 = re.compile(r"^[0-9a-f]{24}$")
# ObjectId layout: time(4) + process-random(5) + counter(3). The counter keeps ids minted in the
# same second by the same process distinct and increasing, as MongoDB's driver does.
_RANDOM = os.urandom(5)
_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))
_LOCK = threading.Lock()


def new_id() -> str:
    """A fresh 24-hex id (ObjectId layout)."""
    with _LOCK:
        n = next(_COUNTER) & 0xFFFFFF
    return (int(time.time()).to_bytes(4, "big") + _RANDOM + n.to_bytes(3, "big")).hex()


_HEX24_ANY_CASE = re.compile(r"[0-9a-fA-F]{24}")


def is_object_id(s: object) -> bool:
    """True if ``s`` is a 24-hex string (case-insensitive, like ``bson.ObjectId.is_valid``)."""
    # called for every label of every merge: no lower() copy, fullmatch only on 24 characters
    return isinstance(s, str) and len(s) == 24 and _HEX24_ANY_CASE.fullmatch(s) is not None


def label_id(label: dict | None) -> str | None:
    """The id of a FiftyOne label dict: ``{"_id": {"$oid": hex}}``, ``{"_id": hex}`` or ``{"id": hex}``."""
    if not isinstance(label, dict):
        return None
    raw = label.get("_id", label.get("id"))
    if isinstance(raw, dict):
        raw = raw.get("$oid")
    return raw.lower() if is_object_id(raw) else None


def oid(hex_id: str) -> dict:
    """The JSON form FiftyOne's ``to_dict()`` writes for an id."""
    return {"$oid": hex_id}
