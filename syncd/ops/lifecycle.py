"""Where runs stand: completion, which samples are busy, and cleaning up CVAT."""
from __future__ import annotations

import logging

from ..cvat import CVATError
from ..runs import RunStore
from .common import FINISHED, jobs_of, set_batch

log = logging.getLogger("syncd.ops")


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
        if batch["state"] in ("loaded", "deleting", "deleted", "lost"):
            continue
        jobs = jobs_of(client, batch["task_id"])
        if not jobs:
            if _task_gone(client, batch["task_id"]):
                _mark_lost(store, key, batch)  # nothing will ever complete: stop waiting for it
                continue
            return False
        for job in jobs:
            if completion == "acceptance":
                if job.get("stage") != "acceptance":
                    return False
            elif job.get("state") != "completed":
                return False
    return True


def _task_gone(client, tid) -> bool:
    try:
        client.get_task(tid)
    except CVATError as e:
        return e.status == 404
    return False


def _mark_lost(store: RunStore, key: str, batch: dict) -> None:
    """A batch whose task was deleted in CVAT before its labels were loaded: there is nothing to
    merge. Its samples are flagged (``syncd status`` shows why); the run can then finish, and
    samples still carrying the trigger tag are sent again by the daemon in a new run."""
    reason = (f"CVAT task {batch['task_id']} was deleted before its labels were loaded; "
              f"nothing merged")
    log.warning("run '%s': %s", key, reason)

    def change(rec):
        rec["batches"][batch["index"]]["state"] = "lost"
        flagged = rec.setdefault("flagged", {})
        for rel in batch["samples"]:
            flagged[rel] = reason
    store.modify(key, change)


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
        if not batch.get("task_id") and batch["state"] in ("planned", "creating"):
            # a task whose creation answer was lost exists without a recorded id: found by its
            # recorded name (it carries the run's nonce, so it can only be this batch's)
            for task in client.find_tasks(batch["name"]):
                client.delete_task(task["id"], missing_ok=True)
            continue
        if batch.get("task_id") and batch["state"] != "deleted":
            set_batch(store, key, batch["index"], state="deleting")
            client.delete_task(batch["task_id"], missing_ok=True)
            set_batch(store, key, batch["index"], state="deleted")
    project = run.get("project") or {}
    if project.get("created"):
        try:
            if not list(client.paginate("/api/tasks", project_id=project["id"])):
                client.delete_project(project["id"])
        except CVATError as e:
            log.warning("could not remove project %s: %s", project["id"], e)
