"""``/api/tasks/{id}/data``: the upload protocols (single, Upload-Start/Multiple/Finish, TUS),
data/meta, frames and chunks, and ``/preview`` (cvat-api.md §6.2-6.5)."""
from __future__ import annotations

import io
import re
import tempfile

from flask import Blueprint, Response, current_app, request

from .. import media, multipart
from ..errors import ValidationError
from ..http import abs_url, body_dict, current_user, respond
from ..models import frames, taskdata, uploads
from .tasks import store, visible_task

bp = Blueprint("taskdata", __name__)

_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")


def _fast_multipart():
    """The multipart body split by ``fakecvat.multipart`` (fields, files), or None: then
    werkzeug parses it (from the same bytes, cached by ``get_data``)."""
    if "_fast_multipart" not in request.environ:
        parsed = None
        boundary = multipart.boundary_of(request.headers.get("Content-Type", ""))
        length = request.content_length
        if boundary and length is not None and length <= multipart.MAX_BODY:
            parsed = multipart.parse(request.get_data(cache=True), boundary)
        request.environ["_fast_multipart"] = parsed
    return request.environ["_fast_multipart"]


def form_params() -> dict:
    """The data fields of a JSON or multipart body; ``key[i]`` form fields become lists."""
    fast = _fast_multipart() if request.mimetype == "multipart/form-data" else None
    if fast is not None or request.mimetype == "multipart/form-data" or request.form:
        out: dict = {}
        lists: dict[str, dict[int, str]] = {}
        for key, value in (fast[0] if fast is not None else request.form.items(multi=True)):
            if key is None:  # werkzeug's name for a part whose header it could not parse: not a field
                continue
            m = _INDEXED.match(key)
            if m:
                lists.setdefault(m.group(1), {})[int(m.group(2))] = value
            else:
                out[key] = value
        for key, items in lists.items():
            out[key] = [items[i] for i in sorted(items)]
        return out
    return body_dict()


def client_files() -> list[tuple[str, object]]:
    """Uploaded ``client_files[i]`` in index order (DRF needs indexed keys; plain keys are ignored)."""
    indexed = []
    fast = _fast_multipart() if request.mimetype == "multipart/form-data" else None
    items = ([(key, filename, stream) for key, filename, stream in fast[1]] if fast is not None else
             [(key, storage.filename, storage.stream) for key, storage in request.files.items(multi=True)])
    for key, filename, stream in items:
        m = _INDEXED.match(key) if key is not None else None
        if m and m.group(1) == "client_files":
            indexed.append((int(m.group(2)), filename, stream))
    return [(name, stream) for _, name, stream in sorted(indexed, key=lambda x: x[0])]


def _part_stream(total_content_length, content_type, filename=None, content_length=None):
    if content_length is not None and content_length > PART_IN_MEMORY:
        return tempfile.TemporaryFile("rb+")
    return _GrowingPart()


PART_IN_MEMORY = 16 * 1024 * 1024


class _GrowingPart(io.BytesIO):
    """A part kept in memory until it passes PART_IN_MEMORY (multipart parts rarely state
    their length), then moved to a temporary file."""

    def write(self, data) -> int:
        if self.tell() + len(data) > PART_IN_MEMORY and not getattr(self, "_spilled", None):
            self._spilled = tempfile.TemporaryFile("rb+")
            self._spilled.write(self.getvalue())
        if getattr(self, "_spilled", None):
            return self._spilled.write(data)
        return super().write(data)

    def seek(self, *a):
        return self._spilled.seek(*a) if getattr(self, "_spilled", None) else super().seek(*a)

    def read(self, *a):
        return self._spilled.read(*a) if getattr(self, "_spilled", None) else super().read(*a)

    def getvalue(self):
        return None if getattr(self, "_spilled", None) else super().getvalue()


def _tus(resp: Response) -> Response:
    for k, v in uploads.TUS_HEADERS.items():
        resp.headers[k] = v
    return resp


