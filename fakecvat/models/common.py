"""Small rules shared by several models."""
from __future__ import annotations

from ..http import now
from ..store import Store
from . import events


def touch(store: Store, *, job_id=None, task_id=None, sender=None) -> None:
    """Bump ``updated_date`` on a job, its task and the task's project, and fire the update
    webhooks CVAT fires for annotation writes (``before_update`` holds only updated_date)."""
    with store.lock:
        stamp = now()
        if job_id is not None:
            job = store.get("jobs", job_id)
            if job:
                before = job["updated_date"]
                store.update("jobs", job_id, updated_date=stamp)
                task_id = job["task_id"]
                events.emit(store, "update:job", "job", job_id, {"updated_date": before}, sender)
        if task_id is not None:
            task = store.get("tasks", task_id)
            if task:
                before = task["updated_date"]
                store.update("tasks", task_id, updated_date=stamp)
                events.emit(store, "update:task", "task", task_id, {"updated_date": before}, sender)
                if task.get("project_id"):
                    project = store.get("projects", task["project_id"])
                    if project:
                        before = project["updated_date"]
                        store.update("projects", project["id"], updated_date=stamp)
                        events.emit(store, "update:project", "project", project["id"], {"updated_date": before}, sender)
