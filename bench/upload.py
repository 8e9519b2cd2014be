"""Upload: tagged samples → a CVAT task with its data ready, the same 1000 JPEGs for every client.

- ``upload.syncd``: ``syncd.annotate(root, key, tag=...)`` with a detections schema (selection,
  planning, metadata, upload, waiting for the data to be processed);
- ``upload.cvat_sdk``: the official ``client.tasks.create_from_data`` (status polled every 50 ms);
- ``upload.ceiling``: one raw multipart POST of the same bytes to a do-nothing server;
- ``upload.syncd_transfer``: syncd's multipart stream and transport, one POST of the same bytes to
  the same do-nothing server (the ceiling comparison: client-side efficiency only);
- ``upload.syncd_upload_data``: ``CVATClient.upload_data`` to fakecvat, until it answers;
- ``upload.zero_copy``: syncd with ``share_root``: only ``server_files`` names travel;
- ``upload.fakecvat_ready``: fakecvat's own figure, one multipart POST + processing to ready;
- ``upload.zero_copy_floor``: fakecvat's own figure for zero copy, one ``server_files`` request
  + processing to ready (what ``upload.zero_copy`` cannot beat).
FiftyOne's ``annotate()`` lives in ``bench/fiftyone_bench.py``. Every one that uploads to a
fakecvat first warms it with one untimed upload (``warm``).
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from .core import benchmark, env_with_pythonpath, ratio
from .servers import NullServer

CLASSES = ["person", "vehicle", "animal"]
TAG = "requires_annotation"


def n_images(ctx) -> int:
    return ctx.pick(1000, 100)


def image_files(ctx) -> list[Path]:
    return sorted(ctx.images(n_images(ctx)).glob("*.jpg"))


def total_bytes(files) -> int:
    return sum(f.stat().st_size for f in files)


_METADATA: dict = {}


def make_dataset(ctx, parent: Path | None = None, *, metadata: bool = True) -> tuple[Path, list[str]]:
    """A fresh dataset root: the shared images hard-linked (no copy) plus tagged sample files.

    With ``metadata`` the sample files hold their ImageMetadata, as after ``syncd tag`` or the
    daemon's discovery; without it syncd computes it and writes each sample file (fsync'd)."""
    from syncd.dataset import compute_metadata
    root = ctx.tmpdir("ds") if parent is None else Path(parent)
    rels = []
    for f in image_files(ctx):
        os.link(f, root / f.name)
        doc = {"filepath": f.name, "tags": [TAG]}
        if metadata:
            if f not in _METADATA:
                _METADATA[f] = compute_metadata(f)
            doc["metadata"] = _METADATA[f]
        (root / (f.name + ".json")).write_text(json.dumps(doc))
        rels.append(f.name)
    return root, rels


_WARMED: set[str] = set()

_WARM_SCRIPT = """
import glob, sys, types
from pathlib import Path
import requests
from bench.upload import raw_multipart_post_with_auth, _wait_ready
url, user, password, images = sys.argv[1:5]
server = types.SimpleNamespace(url=url, username=user, password=password)
s = requests.Session()
s.auth = (user, password)
files = [Path(p) for p in sorted(glob.glob(images + "/*.jpg"))]
tid = s.post(url + "/api/tasks", json={"name": "warm-up", "labels": [{"name": "a"}]}).json()["id"]
raw_multipart_post_with_auth(server, f"/api/tasks/{tid}/data/", files)
_wait_ready(s, url, tid, len(files))
"""


def warm(ctx, server) -> None:
    """Before the first timed upload to a worker's fakecvat: one untimed upload of the same
    JPEGs, in one request, into a task of its own (kept: nothing is deleted until the run ends).

    A CVAT that serves a team has taken uploads before; a fresh ``fakecvat serve`` has not, and
    its first upload is slower than the next ones (one raw POST of 1000 JPEGs processed to
    ready: 200-205 ms first, 151-177 ms after, 3 fresh servers), which every upload figure paid
    until the seventh session of 2026-11-26. The warm-up runs in another process, so the timed
    client stays as cold as a command line is."""
    if server.url in _WARMED:
        return
    subprocess.run([sys.executable, "-c", _WARM_SCRIPT, server.url, server.username, server.password,
                    str(ctx.images(n_images(ctx)))], env=env_with_pythonpath(), check=True)
    _WARMED.add(server.url)


def syncd_client(server):
    from syncd.cvat import CVATClient
    return CVATClient(server.url, username=server.username, password=server.password)


def syncd_annotate(ctx, server, root: Path, **options) -> dict:
    import syncd
    annotate = syncd.annotate  # imported here (lazily on first use), as the SDK's imports are outside
    with ctx.stopwatch() as sw:
        client = syncd_client(server)
        result = annotate(str(root), "bench", tag=TAG, client=client, label_field="ground_truth",
                          label_type="detections", classes=CLASSES, **options)
    assert len(result["tasks"]) == 1, result
    return {"seconds": sw.seconds, "task": result["tasks"][0]}


def _figures(ctx, seconds: float, server=None) -> dict:
    files = image_files(ctx)
    out = {"seconds": seconds, "images/s": len(files) / seconds,
           "MB/s": total_bytes(files) / 1e6 / seconds}
    if server is not None:
        out["server_rss_mb"] = server.peak_rss_mb()
    return out


@benchmark("upload.syncd", repeats=3, targets={"seconds": ("<", 4.0)})
def upload_syncd(ctx):
    """syncd.annotate(tag=...) of 1000 JPEGs 640x480 to a task with data ready"""
    server = ctx.fakecvat()
    warm(ctx, server)
    root, _ = make_dataset(ctx)
    r = syncd_annotate(ctx, server, root)
    return _figures(ctx, r["seconds"], server)


@benchmark("upload.syncd_no_metadata", repeats=1)
def upload_syncd_no_metadata(ctx):
    """syncd.annotate as above, sample files without metadata (syncd writes 1000 sample files)"""
    server = ctx.fakecvat()
    warm(ctx, server)
    root, _ = make_dataset(ctx, metadata=False)
    r = syncd_annotate(ctx, server, root)
    return _figures(ctx, r["seconds"], server)


@benchmark("upload.syncd_transfer", repeats=3)
def upload_syncd_transfer(ctx):
    """syncd's multipart stream through its transport, one POST to the do-nothing server (vs ceiling)"""
    from syncd.cvat.client import Transport
    from syncd.cvat.upload import normalize_files, send_batches
    server = ctx.stack.enter_context(NullServer())
    files = image_files(ctx)
    t = Transport(server.url)
    ctx.stack.callback(t.close)
    items = normalize_files(files)
    with ctx.stopwatch() as sw:
        # exactly what upload_data does with a batch, minus the CVAT-specific requests
        send_batches(t, "/upload", [items], [("image_quality", "75")], parallel=1)
    return _figures(ctx, sw.seconds)


