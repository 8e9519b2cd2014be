"""Downloading a run per job and merging it into the sample files, idempotently."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .. import dataset
from ..errors import MediaError, RunError, SampleFileError, SyncdError
from ..ids import label_id
from ..labels import import_annotations
from ..labels.video import import_video
from ..merge import merge_sample, merge_video
from ..runs import RunStore
from ..labels.masks import write_png
from ..schema import labels_of
from .common import count_labels, is_video, jobs_of, media_changed, schema_of, set_batch, stamp_derived_ids, swap_tags

log = logging.getLogger("syncd.ops")

MERGE_THREADS = 8    # sample files written at once (fsync waits overlap)
MERGE_GROUP = 128    # samples recorded as merged per run-file write


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
            set_batch(store, key, batch["index"], state="loaded")
            batch["state"] = "loaded"
        if cleanup and batch["state"] in ("loaded", "deleting"):
            set_batch(store, key, batch["index"], state="deleting")
            client.delete_task(batch["task_id"], missing_ok=True)
            set_batch(store, key, batch["index"], state="deleted")
    # Projects are shared by later runs of the same rule: never deleted implicitly here.
    store.update(key, status="loaded")
    return summary


def _load_batch(client, root, store, key, batch, schema, unexpected, dest_field, summary, progress) -> None:
    tid = batch["task_id"]
    run = store.get(key)
    task_labels = client.labels(task_id=tid)
    meta = client.data_meta(tid)
    if is_video(batch["samples"][0]):
        _load_video(client, root, store, run, batch, schema, unexpected, summary, task_labels, meta)
        return
    frames_meta = meta.get("frames") or []
    frames = {}
    for frame, rel in enumerate(batch["samples"]):
        fm = frames_meta[frame] if frame < len(frames_meta) else (frames_meta[0] if frames_meta else {})
        frames[frame] = {"sample": rel, "width": fm.get("width"), "height": fm.get("height")}
    downloaded: dict[str, dict] = {}
    for job in jobs_of(client, tid):
        ann = client.job_annotations(job["id"])
        stamp_derived_ids(ann, task_labels, tid)
        part = import_annotations(ann, task_labels, {f: frames[f] for f in frames
                                                     if job["start_frame"] <= f <= job["stop_frame"]},
                                  schema, unexpected=unexpected)
        for rel, fields in part.items():
            downloaded.setdefault(rel, {}).update(fields)
    merged = set(run.get("merged", []))
    todo = [rel for rel in batch["samples"] if rel not in merged]
    trigger, done = run["config"].get("trigger_tag"), run["config"].get("done_tag")

    def write(rel):
        """Merge one sample file; returns (labels merged) or the error that skips it."""
        fields = downloaded.get(rel, {})
        fields = _write_masks(root, rel, fields, _current_mask_paths(root, rel, fields))
        sent = run.get("sent", {}).get(rel, {})

        def change(sample):
            out = merge_sample(sample, fields, _with_already_merged(sample, fields, sent, dest_field),
                               schema, dest_field)
            return swap_tags(out, trigger, done)
        try:
            dataset.update_sample(root, rel, change)
        except (SampleFileError, MediaError) as e:
            return e
        return sum(count_labels(v) for v in fields.values())

    # Sample files are written by a few threads (each write is fsync'd: the waits overlap) and
    # recorded as merged a group at a time, after every write of the group has returned: the
    # run file is rewritten once per group, not once per sample. A crash inside a group leaves
    # written-but-unrecorded samples, which _with_already_merged merges again without duplicates.
    with ThreadPoolExecutor(max_workers=MERGE_THREADS) as pool:
        for g in range(0, len(todo), MERGE_GROUP):
            group, flags, written, failure = todo[g:g + MERGE_GROUP], {}, [], None
            ready = []
            for rel in group:
                reason = media_changed(root, rel, run)
                if reason:
                    flags[rel] = reason
                    summary["flagged"][rel] = reason
                    log.warning("not merging %s: %s", rel, reason)
                else:
                    ready.append(rel)
            futures = [(rel, pool.submit(write, rel)) for rel in ready]
            for rel, fut in futures:
                try:
                    outcome = fut.result()
                except Exception as e:  # record the others before raising
                    failure = failure or e
                    continue
                if isinstance(outcome, Exception):
                    summary["skipped"][rel] = str(outcome)
                    log.warning("not merging %s: %s", rel, outcome)
                    continue
                written.append(rel)
                summary["samples"] += 1
                summary["labels"] += outcome

            def mark(rec, flags=flags, written=written):
                if flags:
                    rec.setdefault("flagged", {}).update(flags)
                have = set(rec["merged"])
                rec["merged"].extend(r for r in written if r not in have)
            if flags or written:
                store.modify(key, mark)
            if progress and written:
                progress(len(written))
            if failure is not None:
                raise failure


def _load_video(client, root, store, run, batch, schema, unexpected, summary, task_labels, meta) -> None:
    """One video per task: read job by job (tracks cut at job boundaries must not come back
    twice), interpolate tracks, merge frame by frame."""
    rel, tid, key = batch["samples"][0], batch["task_id"], run["key"]
    if rel in run.get("merged", []):
        return
    reason = media_changed(root, rel, run)
    if reason:
        store.modify(key, lambda rec: rec.setdefault("flagged", {}).__setitem__(rel, reason))
        summary["flagged"][rel] = reason
        return
    per_job = []
    for job in sorted(jobs_of(client, tid), key=lambda j: j["start_frame"]):
        ann = client.job_annotations(job["id"])
        stamp_derived_ids(ann, task_labels, tid)
        per_job.append((ann, job["start_frame"], job["stop_frame"]))
    fields = import_video(per_job, task_labels, meta, schema, unexpected)
    sent = run.get("sent", {}).get(rel, {})
    trigger, done = run["config"].get("trigger_tag"), run["config"].get("done_tag")

    def change(sample):
        return swap_tags(merge_video(sample, fields, sent, schema), trigger, done)
    try:
        dataset.update_sample(root, rel, change)
    except (SampleFileError, MediaError) as e:
        summary["skipped"][rel] = str(e)
        return
    store.modify(key, lambda rec: rec["merged"].append(rel) if rel not in rec["merged"] else None)
    summary["samples"] += 1
    summary["labels"] += sum(count_labels(v) for frame in fields.get("frames", {}).values() for v in frame.values())


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


def _current_mask_paths(root, rel: str, fields: dict) -> dict[tuple[str, str], str]:
    """(field, label id) -> mask_path of the labels the sample holds now: an edited mask is
    written back to the file its label already refers to (the merge keeps that mask_path)."""
    try:
        sample = dataset.read_sample(root, rel, create=False) or {}
    except (SampleFileError, MediaError):
        return {}
    out = {}
    for field in fields:
        for lab in labels_of(sample.get(field)):
            path = lab.get("mask_path")
            if not (isinstance(path, str) and path and label_id(lab)):
                continue
            try:
                dataset.safe_rel(root, path)
            except SampleFileError:
                continue  # absolute or outside the root: never written to; a new file is made
            out[(field, label_id(lab))] = path
    return out


def _write_masks(root, rel: str, fields: dict, current: dict | None = None) -> dict:
    """Masks arrive as numpy arrays under ``mask``; store them as PNGs below the root and refer
    to them by ``mask_path``: the label's existing file if it has one, else a file named after
    the label id, so rewriting is idempotent."""
    out = {}
    for field, value in fields.items():
        if isinstance(value, dict):
            value = dict(value)
            for list_key in ("detections",):
                if isinstance(value.get(list_key), list):
                    value[list_key] = [_mask_to_path(root, rel, field, lb, current) for lb in value[list_key]]
            if value.get("_cls") in ("Segmentation", "Detection"):
                value = _mask_to_path(root, rel, field, value, current)
        out[field] = value
    return out


def _mask_to_path(root, rel, field, label: dict, current: dict | None = None) -> dict:
    mask = label.get("mask")
    if mask is None or isinstance(mask, (str, dict, list)):
        return label
    label = dict(label)
    lid = label_id(label) or "mask"
    existing = (current or {}).get((field, lid))
    if existing:
        target = Path(root) / dataset.safe_rel(root, existing)
        write_png(target, mask)
        label["mask_path"] = existing
    else:
        label["mask_path"] = dataset.write_mask(root, rel, field, lid, mask)
    label.pop("mask")
    return label
