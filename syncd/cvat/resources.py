"""``CVATClient``: typed calls on CVAT resources (users, projects, labels, tasks, requests, jobs,
annotations, webhooks) on top of the ``Transport``.

Choices that come from what users of other clients ran into (reference/anchors.md §3):
- lists always walk ``next`` (default page size 10 silently truncated other clients);
- annotations are read per job, never as one giant task download (FiftyOne PR#4392);
- writes strip object ids, which CVAT ≥2.41 rejects on PUT and PATCH-create;
- waiting on background work polls with backoff and a deadline, and survives the request
  record expiring (404) by looking at the task itself.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote

from . import upload as _upload
from .answers import check_labeled_data
from .client import Transport
from .errors import CVATError

log = logging.getLogger("syncd.cvat")

ANNOTATION_KINDS = ("tags", "shapes", "tracks")


class CVATClient(Transport):
    """A CVAT 2.x REST client. See ``Transport`` for auth, retries and pagination."""

    # batch and TUS chunk sizes (bytes) for upload_data; instances may lower them
    upload_batch_bytes = _upload.BATCH_BYTES
    tus_chunk_bytes = _upload.TUS_CHUNK_BYTES
    # Upload-Multiple requests in flight at once (1: one after the other, like the official SDK)
    upload_parallel = _upload.PARALLEL

    # ---- users -------------------------------------------------------------------------------

    def current_user(self) -> dict:
        return self.call("GET", "/api/users/self")

    def user_id(self, username: str) -> int:
        """The id of the user named exactly ``username``. A non-admin sees only themselves
        outside an organization (CVAT's rule), so ask with an organization for others."""
        for user in self.paginate("/api/users", search=username):
            if user.get("username") == username:
                return int(user["id"])
        raise CVATError(f"CVAT user {username!r} not found at {self.url} (or not visible to "
                        f"{self.username or 'this token'}{' in ' + self.organization if self.organization else ''})",
                        status=404)

    # ---- projects / labels -----------------------------------------------------------------

    def find_project(self, name: str) -> dict | None:
        """The oldest project named exactly ``name``, or None."""
        found = [p for p in self.paginate("/api/projects", search=name) if p.get("name") == name]
        return min(found, key=lambda p: p["id"]) if found else None

    def create_project(self, name: str, labels: list[dict] | None = None, **fields) -> dict:
        body = {"name": name, "labels": list(labels or []), **_without_none(fields)}
        return self.call("POST", "/api/projects", json=body)

    def get_project(self, pid: int) -> dict:
        return self.call("GET", f"/api/projects/{int(pid)}")

    def delete_project(self, pid: int, missing_ok: bool = True) -> None:
        self._delete(f"/api/projects/{int(pid)}", missing_ok)

    def labels(self, *, task_id: int | None = None, project_id: int | None = None,
               job_id: int | None = None) -> list[dict]:
        given = {k: v for k, v in (("task_id", task_id), ("project_id", project_id), ("job_id", job_id))
                 if v is not None}
        if len(given) != 1:
            raise ValueError("labels() needs exactly one of task_id, project_id, job_id")
        return list(self.paginate("/api/labels", **given))

    def add_project_labels(self, pid: int, labels: list[dict]) -> dict:
        """PATCH semantics: items with ``id`` update, items without create, ``{"id", "deleted":
        true}`` deletes; labels not listed stay."""
        return self.call("PATCH", f"/api/projects/{int(pid)}", json={"labels": list(labels)})

    # ---- tasks ---------------------------------------------------------------------------------

    def create_task(self, name: str, *, labels: list[dict] | None = None, project_id: int | None = None,
                    segment_size: int | None = None, overlap: int | None = None,
                    assignee_id: int | None = None, bug_tracker: str | None = None,
                    subset: str | None = None, **fields) -> dict:
        if labels and project_id is not None:
            raise ValueError("a task takes labels or project_id, not both (its labels are the project's)")
        body = _without_none({"name": name, "project_id": project_id, "segment_size": segment_size,
                              "overlap": overlap, "assignee_id": assignee_id, "bug_tracker": bug_tracker,
                              "subset": subset, **fields})
        if project_id is None:
            body["labels"] = list(labels or [])
        return self.call("POST", "/api/tasks", json=body)

    def find_tasks(self, name: str) -> list[dict]:
        """Tasks named exactly ``name``, oldest first (``search=`` is a contains-match)."""
        found = [t for t in self.paginate("/api/tasks", search=name) if t.get("name") == name]
        return sorted(found, key=lambda t: t["id"])

    def get_task(self, tid: int) -> dict:
        return self.call("GET", f"/api/tasks/{int(tid)}")

    def delete_task(self, tid: int, missing_ok: bool = True) -> None:
        self._delete(f"/api/tasks/{int(tid)}", missing_ok)

    def upload_data(self, tid: int, files: list[Path], *, image_quality: int = 75,
                    sorting_method: str = "predefined", server_files: list[str] | None = None,
                    chunk_size: int | None = None, start_frame: int | None = None,
                    stop_frame: int | None = None, frame_step: int | None = None,
                    use_cache: bool = True, progress: Callable[[int, int], None] | None = None,
                    digests: dict | None = None) -> str:
        """Attach media to a task; returns the request id to pass to ``wait_task_ready``.
        ``files`` may also hold ``(name, path)`` pairs to choose the names CVAT shows.
        ``digests`` (a dict) receives {path: (content hash, stat fingerprint or None)} of the bytes
        each file sent (see ``syncd.fingerprint``)."""
        return _upload.upload_data(self, int(tid), files, image_quality=image_quality,
                                   sorting_method=sorting_method, server_files=server_files,
                                   chunk_size=chunk_size, start_frame=start_frame, stop_frame=stop_frame,
                                   frame_step=frame_step, use_cache=use_cache, progress=progress,
                                   batch_bytes=self.upload_batch_bytes, tus_chunk_bytes=self.tus_chunk_bytes,
                                   parallel=self.upload_parallel, digests=digests)

    def data_meta(self, tid: int) -> dict:
        return self.call("GET", f"/api/tasks/{int(tid)}/data/meta")

    # ---- background requests -------------------------------------------------------------------

    def wait_request(self, rq_id: str, *, timeout: float = 600, poll: float = 0.05) -> dict:
        """Poll ``/api/requests/{id}`` until finished (returned) or failed (``CVATError`` with
        CVAT's message). Task-creation records expire (404) after ~500 s: then the task itself
        says whether its data is in (size > 0 and jobs present)."""
        deadline = time.monotonic() + timeout
        delay = poll
        url = "/api/requests/" + quote(rq_id, safe="")
        task_id = _task_of(rq_id)
        while True:
            try:
                req = self.call("GET", url)
            except CVATError as e:
                if e.status != 404:
                    raise
                if task_id is not None and self._task_has_data(task_id, rq_id):
                    return {"id": rq_id, "status": "finished", "message": "", "result_id": None,
                            "note": "request record expired; task has data"}
                req = {"status": "unknown"}
            status = req.get("status")
            if status == "finished":
                return req
            if status == "failed":
                raise CVATError(f"CVAT request {rq_id} failed: {' '.join(str(req.get('message') or 'no message').split())}",
                                body=req)
            if time.monotonic() >= deadline:
                raise CVATError(f"CVAT request {rq_id} not finished after {timeout:g}s (last status {status!r})",
                                body=req)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 5.0)

    def wait_task_ready(self, tid: int, rq_id: str | None = None, timeout: float = 600) -> dict:
        """Wait until the task's data is processed: size > 0 and its jobs exist. Returns the task."""
        deadline = time.monotonic() + timeout
        if rq_id:
            self.wait_request(rq_id, timeout=timeout)
        delay = 0.2
        while True:
            task = self.get_task(tid)
            if task.get("size", 0) > 0 and self._jobs_count(task) > 0:
                return task
            if time.monotonic() >= deadline:
                raise CVATError(f"CVAT task {tid} has no data/jobs after {timeout:g}s", body=task)
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _task_has_data(self, tid: int, rq_id: str) -> bool:
        try:
            task = self.get_task(tid)
        except CVATError as e:
            if e.status == 404:
                raise CVATError(f"CVAT request {rq_id} is unknown and task {tid} does not exist",
                                status=404, url=e.url, method="GET", body=e.body) from None
            raise
        return task.get("size", 0) > 0 and self._jobs_count(task) > 0

    def _jobs_count(self, task: dict) -> int:
        jobs = task.get("jobs")
        if isinstance(jobs, dict) and "count" in jobs:
            return int(jobs["count"] or 0)
        return len(self.jobs(task["id"]))

    # ---- jobs ------------------------------------------------------------------------------------

    def jobs(self, task_id: int) -> list[dict]:
        """Every job of the task (ground-truth ones included; check ``type``), by start frame."""
        jobs = list(self.paginate("/api/jobs", task_id=int(task_id)))
        return sorted(jobs, key=lambda j: (j.get("start_frame", 0), j["id"]))

    def get_job(self, jid: int) -> dict:
        return self.call("GET", f"/api/jobs/{int(jid)}")

    def update_job(self, jid: int, **fields) -> dict:
        """PATCH a job: ``assignee`` (a user id, or None to unassign), ``stage``, ``state``.
        Setting fields to given values is idempotent, so this call is retried like a GET."""
        if "assignee_id" in fields:  # CVAT calls the writable field ``assignee``
            fields["assignee"] = fields.pop("assignee_id")
        return self.call("PATCH", f"/api/jobs/{int(jid)}", json=fields, idempotent=True)

    # ---- annotations ------------------------------------------------------------------------------

    def job_annotations(self, jid: int) -> dict:
        path = f"/api/jobs/{int(jid)}/annotations"
        return check_labeled_data(self.call("GET", path), f"GET {path}")

    def task_annotations(self, tid: int) -> dict:
        """A task's annotations read job by job and merged. Objects repeated in the frames of
        overlapping jobs are kept once (same frame, label, type and geometry)."""
        merged: dict = {"version": 0, "tags": [], "shapes": [], "tracks": []}
        seen: set = set()
        for job in self.jobs(tid):
            if job.get("type", "annotation") != "annotation":
                continue
            data = self.job_annotations(job["id"])
            for kind in ANNOTATION_KINDS:
                for obj in data.get(kind, []):
                    key = (kind, _identity(obj))
                    if key in seen:
                        continue
                    seen.add(key)
                    merged[kind].append(obj)
        return merged

    def put_task_annotations(self, tid: int, data: dict, *, settle: bool = False) -> dict | None:
        """Replace every annotation of the task (CVAT splits it by job). Ids are stripped.

        ``settle``: for a write made before annotators may start. An attempt that timed out
        or lost its answer may still be running on the server and land after our retry did
        (fakecvat's fault campaign caught one landing 0.4 s later): harmless then, it carries
        the same body, but once jobs are assigned it would wipe what annotators drew. So after
        such a retry, wait one read timeout for stragglers and PUT again (up to 3 times)."""
        path, body = f"/api/tasks/{int(tid)}/annotations", strip_ids(data)
        for _ in range(3):
            resp = self.request("PUT", path, json=body)
            if not (settle and resp.unanswered):
                break
            log.warning("CVAT PUT %s: an earlier attempt went unanswered; waiting %.1fs for it "
                        "before writing again", path, self.read_timeout)
            resp.close()
            self._sleep(self.read_timeout)
        return self.decode(resp)

    def put_job_annotations(self, jid: int, data: dict) -> dict | None:
        """Replace every annotation of the job. Ids are stripped (CVAT ≥2.41 rejects them)."""
        return self.call("PUT", f"/api/jobs/{int(jid)}/annotations", json=strip_ids(data))

    def patch_job_annotations(self, jid: int, action: str, data: dict) -> dict | None:
        """``action``: create (ids stripped; not retried on ambiguous failures, it would
        duplicate), update (keeps ids), delete (needs ids)."""
        if action not in ("create", "update", "delete"):
            raise ValueError(f"action must be create, update or delete, not {action!r}")
        body = strip_ids(data) if action == "create" else _labeled(data)
        return self.call("PATCH", f"/api/jobs/{int(jid)}/annotations", params={"action": action}, json=body,
                         idempotent=action != "create")

    # ---- webhooks ---------------------------------------------------------------------------------

    def create_webhook(self, target_url: str, *, project_id: int | None = None, organization: bool = False,
                       events=("update:job",), secret: str | None = None, description: str = "",
                       enable_ssl: bool = True) -> dict:
        if organization == (project_id is not None):
            raise ValueError("a webhook is either for a project (project_id=...) or for the organization")
        body = {"target_url": target_url, "type": "organization" if organization else "project",
                "events": list(events), "content_type": "application/json", "description": description,
                "enable_ssl": enable_ssl, "is_active": True}
        if project_id is not None:
            body["project_id"] = int(project_id)
        if secret:
            body["secret"] = secret
        return self.call("POST", "/api/webhooks", json=body)

    def list_webhooks(self, **filters) -> list[dict]:
        return list(self.paginate("/api/webhooks", **filters))

    def delete_webhook(self, webhook_id: int, missing_ok: bool = True) -> None:
        self._delete(f"/api/webhooks/{int(webhook_id)}", missing_ok)

    # ---- UI ----------------------------------------------------------------------------------------

    def editor_url(self, task_id: int, job_id: int | None = None) -> str:
        url = f"{self.url}/tasks/{int(task_id)}"
        return url + (f"/jobs/{int(job_id)}" if job_id is not None else "")

    # ---- helpers -------------------------------------------------------------------------------------

    def _delete(self, path: str, missing_ok: bool) -> None:
        try:
            self.request("DELETE", path)
        except CVATError as e:
            # a retried DELETE whose first attempt went through also ends here with 404
            if not (missing_ok and e.status == 404):
                raise


def strip_ids(data: dict) -> dict:
    """A LabeledData copy without object ids (tags, shapes, tracks, their shapes and elements)."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if k != "id"}
        if isinstance(obj, list):
            return [clean(x) for x in obj]
        return obj

    out = _labeled(data)
    for kind in ANNOTATION_KINDS:
        out[kind] = [{k: clean(v) if k in ("shapes", "elements") else v for k, v in obj.items() if k != "id"}
                     for obj in out[kind]]
    return out


def _labeled(data: dict) -> dict:
    out = {"version": data.get("version", 0)}
    for kind in ANNOTATION_KINDS:
        out[kind] = list(data.get(kind) or [])
    return out


def _identity(obj: dict) -> str:
    """What makes two objects from overlapping jobs the same object: everything but ids."""
    return json.dumps(strip_ids({"shapes": [obj]})["shapes"][0], sort_keys=True, default=str)


def _task_of(rq_id: str) -> int | None:
    """The task id inside a task-creation request id (``action=create&target=task&target_id=5``)."""
    q = parse_qs(rq_id)
    if q.get("action") == ["create"] and q.get("target") == ["task"]:
        try:
            return int(q["target_id"][0])
        except (KeyError, ValueError):
            return None
    return None


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
