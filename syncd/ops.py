"""The steps of an annotation run, each idempotent, each one move closer to "labels merged".

The one-shot API (``syncd.annotate`` / ``syncd.load_annotations``) and the daemon's reconciler
call exactly these functions; the daemon only decides *when*. Every step re-reads the run
record in ``<root>/.syncd/``, compares it with CVAT, and records its intent before each CVAT
call that creates something, so a crash at any instant leads to neither a duplicate task (tasks
have deterministic names, recorded before creation and looked up by name before creating) nor a
lost label (labels drawn in CVAT get ids derived from their CVAT ids, so merging twice is merging
once).

Run record shape (stored by syncd.runs.RunStore)::

    {"key", "created", "status": "planned"|"uploading"|"annotating"|"loading"|"loaded"|"failed",
     "config": {"schema": {field: FieldSchema.to_json()}, "segment_size", "task_size",
                "task_assignee", "job_assignees", "job_reviewers", "project_name", "project_id",
                "image_quality", "cleanup", "rule", "trigger_tag", "done_tag", "nonce", ...},
     "project": {"id", "created": bool} | None,
     "batches": [{"index", "name", "samples": [rel, ...], "task_id": int|None,
                  "state": "planned"|"creating"|"created"|"uploading"|"ready"|"annotating"
                           |"loaded"|"deleting"|"deleted",
                  "rq_id", "jobs": [job ids]}],
     "sent": {rel: {field: [label ids]}},      # what each sample carried into CVAT
     "hashes": {rel: sha256},                  # media content when sent
     "merged": [rel, ...],                     # samples whose labels are already on disk
     "flagged": {rel: reason},                 # not merged: needs a person (e.g. media changed)
     "skipped": {rel: reason}}                 # never sent: bad media or sample file
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Callable, Iterable

from . import dataset
from .cvat import CVATError
from .errors import MediaError, RunError, SampleFileError, SyncdError
from .ids import is_object_id, label_id
from .labels import export_sample, import_annotations, resolve_ids
from .labels.video import check_frame_settings, export_video, import_video
from .merge import merge_sample, merge_video
from .runs import RunStore
from .schema import FieldSchema, build_schema, cvat_labels, labels_of

log = logging.getLogger("syncd.ops")

FINISHED = ("loaded", "failed")
LABEL_ID_ATTR = "label_id"


# ---- planning --------------------------------------------------------------------------------

def plan_run(root, key: str, samples: Iterable[str], *, rule_name: str | None = None,
             label_schema: dict | None = None, label_field: str | None = None, label_type: str | None = None,
             classes=None, attributes=True, mask_targets=None, segment_size: int | None = None,
             task_size: int | None = None, task_assignee=None, job_assignees=None, job_reviewers=None,
             project_name: str | None = None, project_id: int | None = None, organization: str | None = None,
             image_quality: int = 75, cleanup: bool = False, allow_additions: bool = True,
             allow_deletions: bool = True, allow_label_edits: bool = True, allow_index_edits: bool = True,
             allow_spatial_edits: bool = True, trigger_tag: str | None = None, done_tag: str | None = None,
             url: str | None = None, share_root: str | None = None, frame_start=None, frame_stop=None,
             frame_step=None, store: RunStore | None = None) -> dict:
    """Validate the samples and the schema and record the run. No CVAT call is made here.

    Samples whose media or sample file is bad are skipped with their reason; a bad schema, an
    existing key or no usable sample raises before anything is recorded.

    ``frame_start``/``frame_stop``/``frame_step`` (videos): an int for every video, a list (one
    per video, in order) or a dict {video path: int}.
    """
    store = store or RunStore(root)
    if store.exists(key):
        raise RunError(f"run '{key}' already exists in {root}: pick another key or delete it first")
    if image_quality is not None and not (0 <= int(image_quality) <= 100):
        raise SyncdError(f"image_quality must be within 0..100, got {image_quality}")
    for name, value in (("segment_size", segment_size), ("task_size", task_size)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise SyncdError(f"{name} must be a non-negative integer, got {value!r}")

    rels, docs, skipped, hashes = [], [], {}, {}
    for rel in dict.fromkeys(samples):
        try:
            rel = dataset.safe_rel(root, rel)
            if not dataset.is_media(rel):
                raise MediaError(f"{rel}: not a media file syncd handles")
            media = Path(root) / rel
            if not media.is_file():
                raise MediaError(f"{media}: no such media file")
            doc = dataset.read_sample(root, rel)
            metadata = dataset.compute_metadata(media)  # also refuses media that cannot be decoded
            if not isinstance(doc.get("metadata"), dict) or "_cls" not in doc["metadata"]:
                # like FiftyOne's compute_metadata() before annotate(): the sample gains its metadata
                doc = dataset.update_sample(root, rel, lambda d: d.update(metadata=d.get("metadata") or metadata))
            hashes[rel] = dataset.content_hash(media)
        except (MediaError, SampleFileError) as e:
            skipped[str(rel)] = str(e)
            log.warning("skipping %s", e)
            continue
        rels.append(rel)
        docs.append(doc)
    if not rels:
        reasons = "; ".join(f"{r}: {why}" for r, why in list(skipped.items())[:3])
        raise SyncdError(f"run '{key}': no usable samples to annotate" + (f" ({reasons})" if reasons else ""))

    schema = build_schema(docs, label_schema, label_field=label_field, label_type=label_type, classes=classes,
                          attributes=attributes, mask_targets=mask_targets, allow_additions=allow_additions,
                          allow_deletions=allow_deletions, allow_label_edits=allow_label_edits,
                          allow_index_edits=allow_index_edits, allow_spatial_edits=allow_spatial_edits)
    videos = [r for r in rels if _is_video(r)]
    frames = {}
    for n, rel in enumerate(videos):
        frames[rel] = list(check_frame_settings(_per_video(frame_start, rel, n, "frame_start"),
                                                _per_video(frame_stop, rel, n, "frame_stop"),
                                                _per_video(frame_step, rel, n, "frame_step")))
    nonce = secrets.token_hex(4)
    batches = []
    for index, group in enumerate(_batch(rels, task_size)):
        batches.append({"index": index, "name": f"syncd {key} #{index + 1} [{nonce}]", "samples": group,
                        "task_id": None, "state": "planned", "rq_id": None, "jobs": []})
    config = {
        "schema": {name: fs.to_json() for name, fs in schema.items()},
        "segment_size": segment_size, "task_size": task_size, "task_assignee": task_assignee,
        "job_assignees": _as_list(job_assignees), "job_reviewers": _as_list(job_reviewers),
        "project_name": project_name or None, "project_id": project_id, "organization": organization or None,
        "image_quality": image_quality, "cleanup": bool(cleanup), "rule": rule_name,
        "trigger_tag": trigger_tag, "done_tag": done_tag, "nonce": nonce, "url": url,
        "share_root": share_root or None, "frames": frames,
    }
    return store.create(key, config, status="planned", project=None, batches=batches, sent={},
                        hashes=hashes, merged=[], flagged={}, skipped=skipped, samples=rels)


def _is_video(rel: str) -> bool:
    return Path(rel).suffix.lower() in dataset.VIDEO_EXTS


def _per_video(value, rel: str, n: int, name: str):
    if isinstance(value, dict):
        return value.get(rel)
    if isinstance(value, (list, tuple)):
        if n >= len(value):
            raise SyncdError(f"{name}: {len(value)} value(s) given for more videos ({rel} is video #{n + 1})")
        return value[n]
    return value


def _batch(rels: list[str], task_size: int | None) -> list[list[str]]:
    """Images share tasks of up to task_size; every video gets a task of its own."""
    images = [r for r in rels if not _is_video(r)]
    videos = [r for r in rels if _is_video(r)]
    size = task_size or len(images) or 1
    out = [images[i:i + size] for i in range(0, len(images), size)]
    return out + [[v] for v in videos]


def _as_list(v) -> list:
    if v is None or v == "":
        return []
    return [v] if isinstance(v, str) else list(v)


def schema_of(run: dict) -> dict[str, FieldSchema]:
    return {name: FieldSchema.from_json(d) for name, d in run["config"]["schema"].items()}


# ---- upload ----------------------------------------------------------------------------------

def advance_upload(client, root, key: str, *, store: RunStore | None = None, progress=None) -> bool:
    """Take the run one step toward "every task has its data, labels and assignees".

    Returns True once the run is annotating (or further). Safe to call again after a crash at
    any point: every state is re-checked against CVAT before acting.
    """
    store = store or RunStore(root)
    run = store.get(key)
    if run["status"] not in ("planned", "uploading"):
        return True
    if run["status"] == "planned":
        run = store.update(key, status="uploading")
    if run["config"].get("project_name") or run["config"].get("project_id"):
        if not run.get("project"):
            _ensure_project(client, store, run)
            return False
    for batch in run["batches"]:
        if batch["state"] != "annotating":
            _advance_batch(client, root, store, run, batch, progress)
            return False
    store.update(key, status="annotating")
    return True


def upload_run(client, root, key: str, *, store: RunStore | None = None, progress=None, max_steps: int = 100000) -> dict:
    """Drive ``advance_upload`` to the end (the one-shot ``annotate``)."""
    store = store or RunStore(root)
    for _ in range(max_steps):
        if advance_upload(client, root, key, store=store, progress=progress):
            return store.get(key)
    raise RunError(f"run '{key}': upload did not converge")


def _ensure_project(client, store: RunStore, run: dict) -> None:
    cfg = run["config"]
    labels = cvat_labels(schema_of(run))
    if cfg.get("project_id"):
        project = client.get_project(cfg["project_id"])
        created = False
    else:
        project = client.find_project(cfg["project_name"])
        created = project is None
        if created:
            project = client.create_project(cfg["project_name"], labels)
    if not created:
        have = {lb["name"] for lb in client.labels(project_id=project["id"])}
        missing = [lb for lb in labels if lb["name"] not in have]
        if missing:
            client.add_project_labels(project["id"], missing)
    store.update(run["key"], project={"id": project["id"], "created": created})


def _set_batch(store: RunStore, key: str, index: int, **fields) -> dict:
    def change(rec):
        rec["batches"][index].update(fields)
    return store.modify(key, change)


def _advance_batch(client, root, store: RunStore, run: dict, batch: dict, progress) -> None:
    key, i, cfg = run["key"], batch["index"], run["config"]
    state = batch["state"]
    if state in ("planned", "creating"):
        # Intent first: a crash after the POST leaves a task we can find by its recorded name.
        if state == "planned":
            _set_batch(store, key, i, state="creating")
        found = client.find_tasks(batch["name"])
        if found:
            task = sorted(found, key=lambda t: t["id"])[0]
            for extra in sorted(found, key=lambda t: t["id"])[1:]:
                client.delete_task(extra["id"])  # only ever ours: the name carries the run's nonce
        else:
            project = run.get("project")
            assignee = _round_robin(cfg.get("task_assignee"), i)
            task = client.create_task(
                batch["name"],
                labels=None if project else cvat_labels(schema_of(run)),
                project_id=project["id"] if project else None,
                segment_size=cfg.get("segment_size"),
                assignee_id=client.user_id(assignee) if assignee else None)
        _set_batch(store, key, i, task_id=task["id"], state="created")
        return
    tid = batch["task_id"]
    if state in ("created", "uploading"):
        task = client.get_task(tid)
        if task.get("size", 0) > 0 and _jobs_of(client, tid):
            _set_batch(store, key, i, state="ready")
            return
        if state == "uploading" and batch.get("rq_id"):
            try:
                client.wait_task_ready(tid, batch["rq_id"])
                _set_batch(store, key, i, state="ready")
                return
            except CVATError as e:
                if "failed" in str(e).lower():
                    raise
        _set_batch(store, key, i, state="uploading", rq_id=None)
        files = [Path(root) / rel for rel in batch["samples"]]
        share = cfg.get("share_root")
        try:
            if share and all(_under(f, share) for f in files):
                rq_id = client.upload_data(tid, [], server_files=[str(Path(f).resolve().relative_to(Path(share).resolve()))
                                                                   for f in files],
                                           image_quality=cfg.get("image_quality") or 75)
            else:
                rq_id = client.upload_data(tid, files, image_quality=cfg.get("image_quality") or 75,
                                           progress=progress, **_frame_params(cfg, batch))
        except CVATError as e:
            if "Adding more data is not supported" not in str(e):
                raise
            rq_id = None  # our earlier upload (lost answer) already attached the data
        _set_batch(store, key, i, rq_id=rq_id)
        client.wait_task_ready(tid, rq_id)
        _set_batch(store, key, i, state="ready")
        return
    if state == "ready":
        _send_existing_labels(client, root, store, run, batch)
        jobs = _jobs_of(client, tid)
        _assign_jobs(client, cfg, jobs, batch)
        _set_batch(store, key, i, state="annotating", jobs=[j["id"] for j in jobs])


def _frame_params(cfg: dict, batch: dict) -> dict:
    """start_frame/stop_frame/frame_step of a video batch, as CVAT's data parameters."""
    rel = batch["samples"][0]
    if not _is_video(rel):
        return {}
    start, stop, step = (cfg.get("frames") or {}).get(rel) or (0, None, 1)
    out = {"start_frame": start or None, "stop_frame": stop, "frame_step": step if step and step > 1 else None}
    return {k: v for k, v in out.items() if v is not None}


