"""Videos through syncd against a real fakecvat, beyond the one-shot basics: existing tracks
round trip with their ids, frame_start/frame_step per call, bad video files (each named, the
rest of the batch goes on), bad frame settings, and videos in the daemon's loop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import requests

import syncd
from syncd.cvat import CVATClient
from syncd.errors import SyncdError
from syncd.ids import new_id

W, H, N = 64, 48, 20


def make_video(path: Path, frames: int = N, seed: int = 0, fmt: str | None = None, **options) -> None:
    """A small deterministic MPEG-4 video, written to a temp name then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rng = np.random.default_rng(seed)
    fmt = fmt or {".mkv": "matroska"}.get(path.suffix, path.suffix.lstrip("."))
    with av.open(str(tmp), "w", format=fmt, options=options) as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    os.replace(tmp, path)


def tracked_sample(root: Path, rel: str, frames=range(1, 13)) -> dict[int, str]:
    """Give ``rel`` a sample file whose frames hold one tracked car (index 1); → {frame: id}."""
    ids, out = {}, {}
    for n in frames:
        ids[n] = new_id()
        x = 0.1 + 0.02 * (n - 1)
        out[str(n)] = {"frame_number": n, "detections": {"_cls": "Detections", "detections": [
            {"_id": {"$oid": ids[n]}, "_cls": "Detection", "label": "car", "bounding_box": [x, 0.1, 0.2, 0.2],
             "index": 1, "attributes": {}, "tags": [], "confidence": None}]}}
    (root / f"{rel}.json").write_text(json.dumps({"filepath": rel, "tags": [], "frames": out}))
    return ids


def frame_dets(root: Path, rel: str) -> dict[int, list[dict]]:
    doc = json.loads((root / f"{rel}.json").read_text())
    return {int(n): f["detections"]["detections"] for n, f in (doc.get("frames") or {}).items()
            if (f.get("detections") or {}).get("detections")}


