"""One video sample <-> one CVAT task: ``frames.<field>`` labels, tracks and the frame mapping.

A video's sample file numbers frames from 1 (``"frames": {"1": {...}}``); its task holds the
video frames ``frame_start, frame_start + step, ...`` up to ``frame_stop``, numbered from 0.
So sample frame ``n`` is task frame ``(n - 1 - frame_start) // step`` when ``n - 1`` lies on
that grid, and task frame ``k`` is sample frame ``start_frame + k * step + 1`` (from the task's
``data/meta``).

- ``export_video``: labels with an ``index`` (detections, polylines, keypoints) become tracks
  (see ``tracks.build_track``), every other frame label a plain shape or tag on its frame;
- ``import_video``: plain objects and interpolated tracks -> ``{"frames": {"<n>": {field:
  value}}}``, with ``index`` = the track's position (from 1) and ``keyframe=True`` on
  keyframes; every task frame is present so the merge can tell deletions.
Only ``frames.*`` fields are handled; sample-level fields of a video are not sent.
"""
from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import Any

from ..errors import SyncdError
from ..ids import is_object_id, label_id, new_id
from ..schema import FieldSchema, label_name_map, labels_of
from . import _EXPORTERS, import_annotations
from .attributes import stringify
from .base import ExportContext
from .tracks import build_track, interpolate_track

log = logging.getLogger(__name__)

__all__ = ["export_video", "import_video", "frame_map", "check_frame_settings", "check_step_with_tracks",
           "parse_step"]

TRACKED_TYPES = ("detections", "instances", "polylines", "polygons", "keypoints")
_LID_SPEC = "__syncd_label_id__"  # spec id for labels lacking a label_id attribute (ids only)


# ---- frame numbers -------------------------------------------------------------------------------

