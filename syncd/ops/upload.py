"""Uploading a run, one idempotent step at a time: project, task (found by its recorded name
before being created), data, existing labels, job assignees."""
from __future__ import annotations

import logging
import os
import threading

from .. import dataset
from ..cvat import CVATError
from ..errors import RunError
from ..labels import export_sample, resolve_ids
from ..labels.video import export_video
from ..runs import RunStore
from ..schema import cvat_labels
from . import hashing
from .common import as_list, frame_size, is_video, jobs_of, schema_of

log = logging.getLogger("syncd.ops")


def advance_upload(client, root, key: str, *, store: RunStore | None = None, progress=None) -> bool:
    """Take the run one step toward "every task has its data, labels and assignees".

    Returns True once the run is annotating (or further). Safe to call again after a crash at
    any point: every state is re-checked against CVAT before acting.
    """
    return _advance(client, root, key, store or RunStore(root), progress) is not None


def upload_run(client, root, key: str, *, store: RunStore | None = None, progress=None, max_steps: int = 100000) -> dict:
    """Drive ``advance_upload`` to the end (the one-shot ``annotate``); the run's record then."""
    store = store or RunStore(root)
    for _ in range(max_steps):
        run = _advance(client, root, key, store, progress)
        if run is not None:
            return run
    raise RunError(f"run '{key}': upload did not converge")


def _advance(client, root, key: str, store: RunStore, progress) -> dict | None:
    """``advance_upload``'s step: the run's record once it is annotating (or further), else None."""
    run = store.get(key)
    if run["status"] not in ("planned", "uploading"):
        return run
    if run["config"].get("project_name") or run["config"].get("project_id"):
        if run["status"] == "planned":
            run = store.update(key, status="uploading")
        if not run.get("project"):
            _ensure_project(client, store, run)
            return None
    for batch in run["batches"]:
        if batch["state"] != "annotating":
            try:
                written = _advance_batch(client, root, store, run, batch, progress)
            except BaseException:
                # An attempt was made: say so (a fresh batch writes its first record only
                # once its task exists, to save a write on the way that works).
                if run["status"] == "planned":
                    try:
                        store.update(key, status="uploading")
                    except Exception:  # the original failure matters more
                        log.exception("run '%s': could not record the upload attempt", key)
                raise
            # the last batch's final write also recorded the run as annotating: no re-read
            return written if written and written["status"] not in ("planned", "uploading") else None
    return store.update(key, status="annotating")


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


def _advance_batch(client, root, store: RunStore, run: dict, batch: dict, progress) -> dict | None:
    """One batch from wherever it is to "annotating".

    Each record write below is a fact a crash must not lose, and nothing more (each one
    rewrites the run file, fsync'd). A batch this process planned goes from "planned" to
    "annotating" in one call with one write at the end (with "labels_sent" before jobs are
    touched when it carries labels): if it stops on the way, the task it made is found by its
    recorded name (which carries the run's nonce) and re-checked, like a task whose POST
    answer was lost; a failure records the task id at once. A batch found half-done is
    re-checked against CVAT first: its data may be in (CVAT also refuses a second attach).
    Returns the run's record as ``_finish_batch`` last wrote it, or None.
    """
    key, i, cfg = run["key"], batch["index"], run["config"]
    state = batch["state"]
    fresh = False
    if state in ("planned", "creating"):
        # Planned by this process and not yet tried: nothing can exist in CVAT, so there is
        # nothing to search for. Otherwise (another process planned it, or an attempt here
        # failed) a task may exist from a POST whose answer was lost: look for it by name.
        fresh = state == "planned" and _take_fresh(root, run, i)
        found = [] if fresh else client.find_tasks(batch["name"])
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
        if not fresh:
            _write(store, key, i, {"task_id": task["id"], "state": "created"}, status="uploading")
            return None  # (the next step re-reads the run and goes on from "created")
        try:
            return _finish_batch(client, root, store, run, dict(batch, task_id=task["id"]), "uploading",
                                 progress, fresh=True)
        except BaseException:
            try:  # a retry then need not search for the task
                _record_task(store, key, i, task["id"])
            except Exception:
                log.exception("run '%s': could not record task %s of batch %d", key, task["id"], i)
            raise
    if state in ("created", "uploading", "ready"):
        return _finish_batch(client, root, store, run, batch, state, progress, fresh=False)
    return None


