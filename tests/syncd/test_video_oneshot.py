"""Video end to end against a real fakecvat: one task per video, a track drawn in CVAT comes
back into ``frames.detections`` interpolated, with one index and keyframes marked."""
import json
from pathlib import Path

import av
import numpy as np
import pytest
import requests

import syncd
from syncd.cvat import CVATClient

W, H, N = 64, 48, 20


def make_video(path: Path, frames: int = N, seed: int = 0) -> None:
    """A small deterministic MPEG-4 video, generated (no binary fixtures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            img = np.full((H, W, 3), (i * 10) % 255, dtype=np.uint8)
            img[rng.integers(0, H), :] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture
def client(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def test_track_drawn_in_cvat_comes_back_interpolated(tmp_path, fakecvat, client):
    make_video(tmp_path / "clips" / "a.mp4")
    make_video(tmp_path / "clips" / "b.mp4", seed=1)
    result = syncd.annotate(tmp_path, "vid", ["clips/a.mp4", "clips/b.mp4"], client=client,
                            label_field="frames.detections", label_type="detections", classes=["car"])
    assert len(result["tasks"]) == 2  # one task per video, always
    tid = result["tasks"][0]
    meta = client.data_meta(tid)
    assert meta["size"] == N
    car = next(lb for lb in client.labels(task_id=tid) if lb["name"] == "car")
    job = client.jobs(tid)[0]
    track = {"frame": 0, "label_id": car["id"], "shapes": [
        {"type": "rectangle", "frame": 0, "points": [0.0, 0.0, 10.0, 10.0]},
        {"type": "rectangle", "frame": 10, "points": [20.0, 10.0, 30.0, 20.0]},
        {"type": "rectangle", "frame": 15, "points": [20.0, 10.0, 30.0, 20.0], "outside": True},
    ]}
    r = requests.put(f"{fakecvat.url}/api/jobs/{job['id']}/annotations", auth=("admin", "admin"),
                     json={"version": 0, "tags": [], "shapes": [], "tracks": [track]})
    assert r.status_code == 200, r.text
    syncd.load_annotations(tmp_path, "vid", client=client, cleanup=True)

    doc = json.loads((tmp_path / "clips" / "a.mp4.json").read_text())
    assert doc["metadata"]["_cls"] == "VideoMetadata" and doc["metadata"]["total_frame_count"] == N
    frames = doc["frames"]
    labelled = sorted(int(n) for n, f in frames.items() if (f.get("detections") or {}).get("detections"))
    assert labelled == list(range(1, 16))  # frames 1..15 (CVAT 0..14); nothing from the outside frame on
    dets = [frames[str(n)]["detections"]["detections"][0] for n in labelled]
    assert len({d["index"] for d in dets}) == 1
    assert [n for n, d in zip(labelled, dets) if d.get("keyframe")] == [1, 11]
    for n, d in zip(labelled, dets):
        t = min(n - 1, 10) / 10  # CVAT frame n-1; linear between keyframes 0 and 10, held after
        x, y = 20 * t, 10 * t
        assert d["bounding_box"] == pytest.approx([x / W, y / H, 10 / W, 10 / H], abs=1 / W)
    # the other video's task got nothing and its sample is unchanged except tags/metadata
    other = json.loads((tmp_path / "clips" / "b.mp4.json").read_text())
    assert not any((f.get("detections") or {}).get("detections") for f in (other.get("frames") or {}).values())