@bp.post("/api/tasks/<int:task_id>/data")
def post_data(task_id: int):
    task = visible_task(task_id, change=True)
    # the SDK packs up to 100 MiB of files into one request: thousands of parts are normal
    request.max_form_parts = 10 ** 9  # (None would fall back to the 1000 default)
    # werkzeug spools every part of a large body to its own temporary file (an open per image);
    # images are small: keep each part in memory, big ones (videos) still go to disk
    request._get_file_stream = _part_stream
    s, cfg, user = store(), current_app.config, current_user()
    media_dir = cfg["MEDIA_DIR"]
    h = request.headers
    start, multiple, finish = "Upload-Start" in h, "Upload-Multiple" in h, "Upload-Finish" in h
    if start and not finish:
        taskdata.upload_start(s, task, media_dir)
        return Response(status=202)
    if multiple:
        params = form_params()
        if params.get("image_quality") in (None, ""):
            raise ValidationError({"image_quality": ["This field is required."]})
        taskdata.add_client_files(s, task, media_dir, client_files())
        return Response(status=200)
    if "Upload-Length" in h and not finish:
        taskdata.ensure_no_data(s, task)
        doc = uploads.tus_create(s, owner=user, scope=taskdata.scope(task_id),
                                 dest_dir=taskdata.raw_dir(media_dir, task_id),
                                 length=h.get("Upload-Length"), metadata=h.get("Upload-Metadata"))
        resp = Response(status=201)
        resp.headers["Location"] = abs_url(f"/api/tasks/{task_id}/data/{doc['id']}")
        resp.headers["Upload-Filename"] = doc["filename"]
        return _tus(resp)
    params = form_params()
    if not finish:  # a single request carries the files and the parameters together
        taskdata.upload_start(s, task, media_dir)
        taskdata.add_client_files(s, task, media_dir, client_files())
    rq_id = taskdata.finish(s, user, task, params, media_dir=media_dir, share_dir=cfg["SHARE_DIR"],
                            policy=cfg["ASYNC"])
    return respond({"rq_id": rq_id}, 202)


@bp.route("/api/tasks/<int:task_id>/data/<file_id>", methods=["HEAD"])
def tus_head(task_id: int, file_id: str):
    visible_task(task_id, change=True)
    doc = uploads.tus_get(store(), file_id, current_user(), taskdata.scope(task_id))
    resp = Response(status=200)
    resp.headers["Upload-Offset"] = str(doc["offset"])
    resp.headers["Upload-Length"] = str(doc["length"])
    resp.headers["Cache-Control"] = "no-store"
    return _tus(resp)


@bp.patch("/api/tasks/<int:task_id>/data/<file_id>")
def tus_patch(task_id: int, file_id: str):
    visible_task(task_id, change=True)
    doc = uploads.tus_patch(store(), file_id, current_user(), taskdata.scope(task_id),
                            request.headers.get("Upload-Offset"), request.get_data())
    resp = Response(status=204)
    resp.headers["Upload-Offset"] = str(doc["offset"])
    return _tus(resp)


@bp.get("/api/tasks/<int:task_id>/data/meta")
def get_meta(task_id: int):
    return respond(frames.meta(store(), visible_task(task_id)))


@bp.patch("/api/tasks/<int:task_id>/data/meta")
def patch_meta(task_id: int):
    task = visible_task(task_id, change=True)
    data = body_dict()
    if "deleted_frames" in data:
        task = frames.set_deleted_frames(store(), task, data["deleted_frames"])
    return respond(frames.meta(store(), task))


def serve_data(task: dict, lo: int, hi: int, job_chunks: bool = False) -> Response:
    """``?type=frame|chunk&number=N&quality=...`` over task frames [lo, hi] (a job's range)."""
    kind = request.args.get("type")
    quality = request.args.get("quality") or "compressed"
    if quality not in ("compressed", "original"):
        raise ValidationError(["Wrong quality value. Supported values: compressed, original"])
    if kind not in ("frame", "chunk", "preview", "context_image"):
        raise ValidationError(["Unexpected type value. Supported values: frame, chunk, preview, context_image"])
    if not task.get("data"):
        raise ValidationError(["The task has no data"])
    if kind == "preview":
        return Response(frames.preview(task), mimetype="image/jpeg")
    number, index = request.args.get("number"), request.args.get("index")
    if kind == "context_image":
        raise ValidationError(["No context images for this frame"])
    if kind == "frame":
        if number is None:
            raise ValidationError(["Number is required for the frame type"])
        n = frames.check_frame(number, lo, hi)
        data, mime = frames.frame(task, n, quality)
        return Response(data, mimetype=mime)
    if number is None and index is None:
        raise ValidationError(["Number or index is required for the chunk type"])
    if number is not None and index is not None:
        raise ValidationError(["The number and index parameters are mutually exclusive"])
    try:
        k = int(index if index is not None else number)
    except ValueError:
        raise ValidationError(["The chunk number should be an integer"])
    if index is not None and job_chunks:
        span = frames.chunk_range(task, k, lo, hi)
    else:
        span = frames.chunk_range(task, k, 0, task["size"] - 1)
        span = range(max(span.start, lo), min(span.stop, hi + 1))
        if not span:
            raise ValidationError(["The chunk number should be in the job's range"])
    payload, mime = frames.chunk(task, span, quality)
    resp = Response(payload, mimetype=mime)
    resp.headers["X-Checksum"] = media.checksum(payload)
    resp.headers["X-Updated-Date"] = task["data"]["chunks_updated_date"]
    return resp


@bp.get("/api/tasks/<int:task_id>/data")
def get_data(task_id: int):
    task = visible_task(task_id)
    return serve_data(task, 0, max(0, task["size"] - 1))


@bp.get("/api/tasks/<int:task_id>/preview")
def get_preview(task_id: int):
    return Response(frames.preview(visible_task(task_id)), mimetype="image/jpeg")