def _under(path: Path, share_root: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(share_root).resolve())
        return True
    except ValueError:
        return False


def _round_robin(value, index: int):
    values = _as_list(value)
    return values[index % len(values)] if values else None


def _jobs_of(client, tid: int) -> list[dict]:
    return [j for j in client.jobs(tid) if j.get("type", "annotation") == "annotation"]


def _assign_jobs(client, cfg: dict, jobs: list[dict], batch: dict) -> None:
    assignees = cfg.get("job_assignees") or []
    if cfg.get("job_reviewers"):
        # CVAT 2.x jobs have no reviewer field (FiftyOne drops job_reviewers the same way).
        log.warning("job_reviewers ignored: CVAT 2.x has no job reviewer field")
    if not assignees:
        return
    ids = {name: client.user_id(name) for name in set(assignees)}
    offset = batch["index"] * len(jobs)
    for n, job in enumerate(sorted(jobs, key=lambda j: j["start_frame"])):
        want = ids[assignees[(offset + n) % len(assignees)]]
        current = (job.get("assignee") or {}).get("id")
        if current != want:
            client.update_job(job["id"], assignee=want)


def _send_existing_labels(client, root, store: RunStore, run: dict, batch: dict) -> None:
    """Upload the labels the samples already carry (with label_id provenance); PUT replaces, so
    doing it twice after a crash is harmless. Records which ids each sample sent."""
    schema = schema_of(run)
    shapes, tags, tracks, sent = [], [], [], {}
    sizes = _frame_sizes(client, batch["task_id"])
    for frame, rel in enumerate(batch["samples"]):
        doc = dataset.read_sample(root, rel)
        if _is_video(rel):
            w, h = _frame_size(doc)
            start, stop, step = (run["config"].get("frames") or {}).get(rel) or (0, None, 1)
            items, ids = export_video(doc, schema, w, h, root, start, stop, step)
        else:
            w, h = sizes.get(frame) or _frame_size(doc)
            items, ids = export_sample(doc, frame, schema, w, h, root)
        shapes += items.get("shapes", [])
        tags += items.get("tags", [])
        tracks += items.get("tracks", [])
        sent[rel] = ids
    tid = batch["task_id"]
    if shapes or tags or tracks:
        task_labels = client.labels(task_id=tid)
        data = resolve_ids({"shapes": shapes, "tags": tags, "tracks": tracks}, task_labels)
        client.put_task_annotations(tid, {"version": 0, **data})

    def change(rec):
        rec["sent"].update(sent)
    store.modify(run["key"], change)


