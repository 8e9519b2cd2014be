"""Downloading a run per job and merging it into the sample files, idempotently."""
from __future__ import annotations

import logging
import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from .. import dataset, gc_pause, mask_files
from ..atomic import fsync_dir, remove_dead_temps, sync_together
from ..errors import MediaError, RunError, SampleFileError, SyncdError
from ..ids import label_id
from ..labels import import_annotations
from ..labels.video import import_video
from ..merge import merge_sample, merge_video
from ..runs import RunStore
from ..schema import labels_of
from .common import count_labels, is_video, jobs_of, media_changed, schema_of, set_batch, stamp_derived_ids, swap_tags

log = logging.getLogger("syncd.ops")

# Pool threads: each group's media checks and sync (``check_and_sync``, one task per group, two
# groups in flight at most), and samples redone from scratch (``whole``). Per-sample tasks in 16
# threads (a media check and an fsync each) handed the GIL around between short system calls:
# 1000 x 20 boxes, old and new alternated in fresh processes: median 0.95 s -> 0.76 s.
MERGE_THREADS = 4
# Samples whose mask files are staged at once, beside this thread. That is Python work
# (encoding) between short system calls: more threads only hand the GIL around. 1000 samples
# x 20 masks: 5.2-5.3 s in 16 threads, 3.2-3.6 s in 4; once a group's sample files were also
# staged in this thread and synced together, 2.4-2.9 s in 4, 2.2-2.4 s in 2, 1.9-2.1 s in 1.
MASK_THREADS = 1
MERGE_GROUP = 128    # samples recorded as merged per run-file write
JOB_THREADS = 4      # jobs downloaded at once (each thread its own client)


def load_run(client, root, key: str, *, cleanup: bool | None = None, unexpected: str = "keep",
             dest_field=None, store: RunStore | None = None, progress: Callable | None = None) -> dict:
    """Download every job's labels, merge them into the sample files, swap the trigger tag for
    the done tag, and delete the tasks if ``cleanup``. Idempotent: samples already merged are
    skipped, and re-merging a sample after a crash yields the same file. A sample whose file
    cannot be written (``summary["skipped"]``) keeps its batch unfinished, its task and the run
    "loading": loading again once the file is fixed merges it."""
    if unexpected not in ("keep", "ignore"):
        raise SyncdError(f"unexpected must be 'keep' or 'ignore', got {unexpected!r}")
    store = store or RunStore(root)
    run = store.get(key)
    if run["status"] in ("planned", "uploading"):
        raise RunError(f"run '{key}' is still uploading ({run['status']}); finish `annotate` first")
    cleanup = run["config"].get("cleanup") if cleanup is None else cleanup
    if isinstance(dest_field, str) and len(run["config"].get("schema") or {}) != 1:
        # checked before anything starts: merge_sample would raise a bare ValueError per sample
        raise SyncdError(f"run '{key}' has {len(run['config'].get('schema') or {})} fields: dest_field "
                         f"may be a single name only for a one-field run; give {{field: new field}}")
    if run["status"] == "loading":
        # an earlier load of this run stopped part-way; if it was killed mid-group, its staged
        # temporary files are still beside the sample files: drop them (once per load, not per
        # batch: a directory of 100k samples costs a listing)
        _sweep_dead_temps(root, run)
    elif run["status"] != "loaded":
        run = store.update(key, status="loading")
    schema = schema_of(run)
    summary = {"samples": 0, "labels": 0, "flagged": dict(run.get("flagged", {})), "skipped": {}}
    owed = False
    for batch in run["batches"]:
        if batch["state"] in ("annotating", "ready"):
            _load_batch(client, root, store, key, batch, schema, unexpected, dest_field, summary, progress)
            if any(rel in summary["skipped"] for rel in batch["samples"]):
                # A sample whose file could not be written (broken JSON mid-edit...) still has
                # its labels only in CVAT: the batch is not done and its task is not deleted;
                # loading again (once the file is fixed) merges just those samples.
                owed = True
                continue
            set_batch(store, key, batch["index"], state="loaded")
            batch["state"] = "loaded"
        if cleanup and batch["state"] in ("loaded", "deleting"):
            set_batch(store, key, batch["index"], state="deleting")
            client.delete_task(batch["task_id"], missing_ok=True)
            set_batch(store, key, batch["index"], state="deleted")
    # Projects are shared by later runs of the same rule: never deleted implicitly here.
    if not owed:
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
    with gc_pause.paused():  # ~200k containers built in a burst: see gc_pause
        downloaded = _download(client, tid, task_labels, frames, schema, unexpected)
    merged = set(run.get("merged", []))
    todo = [rel for rel in batch["samples"] if rel not in merged]
    _merge_samples(root, store, key, run, todo, downloaded, schema, dest_field, summary, progress)


