"""The Python API for one-shot runs, mirroring FiftyOne's annotate() / load_annotations() /
print_status(), on a dataset directory instead of a MongoDB dataset.

    import syncd
    syncd.annotate("data/", "fix-boxes", tag="requires_annotation", label_field="ground_truth",
                   label_type="detections", classes=["person", "vehicle"], segment_size=25)
    ...  # annotators work in CVAT
    syncd.load_annotations("data/", "fix-boxes", cleanup=True)

Credentials come from the environment (CVAT_USERNAME/CVAT_PASSWORD or CVAT_TOKEN, also
FIFTYONE_CVAT_*) or an explicit ``client=``; they are never stored with the run. Unlike FiftyOne,
the CVAT url a run was made with is remembered, so loading in a new process does not silently
switch servers.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from . import dataset, ops
from .cvat import CVATClient, CVATError, client_from_env
from .errors import SyncdError
from .runs import RunStore


def _client(url: str | None, client: CVATClient | None, organization: str | None = None) -> CVATClient:
    if client is not None:
        if organization and (client.organization or "") != organization:
            # the run would silently land outside the organization it names
            raise SyncdError(f"organization {organization!r} differs from the given client's "
                             f"({client.organization!r}): make the client with organization={organization!r}")
        return client
    return client_from_env(url, organization=organization) if organization else client_from_env(url)


@contextmanager
def _connected(url: str | None, client: CVATClient | None, organization: str | None = None):
    """The given client, or one made from the environment and closed afterwards (a notebook
    calling the API all day must not pile up sessions)."""
    cvat = _client(url, client, organization)
    try:
        yield cvat
    finally:
        if client is None:
            cvat.close()


@contextmanager
def _explained(cvat: CVATClient, hint: str = ""):
    """A CVAT call that got no answer at all (refused, unreachable host, timeout) says so and
    names the server, instead of surfacing the HTTP library's internals. ``hint`` (what to do
    next) is added to any CVAT failure."""
    try:
        yield
    except CVATError as e:
        if e.status is None:
            msg = f"no answer from CVAT at {cvat.url}: {e}{hint}"
        elif hint:
            msg = f"{e}{hint}"
        else:
            raise
        raise CVATError(msg, status=e.status, url=e.url, method=e.method, body=e.body,
                        maybe_applied=e.maybe_applied) from None


def _select(root, samples: Iterable[str] | None, tag: str | None) -> tuple[list[str], dict[str, dict]]:
    """The chosen media paths, and the sample files read to choose them (by path): planning
    uses those instead of reading and parsing every sample file a second time."""
    if samples is not None and tag is not None:
        raise SyncdError("give either samples or tag, not both")
    if samples is not None:
        return [str(s) for s in samples], {}
    if tag is None:
        raise SyncdError("nothing selected: give sample paths or a tag")
    chosen, docs = [], {}
    for rel in dataset.discover(root):
        try:
            doc = dataset.read_discovered(root, rel)
        except Exception:
            continue
        if tag in (doc.get("tags") or []):
            chosen.append(rel)
            docs[rel] = doc
    if not chosen:
        raise SyncdError(f"no sample under {root} carries the tag '{tag}'")
    return chosen, docs


def annotate(root, key: str, samples: Iterable[str] | None = None, *, tag: str | None = None,
             url: str | None = None, client: CVATClient | None = None, launch_editor: bool = False,
             progress=None, **options) -> dict:
    """Send samples (paths relative to ``root``, or every sample carrying ``tag``) to CVAT.

    ``options`` are those of :func:`syncd.ops.plan_run`: label_schema or label_field/label_type/
    classes/attributes/mask_targets, segment_size, task_size, task_assignee, job_assignees,
    job_reviewers, project_name/project_id, organization, image_quality, allow_* flags.
    Returns ``{"key", "tasks": [ids], "jobs": {task: [ids]}, "editor_url", "skipped": {...}}``.
    If an upload fails midway, the run stays recorded: calling :func:`resume` (or annotate's CLI
    again with ``--resume``) reuses the tasks already made instead of making new ones.
    """
    root = str(root)
    rels, docs = _select(root, samples, tag)
    with _connected(url, client, options.get("organization")) as cvat:
        login = cvat.log_in_ahead()  # while the samples are checked and the run is recorded
        try:
            ops.plan_run(root, key, rels, url=cvat.url, sample_docs=docs, **options)
        finally:
            if login is not None:
                login.join()
        return resume(root, key, client=cvat, launch_editor=launch_editor, progress=progress)


def resume(root, key: str, *, url: str | None = None, client: CVATClient | None = None,
           launch_editor: bool = False, progress=None) -> dict:
    """Finish uploading a run (after a failure or a crash); a no-op for runs already uploaded."""
    store = RunStore(root)
    run = store.get(key)
    with _connected(url or run["config"].get("url"), client, run["config"].get("organization")) as cvat:
        with _explained(cvat, f"; run '{key}' is recorded: finish it with `syncd annotate {root} {key} --resume`"):
            run = ops.upload_run(cvat, root, key, store=store, progress=progress)
        tasks = [b["task_id"] for b in run["batches"]]
        result = {"key": key, "tasks": tasks, "jobs": {b["task_id"]: b["jobs"] for b in run["batches"]},
                  "editor_url": cvat.editor_url(tasks[0]) if tasks else None, "skipped": run.get("skipped", {})}
    if launch_editor and result["editor_url"]:
        import webbrowser
        webbrowser.open(result["editor_url"])
    return result


def load_annotations(root, key: str, *, cleanup: bool = False, unexpected: str = "keep", dest_field=None,
                     url: str | None = None, client: CVATClient | None = None, progress=None) -> dict:
    """Download the run's labels per job and merge them into the sample files (FiftyOne's
    merge rules); delete the CVAT tasks when ``cleanup``."""
    store = RunStore(root)
    run = store.get(key)
    with _connected(url or run["config"].get("url"), client, run["config"].get("organization")) as cvat:
        with _explained(cvat):
            return ops.load_run(cvat, root, key, cleanup=cleanup, unexpected=unexpected, dest_field=dest_field,
                                store=store, progress=progress)


def list_runs(root) -> list[dict]:
    """Every run of the directory: key, status, created, tasks, samples."""
    out = []
    for run in RunStore(root).list():
        out.append({"key": run["key"], "status": run.get("status"), "created": run.get("created"),
                    "rule": run.get("config", {}).get("rule"),
                    "fields": sorted(run.get("config", {}).get("schema", {})),
                    "tasks": [b.get("task_id") for b in run.get("batches", [])],
                    "samples": len(run.get("samples", [])), "flagged": run.get("flagged", {})})
    return out


def rename_run(root, key: str, new_key: str) -> None:
    RunStore(root).rename(key, new_key)


def delete_run(root, key: str, *, cleanup: bool = False, url: str | None = None,
               client: CVATClient | None = None) -> None:
    """Forget a run; with ``cleanup`` also delete its CVAT tasks. Labels already merged stay."""
    store = RunStore(root)
    run = store.get(key)
    if cleanup:
        with _connected(url or run["config"].get("url"), client, run["config"].get("organization")) as cvat:
            with _explained(cvat):
                ops.cleanup_run(cvat, root, key, store=store)
    store.delete(key)


def status(root, key: str | None = None, *, url: str | None = None, client: CVATClient | None = None) -> list[dict]:
    """FiftyOne's ``get_status()`` for every run (or one): per run, per task, the task's status,
    assignee, last update, editor URL, and every job's status, stage, state and assignee.
    CVAT being unreachable is reported in the result, not raised."""
    store = RunStore(root)
    chosen = [store.get(key)] if key else store.list()
    out = []
    cvat = None
    for run in chosen:
        entry = {"key": run["key"], "status": run.get("status"), "created": run.get("created"),
                 "rule": run["config"].get("rule"), "fields": sorted(run["config"].get("schema", {})),
                 "flagged": run.get("flagged", {}), "skipped": run.get("skipped", {}), "tasks": []}
        for batch in run.get("batches", []):
            t = {"id": batch.get("task_id"), "name": batch["name"], "state": batch["state"],
                 "samples": len(batch["samples"]), "jobs": []}
            if batch.get("task_id") and batch["state"] not in ("deleted", "lost"):
                try:
                    cvat = cvat or _client(url or run["config"].get("url"), client, run["config"].get("organization"))
                    task = cvat.get_task(batch["task_id"])
                    t.update(status=task.get("status"), assignee=_username(task.get("assignee")),
                             updated=task.get("updated_date"), url=cvat.editor_url(batch["task_id"]))
                    for job in cvat.jobs(batch["task_id"]):
                        t["jobs"].append({"id": job["id"], "status": job.get("status"), "stage": job.get("stage"),
                                          "state": job.get("state"), "assignee": _username(job.get("assignee")),
                                          "reviewer": None, "frames": [job["start_frame"], job["stop_frame"]],
                                          "updated": job.get("updated_date"),
                                          "url": cvat.editor_url(batch["task_id"], job["id"])})
                except (CVATError, SyncdError) as e:
                    t["error"] = str(e)
            entry["tasks"].append(t)
        out.append(entry)
    if cvat is not None and client is None:
        cvat.close()
    return out


def _username(user) -> str | None:
    return user.get("username") if isinstance(user, dict) else None


def format_status(report: list[dict]) -> str:
    """The text of ``syncd status``: FiftyOne's print_status() layout, for the whole directory."""
    lines = []
    for run in report:
        lines.append(f"Run '{run['key']}' ({run['status']}), fields: {', '.join(run['fields']) or '-'}")
        for t in run["tasks"]:
            lines.append(f"    Task {t['id']} ({t['name']}):")
            if "error" in t:
                lines.append(f"        Error: {t['error']}")
                continue
            lines.append(f"        Status: {t.get('status', t['state'])}")
            lines.append(f"        Assignee: {t.get('assignee')}")
            lines.append(f"        Last updated: {t.get('updated')}")
            if t.get("url"):
                lines.append(f"        URL: {t['url']}")
            for j in t["jobs"]:
                lines.append(f"        Job {j['id']} (frames {j['frames'][0]}-{j['frames'][1]}):")
                lines.append(f"            Status: {j['status']} (stage {j['stage']}, state {j['state']})")
                lines.append(f"            Assignee: {j['assignee']}")
                lines.append(f"            Reviewer: {j['reviewer']}")
        for rel, why in run.get("flagged", {}).items():
            lines.append(f"    FLAGGED {rel}: {why}")
        for rel, why in run.get("skipped", {}).items():
            lines.append(f"    skipped {rel}: {why}")
    return "\n".join(lines) if lines else "no runs"


def tag(root, paths: Iterable[str], *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> int:
    """Add/remove tags on samples (paths of media, relative to root or absolute below it)."""
    n = 0
    base = Path(root).resolve()
    for p in paths:
        p = Path(p)
        # A path that exists as given (absolute, or relative to the working directory) is taken
        # as such; anything else is relative to the root.
        if p.exists() and base in p.resolve().parents:
            rel = p.resolve().relative_to(base).as_posix()
        else:
            rel = p.as_posix()
        dataset.set_tags(root, rel, add=add, remove=remove)
        n += 1
    return n