def _frame_sizes(client, tid: int) -> dict[int, tuple[int, int]]:
    """Frame sizes as CVAT decoded them: the coordinates annotators draw in."""
    frames = client.data_meta(tid).get("frames") or []
    return {i: (int(f["width"]), int(f["height"])) for i, f in enumerate(frames) if f.get("width")}


def _frame_size(doc: dict) -> tuple[int, int]:
    md = doc.get("metadata") or {}
    return int(md.get("width") or md.get("frame_width") or 0), int(md.get("height") or md.get("frame_height") or 0)


# ---- completion ------------------------------------------------------------------------------

def is_complete(client, root, key: str, completion: str = "completed", *, store: RunStore | None = None) -> bool:
    """True when every job of every task of the run is finished: state ``completed`` (default)
    or stage ``acceptance``."""
    store = store or RunStore(root)
    run = store.get(key)
    if run["status"] in FINISHED or run["status"] == "loading":
        return True
    if run["status"] != "annotating":
        return False
    for batch in run["batches"]:
        if batch["state"] in ("loaded", "deleting", "deleted"):
            continue
        jobs = _jobs_of(client, batch["task_id"])
        if not jobs:
            return False
        for job in jobs:
            if completion == "acceptance":
                if job.get("stage") != "acceptance":
                    return False
            elif job.get("state") != "completed":
                return False
    return True


