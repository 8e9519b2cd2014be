"""Small pieces every run step shares: run-record access, batch kinds, tag swapping, ids."""
from __future__ import annotations

import hashlib
import os

from .. import fingerprint
from ..errors import MediaError
from ..ids import is_object_id
from ..media_metadata import VIDEO_EXTS, media_ext, same_content
from ..runs import RunStore
from ..schema import FieldSchema

FINISHED = ("loaded", "failed")
LABEL_ID_ATTR = "label_id"


def is_video(rel: str) -> bool:
    # string ops, not Path(rel).suffix: called a few times per sample of every run
    return media_ext(str(rel)) in VIDEO_EXTS


def as_list(v) -> list:
    if v is None or v == "":
        return []
    return [v] if isinstance(v, str) else list(v)


def schema_of(run: dict) -> dict[str, FieldSchema]:
    return {name: FieldSchema.from_json(d) for name, d in run["config"]["schema"].items()}


def set_batch(store: RunStore, key: str, index: int, **fields) -> dict:
    def change(rec):
        rec["batches"][index].update(fields)
    return store.modify(key, change)


def jobs_of(client, tid: int) -> list[dict]:
    return [j for j in client.jobs(tid) if j.get("type", "annotation") == "annotation"]


def frame_size(doc: dict) -> tuple[int, int]:
    md = doc.get("metadata") or {}
    return int(md.get("width") or md.get("frame_width") or 0), int(md.get("height") or md.get("frame_height") or 0)


def count_labels(value) -> int:
    if isinstance(value, dict):
        for k in ("detections", "classifications", "polylines", "keypoints"):
            if isinstance(value.get(k), list):
                return len(value[k])
        return 1
    return 0 if value is None else 1


def swap_tags(sample: dict, trigger: str | None, done: str | None) -> dict:
    if trigger or done:
        tags = [t for t in sample.get("tags", []) if t != trigger]
        if done and done not in tags:
            tags.append(done)
        sample["tags"] = tags
    return sample


def media_changed(root, rel: str, run: dict) -> str | None:
    """Why the sample's media is not what was sent (deleted, changed, unreadable), or None.
    A file whose stat equals the fingerprint recorded with its hash is not read again."""
    path = os.path.join(root, rel)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "media deleted while in annotation"
    except OSError:
        st = None  # hashing it says what is wrong
    want = run.get("hashes", {}).get(rel)
    recorded = run.get("media_stats", {}).get(rel)
    if want and st is not None and recorded and fingerprint.of(st) == recorded:
        return None
    try:
        if want and not same_content(path, want):
            return "media changed while in annotation (content hash differs); merge by hand or re-annotate"
    except MediaError as e:
        return str(e)
    return None


def stamp_derived_ids(ann: dict, task_labels: list[dict], task_id: int) -> None:
    """Give every object drawn in CVAT (no valid ``label_id`` attribute) an id derived from its
    CVAT id, so downloading and merging the same object twice yields the same FiftyOne label."""
    spec = {}
    for lb in task_labels:
        for attr in lb.get("attributes", []):
            if attr["name"] == LABEL_ID_ATTR:
                spec[lb["id"]] = attr["id"]
    for kind in ("shapes", "tags", "tracks"):
        for obj in ann.get(kind, []):
            sid = spec.get(obj.get("label_id"))
            if sid is None:
                continue
            attrs = obj.setdefault("attributes", [])
            current = next((a for a in attrs if a.get("spec_id") == sid), None)
            if current and is_object_id(current.get("value")):
                continue
            derived = derived_id(task_id, kind, obj.get("id"))
            if current:
                current["value"] = derived
            else:
                attrs.append({"spec_id": sid, "value": derived})


def derived_id(task_id, kind: str, cvat_id) -> str:
    """A stable 24-hex ObjectId-shaped id for a CVAT object."""
    return hashlib.sha256(f"syncd:{task_id}:{kind}:{cvat_id}".encode()).hexdigest()[:24]