def _download(client, tid, task_labels, frames, schema, unexpected) -> dict[str, dict]:
    """Every job's annotations converted to {sample: {field: value}}. Jobs are fetched from a
    few threads, each with its own client (a client's login session is not shared between
    threads); the parts are combined in job order, as a sequential download would."""
    jobs = jobs_of(client, tid)

    def one(job, c) -> dict:
        ann = c.job_annotations(job["id"])
        stamp_derived_ids(ann, task_labels, tid)
        part_frames = {f: info for f, info in frames.items() if job["start_frame"] <= f <= job["stop_frame"]}
        return import_annotations(ann, task_labels, part_frames, schema, unexpected=unexpected)

    clone = getattr(client, "clone", None)
    clients = [c for c in (clone() for _ in range(min(JOB_THREADS, len(jobs)))) if c is not None] \
        if len(jobs) > 1 and clone else []
    if not clients:  # one job, or a client that cannot be duplicated: no threads
        parts = [one(job, client) for job in jobs]
    else:
        idle: queue.SimpleQueue = queue.SimpleQueue()
        for c in clients:
            idle.put(c)

        def fetch(job):
            c = idle.get()  # never more threads than clients: one is always free
            try:
                return one(job, c)
            finally:
                idle.put(c)
        try:
            with ThreadPoolExecutor(max_workers=len(clients)) as pool:
                parts = list(pool.map(fetch, jobs))
        finally:
            for c in clients:
                c.close()
    downloaded: dict[str, dict] = {}
    for part in parts:
        for rel, fields in part.items():
            downloaded.setdefault(rel, {}).update(fields)
    return downloaded