# ---- download and merge ----------------------------------------------------------------------

def load_run(client, root, key: str, *, cleanup: bool | None = None, unexpected: str = "keep",
             dest_field=None, store: RunStore | None = None, progress: Callable | None = None) -> dict:
    """Download every job's labels, merge them into the sample files, swap the trigger tag for
    the done tag, and delete the tasks if ``cleanup``. Idempotent: samples already merged are
    skipped, and re-merging a sample after a crash yields the same file."""
    if unexpected not in ("keep", "ignore"):
        raise SyncdError(f"unexpected must be 'keep' or 'ignore', got {unexpected!r}")
    store = store or RunStore(root)
    run = store.get(key)
    if run["status"] in ("planned", "uploading"):
        raise RunError(f"run '{key}' is still uploading ({run['status']}); finish `annotate` first")
    cleanup = run["config"].get("cleanup") if cleanup is None else cleanup
    if run["status"] != "loaded":
        run = store.update(key, status="loading")
    schema = schema_of(run)
    summary = {"samples": 0, "labels": 0, "flagged": dict(run.get("flagged", {})), "skipped": {}}
    for batch in run["batches"]:
        if batch["state"] in ("annotating", "ready"):
            _load_batch(client, root, store, key, batch, schema, unexpected, dest_field, summary, progress)
            _set_batch(store, key, batch["index"], state="loaded")
            batch["state"] = "loaded"
        if cleanup and batch["state"] in ("loaded", "deleting"):
            _set_batch(store, key, batch["index"], state="deleting")
            client.delete_task(batch["task_id"], missing_ok=True)
            _set_batch(store, key, batch["index"], state="deleted")
    # Projects are shared by later runs of the same rule: never deleted implicitly here.
    store.update(key, status="loaded")
    return summary


