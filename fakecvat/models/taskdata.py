"""Attaching media to a task (cvat-api.md §6.2-6.3): upload sessions, the data parameters,
and the background processing that gives the task its frames, size, mode and jobs.

Client files are stored under ``MEDIA_DIR/tasks/<id>/raw/`` and probed (size, pixels decodable)
as they arrive; share files are referenced in place under ``SHARE_DIR`` (never outside it, never
copied) and sized from their headers. Processing is a request of operation type
``create:task`` (see :mod:`fakecvat.models.requests`), so it finishes per the async policy.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import media
from ..errors import APIError, FieldError, ValidationError
from ..http import now
from ..store import Store
from . import jobs, requests, uploads

SORTING = ("lexicographical", "natural", "predefined", "random")
NO_MORE_DATA = "Adding more data is not supported"


def scope(task_id: int) -> str:
    return f"task:{task_id}:data"


def rq_id_for(task_id: int) -> str:
    return f"action=create&target=task&target_id={task_id}"


def raw_dir(media_dir, task_id: int) -> Path:
    return Path(media_dir) / "tasks" / str(task_id) / "raw"


def ensure_no_data(store: Store, task: dict) -> None:
    """CVAT answers a JSON string 400 when data is attached twice."""
    if task.get("size") or task.get("data") or requests.active(store.get(requests.TABLE, rq_id_for(task["id"]))):
        raise APIError(NO_MORE_DATA, status=400)


def upload_start(store: Store, task: dict, media_dir) -> None:
    """``Upload-Start``: begin a fresh session (anything half-uploaded before is dropped)."""
    with store.lock:
        ensure_no_data(store, task)
        shutil.rmtree(raw_dir(media_dir, task["id"]), ignore_errors=True)
        uploads.drop_scope(store, scope(task["id"]))
        store.update("tasks", task["id"], upload={"files": []})


def add_client_files(store: Store, task: dict, media_dir, files: list[tuple[str, object]]) -> list[str]:
    """Save ``[(filename, stream)]`` (already in ``client_files[i]`` order) into the task.

    Each image is also probed here, as it arrives (its size, or why it cannot be read, kept in
    the task's upload state): ``finish`` then has nothing left to decode, and batches a client
    sends side by side are saved and checked side by side. A bad file still fails the task's
    creation, not this request (as in CVAT, where checks happen when the task is created).
    The store lock is held only to check and record state, not while writing and decoding.
    """
    with store.lock:
        ensure_no_data(store, task)
    dest = raw_dir(media_dir, task["id"])
    names = [uploads.safe_name(name) for name, _ in files]  # reject hostile names before writing any
    probed: dict[str, object] = {}

    def save(item):
        name, stream = item
        base = uploads.save_stream(dest, name, stream).name
        data = stream.getvalue() if hasattr(stream, "getvalue") else None
        if data is not None and not media.is_video(base):
            try:
                probed[base] = list(media.probe_image_bytes(data, base))
            except media.MediaError as e:
                probed[base] = str(e)
    _in_parallel(save, files)
    with store.lock:
        state = store.get("tasks", task["id"]).get("upload") or {"files": []}
        state = {"files": state["files"] + names, "probed": {**(state.get("probed") or {}), **probed}}
        store.update("tasks", task["id"], upload=state)
        return names


PROBE_THREADS = 4
# Items go to the threads in a few chunks each, not one by one: a future per file (1000 per
# upload) cost a Condition, a queue hand-off and a GIL hand-over each. One raw 1000-image POST
# to ready, 8 runs x 3, alternated: medians 0.16-0.165 s one by one, 0.133-0.139 s in chunks.
CHUNKS_PER_THREAD = 4
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _in_parallel(fn, items) -> list:
    """``[fn(x) for x in items]`` in a few threads: saving and decoding images spend their time
    in system calls and Pillow's C decoder, which release the GIL. The first error is raised
    (the items after it in its chunk are not started).
    One pool for the process: requests handled side by side share its threads instead of
    each starting its own (8 batches in flight would be 32 decoding threads)."""
    global _pool
    items = list(items)
    if len(items) < 8:
        return [fn(x) for x in items]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="fakecvat-media")
    size = -(-len(items) // (PROBE_THREADS * CHUNKS_PER_THREAD))
    parts = _pool.map(lambda part: [fn(x) for x in part], [items[i:i + size] for i in range(0, len(items), size)])
    return [y for part in parts for y in part]


# ---- parameters ------------------------------------------------------------------------------

def _as_int(params: dict, field: str, minimum: int | None = 0, maximum: int | None = None, required=False):
    v = params.get(field)
    if v is None or v == "":
        if required:
            raise FieldError(field, "This field is required.")
        return None
    if isinstance(v, bool):
        raise FieldError(field, "A valid integer is required.")
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise FieldError(field, "A valid integer is required.")
    if minimum is not None and v < minimum:
        raise FieldError(field, f"Ensure this value is greater than or equal to {minimum}.")
    if maximum is not None and v > maximum:
        raise FieldError(field, f"Ensure this value is less than or equal to {maximum}.")
    return v


def parse_params(params: dict, share_dir: str | None) -> dict:
    """Validate the DataRequest fields we implement; returns the normalized parameters."""
    for unsupported in ("remote_files", "job_file_mapping", "validation_params", "cloud_storage_id"):
        if params.get(unsupported):
            raise APIError({"detail": f"fakecvat does not implement '{unsupported}' for task data"}, status=501)
    out = {"image_quality": _as_int(params, "image_quality", 0, 100, required=True),
           "chunk_size": _as_int(params, "chunk_size", 1),
           "start_frame": _as_int(params, "start_frame", 0) or 0,
           "stop_frame": _as_int(params, "stop_frame", 0)}
    if out["stop_frame"] is not None and out["stop_frame"] < out["start_frame"]:
        raise FieldError("stop_frame", "Stop frame must be more or equal start frame")
    flt = params.get("frame_filter") or ""
    m = re.fullmatch(r"step\s*=\s*(\d+)", flt.strip()) if flt else None
    if flt and (not m or int(m.group(1)) < 1):
        raise FieldError("frame_filter", "Invalid frame filter expression")
    out["frame_filter"] = f"step={int(m.group(1))}" if m and int(m.group(1)) > 1 else ""
    out["step"] = int(m.group(1)) if m else 1
    zip_chunks = params.get("use_zip_chunks")  # a JSON bool or a multipart "true"/"false"
    out["use_zip_chunks"] = zip_chunks is True or str(zip_chunks).lower() in ("true", "1")
    method = params.get("sorting_method") or "lexicographical"
    if method not in SORTING:
        raise FieldError("sorting_method", f'"{method}" is not a valid choice.')
    out["sorting_method"] = method
    order = params.get("upload_file_order") or []
    if not isinstance(order, list) or not all(isinstance(x, str) for x in order):
        raise FieldError("upload_file_order", "Expected a list of items.")
    out["upload_file_order"] = order
    server_files = params.get("server_files") or []
    if not isinstance(server_files, list):
        raise FieldError("server_files", "Expected a list of items.")
    root = os.path.realpath(share_dir) if share_dir is not None and server_files else None
    dirs: dict[str, str] = {}
    out["server_files"] = [_share_path(share_dir, root, p, dirs) for p in server_files]
    return out


def _share_path(share_dir: str | None, root: str | None, rel, dirs: dict[str, str]) -> str:
    """A share-relative path, normalized as CVAT does (``normpath``, so "a/../b" is "b"), with a
    trailing "/" for a directory; anything leading out of the share, by ".." or through a
    symlink, is a 400. ``root``: the share's real path; ``dirs``: {parent: its real path}, filled
    as names come (thousands of names share a few parents: one realpath each, not per file)."""
    if share_dir is None or root is None:
        raise FieldError("server_files", "The server has no share directory configured")
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise FieldError("server_files", f"Invalid path: {rel!r}")
    norm = os.path.normpath(rel.lstrip("/"))
    if norm == ".":
        return "."
    if norm == ".." or norm.startswith("../"):
        raise FieldError("server_files", f"The path {rel!r} is outside the share")
    parent, name = os.path.split(norm)
    real_parent = dirs.get(parent)
    if real_parent is None:
        real_parent = dirs[parent] = os.path.realpath(os.path.join(root, parent))
    path = os.path.join(real_parent, name)
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0  # missing: the request fails when the task is processed, as in CVAT
    if stat.S_ISLNK(mode):
        path = os.path.realpath(path)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0  # a dangling link: missing, as above
    if not _inside(root, real_parent) or not _inside(root, path):
        raise FieldError("server_files", f"The path {rel!r} is outside the share")
    return norm + "/" if stat.S_ISDIR(mode) else norm


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


# ---- finishing and processing ----------------------------------------------------------------

def finish(store: Store, user: dict, task: dict, params: dict, *, media_dir, share_dir, policy) -> str:
    """``Upload-Finish`` (or a single request): validate, then start processing. → rq_id."""
    p = parse_params(params, share_dir)
    with store.lock:
        ensure_no_data(store, task)
        task = store.get("tasks", task["id"])
        pending = uploads.incomplete(store, scope(task["id"]))
        if pending:
            raise ValidationError([f"Upload of {pending[0]} is not complete"])
        client = list((task.get("upload") or {}).get("files", [])) + uploads.finished_names(store, scope(task["id"]))
        if client and p["server_files"]:
            raise ValidationError(["Only one of client_files, server_files or remote_files can be used"])
        if not client and not p["server_files"]:
            raise ValidationError(["No media data found"])
        if p["sorting_method"] == "predefined" and client and p["upload_file_order"]:
            extra = sorted(set(p["upload_file_order"]) - set(client))
            missing = sorted(set(client) - set(p["upload_file_order"]))
            if extra or missing:
                raise FieldError("upload_file_order", f"Uploaded files do not match the 'upload_file_order' "
                                 f"field contents. Extra: {extra}, missing: {missing}")
            client = list(p["upload_file_order"])
        probed = (task.get("upload") or {}).get("probed") or {}
        dest = str(raw_dir(media_dir, task["id"]))
        files = ([_client_file(dest, n, probed.get(n)) for n in client] if client else
                 [{"name": n, "share": n} for n in p["server_files"]])
        store.update("tasks", task["id"], image_quality=p["image_quality"])
        rq = rq_id_for(task["id"])
        requests.create_request(
            store, rq_id=rq, owner=user, policy=policy,
            operation={"type": "create:task", "target": "task", "task_id": task["id"],
                       "project_id": task.get("project_id")},
            params={"task_id": task["id"], "files": files, "params": p, "share_dir": share_dir,
                    "media_dir": str(media_dir), "storage": "local" if client else "share"})
        return rq


def _client_file(dest: str, name: str, probed) -> dict:
    # (a plain join: pathlib here was most of the time Upload-Finish took for 1000 files)
    f = {"name": name, "path": os.path.join(dest, name)}
    if probed is not None:
        f["probed"] = probed
    return f


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _expand_share(files: list[dict], share_dir: str) -> list[dict]:
    """Share names -> [{name, path}]: a directory ("dir/") becomes the media files below it."""
    out = []
    for f in files:
        # (os.path, not pathlib: this runs once per file of tasks thousands of files long)
        path = os.path.join(share_dir, f["share"])
        if not f["share"].endswith("/"):
            if not os.path.isfile(path):
                raise requests.RequestFailed(f"No such file or directory: '{f['share']}'")
            out.append({"name": f["share"], "path": path})
            continue
        root = Path(share_dir)
        for p in sorted(Path(path).rglob("*")):
            if p.is_file() and (p.suffix.lower() in media.IMAGE_EXTS or p.suffix.lower() in media.VIDEO_EXTS):
                out.append({"name": p.relative_to(root).as_posix(), "path": str(p)})
    return out


def process(store: Store, doc: dict) -> dict | None:
    """The ``create:task`` runner: probe media, order and filter frames, create jobs."""
    prm = doc["_params"]
    task = store.get("tasks", prm["task_id"])
    if task is None:
        raise requests.RequestFailed(f"Task #{prm['task_id']} does not exist")
    try:
        _process(store, task, prm)
    except Exception:
        # a failed creation leaves the task without data, ready for another attempt
        shutil.rmtree(raw_dir(prm["media_dir"], task["id"]), ignore_errors=True)
        uploads.drop_scope(store, scope(task["id"]))
        store.update("tasks", task["id"], upload=None)
        raise
    return None


def _process(store: Store, task: dict, prm: dict) -> None:
    p = prm["params"]
    files = prm["files"] if prm["storage"] == "local" else _expand_share(prm["files"], prm["share_dir"])
    method = p["sorting_method"]
    if method == "lexicographical":
        files.sort(key=lambda f: f["name"])
    elif method == "natural":
        files.sort(key=lambda f: _natural_key(f["name"]))
    elif method == "random":
        random.Random(task["id"]).shuffle(files)
    videos = [f for f in files if media.is_video(f["name"])]
    if videos and len(files) > 1:
        raise requests.RequestFailed("Only one video file can be uploaded per task, without other files")
    if not files:
        raise requests.RequestFailed("No media data found")
    start, step = p["start_frame"], p["step"]
    video = None
    if videos:
        info = media.probe_video(files[0]["path"], files[0]["name"])
        total = info["frames"]
        frames = [{"name": files[0]["name"], "width": info["width"], "height": info["height"], "path": files[0]["path"]}]
        video = dict(info, path=files[0]["path"])
        mode = "interpolation"
    else:
        total = len(files)
        frames = []
        stop = min(p["stop_frame"] if p["stop_frame"] is not None else total - 1, total - 1)
        share = prm["storage"] == "share"

        def size_of(f):
            known = f.get("probed")  # checked when it was uploaded: [w, h], or why it is unreadable
            if isinstance(known, str):
                raise media.MediaError(known)
            if known:
                return known
            # Share files are read where they are (CVAT's share storage): only their header,
            # since nothing was uploaded that could have been cut short on the way. Uploads not
            # probed on arrival (TUS) get the full check.
            return (media.probe_image_header if share else media.probe_image)(f["path"], f["name"])
        chosen = files[start:stop + 1:step]
        for f, (w, h) in zip(chosen, _in_parallel(size_of, chosen) if not share else map(size_of, chosen)):
            frames.append({"name": f["name"], "width": w, "height": h, "path": f["path"]})
        mode = "annotation"
    stop = min(p["stop_frame"] if p["stop_frame"] is not None else total - 1, total - 1)
    size = len(range(start, stop + 1, step))
    if size <= 0:
        raise requests.RequestFailed(f"The start_frame {start} is out of the media's range (0..{total - 1})")
    stop = start + (size - 1) * step  # the last frame actually included, as CVAT stores it
    if p["chunk_size"]:
        chunk = p["chunk_size"]
    elif video:
        chunk = 36
    else:
        w, h = frames[0]["width"], frames[0]["height"]
        chunk = max(2, min(72, 36 * 1920 * 1080 // max(1, w * h)))
    data = {"id": store.next_id("data"), "chunk_size": chunk, "start_frame": start, "stop_frame": stop,
            "frame_filter": p["frame_filter"], "step": step, "sorting_method": method, "storage": prm["storage"],
            "frames": frames, "deleted_frames": [], "video": video, "chunks_updated_date": now(),
            "use_zip_chunks": bool(video) and p.get("use_zip_chunks", False)}
    with store.lock:
        task = store.update("tasks", task["id"], data=data, size=size, mode=mode, upload=None,
                            image_quality=p["image_quality"], updated_date=now())
        uploads.drop_scope(store, scope(task["id"]))
        jobs.create_segment_jobs(store, task, size, mode)


requests.register_runner("create:task", process)