@benchmark("upload.syncd_upload_data", repeats=3)
def upload_syncd_upload_data(ctx):
    """syncd's CVATClient.upload_data alone: the bytes to fakecvat until it answers (no wait)"""
    server = ctx.fakecvat()
    warm(ctx, server)
    client = syncd_client(server)
    tid = client.create_task("transfer", labels=[{"name": c} for c in CLASSES])["id"]
    files = image_files(ctx)
    with ctx.stopwatch() as sw:
        client.upload_data(tid, files)
    client.wait_task_ready(tid, None)
    return _figures(ctx, sw.seconds, server)


@benchmark("upload.cvat_sdk", repeats=3)
def upload_cvat_sdk(ctx):
    """cvat-sdk tasks.create_from_data of the same 1000 JPEGs (status_check_period 0.05)"""
    from cvat_sdk import make_client
    from cvat_sdk.core.proxies.tasks import ResourceType
    server = ctx.fakecvat()
    warm(ctx, server)
    files = [str(f) for f in image_files(ctx)]
    with ctx.stopwatch() as sw:
        with make_client(server.url, credentials=(server.username, server.password)) as client:
            client.config.status_check_period = 0.05
            task = client.tasks.create_from_data(
                spec={"name": "bench-sdk", "labels": [{"name": c} for c in CLASSES]},
                resource_type=ResourceType.LOCAL, resources=files, data_params={"image_quality": 75})
            assert task.size == len(files), task.size
    return _figures(ctx, sw.seconds, server)


def raw_multipart_post(url: str, files: list[Path]) -> None:
    """One multipart POST of ``files``, streamed from disk with a known Content-Length."""
    boundary = uuid.uuid4().hex
    heads = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_files[{i}]\"; "
              f"filename=\"{f.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() for i, f in enumerate(files)]
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + f.stat().st_size + 2 for h, f in zip(heads, files)) + len(tail)
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", u.path or "/")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    for head, f in zip(heads, files):
        conn.send(head + f.read_bytes() + b"\r\n")
    conn.send(tail)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 201, resp.status


@benchmark("upload.ceiling", repeats=3)
def upload_ceiling(ctx):
    """one raw multipart POST of the same bytes to a do-nothing server (loopback)"""
    server = ctx.stack.enter_context(NullServer())
    files = image_files(ctx)
    with ctx.stopwatch() as sw:
        raw_multipart_post(server.url + "/upload", files)
    return _figures(ctx, sw.seconds)


@benchmark("upload.fakecvat_ready", repeats=3, targets={"seconds": ("<", 3.0)})
def upload_fakecvat_ready(ctx):
    """fakecvat alone: one multipart POST of 1000 JPEGs + processing until the task is ready"""
    server = ctx.fakecvat()
    warm(ctx, server)
    s = server.session()
    files = image_files(ctx)
    tid = s.post(server.url + "/api/tasks", json={"name": "raw", "labels": [{"name": "a"}]}).json()["id"]
    with ctx.stopwatch() as sw:
        raw_multipart_post_with_auth(server, f"/api/tasks/{tid}/data/", files)
        _wait_ready(s, server.url, tid, len(files))
    return _figures(ctx, sw.seconds, server)