def _load_batch(client, root, store, key, batch, schema, unexpected, dest_field, summary, progress) -> None:
    tid = batch["task_id"]
    run = store.get(key)
    task_labels = client.labels(task_id=tid)
    meta = client.data_meta(tid)
    if _is_video(batch["samples"][0]):
        _load_video(client, root, store, run, batch, schema, unexpected, summary, task_labels, meta)
        return
    frames_meta = meta.get("frames") or []
    frames = {}
    for frame, rel in enumerate(batch["samples"]):
        fm = frames_meta[frame] if frame < len(frames_meta) else (frames_meta[0] if frames_meta else {})
        frames[frame] = {"sample": rel, "width": fm.get("width"), "height": fm.get("height")}
    downloaded: dict[str, dict] = {}
    for job in _jobs_of(client, tid):
        ann = client.job_annotations(job["id"])
        _stamp_derived_ids(ann, task_labels, tid)
        part = import_annotations(ann, task_labels, {f: frames[f] for f in frames
                                                     if job["start_frame"] <= f <= job["stop_frame"]},
                                  schema, unexpected=unexpected)
        for rel, fields in part.items():
            downloaded.setdefault(rel, {}).update(fields)
    merged = set(run.get("merged", []))
    for rel in batch["samples"]:
        if rel in merged:
            continue
        reason = _media_changed(root, rel, run)
        if reason:
            def flag(rec, rel=rel, reason=reason):
                rec.setdefault("flagged", {})[rel] = reason
            store.modify(key, flag)
            summary["flagged"][rel] = reason
            log.warning("not merging %s: %s", rel, reason)
            continue
        fields = downloaded.get(rel, {})
        fields = _write_masks(root, rel, fields)
        sent = run.get("sent", {}).get(rel, {})
        trigger, done = run["config"].get("trigger_tag"), run["config"].get("done_tag")

        def change(sample, fields=fields, sent=sent):
            out = merge_sample(sample, fields, _with_already_merged(sample, fields, sent, dest_field),
                               schema, dest_field)
            return _swap_tags(out, trigger, done)
        try:
            dataset.update_sample(root, rel, change)
        except (SampleFileError, MediaError) as e:
            summary["skipped"][rel] = str(e)
            log.warning("not merging %s: %s", rel, e)
            continue

        def mark(rec, rel=rel):
            if rel not in rec["merged"]:
                rec["merged"].append(rel)
        store.modify(key, mark)
        summary["samples"] += 1
        summary["labels"] += sum(_count(v) for v in fields.values())
        if progress:
            progress(1)