def _record_task(store: RunStore, key: str, index: int, tid: int) -> None:
    """After a failure: the batch's task id, and "created" unless it got further."""
    def change(rec):
        b = rec["batches"][index]
        b["task_id"] = tid
        if b["state"] in ("planned", "creating"):
            b["state"] = "created"
        rec["status"] = "uploading"
    store.modify(key, change)


def _finish_batch(client, root, store: RunStore, run: dict, batch: dict, state: str, progress, *,
                  fresh: bool) -> dict:
    """A batch whose task exists (``batch["task_id"]``): data, existing labels, assignees.
    Returns the run's record as last written."""
    key, i, cfg, tid = run["key"], batch["index"], run["config"], batch["task_id"]
    jobs = None
    digests: dict[str, tuple] = {}  # (content hash, fingerprint) of the media as this call sent them
    if state in ("created", "uploading"):
        if not fresh:
            # found half-done: the data may be in already
            task = client.get_task(tid)
            jobs = jobs_of(client, tid) if task.get("size", 0) > 0 else []
            if jobs:
                return _write(store, key, i, {"state": "ready"})
            if state == "uploading" and batch.get("rq_id"):
                try:
                    jobs = _wait_data(client, tid, batch["rq_id"])
                    return _write(store, key, i, {"state": "ready"})
                except CVATError as e:
                    if "failed" in str(e).lower():
                        raise
            if state == "created":
                _write(store, key, i, {"state": "uploading", "rq_id": None})
        rq_id = _send_data(client, root, key, cfg, batch, progress, digests)
        # No write of rq_id: a crash while CVAT processes is recovered like any other
        # "uploading" batch (the task has its data, or a second attach is refused and we wait).
        jobs = _wait_data(client, tid, rq_id)
    labelled = set(run["labelled"]) if "labelled" in run else set(batch["samples"])
    # Once recorded as sent, never again: a second PUT (replace) after a failure while
    # assigning jobs would wipe what annotators of already-assigned jobs have drawn.
    if not batch.get("labels_sent") and any(rel in labelled for rel in batch["samples"]):
        _send_existing_labels(client, root, store, run, batch)
    jobs = jobs if jobs else jobs_of(client, tid)
    _assign_jobs(client, cfg, jobs, batch)
    last = all(b["state"] == "annotating" for b in run["batches"] if b["index"] != i)
    hashes = hashing.collect(root, key, batch["samples"], run.get("hashes"), sent=digests)
    return _write(store, key, i, {"task_id": tid, "state": "annotating", "jobs": [j["id"] for j in jobs],
                                  "labels_sent": True},
                  hashes=hashes, status="annotating" if last else "uploading")


_fresh: set[tuple] = set()
_fresh_lock = threading.Lock()


def note_planned(root, run: dict) -> None:
    """``plan_run`` just recorded ``run``: its batches cannot have a task in CVAT yet."""
    with _fresh_lock:
        _fresh.update(_fresh_key(root, run, b["index"]) for b in run["batches"])


def _take_fresh(root, run: dict, index: int) -> bool:
    """Whether this process planned the batch and never tried to create its task (once)."""
    with _fresh_lock:
        key = _fresh_key(root, run, index)
        found = key in _fresh
        _fresh.discard(key)
        return found


def _fresh_key(root, run: dict, index: int) -> tuple:
    # the nonce tells a run from an earlier one of the same key (deleted, planned again)
    return os.path.realpath(root), run["key"], run["config"].get("nonce"), index


def _write(store: RunStore, key: str, index: int, fields: dict, *, hashes: dict | None = None, **top) -> dict:
    """One record write: fields of batch ``index``, media ``hashes`` to add ({rel: (content hash,
    stat fingerprint or None)}), and top-level ``top`` fields; returns the run's record as written."""
    def change(rec):
        rec["batches"][index].update(fields)
        if hashes:
            rec.setdefault("hashes", {}).update((rel, h[0]) for rel, h in hashes.items())
            stats = rec.setdefault("media_stats", {})
            for rel, (_, fp) in hashes.items():
                if fp:
                    stats[rel] = fp
                else:
                    stats.pop(rel, None)
        rec.update(top)
    return store.modify(key, change)


