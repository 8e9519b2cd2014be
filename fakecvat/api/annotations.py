"""``/api/{jobs,tasks}/{id}/annotations`` (GET/PUT/PATCH/DELETE, file import by multipart or TUS)
and ``/api/{tasks,jobs,projects}/{id}/dataset/export`` + ``/dataset/download`` (cvat-api.md §8-9).

Handlers load the object, check access, call :mod:`fakecvat.models.annotations`, and encode the
answer once. Exports and imports are background requests (:mod:`fakecvat.models.requests`);
the work itself is in :mod:`fakecvat.models.dataset_io`.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_file

from .. import jsonenc
from ..errors import APIError, Conflict, Gone, NotFound, ValidationError, not_found
from ..formats import EXPORTERS, IMPORTERS
from ..http import CVAT_JSON, base_url, body, current_user
from ..models import access, annotations as A, dataset_io, requests, uploads

bp = Blueprint("annotations", __name__)

LEGACY_GET = ("format", "filename", "action", "location", "cloud_storage_id")
LEGACY_MSG = ("This endpoint is no longer supported since CVAT 2.32: use "
              "POST /api/{target}/{id}/dataset/export and GET /api/requests/{{rq_id}} instead")


def store():
    return current_app.config["STORE"]


def _json(obj, status=200) -> Response:
    return Response(jsonenc.dumps(obj), status=status, mimetype=CVAT_JSON)


# ---- loading with access ------------------------------------------------------------------------

def load_task(task_id: int) -> dict:
    s = store()
    requests.settle_due(s, lambda d: d["operation"].get("task_id") == task_id)
    task = s.get("tasks", task_id)
    if task is None:
        raise not_found("Task")
    access.require(access.can_change_task(s, current_user(), task))
    return task


def load_job(job_id: int) -> tuple[dict, dict]:
    s = store()
    job = s.get("jobs", job_id)
    if job is None:
        raise not_found("Job")
    requests.settle_due(s, lambda d: d["operation"].get("task_id") == job["task_id"])
    access.require(access.can_view_job(s, current_user(), job))
    return job, s.get("tasks", job["task_id"])


def _action() -> str:
    action = request.args.get("action")
    if action not in A.ACTIONS:
        raise ValidationError(["Please specify a correct 'action' for the request"])
    return action


# ---- job and task level (the same semantics, CVAT routes both) -------------------------------

@bp.route("/api/jobs/<int:job_id>/annotations", methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
def job_annotations(job_id: int):
    job, task = load_job(job_id)
    return _annotations("jobs", job_id, task, job, job, A.get_job, A.put_job, A.patch_job, A.delete_job)


@bp.route("/api/tasks/<int:task_id>/annotations", methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
def task_annotations(task_id: int):
    task = load_task(task_id)
    return _annotations("tasks", task_id, task, None, task, A.get_task, A.put_task, A.patch_task, A.delete_task)


def _annotations(target: str, obj_id: int, task: dict, job: dict | None, obj: dict, get, put, patch, delete):
    """One handler for ``/api/{jobs,tasks}/{id}/annotations``: ``obj`` is the job or the task,
    the four functions its model operations."""
    s, user = store(), current_user()
    legacy = {"GET": LEGACY_GET, "PUT": ("format", "rq_id")}.get(request.method, ())
    if any(k in request.args for k in legacy):
        raise Gone(LEGACY_MSG.format(target=target, id=obj_id))
    A.require_data(task)
    if request.method == "POST":
        return _import(task, job)
    idx = A.label_index(s, task)
    if request.method == "GET":
        return _json(get(s, obj, idx))
    if request.method == "PUT":
        return _json(put(s, obj, body(), idx, sender=user))
    if request.method == "PATCH":
        return _json(patch(s, obj, _action(), body(), idx, sender=user))
    delete(s, obj, sender=user)
    return Response(status=204)


# ---- import (multipart or TUS) ------------------------------------------------------------------

def _tus(resp: Response) -> Response:
    for k, v in uploads.TUS_HEADERS.items():
        resp.headers[k] = v
    return resp


def _scope(target: str, obj_id: int) -> str:
    return f"annotations:{target}:{obj_id}"


def _upload_dir(target: str, obj_id: int) -> Path:
    return Path(current_app.config["MEDIA_DIR"]) / "imports" / f"{target}_{obj_id}"


def _import(task: dict, job: dict | None) -> Response:
    target, obj_id = ("job", job["id"]) if job else ("task", task["id"])
    s, user, h = store(), current_user(), request.headers
    base = f"/api/{target}s/{obj_id}/annotations"
    scope, dest = _scope(target, obj_id), _upload_dir(target, obj_id)
    if "Upload-Start" in h and "Upload-Finish" not in h:
        uploads.drop_scope(s, scope)
        return Response(status=202)
    if "Upload-Length" in h and "Upload-Finish" not in h:
        doc = uploads.tus_create(s, owner=user, scope=scope, dest_dir=dest, length=h.get("Upload-Length"),
                                 metadata=h.get("Upload-Metadata"))
        resp = Response(status=201)
        resp.headers["Location"] = base_url() + f"{base}/{doc['id']}"
        resp.headers["Upload-Filename"] = doc["filename"]
        return _tus(resp)
    fmt = request.args.get("format")
    if not fmt:
        raise ValidationError(["Format is not specified"])
    if fmt not in IMPORTERS:
        raise ValidationError([f"Unknown input format '{fmt}'"])
    rq_id = dataset_io.import_rq_id(target, obj_id)
    if requests.active(s.get(requests.TABLE, rq_id)):
        raise Conflict({"rq_id": rq_id})
    if "Upload-Finish" in h:
        name = uploads.safe_name(request.args.get("filename"), "filename")
        path = dest / name
        if not path.is_file():
            raise ValidationError([f"No such file were uploaded: {name}"])
    else:
        f = request.files.get("annotation_file")
        if f is None:
            raise ValidationError({"annotation_file": ["No file was submitted."]})
        path = dest / f"{uuid.uuid4().hex}-{uploads.safe_name(f.filename, 'annotation_file')}"
        dest.mkdir(parents=True, exist_ok=True)
        f.save(str(path))
    uploads.drop_scope(s, scope)
    dataset_io.start_import(s, user=user, task=task, job=job, fmt=fmt, path=path, rq_id=rq_id,
                            policy=current_app.config["ASYNC"])
    return _json({"rq_id": rq_id}, 202)


def _tus_session(target: str, obj_id: int, file_id: str) -> dict:
    return uploads.tus_get(store(), file_id, current_user(), _scope(target, obj_id))


@bp.route("/api/tasks/<int:task_id>/annotations/<file_id>", methods=["HEAD", "PATCH"])
def task_tus(task_id: int, file_id: str):
    load_task(task_id)
    return _tus_chunk("task", task_id, file_id)


@bp.route("/api/jobs/<int:job_id>/annotations/<file_id>", methods=["HEAD", "PATCH"])
def job_tus(job_id: int, file_id: str):
    load_job(job_id)
    return _tus_chunk("job", job_id, file_id)


def _tus_chunk(target: str, obj_id: int, file_id: str) -> Response:
    if request.method == "HEAD":
        doc = _tus_session(target, obj_id, file_id)
        resp = Response(status=200)
        resp.headers["Upload-Length"] = str(doc["length"])
        resp.headers["Cache-Control"] = "no-store"
    else:
        doc = uploads.tus_patch(store(), file_id, current_user(), _scope(target, obj_id),
                                request.headers.get("Upload-Offset"), request.get_data())
        resp = Response(status=204)
    resp.headers["Upload-Offset"] = str(doc["offset"])
    return _tus(resp)


# ---- export -------------------------------------------------------------------------------------

def _export(target: str, obj_id: int, task: dict | None, job: dict | None, project: dict | None) -> Response:
    s, user = store(), current_user()
    fmt = request.args.get("format")
    if not fmt or fmt not in EXPORTERS:
        if fmt in dataset_io.KNOWN_UNSUPPORTED:
            raise APIError({"detail": f"Format {fmt} is disabled"}, status=405)
        raise ValidationError(["Unknown format specified for the request"])
    location = request.args.get("location", "local")
    if location not in ("local", "cloud_storage"):
        raise ValidationError({"location": [f'"{location}" is not a valid choice.']})
    if location == "cloud_storage":
        raise APIError({"detail": "fakecvat does not implement exports to cloud storage"}, status=501)
    save_images = request.args.get("save_images", "false").strip().lower() in ("1", "true", "yes")
    rq_id = dataset_io.export_rq_id(target, obj_id, user["id"], fmt, save_images)
    if requests.active(s.get(requests.TABLE, rq_id)):
        raise Conflict({"rq_id": rq_id})
    dataset_io.start_export(s, user=user, target=target, task=task, job=job, project=project, fmt=fmt,
                            save_images=save_images, rq_id=rq_id, host=base_url(),
                            out_dir=Path(current_app.config["MEDIA_DIR"]) / "exports",
                            filename=request.args.get("filename"), policy=current_app.config["ASYNC"])
    return _json({"rq_id": rq_id}, 202)


@bp.post("/api/tasks/<int:task_id>/dataset/export")
def export_task(task_id: int):
    task = load_task(task_id)
    A.require_data(task)
    return _export("task", task_id, task, None, None)


@bp.post("/api/jobs/<int:job_id>/dataset/export")
def export_job(job_id: int):
    job, task = load_job(job_id)
    A.require_data(task)
    return _export("job", job_id, task, job, None)


@bp.post("/api/projects/<int:project_id>/dataset/export")
def export_project(project_id: int):
    s = store()
    project = s.get("projects", project_id)
    if project is None:
        raise not_found("Project")
    access.require(access.can_view_project(s, current_user(), project))
    return _export("project", project_id, None, None, project)


def _download(target: str, obj_id: int) -> Response:
    s, user = store(), current_user()
    rq_id = request.args.get("rq_id")
    if not rq_id:
        raise ValidationError({"rq_id": ["This field is required."]})
    doc = requests.get_request(s, rq_id)
    if doc is None or doc["operation"].get("target") != target or \
            doc["operation"].get(f"{target}_id") != obj_id or not doc["operation"]["type"].startswith("export"):
        raise NotFound("Unknown export request id")
    if doc["owner_id"] != user["id"]:
        access.require(False)
    if doc["status"] != "finished":
        raise ValidationError(["The export process has not finished"])
    path = dataset_io.result_path(doc)
    if path is None or not path.is_file():
        raise NotFound("The export result has expired")
    return send_file(str(path), mimetype="application/zip", as_attachment=True,
                     download_name=dataset_io.result_name(doc))


@bp.get("/api/tasks/<int:task_id>/dataset/download")
def download_task(task_id: int):
    load_task(task_id)
    return _download("task", task_id)


@bp.get("/api/jobs/<int:job_id>/dataset/download")
def download_job(job_id: int):
    load_job(job_id)
    return _download("job", job_id)


@bp.get("/api/projects/<int:project_id>/dataset/download")
def download_project(project_id: int):
    s = store()
    project = s.get("projects", project_id)
    if project is None:
        raise not_found("Project")
    access.require(access.can_view_project(s, current_user(), project))
    return _download("project", project_id)


# ---- annotator helper (control plane, not CVAT) -------------------------------------------------

from .. import control  # noqa: E402  (the control blueprint collects resource helpers)
from ..models import annotator, users as users_model  # noqa: E402


@control.bp.post("/_fakecvat/jobs/<int:job_id>/annotations")
def annotator_write(job_id: int):
    """Write shapes by label/attribute names as an annotator would (see models/annotator.py)."""
    s = store()
    job = s.get("jobs", job_id)
    if job is None:
        raise not_found("Job")
    task = s.get("tasks", job["task_id"])
    A.require_data(task)
    data = body()
    if not isinstance(data, dict):
        raise ValidationError(["Expected a JSON object"])
    who = data.get("user")
    user = users_model.by_username(s, who) if who else (s.get("users", job["assignee_id"]) if job.get("assignee_id") else None)
    if who and user is None:
        raise ValidationError({"user": [f"unknown user '{who}'"]})
    idx = A.label_index(s, task)
    labeled = annotator.to_labeled_data(data, idx)
    mode = data.get("mode", "create")
    if mode == "replace":
        return _json(A.put_job(s, job, labeled, idx, sender=user), 200)
    if mode != "create":
        raise ValidationError({"mode": ["must be 'create' or 'replace'"]})
    return _json(A.patch_job(s, job, "create", labeled, idx, sender=user), 201)