@pytest.fixture
def client(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def annotate(root, key, rels, client, **kw):
    return syncd.annotate(root, key, rels, client=client, label_field="frames.detections",
                          label_type="detections", classes=["car"], **kw)


def put_track(url: str, job_id: int, label_id: int, keys: list[tuple[int, float, bool]]) -> None:
    shapes = [{"type": "rectangle", "frame": f, "points": [x, 5.0, x + 10.0, 15.0], "outside": out}
              for f, x, out in keys]
    r = requests.put(f"{url}/api/jobs/{job_id}/annotations", auth=("admin", "admin"),
                     json={"version": 0, "tags": [], "shapes": [],
                           "tracks": [{"frame": keys[0][0], "label_id": label_id, "shapes": shapes}]})
    assert r.status_code == 200, r.text


def car_id(client, tid: int) -> int:
    return next(lb["id"] for lb in client.labels(task_id=tid) if lb["name"] == "car")


def test_existing_tracks_round_trip_with_ids(tmp_path, fakecvat, client):
    make_video(tmp_path / "a.mp4")
    ids = tracked_sample(tmp_path, "a.mp4")
    (tid,) = annotate(tmp_path, "rt", ["a.mp4"], client)["tasks"]
    tracks = requests.get(f"{fakecvat.url}/api/tasks/{tid}/annotations", auth=("admin", "admin")).json()["tracks"]
    assert len(tracks) == 1  # one CVAT track for index 1, closed after frame 12
    assert [(s["frame"], s["outside"]) for s in tracks[0]["shapes"]][-1] == (12, True)
    syncd.load_annotations(tmp_path, "rt", client=client, cleanup=True)
    back = frame_dets(tmp_path, "a.mp4")
    assert sorted(back) == list(range(1, 13))
    assert {n: d[0]["_id"]["$oid"] for n, d in back.items()} == ids  # every label kept its id
    assert {d[0]["index"] for d in back.values()} == {1}
    assert back[5][0]["bounding_box"] == pytest.approx([0.18, 0.1, 0.2, 0.2], abs=1 / W)


def test_frame_start_and_step_per_video(tmp_path, fakecvat, client):
    make_video(tmp_path / "a.mp4")
    make_video(tmp_path / "b.mp4", seed=1)
    tasks = annotate(tmp_path, "fs", ["a.mp4", "b.mp4"], client,
                     frame_start={"a.mp4": 2}, frame_step=[3, 1])["tasks"]
    assert len(tasks) == 2  # one task per video
    metas = [client.data_meta(t) for t in tasks]
    assert [(m["size"], m["start_frame"], m["frame_filter"]) for m in metas] == [(6, 2, "step=3"), (N, 0, "")]
    job = client.jobs(tasks[0])[0]
    put_track(fakecvat.url, job["id"], car_id(client, tasks[0]), [(1, 0.0, False), (3, 20.0, False)])
    syncd.load_annotations(tmp_path, "fs", client=client)
    # task frames 1..5 are video frames 5, 8, 11, 14, 17: sample frames 6, 9, 12, 15, 18
    back = frame_dets(tmp_path, "a.mp4")
    assert sorted(back) == [6, 9, 12, 15, 18]
    assert [n for n, d in back.items() if d[0].get("keyframe")] == [6, 12]
    assert back[9][0]["bounding_box"][0] == pytest.approx(10 / W)
    assert frame_dets(tmp_path, "b.mp4") == {}


def test_bad_videos_are_named_and_the_rest_of_the_batch_proceeds(tmp_path, client):
    make_video(tmp_path / "good.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(4000))
    make_video(tmp_path / "whole.mp4", movflags="faststart")  # the index first: cut data shows
    whole = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) * 6 // 10])
    (tmp_path / "whole.mp4").unlink()
    with av.open(str(tmp_path / "empty.avi"), "w") as out:  # a header and a stream, no frames
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height = W, H
        out.start_encoding()
    make_video(tmp_path / "odd.mkv")
    odd = (tmp_path / "odd.mkv").read_bytes()
    assert odd.count(b"V_MPEG4/ISO/ASP") == 1
    (tmp_path / "odd.mkv").write_bytes(odd.replace(b"V_MPEG4/ISO/ASP", b"V_SYNCD/UNKNWN"))  # unknown codec

    bad = ["corrupt.mp4", "truncated.mp4", "empty.avi", "odd.mkv"]
    result = annotate(tmp_path, "bad", ["good.mp4", *bad], client)
    assert len(result["tasks"]) == 1 and client.data_meta(result["tasks"][0])["size"] == N
    skipped = result["skipped"]
    assert sorted(skipped) == sorted(bad)
    for rel in bad:
        assert str(tmp_path / rel) in skipped[rel]
    assert "truncated" in skipped["truncated.mp4"]
    assert "no frames" in skipped["empty.avi"]
    assert "codec" in skipped["odd.mkv"]
    with pytest.raises(SyncdError, match="no usable samples.*corrupt.mp4"):
        annotate(tmp_path, "all-bad", bad, client)


def test_frame_step_with_existing_tracks_costs_only_that_video(tmp_path, client):
    make_video(tmp_path / "a.mp4")
    make_video(tmp_path / "b.mp4", seed=1)
    tracked_sample(tmp_path, "a.mp4")
    result = annotate(tmp_path, "step", ["a.mp4", "b.mp4"], client, frame_step=2)
    assert list(result["skipped"]) == ["a.mp4"]
    why = result["skipped"]["a.mp4"]
    assert "a.mp4" in why and "frame_step=2" in why and "frames.detections" in why
    assert len(result["tasks"]) == 1 and client.data_meta(result["tasks"][0])["size"] == N // 2


@pytest.mark.parametrize("setting", [{"frame_step": 0}, {"frame_start": -1}, {"frame_step": "2"}])
def test_bad_frame_settings_name_the_setting(tmp_path, fakecvat, client, setting):
    make_video(tmp_path / "a.mp4")
    with pytest.raises(SyncdError, match=next(iter(setting))):
        annotate(tmp_path, "bad-setting", ["a.mp4"], client, **setting)
    assert requests.get(f"{fakecvat.url}/api/tasks", auth=("admin", "admin")).json()["count"] == 0


# ---- the daemon ----------------------------------------------------------------------------------

CONFIG = """\
[cvat]
url = "{url}"
poll_interval = 1

[[rule]]
name = "clips"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["clips/*.mp4"]
label_field = "frames.detections"
label_type = "detections"
classes = ["car"]
batch_window = 0.5
"""


def wait_for(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_videos_in_the_daemon_loop(tmp_path, fakecvat, client):
    root = tmp_path / "data"
    root.mkdir()
    (root / "syncd.toml").write_text(CONFIG.format(url=fakecvat.url))
    env = dict(os.environ, CVAT_URL=fakecvat.url, CVAT_USERNAME="admin", CVAT_PASSWORD="admin")
    env.pop("CVAT_TOKEN", None)
    env.pop("NOTIFY_SOCKET", None)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        make_video(root / "clips" / "a.mp4")
        make_video(root / "clips" / "b.mp4", seed=1)
        (root / "clips" / "notes.txt").write_text("not media")
        s = requests.Session()
        s.auth = ("admin", "admin")

        def tasks():
            got = s.get(f"{fakecvat.url}/api/tasks", params={"page_size": "all"}).json()["results"]
            return got if len(got) == 2 and all(t["size"] for t in got) else None
        made = wait_for(tasks, what=f"two video tasks; log:\n{log_path.read_text()}")
        assert sorted(t["size"] for t in made) == [N, N] and {t["mode"] for t in made} == {"interpolation"}
        for task in made:
            job = client.jobs(task["id"])[0]
            put_track(fakecvat.url, job["id"], car_id(client, task["id"]),
                      [(0, 0.0, False), (4, 8.0, False), (6, 8.0, True)])
            r = s.patch(f"{fakecvat.url}/api/jobs/{job['id']}", json={"stage": "acceptance", "state": "completed"})
            assert r.status_code == 200, r.text

        def merged(rel):
            doc = json.loads((root / "clips" / f"{rel}.json").read_text())
            return "annotated" in doc.get("tags", []) and doc
        for rel in ("a.mp4", "b.mp4"):
            wait_for(lambda: merged(rel), what=f"{rel} merged; log:\n{log_path.read_text()}")
            back = frame_dets(root / "clips", rel)
            assert sorted(back) == [1, 2, 3, 4, 5, 6]
            assert len({d[0]["index"] for d in back.values()}) == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
