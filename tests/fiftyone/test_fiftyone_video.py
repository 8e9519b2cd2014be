"""FiftyOne 1.22.1's own CVAT backend with a video dataset against fakecvat: a video whose
``frames.detections`` already hold a track is uploaded, an annotator draws a second track
through CVAT's REST API (keyframes at 0 and 10, outside at 15), and load_annotations brings
both back as frame labels with their track indexes, interpolated as CVAT does.

FiftyOne reads video metadata with ffprobe, so these tests need ffmpeg (``.ci/run`` installs
it from apt); without it they skip and say so."""
from __future__ import annotations

import shutil

import av
import numpy as np
import pytest

from fo_helpers import import_fiftyone

fo = import_fiftyone()

pytestmark = [pytest.mark.xdist_group("fiftyone"),
              pytest.mark.skipif(shutil.which("ffprobe") is None,
                                 reason="FiftyOne needs ffmpeg/ffprobe for videos: apt-get install ffmpeg")]

W, H, N = 64, 48, 20


def make_video(path) -> str:
    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            img = np.full((H, W, 3), (i * 12) % 256, dtype=np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return str(path)


def creds(server) -> dict:
    return {"url": server.url, "username": "admin", "password": "admin"}


def test_video_tracks_round_trip_through_fiftyone(tmp_path, fakecvat, annotator, fo_dataset):
    sample = fo.Sample(filepath=make_video(tmp_path / "clip.mp4"))
    existing = {}
    for n in range(1, 6):  # a truck tracked over frames 1..5, moving right
        det = fo.Detection(label="truck", bounding_box=[0.1 + 0.05 * (n - 1), 0.5, 0.25, 0.25], index=1)
        sample.frames[n]["detections"] = fo.Detections(detections=[det])
        existing[n] = det.id
    fo_dataset.add_sample(sample)
    fo_dataset.compute_metadata()
    assert fo_dataset.first().metadata.total_frame_count == N

    results = fo_dataset.annotate("vid", backend="cvat", **creds(fakecvat), label_field="frames.detections",
                                  label_type="detections", classes=["car", "truck"])
    (tid,) = results.task_ids
    (job,) = annotator.jobs(tid)
    assert job["mode"] == "interpolation" and (job["start_frame"], job["stop_frame"]) == (0, N - 1)
    uploaded = annotator.annotations(job["id"])["tracks"]
    assert len(uploaded) == 1  # the existing truck became one CVAT track

    car = annotator.labels(job["id"])["car"]
    track = {"frame": 0, "label_id": car["id"], "attributes": [], "shapes": [
        {"type": "rectangle", "frame": 0, "points": [0.0, 0.0, 16.0, 12.0], "attributes": []},
        {"type": "rectangle", "frame": 10, "points": [20.0, 10.0, 36.0, 22.0], "attributes": []},
        {"type": "rectangle", "frame": 15, "points": [20.0, 10.0, 36.0, 22.0], "outside": True,
         "attributes": []}]}
    annotator._call("PATCH", f"/api/jobs/{job['id']}/annotations?action=create",
                    json={"version": 0, "tags": [], "shapes": [], "tracks": [track]})
    annotator.complete(job["id"])

    fo_dataset.load_annotations("vid", **creds(fakecvat), cleanup=True)
    frames = fo_dataset.first().frames
    cars = {n: [d for d in (frames[n].detections.detections if frames[n].detections else []) if d.label == "car"]
            for n in range(1, N + 1)}
    assert [n for n, d in cars.items() if d] == list(range(1, 16))  # CVAT frames 0..14, outside from 15
    assert len({d[0].index for d in cars.values() if d}) == 1
    for n in range(1, 16):
        t = min(n - 1, 10) / 10  # linear between keyframes 0 and 10, held until the outside at 15
        assert cars[n][0].bounding_box == pytest.approx([20 * t / W, 10 * t / H, 16 / W, 12 / H], abs=1 / W)
    trucks = {n: [d for d in (frames[n].detections.detections if frames[n].detections else [])
                  if d.label == "truck"] for n in range(1, N + 1)}
    assert [n for n, d in trucks.items() if d] == [1, 2, 3, 4, 5]
    assert {d[0].index for d in trucks.values() if d} == {1} != {cars[1][0].index}
    assert {n: d[0].id for n, d in trucks.items() if d} == existing  # label ids kept
    assert trucks[3][0].bounding_box == pytest.approx([0.2, 0.5, 0.25, 0.25], abs=1 / W)
    assert annotator.task_status(tid) == 404  # cleanup deleted the task
