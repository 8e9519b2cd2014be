"""Reading a task's frames: data/meta, single frames, chunks, previews (cvat-api.md §6.4-6.5, §7).

Frame numbers here are task-relative. A job view restricts them to the job's range; CVAT's
out-of-range messages are kept word for word because clients show them.
"""
from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

from .. import media
from ..errors import APIError, ValidationError
from ..store import Store


def _data(task: dict) -> dict:
    data = task.get("data")
    if not data:
        raise ValidationError(["The task has no data"])
    return data


def source_index(data: dict, number: int) -> int:
    """Task frame → frame index in the source media (video frame, or image before the step)."""
    return data["start_frame"] + number * data.get("step", 1)


def check_frame(number, lo: int, hi: int) -> int:
    try:
        n = int(number)
    except (TypeError, ValueError):
        raise ValidationError(["The frame number should be an integer"])
    if n < lo or n > hi:
        raise ValidationError([f"The frame number should be in the [{lo}, {hi}] range"])
    return n


# Decoded video frames, one task chunk at a time: players and the SDK ask for frames in order,
# so decoding the whole chunk around a requested frame (one pass from its keyframe) serves the
# next chunk_size - 1 requests from memory. Two chunks of 640x480 RGB: about 60 MB at most.
_CHUNKS: "collections.OrderedDict[tuple, list]" = collections.OrderedDict()
_CHUNKS_LOCK = threading.Lock()
_CHUNKS_KEPT = 2


