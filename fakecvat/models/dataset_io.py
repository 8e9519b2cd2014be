"""Exports and imports in file formats, as background requests (cvat-api.md §9).

- ``start_export``: a request ``action=export&target=task&target_id=5&user_id=1&format=...``
  whose work renders the format (:mod:`fakecvat.formats`) into a zip under the media dir and
  sets an absolute ``result_url`` (``.../dataset/download?rq_id=<quoted id>``);
- ``start_import``: a request ``action=import&target=task&target_id=5&subresource=annotations``
  whose work parses the uploaded file and *replaces* the target's annotations; a file CVAT
  would refuse fails the request with the reason as ``message``.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..errors import APIError
from ..formats import EXPORTERS, IMPORTERS, ExportContext, Frame, FormatError
from ..store import Store
from . import annotations as A, labels as labels_model, requests

# Formats CVAT lists that fakecvat does not render: 405 like a disabled format, not 400.
KNOWN_UNSUPPORTED = {
    "COCO Keypoints 1.0", "Datumaro 1.0", "PASCAL VOC 1.1", "YOLO 1.1", "Ultralytics YOLO Detection 1.0",
    "Segmentation mask 1.1", "MOT 1.1", "LabelMe 3.0", "ImageNet 1.0", "CamVid 1.0", "WiderFace 1.0",
    "VGGFace2 1.0", "Market-1501 1.0", "ICDAR Recognition 1.0", "Open Images V6 1.0", "Cityscapes 1.0",
    "KITTI 1.0", "LFW 1.0", "MOTS PNG 1.0", "TFRecord 1.0", "Datumaro 3D 1.0", "Sly Point Cloud Format 1.0",
    "Kitti Raw Format 1.0",
}


def _fmt_key(fmt: str) -> str:
    return fmt.replace(" ", "_").replace(".", "~")


def export_rq_id(target: str, obj_id: int, user_id: int, fmt: str, save_images: bool) -> str:
    sub = "dataset" if save_images else "annotations"
    return f"action=export&target={target}&target_id={obj_id}&user_id={user_id}&format={_fmt_key(fmt)}&subresource={sub}"


def import_rq_id(target: str, obj_id: int) -> str:
    return f"action=import&target={target}&target_id={obj_id}&subresource=annotations"


def result_path(doc: dict) -> Path | None:
    p = doc.get("_result_path")
    return Path(p) if p else None


def result_name(doc: dict) -> str:
    return doc.get("_result_name") or "export.zip"


# ---- export context ------------------------------------------------------------------------------

def task_frames(task: dict, lo: int | None = None, hi: int | None = None) -> list[Frame]:
    data = task.get("data") or {}
    size = task.get("size") or 0
    lo = 0 if lo is None else lo
    hi = size - 1 if hi is None else min(hi, size - 1)
    if data.get("video"):
        v = data["video"]
        w, h = v.get("width") or 0, v.get("height") or 0
        return [Frame(n, f"frame_{n:06d}", w, h, None) for n in range(lo, hi + 1)]
    frames = data.get("frames") or []
    return [Frame(n, frames[n]["name"], frames[n]["width"], frames[n]["height"], frames[n].get("path"))
            for n in range(lo, min(hi, len(frames) - 1) + 1)]


def _users(store: Store) -> dict:
    return {u["id"]: u for u in store.all("users")}


def context(store: Store, *, target: str, task: dict, job: dict | None, host: str) -> ExportContext:
    jobs = A.annotation_jobs(store, task["id"])
    lbls = sorted(labels_model.all_labels_of_task(store, task), key=lambda lb: lb["id"])
    frames = task_frames(task, job["start_frame"], job["stop_frame"]) if job else task_frames(task)
    stop = job["stop_frame"] if job else max((task.get("size") or 1) - 1, 0)
    return ExportContext(target=target, task=task, labels=lbls, frames=frames, host=host, users=_users(store),
                         jobs=jobs, job=job, stop_frame=stop)


def _render(store: Store, *, target, task, job, fmt, save_images, host) -> bytes:
    ctx = context(store, target=target, task=task, job=job, host=host)
    idx = A.LabelIndex(ctx.labels)
    data = A.get_job(store, job, idx) if job else A.get_task(store, task, idx)
    return EXPORTERS[fmt][1](ctx, data, save_images)


def start_export(store: Store, *, user: dict, target: str, task: dict | None, job: dict | None,
                 project: dict | None, fmt: str, save_images: bool, rq_id: str, host: str, out_dir: Path,
                 filename: str | None, policy: dict) -> dict:
    ids = {"task": task["id"] if task else None, "job": job["id"] if job else None,
           "project": project["id"] if project else None}
    obj_id = ids[target]
    sub = "dataset" if save_images else "annotations"

    def run(store: Store, doc: dict) -> dict:
        import zipfile, io
        if target == "project":
            tasks = sorted(store.find("tasks", lambda t: t.get("project_id") == project["id"] and t.get("data")),
                           key=lambda t: t["id"])
            blobs = [(t, _render(store, target="task", task=t, job=None, fmt=fmt, save_images=save_images, host=host))
                     for t in tasks]
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:  # one sub-archive per task: a simplification of CVAT's merge
                for t, blob in blobs:
                    z.writestr(f"task_{t['id']}.zip", blob)
            blob = buf.getvalue()
        else:
            current_task = store.get("tasks", task["id"])
            current_job = store.get("jobs", job["id"]) if job else None
            blob = _render(store, target=target, task=current_task, job=current_job, fmt=fmt,
                           save_images=save_images, host=host)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{target}_{obj_id}_{sub}_{quote(fmt, safe='')}_{doc['created_date'].replace(':', '')}.zip"
        path.write_bytes(blob)
        stamp = datetime.now(timezone.utc).strftime("%Y_%m_%d_%H_%M_%S")
        name = filename or f"{target}_{obj_id}_{sub}_{stamp}_{_fmt_key(fmt).replace('~', '.')}.zip".lower()
        store.update(requests.TABLE, doc["id"], _result_path=str(path), _result_name=name)
        return {"result_url": f"{host}/api/{target}s/{obj_id}/dataset/download?rq_id={quote(rq_id, safe='')}"}

    op = {"type": f"export:{sub}", "target": target, "format": fmt,
          "project_id": ids["project"] if ids["project"] else (task.get("project_id") if task else None),
          "task_id": ids["task"], "job_id": ids["job"]}
    return requests.create_request(store, rq_id=rq_id, owner=user, operation=op, policy=policy, run=run)


# ---- import --------------------------------------------------------------------------------------

def _error_text(e: Exception) -> str:
    if isinstance(e, APIError):
        return e.body if isinstance(e.body, str) else str(e.body)
    return str(e)


def import_into(store: Store, task: dict, job: dict | None, fmt: str, raw: bytes, sender=None) -> None:
    """Parse ``raw`` and replace the task's (or job's) annotations with it."""
    lbls = labels_model.all_labels_of_task(store, task)
    frames = task_frames(task)
    by_name = {f.name: f.number for f in frames}
    for f in frames:  # CVAT also matches names without their extension
        by_name.setdefault(f.name.rsplit(".", 1)[0], f.number)
    data = IMPORTERS[fmt][1](raw, lbls, by_name)
    idx = A.LabelIndex(lbls)
    if job is not None:
        A.put_job(store, job, data, idx, sender=sender)
    else:
        A.put_task(store, task, data, idx, sender=sender)


def start_import(store: Store, *, user: dict, task: dict, job: dict | None, fmt: str, path: Path, rq_id: str,
                 policy: dict) -> dict:
    target = "job" if job else "task"

    def run(store: Store, doc: dict) -> dict:
        try:
            raw = path.read_bytes()
            current_task = store.get("tasks", task["id"])
            current_job = store.get("jobs", job["id"]) if job else None
            import_into(store, current_task, current_job, fmt, raw, sender=user)
        except (FormatError, APIError) as e:
            raise requests.RequestFailed(_error_text(e)) from e
        finally:
            path.unlink(missing_ok=True)
        return None

    op = {"type": "import:annotations", "target": target, "format": fmt, "project_id": task.get("project_id"),
          "task_id": task["id"], "job_id": job["id"] if job else None}
    return requests.create_request(store, rq_id=rq_id, owner=user, operation=op, policy=policy, run=run)
