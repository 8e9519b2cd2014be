"""``/api/jobs``: list, read, PATCH (stage/state/assignee), frames and meta; plus the control
helper ``POST /_fakecvat/jobs/{id}/complete`` (an annotator finishing a job)."""
from __future__ import annotations

from flask import Blueprint, current_app, request

from ..control import bp as control_bp
from ..errors import NotImplementedByFake, ValidationError
from ..http import base_url, body_dict, current_user, list_response, org_context, respond
from ..models import access, frames, jobs, orgs, requests
from .taskdata import serve_data

bp = Blueprint("jobs", __name__)

JOB_FILTERS = ("task_id", "project_id", "task_name", "project_name", "assignee", "state", "stage", "type",
               "dimension", "parent_job_id", "id")
JOB_SEARCH = ("task_name", "project_name", "assignee", "state", "stage")


def store():
    return current_app.config["STORE"]


def visible_job(job_id: int) -> dict:
    s = store()
    job = jobs.get_job(s, job_id)
    requests.settle_due(s, lambda d: d["operation"].get("task_id") == job["task_id"])
    access.require(access.can_view_job(s, current_user(), job))
    return job


@bp.get("/api/jobs")
def list_jobs():
    s = store()
    requests.settle_due(s)
    user = current_user()
    ctx = org_context()
    orgs.require_member(s, user, ctx)
    rows = [j for j in s.all("jobs")
            if ctx.matches(orgs.org_of_object(s, "jobs", j)) and access.can_view_job(s, user, j)]
    base = base_url()
    return list_response(rows, lambda j: jobs.serialize_job(s, j, base, user), fields=lambda j: jobs.list_fields(s, j),
                         simple_filters=JOB_FILTERS, search_fields=JOB_SEARCH)


@bp.post("/api/jobs")
def create_job():
    raise NotImplementedByFake("POST", request.path + " (ground truth jobs)")


@bp.get("/api/jobs/<int:job_id>")
def get_job(job_id: int):
    return respond(jobs.serialize_job(store(), visible_job(job_id), base_url(), current_user()))


@bp.patch("/api/jobs/<int:job_id>")
def patch_job(job_id: int):
    job = jobs.patch_job(store(), current_user(), visible_job(job_id), body_dict())
    return respond(jobs.serialize_job(store(), job, base_url(), current_user()))


@bp.delete("/api/jobs/<int:job_id>")
def delete_job(job_id: int):
    job = visible_job(job_id)
    if job["type"] != "ground_truth":
        raise ValidationError(["Only ground truth jobs can be removed"])
    raise NotImplementedByFake("DELETE", request.path)


@bp.get("/api/jobs/<int:job_id>/data/meta")
def job_meta(job_id: int):
    job = visible_job(job_id)
    return respond(frames.meta(store(), store().get("tasks", job["task_id"]), job))


@bp.get("/api/jobs/<int:job_id>/data")
def job_data(job_id: int):
    job = visible_job(job_id)
    task = store().get("tasks", job["task_id"])
    return serve_data(task, job["start_frame"], job["stop_frame"], job_chunks=True)


@control_bp.post("/_fakecvat/jobs/<int:job_id>/complete")
def complete_job(job_id: int):
    """Test helper: the job's annotator finishes (stage acceptance, state completed)."""
    s = store()
    job = jobs.complete_job(s, jobs.get_job(s, job_id))
    return respond(jobs.serialize_job(s, job, base_url()))
