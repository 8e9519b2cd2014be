"""Video tasks through the official cvat-sdk against fakecvat: upload (multipart and TUS) with
start/stop/step, data/meta, frames pixel-equal to what was encoded (within codec tolerance),
MP4 and zip chunks, the job split of interpolation mode, tracks read back at job and task
level, and the "CVAT for video 1.1" export. Videos are generated here (no binary fixtures)."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile

import av
import numpy as np
import pytest
from cvat_sdk import make_client
from cvat_sdk.core.proxies.tasks import ResourceType
from PIL import Image

W, H, N = 64, 48, 30
TOL = 12  # mean abs difference per channel allowed after an MPEG-4 encode/decode


def source_frame(i: int) -> np.ndarray:
    """Frame ``i`` as fed to the encoder: a gradient, a moving bar and a per-frame level."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = (i * 8) % 256
    img[..., 1] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    img[..., 2] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    x = (i * 2) % (W - 8)
    img[10:30, x:x + 8] = 255
    return img


def make_video(path, frames: int = N, pad_bytes: int = 0) -> None:
    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.codec_context.qmin = st.codec_context.qmax = 2  # near-lossless: tight pixel checks
        for i in range(frames):
            for p in st.encode(av.VideoFrame.from_ndarray(source_frame(i), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    if pad_bytes:  # an mp4 with a trailing free box: bigger than one request, still valid
        with open(path, "ab") as f:
            f.write((pad_bytes + 8).to_bytes(4, "big") + b"free" + b"\0" * pad_bytes)


def close(img: Image.Image, i: int) -> bool:
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return a.shape == (H, W, 3) and float(np.abs(a - source_frame(i)).mean()) < TOL


@pytest.fixture
def client(fakecvat, tmp_path):
    with make_client(fakecvat.url, credentials=("admin", "admin")) as c:
        # Job.get_frame lets the SDK write the frame to a temporary file it never removes
        # (a parsed binary answer): keep those in the test's own directory
        c.api_client.configuration.temp_folder_path = str(tmp_path)
        yield c


def create(client, path, **params):
    spec = {"name": "video", "labels": [{"name": "car"}], **params.pop("spec", {})}
    return client.tasks.create_from_data(spec, resource_type=ResourceType.LOCAL, resources=[str(path)],
                                         data_params={"image_quality": 90, **params})


def test_start_stop_step_meta_and_original_frames(client, tmp_path):
    make_video(tmp_path / "clip.mp4")
    task = create(client, tmp_path / "clip.mp4", start_frame=2, stop_frame=25, frame_step=3)
    assert (task.size, task.mode) == (8, "interpolation")  # 2, 5, ..., 23
    meta = task.get_meta()
    assert (meta.size, meta.start_frame, meta.stop_frame, meta.frame_filter) == (8, 2, 23, "step=3")
    assert [(f.name, f.width, f.height) for f in meta.frames] == [("clip.mp4", W, H)]  # one entry
    for n in (0, 1, 7):
        assert close(Image.open(task.get_frame(n, quality="original")), 2 + 3 * n), n
    assert close(Image.open(task.get_frame(4, quality="compressed")), 14)
    with pytest.raises(Exception) as e:
        task.get_frame(8)
    assert "[0, 7]" in str(e.value.body)


def test_chunks_are_mp4_segments_or_zips(client, tmp_path):
    make_video(tmp_path / "clip.mp4")
    task = create(client, tmp_path / "clip.mp4", chunk_size=12)
    assert (task.data_compressed_chunk_type, task.data_original_chunk_type) == ("video", "video")
    buf = io.BytesIO()
    task.download_chunk(2, buf, quality="original")  # frames 24..29
    with av.open(io.BytesIO(buf.getvalue())) as c:
        decoded = [f.to_image() for f in c.decode(video=0)]
    assert len(decoded) == 6 and all(close(im, 24 + i) for i, im in enumerate(decoded))

    zipped = create(client, tmp_path / "clip.mp4", chunk_size=12, use_zip_chunks=True)
    assert (zipped.data_compressed_chunk_type, zipped.data_original_chunk_type) == ("imageset", "video")
    buf = io.BytesIO()
    zipped.download_chunk(1, buf, quality="compressed")
    with zipfile.ZipFile(buf) as zf:
        names = zf.namelist()
        assert names == [f"{i:06d}.jpeg" for i in range(12)]
        assert close(Image.open(io.BytesIO(zf.read(names[3]))), 15)


def test_tus_upload_of_a_video_bigger_than_one_request(client, tmp_path):
    # the SDK sends files over its 100 MB bundle limit through TUS in 10 MB chunks
    make_video(tmp_path / "big.mp4", frames=12, pad_bytes=101 * 1024 * 1024)
    task = create(client, tmp_path / "big.mp4")
    assert task.size == 12
    assert close(Image.open(task.get_frame(11, quality="original")), 11)


def test_segments_with_default_and_explicit_overlap(client, tmp_path):
    make_video(tmp_path / "clip.mp4")
    task = create(client, tmp_path / "clip.mp4", spec={"segment_size": 12})
    assert task.overlap == 5  # interpolation mode default
    assert [(j.start_frame, j.stop_frame) for j in sorted(task.get_jobs(), key=lambda j: j.start_frame)] == \
        [(0, 11), (7, 18), (14, 25), (21, 29)]
    task = create(client, tmp_path / "clip.mp4", spec={"segment_size": 10, "overlap": 2})
    assert [(j.start_frame, j.stop_frame) for j in sorted(task.get_jobs(), key=lambda j: j.start_frame)] == \
        [(0, 9), (8, 17), (16, 25), (24, 29)]
    job = client.jobs.retrieve(min(task.get_jobs(), key=lambda j: j.start_frame).id)
    assert job.mode == "interpolation" and job.data_original_chunk_type == "video"
    assert close(Image.open(job.get_frame(9, quality="original")), 9)


def rect(frame, x, outside=False):
    return {"type": "rectangle", "frame": frame, "points": [x, 5.0, x + 10.0, 15.0], "outside": outside}


def three_jobs(client, tmp_path):
    make_video(tmp_path / "clip.mp4")
    task = create(client, tmp_path / "clip.mp4", spec={"segment_size": 12, "overlap": 2})
    jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
    assert [(j.start_frame, j.stop_frame) for j in jobs] == [(0, 11), (10, 21), (20, 29)]
    return task, task.get_labels()[0].id, [client.jobs.retrieve(j.id) for j in jobs]


def frames_of(track):
    return [(s.frame, s.outside) for s in track.shapes]


def test_track_across_jobs_reads_back_at_job_and_task_level(client, tmp_path):
    task, label, jobs = three_jobs(client, tmp_path)
    track = {"frame": 0, "label_id": label,
             "shapes": [rect(0, 0.0), rect(11, 22.0), rect(20, 40.0), rect(25, 40.0, True)]}
    task.set_annotations({"tracks": [track]})

    # job level: each job holds its piece; a piece starting mid-track gets an interpolated shape
    (second,) = jobs[1].get_annotations().tracks
    assert frames_of(second) == [(10, False), (11, False), (20, False)]
    assert second.shapes[0].points == pytest.approx([20.0, 5.0, 30.0, 15.0])
    (third,) = jobs[2].get_annotations().tracks
    assert frames_of(third) == [(20, False), (25, True)]
    # task level: the pieces match in the overlaps and merge back into one track
    (back,) = task.get_annotations().tracks
    assert frames_of(back) == [(0, False), (10, False), (11, False), (20, False), (25, True)]
    assert [s.points[0] for s in back.shapes] == pytest.approx([0.0, 20.0, 22.0, 40.0, 40.0])


def test_tracks_that_do_not_continue_stay_apart_at_task_level(client, tmp_path):
    task, label, jobs = three_jobs(client, tmp_path)
    jobs[0].set_annotations({"tracks": [{"frame": 0, "label_id": label, "shapes": [rect(0, 0.0)]}]})
    # drawn in job 2 from inside its overlap with job 1, somewhere else
    jobs[1].set_annotations({"tracks": [{"frame": 10, "label_id": label,
                                         "shapes": [rect(10, 40.0), rect(15, 45.0, True)]}]})
    back = sorted(task.get_annotations().tracks, key=lambda t: t.frame)
    # CVAT closes the unmatched earlier track where the overlap ends (frame 12)
    assert [frames_of(t) for t in back] == [[(0, False), (12, True)], [(10, False), (15, True)]]


def test_cvat_for_video_export_has_interpolated_boxes(client, tmp_path):
    make_video(tmp_path / "clip.mp4", frames=20)
    task = create(client, tmp_path / "clip.mp4")
    label = task.get_labels()[0].id
    task.set_annotations({"tracks": [{"frame": 0, "label_id": label, "shapes": [
        rect(0, 0.0), rect(10, 20.0), rect(15, 20.0, True)]}]})
    out = tmp_path / "export.zip"
    task.export_dataset("CVAT for video 1.1", out, include_images=False)
    with zipfile.ZipFile(out) as zf:
        root = ET.fromstring(zf.read("annotations.xml"))
    assert root.findtext("meta/task/mode") == "interpolation"
    assert root.findtext("meta/task/original_size/width") == str(W)
    tracks = root.findall("track")
    assert len(tracks) == 1 and tracks[0].get("label") == "car"
    boxes = {int(b.get("frame")): b for b in tracks[0].findall("box")}
    assert boxes[5].get("keyframe") == "0" and float(boxes[5].get("xtl")) == pytest.approx(10.0)
    assert boxes[10].get("keyframe") == "1" and boxes[15].get("outside") == "1"
    assert all(b.get("outside") == "0" for f, b in boxes.items() if f < 15)