def _send_data(client, root, key: str, cfg: dict, batch: dict, progress, digests: dict) -> str | None:
    """Attach the batch's media to its task (share names or the files); the request id.
    ``digests`` receives {sample path: (content hash, stat fingerprint)} of the files as they were sent.
    With share names, the media are hashed in the background meanwhile."""
    tid = batch["task_id"]
    names = share_names(root, batch["samples"], cfg.get("share_root"))
    files = [os.path.join(root, rel) for rel in batch["samples"]]
    sent: dict = {}
    try:
        if names is not None:
            # While CVAT reads them from its share: the hashing thread then takes the CPU this
            # process's main thread leaves idle while it waits, instead of contending with
            # planning (started by plan_run, zero copy of 1000 JPEGs took ~4 ms longer).
            hashing.start(root, key, batch["samples"])
            return client.upload_data(tid, [], server_files=names, image_quality=cfg.get("image_quality") or 75)
        return client.upload_data(tid, files, image_quality=cfg.get("image_quality") or 75,
                                  progress=progress, digests=sent, **_frame_params(cfg, batch))
    except CVATError as e:
        if "Adding more data is not supported" not in str(e):
            raise
        return None  # our earlier upload (lost answer) already attached the data
    finally:
        for rel, path in zip(batch["samples"], files):
            if path in sent:
                digests[rel] = sent[path]


def _wait_data(client, tid: int, rq_id: str | None) -> list[dict]:
    """Wait until the task's data is processed; its annotation jobs. A finished request is
    enough: its jobs are asked for directly (no extra task read), unless there are none yet."""
    if rq_id:
        client.wait_request(rq_id)
        jobs = jobs_of(client, tid)
        if jobs:
            return jobs
    client.wait_task_ready(tid, None)
    return jobs_of(client, tid)


def _frame_params(cfg: dict, batch: dict) -> dict:
    """start_frame/stop_frame/frame_step of a video batch, as CVAT's data parameters."""
    rel = batch["samples"][0]
    if not is_video(rel):
        return {}
    start, stop, step = (cfg.get("frames") or {}).get(rel) or (0, None, 1)
    out = {"start_frame": start or None, "stop_frame": stop, "frame_step": step if step and step > 1 else None}
    return {k: v for k, v in out.items() if v is not None}


def share_names(root, rels: list[str], share_root: str | None) -> list[str] | None:
    """The samples' paths relative to the share (CVAT's ``server_files``), or None when there
    is no share or the dataset root is not below it (then the files are uploaded).

    Only the root is resolved: planning checked that every sample's real location is inside
    the root (``dataset.safe_rel``), so inside the share too; CVAT resolves the names itself.
    """
    if not share_root:
        return None
    share = os.path.join(os.path.realpath(share_root), "")  # with its trailing separator
    base = os.path.join(os.path.realpath(root), "")
    if not base.startswith(share):
        return None
    prefix = base[len(share):]
    return [prefix + rel for rel in rels]


def _round_robin(value, index: int):
    values = as_list(value)
    return values[index % len(values)] if values else None


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
    # runs planned before "labelled" was recorded: treat every sample as labelled
    labelled = set(run["labelled"]) if "labelled" in run else set(batch["samples"])
    todo = [(frame, rel) for frame, rel in enumerate(batch["samples"]) if rel in labelled]
    sizes = _frame_sizes(client, batch["task_id"]) if todo else {}
    for frame, rel in todo:
        doc = dataset.read_sample(root, rel)
        if is_video(rel):
            w, h = frame_size(doc)
            start, stop, step = (run["config"].get("frames") or {}).get(rel) or (0, None, 1)
            items, ids = export_video(doc, schema, w, h, root, start, stop, step)
        else:
            w, h = sizes.get(frame) or frame_size(doc)
            items, ids = export_sample(doc, frame, schema, w, h, root)
        shapes += items.get("shapes", [])
        tags += items.get("tags", [])
        tracks += items.get("tracks", [])
        sent[rel] = ids
    tid = batch["task_id"]
    if shapes or tags or tracks:
        task_labels = client.labels(task_id=tid)
        data = resolve_ids({"shapes": shapes, "tags": tags, "tracks": tracks}, task_labels)
        # settle: jobs are assigned right after this; a late copy of this PUT must not land then
        client.put_task_annotations(tid, {"version": 0, **data}, settle=True)

    def change(rec):
        rec["sent"].update(sent)
        # (with the task id: a fresh batch records nothing before this)
        rec["batches"][batch["index"]].update(labels_sent=True, task_id=tid, state="ready")
        if rec.get("status") == "planned":
            rec["status"] = "uploading"
    store.modify(run["key"], change)


def _frame_sizes(client, tid: int) -> dict[int, tuple[int, int]]:
    """Frame sizes as CVAT decoded them: the coordinates annotators draw in."""
    frames = client.data_meta(tid).get("frames") or []
    return {i: (int(f["width"]), int(f["height"])) for i, f in enumerate(frames) if f.get("width")}