def _merge_samples(root, store, key, run, todo, downloaded, schema, dest_field, summary, progress) -> None:
    """Merge the downloaded labels into the sample files of ``todo`` and record them as merged.

    This thread reads each sample file, merges and encodes it (``dataset.prepare_update``: the
    CPU work) and writes the result to a temporary file beside it (``dataset.stage_update``).
    Once a group of MERGE_GROUP is staged, one pool task checks that its samples' media did not
    change and makes their staged files durable together (``atomic.sync_together``: one
    ``syncfs``), while this thread prepares the next group. Groups are finished in order: each
    staged file is renamed into place here if the sample file still holds what was read (else
    the change is re-applied to the new content with ``update_sample``), the group's directories
    are fsynced (one directory fsync covers a whole group's renames), and only then is the group
    recorded as merged, with one run-file write. A sample with masks has its mask files staged by one of
    MASK_THREADS threads; the group's mask files are then made durable together and put in place
    (``mask_files.commit_masks``), and only then are those samples' files prepared and staged
    here, made durable together (``atomic.sync_together``) and renamed like the others: a
    sample file never refers to a mask that is not on disk. A crash inside a group
    leaves written-but-unrecorded samples, which
    _with_already_merged merges again without duplicates, and hidden temporary files, which
    loading the run again removes (``_sweep_dead_temps``)."""
    trigger, done = run["config"].get("trigger_tag"), run["config"].get("done_tag")

    def change_for(rel, fields):
        sent = run.get("sent", {}).get(rel, {})

        def change(sample):
            out = merge_sample(sample, fields, _with_already_merged(sample, fields, sent, dest_field),
                               schema, dest_field)
            return swap_tags(out, trigger, done)
        return change

    def labels_in(fields) -> int:
        return sum(count_labels(v) for v in fields.values())

    def whole(rel):
        """The complete update. -> ("flag", reason) | ("skip", error) | ("ok", n)."""
        kind, value = stage_masks_of(rel)
        if kind != "masks":
            return kind, value
        fields, staged = value
        try:
            mask_files.commit_masks(staged)
        except MediaError as e:
            return "skip", e
        return update_with(rel, fields)

    def stage_masks_of(rel):
        """In the mask thread (or from ``whole``): the media check, then the sample's mask files
        staged (not yet durable). -> ("flag", reason) | ("skip", error) | ("masks", (fields, staged))."""
        reason = media_changed(root, rel, run)
        if reason:
            return "flag", reason
        fields = downloaded.get(rel, {})
        if not _holds_masks(fields):
            return "masks", (fields, [])
        try:
            return "masks", _stage_masks(root, rel, fields, _current_mask_paths(root, rel, fields))
        except (SampleFileError, MediaError) as e:
            return "skip", e

    def update_with(rel, fields):
        """The sample file's update once its masks are in place. -> ("skip", error) | ("ok", n)."""
        try:
            dataset.update_sample(root, rel, change_for(rel, fields), sync_dir=False)
        except (SampleFileError, MediaError) as e:
            return "skip", e
        return "ok", labels_in(fields)

    def settle_masks(group) -> None:
        """The group's staged mask files made durable together and put in place; then the
        files of the samples that refer to them are prepared, staged and made durable together
        too (in ``group``'s places: ``outcome`` renames them like the others). All in this
        thread: with the fsyncs batched, pool threads would only hand the GIL around."""
        masked = []
        for i, (_, fut) in enumerate(group):
            if fut.cancelled() or fut.exception() is not None:  # (waits for it)
                continue
            kind, value = fut.result()
            if kind == "masks":
                masked.append((i, value))
        staged = [item for _, (_, items) in masked for item in items]
        try:
            mask_files.commit_masks(staged)
        except MediaError as e:
            for i, _ in masked:
                group[i] = (group[i][0], _resolved(("skip", e)))
            return
        samples = []  # (index, prep, staged sample file, labels): made durable together below
        for i, (fields, _) in masked:
            rel = group[i][0]
            try:
                prep = dataset.prepare_update(root, rel, change_for(rel, fields))
                samples.append((i, prep, dataset.stage_update(prep), labels_in(fields)))
            except (SampleFileError, MediaError) as e:
                group[i] = (rel, _resolved(("skip", e)))
            except Exception as e:  # as in ``start``: the group's others are recorded, then raised
                group[i] = (rel, _resolved(exc=e))
        try:
            sync_together([item for _, _, item, _ in samples if item is not None])
        except OSError as e:
            for i, prep, item, _ in samples:
                if item is not None:
                    item.discard()
                group[i] = (group[i][0], _resolved(("skip", dataset.write_failed(prep, e))))
            return
        for i, prep, item, n in samples:  # renamed in ``outcome`` if the file is still as read
            group[i] = (group[i][0], _resolved(("staged", (prep, item, n))))

    def check_and_sync(group) -> dict:
        """In a pool thread, once per group: the media check of each sample file this thread
        staged, then their staged files made durable together (``atomic.sync_together``).
        -> {index in ``group``: ("staged", ...) | ("flag", reason) | ("skip", error)}."""
        out, synced = {}, []
        for i, (rel, fut) in enumerate(group):
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                continue  # (a mask sample, or one redone by ``whole``: settled elsewhere)
            kind, value = fut.result()
            if kind != "unsynced":
                continue
            prep, staged, n = value
            reason = media_changed(root, rel, run)
            if reason:
                if staged is not None:
                    staged.discard()
                out[i] = ("flag", reason)
                continue
            out[i] = ("staged", value)
            if staged is not None:
                synced.append((i, prep, staged))
        try:
            sync_together([staged for _, _, staged in synced])
        except OSError as e:
            for i, prep, staged in synced:
                staged.discard()
                out[i] = ("skip", dataset.write_failed(prep, e))
        return out

    def start(pool, mask_pool, rel) -> Future:
        fields = downloaded.get(rel, {})
        if _holds_masks(fields):
            return mask_pool.submit(stage_masks_of, rel)
        try:
            prep = dataset.prepare_update(root, rel, change_for(rel, fields))
        except (SampleFileError, MediaError):
            return pool.submit(whole, rel)  # media gone or changed says more: whole() checks first
        except Exception as e:  # the group's others are still recorded, then this is raised
            return _resolved(exc=e)
        try:
            staged = dataset.stage_update(prep)
        except SampleFileError as e:
            return _resolved(("skip", e))
        return _resolved(("unsynced", (prep, staged, labels_in(fields))))  # (``check_and_sync``)

    def outcome(rel, fut):
        kind, value = fut.result()
        if kind != "staged":
            return kind, value
        prep, staged, n = value
        try:
            if dataset.finish_staged_update(prep, staged):
                return "ok", n
        except SampleFileError as e:
            return "skip", e
        return whole(rel)  # the sample file changed since it was read: re-apply to the new one

    def finish(group, synced: Future) -> None:
        try:
            results = synced.result()
        except BaseException:  # (popped from ``started``: its staged files are dropped here)
            for _, fut in group:
                _discard_staged(fut)
            raise
        for i, result in results.items():
            group[i] = (group[i][0], _resolved(result))
        settle_masks(group)
        flags, written, failure = {}, [], None
        for rel, fut in group:
            try:
                kind, value = outcome(rel, fut)
            except Exception as e:  # record the others before raising
                failure = failure or e
                continue
            if kind == "flag":
                flags[rel] = value
                summary["flagged"][rel] = value
                log.warning("not merging %s: %s", rel, value)
            elif kind == "skip":
                summary["skipped"][rel] = str(value)
                log.warning("not merging %s: %s", rel, value)
            else:
                written.append(rel)
                summary["samples"] += 1
                summary["labels"] += value
        for directory in sorted({os.path.dirname(os.path.join(root, rel)) for rel in written}):
            fsync_dir(directory)

        def mark(rec):
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

    started: list[tuple[list, Future]] = []  # (group, its check_and_sync)
    try:
        with ThreadPoolExecutor(max_workers=MERGE_THREADS) as pool, \
                ThreadPoolExecutor(max_workers=MASK_THREADS) as mask_pool:
            try:
                for g in range(0, len(todo), MERGE_GROUP):
                    group = [(rel, start(pool, mask_pool, rel)) for rel in todo[g:g + MERGE_GROUP]]
                    started.append((group, pool.submit(check_and_sync, group)))
                    if len(started) > 1:
                        finish(*started.pop(0))
                while started:
                    finish(*started.pop(0))
            finally:
                for group, synced in started:  # after a failure: writes not started yet are not made
                    synced.cancel()
                    for _, fut in group:
                        fut.cancel()
    finally:
        for group, _ in started:  # and staged files never renamed are removed
            for _, fut in group:
                _discard_staged(fut)