def _video_image(data: dict, number: int):
    path = data["video"]["path"]
    cs = max(1, int(data.get("chunk_size") or 1))
    first = number - number % cs
    step = max(1, int(data.get("step", 1) or 1))
    last = min(first + cs - 1, (data["stop_frame"] - data["start_frame"]) // step)
    try:
        st = os.stat(path)
    except OSError:
        return media.video_frame(path, source_index(data, number))
    key = (path, st.st_mtime_ns, data["start_frame"], step, first)
    with _CHUNKS_LOCK:
        images = _CHUNKS.get(key)
        if images is not None:
            _CHUNKS.move_to_end(key)
    if images is None or number - first >= len(images):
        try:
            images = media.video_frames(path, [source_index(data, n)
                                               for n in range(first, max(last, number) + 1)])
        except media.MediaError:
            return media.video_frame(path, source_index(data, number))  # its own message
        with _CHUNKS_LOCK:
            _CHUNKS[key] = images
            while len(_CHUNKS) > _CHUNKS_KEPT:
                _CHUNKS.popitem(last=False)
    return images[number - first]


def _image(data: dict, number: int):
    if data.get("video"):
        return _video_image(data, number)
    path = data["frames"][number]["path"]
    try:
        return media.load_image(path)
    except (OSError, ValueError, SyntaxError) as e:
        # Checked when the task was made, so the file changed since (a share file edited or
        # truncated in place): say which frame, as a client error, never a 500.
        raise APIError(f"The frame {number} ({data['frames'][number]['name']}) cannot be read: {e}",
                       status=400, text=True) from None


def _original_bytes(data: dict, number: int) -> bytes:
    try:
        return Path(data["frames"][number]["path"]).read_bytes()
    except OSError as e:
        raise APIError(f"The frame {number} ({data['frames'][number]['name']}) cannot be read: "
                       f"{e.strerror}", status=400, text=True) from None


def chunk_types(data: dict | None) -> tuple[str, str]:
    """(compressed, original) chunk types as CVAT reports them: a video task's chunks are MP4
    segments, except compressed ones with ``use_zip_chunks`` (zips of JPEGs)."""
    if not data or not data.get("video"):
        return "imageset", "imageset"
    return ("imageset" if data.get("use_zip_chunks") else "video"), "video"


def frame(task: dict, number: int, quality: str) -> tuple[bytes, str]:
    """(bytes, mime) of one task frame; ``original`` is the stored file's bytes for images."""
    data = _data(task)
    if quality == "original" and not data.get("video"):
        f = data["frames"][number]
        return _original_bytes(data, number), media.mime_type(f["name"])
    quality_value = task.get("image_quality", 70) if quality != "original" else 95
    return media.to_jpeg(_image(data, number), quality_value), "image/jpeg"


def chunk(task: dict, numbers: range, quality: str) -> tuple[bytes, str]:
    """(bytes, mime) of a chunk holding the given task frames: a zip (``000000.jpeg``... per
    CVAT's imageset) or, for a "video" chunk type, an MP4 of just those frames."""
    data = _data(task)
    if data.get("video"):
        compressed, original = chunk_types(data)
        # one decoding pass for the whole chunk (frames are consecutive on the source's grid)
        images = media.video_frames(data["video"]["path"], [source_index(data, n) for n in numbers],
                                    name=data["frames"][0]["name"])
        if (original if quality == "original" else compressed) == "video":
            q = 100 if quality == "original" else task.get("image_quality", 70)
            fps = data["video"].get("fps") or 25.0
            return media.encode_video(images, q, fps / max(1, data.get("step", 1))), "video/mp4"
        q = task.get("image_quality", 70)
        return media.zip_chunk([(f"{i:06d}.jpeg", media.to_jpeg(im, q)) for i, im in enumerate(images)]), \
            "application/zip"
    entries = []
    for i, n in enumerate(numbers):
        if quality == "original" and not data.get("video"):
            f = data["frames"][n]
            entries.append((f"{i:06d}{Path(f['name']).suffix.lower()}", _original_bytes(data, n)))
        else:
            entries.append((f"{i:06d}.jpeg", media.to_jpeg(_image(data, n), task.get("image_quality", 70))))
    return media.zip_chunk(entries), "application/zip"


def chunk_range(task: dict, index: int, lo: int, hi: int) -> range:
    """Frames of chunk ``index`` counted from frame ``lo`` (task chunks: lo=0), clipped to hi."""
    cs = _data(task)["chunk_size"]
    last = (hi - lo) // cs
    if index < 0 or index > last:
        raise ValidationError([f"The chunk number should be in the [0, {last}] range"])
    start = lo + index * cs
    return range(start, min(start + cs - 1, hi) + 1)


def preview(task: dict) -> bytes:
    data = task.get("data")
    if not data:
        raise APIError({"detail": "Not found."}, status=404)
    return media.preview_jpeg(_image(data, 0))


def meta(store: Store, task: dict, job: dict | None = None) -> dict:
    """DataMetaRead for a task, or for one job of it."""
    data = task.get("data")
    if not data:
        return {"chunk_size": None, "size": 0, "image_quality": task.get("image_quality", 70), "start_frame": 0,
                "stop_frame": 0, "frame_filter": "", "frames": [], "deleted_frames": [], "included_frames": None,
                "chunks_updated_date": task["updated_date"], "storage": "local", "cloud_storage_id": None,
                "chapters": None}
    lo, hi = (job["start_frame"], job["stop_frame"]) if job else (0, task["size"] - 1)
    if data.get("video"):
        frames = data["frames"]  # a video has a single entry: its size and name
    else:
        frames = data["frames"][lo:hi + 1]
    return {
        "chunk_size": data["chunk_size"], "size": hi - lo + 1, "image_quality": task.get("image_quality", 70),
        "start_frame": source_index(data, lo), "stop_frame": source_index(data, hi),
        "frame_filter": data["frame_filter"],
        "frames": [{"width": f["width"], "height": f["height"], "name": f["name"], "related_files": 0,
                    "has_related_context": False} for f in frames],
        "deleted_frames": [d for d in data["deleted_frames"] if lo <= d <= hi],
        "included_frames": None, "chunks_updated_date": data["chunks_updated_date"],
        "storage": data["storage"], "cloud_storage_id": None,
        "chapters": [] if data.get("video") else None,
    }


def set_deleted_frames(store: Store, task: dict, deleted) -> dict:
    """PATCH data/meta ``{"deleted_frames": [...]}`` (task-relative, validated against size)."""
    data = _data(task)
    if not isinstance(deleted, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in deleted):
        raise ValidationError({"deleted_frames": ["Expected a list of integers."]})
    bad = [d for d in deleted if d < 0 or d >= task["size"]]
    if bad:
        raise ValidationError({"deleted_frames": [f"Unexpected frame numbers: {bad}"]})
    data = dict(data, deleted_frames=sorted(set(deleted)))
    return store.update("tasks", task["id"], data=data)