def raw_multipart_post_with_auth(server, path: str, files: list[Path]) -> str:
    """A CVAT data POST as one multipart request (image_quality + files), Basic auth."""
    import base64
    boundary = uuid.uuid4().hex
    first = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_quality\"\r\n\r\n75\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"sorting_method\"\r\n\r\npredefined\r\n").encode()
    heads = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_files[{i}]\"; "
              f"filename=\"{f.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() for i, f in enumerate(files)]
    tail = f"--{boundary}--\r\n".encode()
    length = len(first) + sum(len(h) + f.stat().st_size + 2 for h, f in zip(heads, files)) + len(tail)
    u = urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", path)
    auth = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    conn.putheader("Authorization", f"Basic {auth}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    conn.send(first)
    for head, f in zip(heads, files):
        conn.send(head + f.read_bytes() + b"\r\n")
    conn.send(tail)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (200, 201, 202), (resp.status, body[:300])
    return json.loads(body or b"{}").get("rq_id", "")


def _wait_ready(s, url: str, tid: int, size: int, timeout: float = 120) -> None:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = s.get(f"{url}/api/tasks/{tid}").json()
        if task.get("size") == size and task.get("jobs", {}).get("count"):
            return
        time.sleep(0.01)
    raise TimeoutError(f"task {tid} not ready after {timeout}s")


@benchmark("upload.zero_copy", repeats=3)
def upload_zero_copy(ctx):
    """syncd with share_root: the server reads the files from its share (server_files)"""
    share = ctx.work_dir / "share"
    share.mkdir(exist_ok=True)
    server = ctx.fakecvat(share_dir=share, key="share")
    warm(ctx, server)
    root = Path(ctx.tmpdir("ds").rename(share / f"ds{len(list(share.iterdir()))}"))
    root, _ = make_dataset(ctx, root)
    r = syncd_annotate(ctx, server, root, share_root=str(share))
    return _figures(ctx, r["seconds"], server)


@benchmark("upload.zero_copy_floor", repeats=3)
def upload_zero_copy_floor(ctx):
    """fakecvat alone: one server_files POST of the same 1000 share files + processing to ready"""
    share = ctx.work_dir / "share"
    share.mkdir(exist_ok=True)
    server = ctx.fakecvat(share_dir=share, key="share")
    warm(ctx, server)
    images = share / f"floor{len(list(share.iterdir()))}"
    images.mkdir()
    files = image_files(ctx)
    for f in files:
        os.link(f, images / f.name)
    s = server.session()
    tid = s.post(server.url + "/api/tasks", json={"name": "raw", "labels": [{"name": "a"}]}).json()["id"]
    names = [f"{images.name}/{f.name}" for f in files]
    with ctx.stopwatch() as sw:
        r = s.post(f"{server.url}/api/tasks/{tid}/data/",
                   json={"server_files": names, "image_quality": 75, "sorting_method": "predefined"})
        assert r.status_code == 202, (r.status_code, r.text[:300])
        _wait_ready(s, server.url, tid, len(files))
    return _figures(ctx, sw.seconds, server)


# Speed-up targets carry their floor (``bound=``): upload.fakecvat_ready is one raw multipart
# POST of the same JPEGs processed to ready, upload.zero_copy_floor one server_files request of
# them; a client whose own work took no time measures those (bench/reach.py).
ratio("upload: syncd vs cvat-sdk (speed-up)", ("upload.cvat_sdk", "seconds"), ("upload.syncd", "seconds"),
      target=1.2, bound=("upload.fakecvat_ready", "seconds"))
ratio("upload: syncd transfer vs raw POST ceiling (share of ceiling)", ("upload.ceiling", "seconds"),
      ("upload.syncd_transfer", "seconds"), target=0.8,
      note="client-side efficiency: the same bytes in one POST to the same do-nothing server, "
           "syncd's MultipartStream + requests transport vs a raw http.client POST")
ratio("upload: syncd end to end vs raw POST ceiling", ("upload.ceiling", "seconds"), ("upload.syncd", "seconds"),
      note="includes selection, planning, task creation and fakecvat processing")
ratio("zero-copy: syncd share_root vs cvat-sdk upload (speed-up)", ("upload.cvat_sdk", "seconds"),
      ("upload.zero_copy", "seconds"), target=5, bound=("upload.zero_copy_floor", "seconds"))
ratio("zero-copy: syncd share_root vs fakecvat's own server_files floor (share of floor)",
      ("upload.zero_copy_floor", "seconds"), ("upload.zero_copy", "seconds"),
      note="floor: one server_files request of the same files, processed to ready, no client work")