def _discard_staged(fut: Future) -> None:
    if fut.cancelled() or not fut.done() or fut.exception() is not None:
        return
    kind, value = fut.result()
    if kind in ("staged", "unsynced") and value[1] is not None:
        value[1].discard()
    elif kind == "masks":
        mask_files.discard_masks(value[1])


def _sweep_dead_temps(root, run: dict) -> None:
    """Remove temporary files that killed writers left in the directories of the run's samples
    still to be merged and in their mask directories (``atomic.remove_dead_temps``)."""
    merged = set(run.get("merged", []))
    rels = [rel for batch in run["batches"] if batch["state"] in ("annotating", "ready")
            for rel in batch["samples"] if rel not in merged]
    for directory in {os.path.dirname(os.path.join(root, rel)) for rel in rels}:
        remove_dead_temps(directory)
    for rel in rels:
        for masks in mask_files.mask_dirs(root, rel):
            remove_dead_temps(masks)


def _resolved(result=None, exc: BaseException | None = None) -> Future:
    fut: Future = Future()
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
    return fut


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
    with gc_pause.paused():  # tracks interpolated into every frame: a burst of containers
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
        held = labels_of(sample.get(dest.get(field, field)))
        if not held:
            continue  # (the common case: nothing there yet, no ids to compare)
        have = {label_id(lb) for lb in held}
        again = [lid for lid in map(label_id, labels_of(value)) if lid in have]
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
                checked = dataset.safe_rel(root, path)
            except SampleFileError:
                continue  # absolute or outside the root: never written to; a new file is made
            if not checked.lower().endswith(".png") or any(
                    p.startswith(".") and p != mask_files.MASKS_DIR for p in checked.split("/")):
                # only a PNG is ever overwritten with a mask, never a hidden file such as
                # syncd's own run records (.syncd/): a sample file is edited by people
                continue
            out[(field, label_id(lab))] = path
    return out