def _load_video(client, root, store, run, batch, schema, unexpected, summary, task_labels, meta) -> None:
    """One video per task: read job by job (tracks cut at job boundaries must not come back
    twice), interpolate tracks, merge frame by frame."""
    rel, tid, key = batch["samples"][0], batch["task_id"], run["key"]
    if rel in run.get("merged", []):
        return
    reason = _media_changed(root, rel, run)
    if reason:
        store.modify(key, lambda rec: rec.setdefault("flagged", {}).__setitem__(rel, reason))
        summary["flagged"][rel] = reason
        return
    per_job = []
    for job in sorted(_jobs_of(client, tid), key=lambda j: j["start_frame"]):
        ann = client.job_annotations(job["id"])
        _stamp_derived_ids(ann, task_labels, tid)
        per_job.append((ann, job["start_frame"], job["stop_frame"]))
    fields = import_video(per_job, task_labels, meta, schema, unexpected)
    sent = run.get("sent", {}).get(rel, {})
    trigger, done = run["config"].get("trigger_tag"), run["config"].get("done_tag")

    def change(sample):
        return _swap_tags(merge_video(sample, fields, sent, schema), trigger, done)
    try:
        dataset.update_sample(root, rel, change)
    except (SampleFileError, MediaError) as e:
        summary["skipped"][rel] = str(e)
        return
    store.modify(key, lambda rec: rec["merged"].append(rel) if rel not in rec["merged"] else None)
    summary["samples"] += 1
    summary["labels"] += sum(_count(v) for frame in fields.get("frames", {}).values() for v in frame.values())


def _swap_tags(sample: dict, trigger: str | None, done: str | None) -> dict:
    if trigger or done:
        tags = [t for t in sample.get("tags", []) if t != trigger]
        if done and done not in tags:
            tags.append(done)
        sample["tags"] = tags
    return sample


