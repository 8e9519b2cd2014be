"""Merging downloaded labels into samples: FiftyOne's ``load_annotations`` rules (§3.6).

Provenance is the label ``_id``: ids that were sent and came back are edits, ids sent but missing
are deletions, ids never sent are additions. Each kind of change is gated by the field's
``allow_*`` flags; what the run did not cover (labels not sent, attributes outside the schema,
immutable or read-only attributes) is never touched. Unlike FiftyOne, a label deleted locally
after upload stays deleted, and a scalar that was never sent is never deleted.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from .ids import label_id, new_id, oid
from .schema import FieldSchema, RETURN_TYPES, labels_of
from .labels.tags import SCALAR_SENT

log = logging.getLogger(__name__)

_SPATIAL = {
    "Detection": ("bounding_box", "mask", "rotation"),
    "Polyline": ("points", "closed", "filled"),
    "Keypoint": ("points",),
    "Segmentation": ("mask",),
    "Classification": (),
}
_CONTAINERS = {"classifications": ("Classifications", "classifications"),
               "detections": ("Detections", "detections"),
               "polylines": ("Polylines", "polylines"),
               "keypoints": ("Keypoints", "keypoints")}


def _merge_label(cur: dict, new: dict, field: FieldSchema) -> dict:
    out = dict(cur)
    if field.allow_label_edits and "label" in new:
        out["label"] = new["label"]
    if field.allow_index_edits and "index" in new and new.get("index") is not None:
        out["index"] = new["index"]
    if field.allow_spatial_edits:
        for key in _SPATIAL.get(cur.get("_cls"), ()):
            if key in new:
                out[key] = new[key]
            elif key == "rotation":
                out.pop("rotation", None)  # rotated back to 0 in CVAT
        # a new mask replaces the file's content: the caller writes it (to mask_path if set)
    for name, spec in field.attrs_for(cur.get("label")).items():
        if spec.get("read_only"):
            continue
        if not spec.get("mutable", True) and spec["type"] not in ("occluded", "group_id"):
            continue  # immutable values are not uploaded on shapes, so nothing came back
        if name in new:
            out[name] = new[name]
        elif name in out:
            out[name] = None  # cleared in CVAT
    return out


def _fresh(label: dict) -> dict:
    label = dict(label)
    label["_id"] = oid(new_id())
    return label


def _merge_list(current: Any, downloaded: Any, sent: set[str], field: FieldSchema) -> Any:
    cls_name, key = _CONTAINERS[RETURN_TYPES[field.type]]
    cur_labels = list((current or {}).get(key) or [])
    down_labels = list((downloaded or {}).get(key) or [])
    down_by_id: dict[str, dict] = {}
    for lab in down_labels:
        down_by_id.setdefault(label_id(lab), lab)
    merged, cur_ids, merged_ids = [], set(), set()
    for lab in cur_labels:
        lid = label_id(lab)
        cur_ids.add(lid)
        if lid in down_by_id:
            merged.append(_merge_label(lab, down_by_id[lid], field))
            merged_ids.add(lid)
        elif lid in sent and field.allow_deletions:
            continue
        else:
            merged.append(lab)
    added, seen = [], set(cur_ids)
    for lab in down_labels:
        lid = label_id(lab)
        if lid in merged_ids and lab is down_by_id[lid]:
            continue  # merged above
        if lid in sent and lid not in cur_ids:
            continue  # deleted locally since upload: the local deletion wins
        if not field.allow_additions:
            continue
        if lid is None or lid in seen:
            lab = _fresh(lab)  # duplicate ids (copied shapes, split tracks) get fresh ones
            lid = label_id(lab)
        seen.add(lid)
        added.append(lab)
    if current is None and not added:
        return None
    out = dict(current) if isinstance(current, dict) else {"_cls": cls_name}
    out[key] = merged + added
    return out


def _merge_single(current: Any, downloaded: Any, sent: set[str], field: FieldSchema) -> Any:
    cid = label_id(current) if isinstance(current, dict) else None
    did = label_id(downloaded) if isinstance(downloaded, dict) else None
    if current is not None and cid is not None and cid == did:
        return _merge_label(current, downloaded, field)
    if current is not None and cid in sent and field.allow_deletions:
        current = None
    if downloaded is not None and current is None and did not in sent and field.allow_additions:
        return downloaded
    return current


def _merge_scalar(current: Any, downloaded: Any, sent: list[str], field: FieldSchema) -> Any:
    if current is None:
        return downloaded if downloaded is not None and field.allow_additions else current
    if downloaded is None:
        return None if (SCALAR_SENT in sent and field.allow_deletions) else current
    if downloaded != current and field.allow_label_edits:
        return downloaded
    return current


def merge_field(current: Any, downloaded: Any, sent_ids: list[str], field: FieldSchema) -> Any:
    """The field's new value after merging ``downloaded`` (import_annotations' form)."""
    if field.type == "scalar":
        return _merge_scalar(current, downloaded, list(sent_ids or []), field)
    sent = {s.lower() for s in sent_ids or [] if isinstance(s, str)}
    if field.is_list:
        return _merge_list(current, downloaded, sent, field)
    return _merge_single(current, downloaded, sent, field)


def _unexpected_schema(name: str, like: FieldSchema | None) -> FieldSchema:
    """Fields named after a type hold "unexpected" labels: only additions apply."""
    return FieldSchema(name, name, [], {}, None, False, allow_additions=True,
                       allow_deletions=False, allow_label_edits=False,
                       allow_index_edits=False, allow_spatial_edits=False)


def merge_sample(sample: dict, downloaded: dict[str, Any], sent: dict[str, list[str]],
                 schema: dict[str, FieldSchema], dest_field: str | dict | None = None) -> dict:
    """A copy of ``sample`` with every downloaded field merged in.

    ``dest_field``: a field name (single-field schemas) or {field: new field} redirecting where
    labels are written; the destination's current value is what gets merged into.
    """
    if isinstance(dest_field, str):
        if len(schema) != 1:
            raise ValueError("dest_field may be a string only when the run has one field")
        dest_field = {next(iter(schema)): dest_field}
    dest_field = dest_field or {}
    out = dict(sample)
    for name, value in downloaded.items():
        fs = schema.get(name)
        target = dest_field.get(name, name)
        if fs is None:
            if name not in _CONTAINERS:
                log.warning("dropping downloaded field %r that is not in the schema", name)
                continue
            fs = _unexpected_schema(name, None)
        out[target] = merge_field(copy.copy(sample.get(target)), value, sent.get(name, []), fs)
        if out[target] is None and target not in sample:
            del out[target]
    return out


# ---- videos: frames.<field> -----------------------------------------------------------------------
#
# A video's labels live per frame. Tracks come back with CVAT's own numbering (their position
# in the task, from 1), which is mapped onto the sample's ``index`` values as FiftyOne's
# ``_update_tracks`` does: a track holding an existing label's id keeps that label's index (two
# tracks merged in CVAT take the smaller), a new track gets the next free index, and a label
# landing on a frame where an existing label of the same track sits takes that label's id, so
# it is merged as an edit instead of being deleted and re-added.


def _frame_fields(schema: dict[str, FieldSchema]) -> dict[str, FieldSchema]:
    return {name[len("frames."):]: fs for name, fs in schema.items() if name.startswith("frames.")}


def _map_indexes(existing: dict[str, tuple[int, dict]], down: list[tuple[int, dict]]) -> dict:
    """CVAT track number -> the sample's index for the tracks of one field."""
    mapped: dict[Any, int] = {}
    for _, lab in down:
        cur = existing.get(label_id(lab))
        cvat = lab.get("index")
        if cvat is None or cur is None or cur[1].get("index") is None:
            continue
        idx = cur[1]["index"]
        mapped[cvat] = min(mapped.get(cvat, idx), idx)
    used = [lab.get("index") for _, lab in existing.values() if isinstance(lab.get("index"), int)]
    top = max(used + list(mapped.values()), default=0)
    for cvat in sorted({lab.get("index") for _, lab in down if lab.get("index") is not None}
                       - set(mapped)):
        top += 1
        mapped[cvat] = top
    return mapped


