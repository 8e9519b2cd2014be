"""Uploaded files: safe names, multipart saving, and TUS (resumable upload) sessions.

Reusable by any upload endpoint (task data, annotation/dataset/backup imports): callers give a
destination directory they own; nothing is ever written outside it. Uploaded names keep only
their basename (the SDK sends absolute local paths; Django keeps the basename too), and names
that still cannot be a plain file name (empty, ``..``, NUL, control characters) are rejected.

TUS sessions live in table ``tus_uploads`` (``{id, owner_id, scope, dir, filename, length,
offset}``); bytes go to ``<dir>/.tus/<id>`` and are renamed to ``<dir>/<filename>`` when complete.
"""
from __future__ import annotations

import base64
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from ..errors import APIError, Conflict, PermissionDenied, ValidationError
from ..store import Store

TABLE = "tus_uploads"
TUS_VERSION = "1.0.0"
TUS_MAX_SIZE = 25 * 1024 ** 3
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION, "Tus-Max-Size": str(TUS_MAX_SIZE),
               "Tus-Extension": "creation,termination,file-check",
               "Access-Control-Expose-Headers": "Upload-Offset,Location,Upload-Length,Tus-Version,Tus-Resumable,"
                                                "Tus-Max-Size,Tus-Extension,Upload-Metadata,Upload-Filename"}


def safe_name(name: str | None, field: str = "client_files") -> str:
    """The basename of an uploaded name, or 400 when it cannot be a plain file name."""
    raw = name or ""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", "..") or any(ord(c) < 32 for c in base) or len(base.encode()) > 255:
        raise ValidationError({field: [f"Invalid file name: {raw!r}"]})
    return base


def save_stream(dest_dir: Path, name: str, stream: BinaryIO, field: str = "client_files") -> Path:
    """Write one uploaded file into ``dest_dir`` under its safe basename; duplicates are a 400."""
    base = safe_name(name, field)
    target = dest_dir / base
    # One exclusive create instead of exists() + temp file + rename (thousands of files per
    # request): "x" refuses a duplicate atomically; a half-written file (the request failed, so
    # nothing was acknowledged) is removed.
    try:
        f = open(target, "xb")
    except FileNotFoundError:
        dest_dir.mkdir(parents=True, exist_ok=True)
        f = open(target, "xb")
    except FileExistsError:
        raise ValidationError({field: [f"A file with the name {base!r} has already been uploaded"]}) from None
    try:
        with f:
            data = stream.getvalue() if hasattr(stream, "getvalue") else None
            if data is not None:
                f.write(data)
            else:
                shutil.copyfileobj(stream, f, 1024 * 1024)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def parse_metadata(header: str | None) -> dict:
    """``Upload-Metadata: key b64,key2 b64`` → {key: str}; malformed values give 400."""
    out = {}
    for item in (header or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value else ""
        except (ValueError, UnicodeDecodeError):
            raise ValidationError([f"Invalid Upload-Metadata value for {key!r}"])
    return out


def tus_create(store: Store, *, owner: dict, scope: str, dest_dir: Path, length: str | None,
               metadata: str | None) -> dict:
    """Start a TUS upload into ``dest_dir``; returns the session (its ``id`` goes in Location)."""
    meta = parse_metadata(metadata)
    if "filename" not in meta:
        raise ValidationError(["Metadata must contain the 'filename' field"])
    name = safe_name(meta["filename"], "filename")
    try:
        size = int(length or "")
    except ValueError:
        raise ValidationError(["Upload-Length must be a non-negative integer"])
    if size < 0:
        raise ValidationError(["Upload-Length must be a non-negative integer"])
    if size > TUS_MAX_SIZE:
        raise APIError("File size exceeds max limit", status=413, headers=dict(TUS_HEADERS))
    with store.lock:
        taken = (dest_dir / name).exists() or store.find(
            TABLE, lambda s: s["scope"] == scope and s["filename"] == name)
        if taken:
            raise Conflict("File with same name already exists", headers=dict(TUS_HEADERS))
        file_id = f"{owner['id']}_{uuid.uuid4()}"
        (dest_dir / ".tus").mkdir(parents=True, exist_ok=True)
        (dest_dir / ".tus" / file_id).write_bytes(b"")
        doc = store.put(TABLE, {"id": file_id, "owner_id": owner["id"], "scope": scope, "dir": str(dest_dir),
                                "filename": name, "length": size, "offset": 0})
        if size == 0:
            _complete(store, doc)
        return doc


def tus_get(store: Store, file_id: str, user: dict, scope: str) -> dict:
    doc = store.get(TABLE, file_id)
    if doc is None or doc["scope"] != scope:
        raise APIError("", status=404, text=True, headers=dict(TUS_HEADERS))
    if doc["owner_id"] != user["id"]:
        raise PermissionDenied()
    return doc


def tus_patch(store: Store, file_id: str, user: dict, scope: str, offset: str | None, data: bytes) -> dict:
    """Append ``data`` at ``offset``; a wrong offset is 409 carrying the server's offset."""
    with store.lock:
        doc = tus_get(store, file_id, user, scope)
        try:
            at = int(offset or "")
        except ValueError:
            raise Conflict("Upload-Offset header is missing or invalid",
                           headers={**TUS_HEADERS, "Upload-Offset": str(doc["offset"])})
        if at != doc["offset"]:
            raise Conflict("Offset mismatch", headers={**TUS_HEADERS, "Upload-Offset": str(doc["offset"])})
        if at + len(data) > doc["length"]:
            raise APIError("Upload exceeds the declared Upload-Length", status=413, headers=dict(TUS_HEADERS))
        with open(Path(doc["dir"]) / ".tus" / file_id, "ab") as f:
            f.write(data)
        doc = store.update(TABLE, file_id, offset=at + len(data))
        if doc["offset"] == doc["length"]:
            _complete(store, doc)
        return doc


def _complete(store: Store, doc: dict) -> None:
    os.replace(Path(doc["dir"]) / ".tus" / doc["id"], Path(doc["dir"]) / doc["filename"])
    store.update(TABLE, doc["id"], done=True)


def finished_names(store: Store, scope: str) -> list[str]:
    """Names of the complete TUS files of a scope, in upload order."""
    return [d["filename"] for d in store.find(TABLE, lambda d: d["scope"] == scope and d.get("done"))]


def incomplete(store: Store, scope: str) -> list[str]:
    return [d["filename"] for d in store.find(TABLE, lambda d: d["scope"] == scope and not d.get("done"))]


def drop_scope(store: Store, scope: str) -> None:
    with store.lock:
        for d in store.find(TABLE, lambda d: d["scope"] == scope):
            store.delete(TABLE, d["id"])