def _with_already_merged(sample: dict, fields: dict, sent: dict, dest_field) -> dict:
    """Sent ids plus the downloaded ids the sample already holds: after a crash between writing
    a sample and recording it as merged, those labels are merged again, not added twice."""
    out = {k: list(v) for k, v in sent.items()}
    dest = {next(iter(fields), None): dest_field} if isinstance(dest_field, str) else (dest_field or {})
    for field, value in fields.items():
        have = {label_id(lb) for lb in labels_of(sample.get(dest.get(field, field)))}
        again = [label_id(lb) for lb in labels_of(value) if label_id(lb) in have]
        if again:
            out[field] = list(dict.fromkeys([*out.get(field, []), *again]))
    return out


def _media_changed(root, rel: str, run: dict) -> str | None:
    path = Path(root) / rel
    if not path.exists():
        return "media deleted while in annotation"
    want = run.get("hashes", {}).get(rel)
    try:
        if want and dataset.content_hash(path) != want:
            return "media changed while in annotation (content hash differs); merge by hand or re-annotate"
    except MediaError as e:
        return str(e)
    return None


def _count(value) -> int:
    if isinstance(value, dict):
        for k in ("detections", "classifications", "polylines", "keypoints"):
            if isinstance(value.get(k), list):
                return len(value[k])
        return 1
    return 0 if value is None else 1


def _write_masks(root, rel: str, fields: dict) -> dict:
    """Masks arrive as numpy arrays under ``mask``; store them as PNGs below the root and refer
    to them by ``mask_path``. Mask file names derive from label ids, so rewriting is idempotent."""
    out = {}
    for field, value in fields.items():
        if isinstance(value, dict):
            value = dict(value)
            for list_key in ("detections",):
                if isinstance(value.get(list_key), list):
                    value[list_key] = [_mask_to_path(root, rel, field, lb) for lb in value[list_key]]
            if value.get("_cls") in ("Segmentation", "Detection"):
                value = _mask_to_path(root, rel, field, value)
        out[field] = value
    return out


def _mask_to_path(root, rel, field, label: dict) -> dict:
    mask = label.get("mask")
    if mask is None or isinstance(mask, (str, dict, list)):
        return label
    label = dict(label)
    lid = label_id(label) or "mask"
    label["mask_path"] = dataset.write_mask(root, rel, field, lid, mask)
    label.pop("mask")
    return label


def _stamp_derived_ids(ann: dict, task_labels: list[dict], task_id: int) -> None:
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


# ---- queries used by the daemon and status -----------------------------------------------------

def active_samples(root, *, store: RunStore | None = None) -> set[str]:
    """Samples in a run that has not finished (they must not be put in a second run)."""
    store = store or RunStore(root)
    out = set()
    for run in store.list():
        if run.get("status") not in FINISHED:
            for batch in run.get("batches", []):
                out.update(batch["samples"])
    return out


def task_ids_of(root, key: str, *, store: RunStore | None = None) -> list[int]:
    store = store or RunStore(root)
    return [b["task_id"] for b in store.get(key).get("batches", []) if b.get("task_id")]


def cleanup_run(client, root, key: str, *, store: RunStore | None = None) -> None:
    """Delete the run's CVAT tasks (and the project, when this run created it and it is empty)."""
    store = store or RunStore(root)
    run = store.get(key)
    for batch in run.get("batches", []):
        if batch.get("task_id") and batch["state"] != "deleted":
            _set_batch(store, key, batch["index"], state="deleting")
            client.delete_task(batch["task_id"], missing_ok=True)
            _set_batch(store, key, batch["index"], state="deleted")
    project = run.get("project") or {}
    if project.get("created"):
        try:
            if not list(client.paginate("/api/tasks", project_id=project["id"])):
                client.delete_project(project["id"])
        except CVATError as e:
            log.warning("could not remove project %s: %s", project["id"], e)