def check_frame_settings(frame_start: Any = 0, frame_stop: Any = None, frame_step: Any = 1) -> tuple:
    """Validated (start, stop, step); SyncdError naming the setting otherwise."""
    def as_int(name: str, v: Any, low: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SyncdError(f"{name} must be an integer >= {low}, got {v!r}")
        return v
    start = as_int("frame_start", 0 if frame_start is None else frame_start, 0)
    step = as_int("frame_step", 1 if frame_step is None else frame_step, 1)
    stop = None if frame_stop is None else as_int("frame_stop", frame_stop, 0)
    if stop is not None and stop < start:
        raise SyncdError(f"frame_stop ({stop}) must not be before frame_start ({start})")
    return start, stop, step


def frame_map(total: int, frame_start: int = 0, frame_stop: int | None = None,
              frame_step: int = 1) -> dict[int, int]:
    """{sample frame number (from 1): task frame} for the frames a task made this way holds."""
    last = total - 1 if frame_stop is None else min(frame_stop, total - 1)
    return {i + 1: k for k, i in enumerate(range(frame_start, last + 1, frame_step))}


def parse_step(frame_filter: Any) -> int:
    """CVAT's ``frame_filter`` ("step=N" or "") -> N."""
    text = str(frame_filter or "")
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "step" and value.strip().isdigit():
            return max(1, int(value))
    return 1


def _total_frames(sample: dict) -> int:
    md = sample.get("metadata") or {}
    total = md.get("total_frame_count")
    if isinstance(total, int) and total > 0:
        return total
    numbers = [int(n) for n in (sample.get("frames") or {}) if str(n).isdigit()]
    return max(numbers, default=0)


# ---- upload --------------------------------------------------------------------------------------

def _is_tracked(fs: FieldSchema, lab: dict) -> bool:
    return fs.type in TRACKED_TYPES and lab.get("index") is not None


def export_video(sample: dict, schema: dict[str, FieldSchema], width: int, height: int,
                 root: str | Path | None, frame_start: int = 0, frame_stop: int | None = None,
                 frame_step: int = 1) -> tuple[dict, dict[str, list[str]]]:
    """One video sample -> ({"tags", "shapes", "tracks"} in name form, {field: ids sent}).

    Raises SyncdError for bad frame settings, and for ``frame_step`` > 1 with existing tracks
    (the interpolated frames in between would overwrite labels the task never showed).
    """
    start, stop, step = check_frame_settings(frame_start, frame_stop, frame_step)
    frames = sample.get("frames") or {}
    fmap = frame_map(_total_frames(sample), start, stop, step)
    last_task_frame = max(fmap.values(), default=-1)
    names = label_name_map(schema)
    root = Path(root) if root else None
    out: dict[str, list] = {"tags": [], "shapes": [], "tracks": []}
    sent: dict[str, list[str]] = {}
    for fname, fs in schema.items():
        if not fname.startswith("frames."):
            log.warning("field %r is sample-level: not sent for videos", fname)
            continue
        key = fname[len("frames."):]
        values = {int(n): (fr or {}).get(key) for n, fr in frames.items() if str(n).isdigit()}
        tracked = [lab for v in values.values() for lab in labels_of(v) if _is_tracked(fs, lab)]
        if tracked and step > 1:
            raise _step_error(sample, fname, step)
        only_keyframes = any(lab.get("keyframe") for lab in tracked)
        seqs: dict[tuple[str, Any], list] = {}
        immutable: dict[tuple[str, Any], dict] = {}
        ids: list[str] = []
        for n in sorted(values):
            k = fmap.get(n)
            if k is None or values[n] is None:
                continue
            ctx = ExportContext(k, int(width), int(height), root, names)
            value = values[n]
            plain = [lab for lab in labels_of(value) if not _is_tracked(fs, lab)]
            if len(plain) != len(labels_of(value)) and isinstance(value, dict):
                value = _with_labels(value, plain)
            items, got = _EXPORTERS[fs.type](value, fs, ctx)
            out["tags" if fs.return_type in ("classifications", "scalar") else "shapes"] += items
            ids += got
            for lab in labels_of(values[n]):
                if not _is_tracked(fs, lab):
                    continue
                shapes, got = _EXPORTERS[fs.type](_with_labels(values[n], [lab]), fs, ctx)
                if not shapes:
                    continue
                if len(shapes) > 1:
                    log.warning("%s frame %d: a tracked label with %d parts; only the first "
                                "part joins the track", fname, n, len(shapes))
                tkey = (shapes[0]["label"], lab["index"])
                seqs.setdefault(tkey, []).append((k, shapes[0], lab))
                immutable.setdefault(tkey, _immutable_attrs(lab, fs))
                ids += got
        for (label, _), seq in seqs.items():
            track = build_track(label, seq, last_task_frame, only_keyframes, immutable[(label, _)])
            if track is not None:
                out["tracks"].append(track)
        sent[fname] = list(dict.fromkeys(ids))
    return out, sent


def _step_error(sample: dict, fname: str, step: int) -> SyncdError:
    return SyncdError(f"frame_step={step} cannot be used for '{sample.get('filepath')}': "
                      f"field '{fname}' holds existing tracks (labels with an index)")


def check_step_with_tracks(sample: dict, schema: dict[str, FieldSchema], frame_step: int) -> None:
    """SyncdError (naming the file and the field) when ``frame_step`` > 1 meets existing tracks:
    planning refuses such a video up front instead of failing its upload halfway."""
    if frame_step <= 1:
        return
    for fname, fs in schema.items():
        if not fname.startswith("frames.") or fs.type not in TRACKED_TYPES:
            continue
        key = fname[len("frames."):]
        for fr in (sample.get("frames") or {}).values():
            if any(_is_tracked(fs, lab) for lab in labels_of((fr or {}).get(key))):
                raise _step_error(sample, fname, frame_step)


def _with_labels(value: dict, labels: list[dict]) -> dict:
    """The field value holding only ``labels`` (a container, or the single label itself)."""
    for cls_name, key in (("Detections", "detections"), ("Polylines", "polylines"),
                          ("Keypoints", "keypoints"), ("Classifications", "classifications")):
        if value.get("_cls") == cls_name:
            return dict(value, **{key: labels})
    return labels[0] if labels else None


def _immutable_attrs(lab: dict, fs: FieldSchema) -> dict:
    """Track-level attributes: the immutable ones (CVAT keeps them once per track)."""
    return {name: lab[name] for name, spec in fs.attrs_for(lab.get("label")).items()
            if not spec.get("mutable", True) and spec["type"] not in ("occluded", "group_id")
            and lab.get(name) is not None}


# ---- download ------------------------------------------------------------------------------------

def _jobs(annotations: Any, size: int) -> list[tuple[dict, int, int]]:
    """(LabeledData, first task frame, last task frame) per job, each frame owned by one job.

    ``annotations``: one LabeledData for the whole task, or a list of per-job items, each a
    ``(data, start_frame, stop_frame)`` tuple or ``{"annotations", "start_frame", "stop_frame"}``.
    Jobs of a video overlap (CVAT's default overlap is 5 frames): a frame belongs to the first
    job holding it, so objects repeated in the overlap are read once.
    """
    if isinstance(annotations, dict):
        return [(annotations, 0, size - 1)]
    jobs = []
    for item in annotations:
        if isinstance(item, dict):
            item = (item["annotations"], item["start_frame"], item["stop_frame"])
        jobs.append((item[0], int(item[1]), int(item[2])))
    return sorted(jobs, key=lambda j: j[1])


def _frame_id(track_lid: str | None, n: int) -> str:
    """A stable id for a track's label on sample frame ``n`` (merging twice = merging once)."""
    if not track_lid:
        return new_id()
    return hashlib.sha256(f"syncd-frame:{track_lid}:{n}".encode()).hexdigest()[:24]


def import_video(annotations: Any, task_labels: list[dict], meta: dict,
                 schema: dict[str, FieldSchema], unexpected: str = "keep") -> dict:
    """CVAT annotations of one video task -> {"frames": {"<n>": {field: value}}}.

    ``meta``: {"size", "start_frame", "stop_frame", "frame_filter", "width", "height"} (the
    task's ``data/meta``; width/height may also come from ``meta["frames"][0]``). Field names
    are the frame-level names (``detections`` for ``frames.detections``).
    """
    size = int(meta.get("size") or 0)
    start, step = int(meta.get("start_frame") or 0), parse_step(meta.get("frame_filter"))
    fm = (meta.get("frames") or [{}])[0]
    width = int(meta.get("width") or fm.get("width") or 0)
    height = int(meta.get("height") or fm.get("height") or 0)
    number = {k: start + k * step + 1 for k in range(size)}

    labels = _with_id_specs(task_labels)
    lid_spec = {lab["id"]: next(a["id"] for a in lab["attributes"] if a["name"] == "label_id")
                for lab in labels}
    tags, shapes, info = [], [], {}       # info: FiftyOne id -> (index, keyframe)
    index, owned_from = 0, 0
    for data, lo, hi in _jobs(annotations, size):
        lo, hi = max(lo, owned_from), min(hi, size - 1)
        owned_from = max(owned_from, hi + 1)
        tags += [t for t in data.get("tags") or [] if lo <= int(t.get("frame", -1)) <= hi]
        shapes += [s for s in data.get("shapes") or [] if lo <= int(s.get("frame", -1)) <= hi]
        for track in data.get("tracks") or []:
            index += 1  # the track's position, counted from 1 (FiftyOne's index)
            sid = lid_spec.get(track.get("label_id"))
            if sid is None:
                continue  # not one of the task's labels
            if track.get("elements") or any(s.get("type") == "skeleton"
                                            for s in track.get("shapes") or []):
                log.warning("skipping skeleton track %s: skeleton tracks are not imported",
                            track.get("id"))
                continue
            shapes += _track_shapes(track, index, lo, hi, sid, number, info)
    frames = {k: {"sample": str(number[k]), "width": width, "height": height} for k in range(size)}
    got = import_annotations({"tags": tags, "shapes": shapes}, labels, frames, schema, unexpected)
    out: dict[str, dict] = {}
    for sample_key, fields in got.items():
        frame = {}
        for fname, value in fields.items():
            if fname.startswith("frames."):
                frame[fname[len("frames."):]] = value
            elif fname not in schema:
                if f"frames.{fname}" in schema:
                    log.warning("unexpected %s labels dropped: field 'frames.%s' has another "
                                "type", fname, fname)
                    continue
                frame[fname] = value  # "keep": a frame field named after the type
        for value in frame.values():
            for lab in labels_of(value):
                if label_id(lab) in info:
                    idx, key = info[label_id(lab)]
                    lab["index"] = idx
                    if key:
                        lab["keyframe"] = True
        out[sample_key] = frame
    return {"frames": out}


def _with_id_specs(task_labels: list[dict]) -> list[dict]:
    """Task labels where each has a ``label_id`` spec (a private one if the task has none), so
    the ids chosen here reach the imported labels through the ordinary attribute path."""
    out = copy.deepcopy(task_labels)
    for lab in out:
        attrs = lab.setdefault("attributes", [])
        if not any(a.get("name") == "label_id" for a in attrs):
            attrs.append({"id": _LID_SPEC, "name": "label_id", "mutable": True,
                          "input_type": "text", "default_value": "", "values": []})
    return out


def _track_shapes(track: dict, index: int, lo: int, hi: int, sid: Any, number: dict,
                  info: dict) -> list[dict]:
    """A track's per-frame shapes in [lo, hi] as plain shapes, each with its FiftyOne id.

    A keyframe keeps the ``label_id`` it carries itself, unless that value only repeats the
    previous keyframe's (CVAT copies attributes onto new keyframes); interpolated frames never
    inherit one (FiftyOne's rule) and get an id derived from the track's and the frame number.
    """
    track_attrs = [a for a in track.get("attributes") or [] if a.get("spec_id") != sid]
    track_lid = next((a.get("value") for a in track.get("attributes") or []
                      if a.get("spec_id") == sid and is_object_id(a.get("value"))), None)
    out, prev_own = [], None
    for s in interpolate_track(track, hi, lo):
        n = number.get(s["frame"])
        if n is None:
            continue
        lid = None
        if s["keyframe"]:
            own = s["own_attributes"].get(sid)
            if is_object_id(own) and own != prev_own:
                lid = own.lower()
            prev_own = own
        lid = lid or _frame_id(track_lid, n)
        attrs = [a for a in s["attributes"] if a["spec_id"] != sid]
        shape = {"frame": s["frame"], "label_id": track.get("label_id"), "type": s["type"],
                 "points": s["points"], "rotation": s["rotation"], "occluded": s["occluded"],
                 "z_order": s["z_order"], "outside": False, "group": track.get("group"),
                 "source": track.get("source", "manual"),
                 "attributes": track_attrs + attrs + [{"spec_id": sid, "value": stringify(lid)}]}
        info[lid] = (index, s["keyframe"])
        out.append(shape)
    return out
