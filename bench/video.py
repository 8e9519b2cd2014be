"""Video: one minute of 640x480 at 30 fps (1800 frames, H.264 when PyAV has an encoder for it,
else MPEG-4 Part 2), generated with PyAV once per session, through syncd and ``fakecvat serve``.

- ``video.task_and_frames``: ``syncd.annotate`` on the video until its task is ready
  (``task_ready_seconds``); then frames served by fakecvat as the CVAT UI and SDK ask for them:
  single frames ``/api/tasks/{id}/data?type=frame&number=N&quality=compressed`` at random
  positions (``random_frames/s``), in order from the middle (``sequential_frames/s``), and one
  compressed chunk from the middle of the video (``chunk_seconds``).
- ``video.tracks_load``: 20 tracks spanning every frame (a keyframe each second) PUT through the
  REST API, then ``syncd.load_annotations`` (download per job, CVAT interpolation, merge into the
  sample file): ``load_seconds`` for 36,000 interpolated boxes.
"""
from __future__ import annotations

import fcntl
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from bench.core import benchmark
from bench.daemon_procs import FakeCVATProc

W, H, FPS, SECONDS = 640, 480, 30, 60
TRACKS = 20


def _codec() -> str:
    import av
    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError("PyAV has neither an H.264 nor an MPEG-4 encoder")


def make_video(path: Path, seconds: int = SECONDS, fps: int = FPS) -> str:
    """Moving boxes over a gradient, ``seconds`` long; returns the encoder used."""
    import av
    codec = _codec()
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([(xx * 255 // W), (yy * 255 // H), np.full_like(xx, 96)], -1).astype(np.uint8)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast"}  # default GOP (250): seeking matters
        for i in range(seconds * fps):
            img = base.copy()
            for k in range(5):
                x = (i * (3 + k) + 97 * k) % (W - 60)
                y = (i * (2 + k) + 53 * k) % (H - 40)
                img[y:y + 40, x:x + 60] = (40 * k, 255 - 40 * k, 128)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)
    return codec


def session_video(ctx, seconds: int = SECONDS) -> Path:
    """The generated video, made once per ``python -m bench`` session."""
    target = ctx.session_dir / f"video-{seconds}s-{W}x{H}-{FPS}.mp4"
    with open(ctx.session_dir / ".video.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not target.exists():
            make_video(target, seconds)
    return target


def _root_with(ctx, video: Path) -> Path:
    root = ctx.tmpdir("video")
    (root / "clips").mkdir()
    shutil.copyfile(video, root / "clips" / "clip.mp4")  # a symlink out of the root is refused
    return root


def _annotate(root: Path, server: FakeCVATProc, key: str) -> tuple[float, int, object]:
    import syncd
    from syncd.cvat import CVATClient
    client = CVATClient(server.url, username="admin", password="admin")
    t0 = time.perf_counter()
    result = syncd.annotate(root, key, ["clips/clip.mp4"], client=client,
                            label_field="frames.detections", label_type="detections",
                            classes=["car"])
    return time.perf_counter() - t0, result["tasks"][0], client


def _frame_rate(server: FakeCVATProc, tid: int, numbers: list[int]) -> float:
    s = server.session
    t0 = time.perf_counter()
    for n in numbers:
        r = s.get(f"{server.url}/api/tasks/{tid}/data", timeout=600,
                  params={"type": "frame", "number": n, "quality": "compressed"})
        r.raise_for_status()
        assert r.content[:2] == b"\xff\xd8", "not a JPEG"
    return len(numbers) / (time.perf_counter() - t0)


@benchmark("video.task_and_frames", repeats=1, quick_repeats=1)
def task_and_frames(ctx):
    """1-minute 640x480 video: annotate → task ready, then frames and a chunk served by fakecvat."""
    video = session_video(ctx)
    root = _root_with(ctx, video)
    with FakeCVATProc() as server:
        ready, tid, client = _annotate(root, server, "vid")
        meta = server.get(f"/api/tasks/{tid}/data/meta")
        size = meta["size"]
        rng = random.Random(0)
        picks = [rng.randrange(size) for _ in range(ctx.pick(30, 8))]
        rnd = _frame_rate(server, tid, picks)
        mid = size // 2
        seq = _frame_rate(server, tid, list(range(mid, mid + ctx.pick(60, 15))))
        cs = meta["chunk_size"]
        t0 = time.perf_counter()
        r = server.session.get(f"{server.url}/api/tasks/{tid}/data", timeout=600,
                               params={"type": "chunk", "number": mid // cs,
                                       "quality": "compressed"})
        r.raise_for_status()
        chunk = time.perf_counter() - t0
        client.close()
    return {"task_ready_seconds": ready, "frames": size, "random_frames/s": rnd,
            "sequential_frames/s": seq, "chunk_seconds": chunk, "chunk_frames": cs}


def _tracks(label_id: int, frames: int) -> list[dict]:
    out = []
    for k in range(TRACKS):
        shapes = []
        for f in list(range(0, frames, FPS)) + [frames - 1]:
            x = float((f * (k + 1)) % (W - 50))
            y = float((13 * k + f) % (H - 50))
            shapes.append({"type": "rectangle", "frame": f, "points": [x, y, x + 40.0, y + 30.0],
                           "outside": False, "occluded": False, "z_order": 0, "attributes": [],
                           "rotation": 0.0})
        out.append({"frame": 0, "label_id": label_id, "group": 0, "source": "manual",
                    "attributes": [], "shapes": shapes})
    return out


@benchmark("video.tracks_load", repeats=1, quick_repeats=1)
def tracks_load(ctx):
    """20 tracks over all 1800 frames: PUT via the REST API, then syncd.load_annotations."""
    import syncd
    video = session_video(ctx)
    root = _root_with(ctx, video)
    with FakeCVATProc() as server:
        _, tid, client = _annotate(root, server, "vid")
        size = server.get(f"/api/tasks/{tid}/data/meta")["size"]
        labels = server.get("/api/labels", task_id=tid, page_size="all")["results"]
        car = next(lb for lb in labels if lb["name"] == "car")
        t0 = time.perf_counter()
        r = server.session.put(f"{server.url}/api/tasks/{tid}/annotations", timeout=600,
                               json={"version": 0, "tags": [], "shapes": [],
                                     "tracks": _tracks(car["id"], size)})
        r.raise_for_status()
        put = time.perf_counter() - t0
        t0 = time.perf_counter()
        syncd.load_annotations(root, "vid", client=client)
        load = time.perf_counter() - t0
        client.close()
    doc = json.loads((root / "clips" / "clip.mp4.json").read_text())
    boxes = sum(len((f.get("detections") or {}).get("detections") or [])
                for f in (doc.get("frames") or {}).values())
    if boxes != TRACKS * size:
        raise AssertionError(f"expected {TRACKS * size} boxes merged, got {boxes}")
    return {"put_tracks_seconds": put, "load_seconds": load, "boxes": boxes,
            "boxes/s": boxes / load}