def merge_video(sample: dict, downloaded: dict, sent: dict[str, list[str]],
                schema: dict[str, FieldSchema]) -> dict:
    """A copy of video ``sample`` with ``downloaded`` (``import_video``'s {"frames": {"<n>":
    {field: value}}}) merged into its frames; frames not downloaded are left as they are.

    ``sent``: {"frames.<field>": ids sent for this video}. ``keyframe`` flags are kept only
    when the field tracks keyframes (a new field, or some label already carries one).
    """
    down_frames = downloaded.get("frames", downloaded) or {}
    fields = _frame_fields(schema)
    frames = {n: dict(fr or {}) for n, fr in (sample.get("frames") or {}).items()}
    down_frames = {str(n): {f: copy.deepcopy(v) for f, v in (vals or {}).items()}
                   for n, vals in down_frames.items()}
    for fname in {f for vals in down_frames.values() for f in vals}:
        fs = fields.get(fname)
        if fs is None:
            if fname not in _CONTAINERS:
                log.warning("dropping downloaded frame field %r that is not in the schema", fname)
                for vals in down_frames.values():
                    vals.pop(fname, None)
                continue
            fs = _unexpected_schema(fname, None)
        existing = {label_id(lab): (int(n), lab) for n, fr in frames.items()
                    for lab in labels_of(fr.get(fname)) if label_id(lab)}
        down = [(int(n), lab) for n, vals in down_frames.items() for lab in labels_of(vals.get(fname))]
        mapping = _map_indexes(existing, down)
        keep_keyframes = not fs.existing or any(lab.get("keyframe") for _, lab in existing.values())
        taken: set[str] = set()
        for n, lab in down:
            if lab.get("index") is not None:
                lab["index"] = mapping[lab["index"]]
            if not keep_keyframes:
                lab.pop("keyframe", None)
            lid = label_id(lab)
            here = {label_id(x): x for x in labels_of(frames.get(str(n), {}).get(fname))}
            if lid in here:
                taken.add(lid)
                continue
            same = next((x_id for x_id, x in here.items() if x_id not in taken
                         and lab.get("index") is not None and x.get("index") == lab["index"]), None)
            if same is not None:
                lab["_id"] = oid(same)
            elif lid in existing:
                lab["_id"] = oid(new_id())  # the id lives on another frame: a copy, not a move
            taken.add(label_id(lab))
        ids = list((sent or {}).get(f"frames.{fname}", []))
        for n, vals in down_frames.items():
            if fname not in vals:
                continue
            cur = frames.get(n, {}).get(fname)
            new = merge_field(copy.copy(cur), vals[fname], ids, fs)
            if keep_keyframes:
                _copy_keyframes(new, vals[fname])
            frame = frames.setdefault(n, {"frame_number": int(n)})
            if new is None:
                frame.pop(fname, None)
            else:
                frame[fname] = new
    out = dict(sample)
    out["frames"] = {n: frames[n] for n in sorted(frames, key=lambda x: int(x) if str(x).isdigit() else 0)
                     if frames[n] != {"frame_number": int(n)} or n in (sample.get("frames") or {})}
    return out


def _copy_keyframes(merged: Any, downloaded: Any) -> None:
    """Merged labels take the downloaded ``keyframe`` flag (edits do not carry it)."""
    flags = {label_id(lab): bool(lab.get("keyframe")) for lab in labels_of(downloaded)}
    for lab in labels_of(merged):
        lid = label_id(lab)
        if lid in flags:
            if flags[lid]:
                lab["keyframe"] = True
            else:
                lab.pop("keyframe", None)