def _is_array(mask) -> bool:
    return mask is not None and not isinstance(mask, (str, dict, list))


def _holds_masks(fields: dict) -> bool:
    """Whether any downloaded label carries a mask array (only then are mask files written and
    the sample read beforehand for the labels' current mask paths)."""
    for value in fields.values():
        if isinstance(value, dict):
            if any(isinstance(lb, dict) and _is_array(lb.get("mask")) for lb in value.get("detections") or []):
                return True
            if _is_array(value.get("mask")):
                return True
    return False


def _stage_masks(root, rel: str, fields: dict, current: dict | None = None) -> tuple[dict, list]:
    """Masks arrive as numpy arrays under ``mask``; each is staged as a PNG below the root
    (``mask_files.stage_masks``) and the label refers to it by ``mask_path``: the label's current
    file if it has one (an edited mask is written over it), else a new file named after the
    media and the label id, so rewriting is idempotent. -> (fields with paths, staged files)."""
    out, items = {}, []
    media = dataset.safe_rel(root, rel)
    for field, value in fields.items():
        if isinstance(value, dict):
            value = dict(value)
            if isinstance(value.get("detections"), list):
                value["detections"] = [_mask_to_path(root, media, field, lb, current, items)
                                       for lb in value["detections"]]
            if value.get("_cls") in ("Segmentation", "Detection"):
                value = _mask_to_path(root, media, field, value, current, items)
        out[field] = value
    return out, mask_files.stage_masks(root, items)


def _mask_to_path(root, media: str, field: str, label: dict, current: dict | None, items: list) -> dict:
    """The label (of media ``media``, a checked rel) without its mask array, referring to the
    file it is to be written to; the (path, array) pair is queued in ``items``."""
    mask = label.get("mask")
    if not _is_array(mask):
        return label
    label = dict(label)
    label.pop("mask")
    lid = label_id(label) or "mask"
    existing = (current or {}).get((field, lid))
    if existing:  # kept as the label has it; written where it leads
        label["mask_path"] = existing
        items.append((dataset.safe_rel(root, existing), mask))
    else:
        label["mask_path"] = mask_files.mask_rel(media, field, lid)
        items.append((label["mask_path"], mask))
    return label
