"""Attaching data over HTTP: chunked and TUS uploads, share files, hostile names, async timing."""
import base64
import io
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from PIL import Image


def png(i=0, size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size[0] + i, size[1]), (i * 30 % 255, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def session(server, user="admin", password="admin"):
    s = requests.Session()
    s.auth = (user, password)
    s.base = server.url
    return s


def new_task(s, **extra):
    r = s.post(s.base + "/api/tasks", json={"name": "t", "labels": [{"name": "a"}], **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def poll(s, rq_id, limit=200):
    for _ in range(limit):
        r = s.get(s.base + "/api/requests/" + quote(rq_id, safe=""))
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("finished", "failed"):
            return r.json()
    raise AssertionError("request never finished")


def files_of(*names):
    return {f"client_files[{i}]": (n, png(i), "image/png") for i, n in enumerate(names)}


def test_chunked_upload_status_codes_and_rq_id(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    url = f"{s.base}/api/tasks/{tid}/data/"
    assert s.post(url, headers={"Upload-Start": ""}).status_code == 202
    r = s.post(url, headers={"Upload-Multiple": ""}, files=files_of("b.png"))
    assert r.status_code == 400 and r.json() == {"image_quality": ["This field is required."]}
    r = s.post(url, headers={"Upload-Multiple": ""}, files=files_of("/home/u/b.png", "a.png"), data={"image_quality": "70"})
    assert r.status_code == 200
    r = s.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 70})
    assert r.status_code == 202 and r.json() == {"rq_id": f"action=create&target=task&target_id={tid}"}
    req = poll(s, r.json()["rq_id"])
    assert req["status"] == "finished" and req["operation"]["type"] == "create:task"
    assert req["owner"]["username"] == "admin"
    meta = s.get(f"{s.base}/api/tasks/{tid}/data/meta").json()
    assert [f["name"] for f in meta["frames"]] == ["a.png", "b.png"]
    r = s.post(url, headers={"Upload-Start": ""})
    assert r.status_code == 400 and r.json() == "Adding more data is not supported"


def test_tus_upload_offsets_conflicts_and_head(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    url = f"{s.base}/api/tasks/{tid}/data/"
    payload = png(3, (300, 200))
    s.post(url, headers={"Upload-Start": ""})
    r = s.post(url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(payload)),
                             "Upload-Metadata": "filename " + base64.b64encode(b"/tmp/x/big.png").decode()})
    assert r.status_code == 201
    loc = r.headers["Location"]
    assert loc.startswith(fakecvat.url + f"/api/tasks/{tid}/data/") and r.headers["Upload-Filename"] == "big.png"
    half = len(payload) // 2
    r = s.patch(loc, data=payload[:half], headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0",
                                                   "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(half)
    r = s.patch(loc, data=payload[half:], headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 409 and r.headers["Upload-Offset"] == str(half)
    r = s.head(loc)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == str(half) and r.headers["Upload-Length"] == str(len(payload))
    assert session(fakecvat, "user1", "user1-pass").head(loc).status_code == 403
    r = s.patch(loc, data=payload[half:], headers={"Upload-Offset": str(half), "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(payload))
    r = s.post(url, headers={"Upload-Length": "10", "Upload-Metadata": "filename " + base64.b64encode(b"big.png").decode()})
    assert r.status_code == 409
    r = s.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 50})
    assert r.status_code == 202
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    frame = s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number=0&quality=original")
    assert frame.content == payload


@pytest.mark.parametrize("name", ["..", "../", "a/..", "\x00evil.png", "dir/"])
def test_hostile_names_rejected_and_nothing_written_outside(fakecvat, name):
    s = session(fakecvat)
    tid = new_task(s)
    r = s.post(f"{s.base}/api/tasks/{tid}/data", files={"client_files[0]": (name, png(), "image/png")},
               data={"image_quality": "70"})
    assert r.status_code == 400, r.text
    media = Path(fakecvat.app.config["MEDIA_DIR"])
    assert [p for p in media.rglob("*") if p.is_file()] == []


def test_traversal_name_keeps_only_basename(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    r = s.post(f"{s.base}/api/tasks/{tid}/data", files={"client_files[0]": ("../../../escape.png", png(), "image/png")},
               data={"image_quality": "70"})
    assert r.status_code == 202
    media = Path(fakecvat.app.config["MEDIA_DIR"])
    written = [p for p in media.rglob("*") if p.is_file()]
    assert written == [media / "tasks" / str(tid) / "raw" / "escape.png"]


def test_server_files_from_share_and_escape_rejected(fakecvat_factory, tmp_path):
    share = tmp_path / "share"
    (share / "seq").mkdir(parents=True)
    for i in (10, 9, 1):
        (share / "seq" / f"img{i}.png").write_bytes(png(i))
    (tmp_path / "secret.png").write_bytes(png())
    server = fakecvat_factory(share_dir=share)
    s = session(server)
    tid = new_task(s)
    r = s.post(f"{s.base}/api/tasks/{tid}/data", json={"image_quality": 70, "server_files": ["../secret.png"]})
    assert r.status_code == 400 and "server_files" in r.json()
    r = s.post(f"{s.base}/api/tasks/{tid}/data", json={"image_quality": 70, "server_files": ["seq/"],
                                                      "sorting_method": "natural"})
    assert r.status_code == 202, r.text
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    meta = s.get(f"{s.base}/api/tasks/{tid}/data/meta").json()
    assert [f["name"] for f in meta["frames"]] == ["seq/img1.png", "seq/img9.png", "seq/img10.png"]
    assert meta["storage"] == "share"
    frame = s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number=2&quality=original")
    assert frame.content == (share / "seq" / "img10.png").read_bytes()


def test_async_after_polls_and_after_seconds(fakecvat):
    s = session(fakecvat)
    assert s.put(fakecvat.url + "/_fakecvat/async", json={"mode": "polls", "value": 3}).status_code == 200
    tid = new_task(s)
    rq = s.post(f"{s.base}/api/tasks/{tid}/data", files=files_of("a.png"), data={"image_quality": "70"}).json()["rq_id"]
    seen = [s.get(s.base + "/api/requests/" + quote(rq, safe="")).json()["status"] for _ in range(3)]
    assert seen[:2] == ["started", "started"] and seen[2] == "finished"
    assert s.get(f"{s.base}/api/tasks/{tid}").json()["size"] == 1

    s.put(fakecvat.url + "/_fakecvat/async", json={"mode": "seconds", "value": 0.5})
    tid = new_task(s)
    s.post(f"{s.base}/api/tasks/{tid}/data", files=files_of("a.png"), data={"image_quality": "70"})
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["size"] == 0 and task["jobs"]["count"] == 0 and "data" not in task
    assert s.get(f"{s.base}/api/tasks/{tid}/status").json()["state"] in ("Queued", "Started")
    time.sleep(0.6)
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["size"] == 1 and task["jobs"]["count"] == 1


def test_request_visibility_and_unknown_id(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    rq = s.post(f"{s.base}/api/tasks/{tid}/data", files=files_of("a.png"), data={"image_quality": "70"}).json()["rq_id"]
    other = session(fakecvat, "user1", "user1-pass")
    assert other.get(s.base + "/api/requests/" + quote(rq, safe="")).status_code == 403
    assert other.get(s.base + "/api/requests").json()["count"] == 0
    r = s.get(s.base + "/api/requests/" + quote("action=create&target=task&target_id=999", safe=""))
    assert r.status_code == 404 and r.text == "There is no request with specified id"
    listed = s.get(s.base + "/api/requests?task_id=%d" % tid).json()
    assert [x["id"] for x in listed["results"]] == [rq]


def test_unreadable_file_fails_with_message_and_task_stays_empty(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    r = s.post(f"{s.base}/api/tasks/{tid}/data", data={"image_quality": "70"},
               files={"client_files[0]": ("good.png", png(), "image/png"),
                      "client_files[1]": ("corrupt.jpg", b"\xff\xd8garbage", "image/jpeg")})
    req = poll(s, r.json()["rq_id"])
    assert req["status"] == "failed" and "corrupt.jpg" in req["message"]
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["size"] == 0 and "data" not in task
    assert s.get(f"{s.base}/api/tasks/{tid}/status").json()["state"] == "Failed"
    # a failed attempt can be followed by a good one
    r = s.post(f"{s.base}/api/tasks/{tid}/data", files=files_of("a.png"), data={"image_quality": "70"})
    assert r.status_code == 202 and poll(s, r.json()["rq_id"])["status"] == "finished"


def test_thousand_images_in_one_request_make_ten_jobs(fakecvat):
    # (how fast: bench/upload.py's upload.fakecvat_ready, not a timed test)
    s = session(fakecvat)
    tid = new_task(s, segment_size=100)
    blob = png()
    files = {f"client_files[{i}]": (f"img_{i:04d}.png", blob, "image/png") for i in range(1000)}
    r = s.post(f"{s.base}/api/tasks/{tid}/data", files=files, data={"image_quality": "70"})
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["size"] == 1000 and task["jobs"]["count"] == 10


def test_frame_and_chunk_errors(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    s.post(f"{s.base}/api/tasks/{tid}/data", files=files_of("a.png", "b.png", "c.png"),
           data={"image_quality": "70", "chunk_size": "2"})
    r = s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number=3")
    assert r.status_code == 400 and r.json() == ["The frame number should be in the [0, 2] range"]
    r = s.get(f"{s.base}/api/tasks/{tid}/data?type=chunk&number=1")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip" and r.headers["X-Checksum"]
    import zipfile
    assert zipfile.ZipFile(io.BytesIO(r.content)).namelist() == ["000000.jpeg"]
    assert s.get(f"{s.base}/api/tasks/{tid}/data?type=chunk&number=2").status_code == 400
    assert s.get(f"{s.base}/api/tasks/{tid}/data?type=bogus&number=0").status_code == 400
    r = s.get(f"{s.base}/api/tasks/{tid}/preview")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "JPEG"
    empty = new_task(s)
    assert s.get(f"{s.base}/api/tasks/{empty}/preview").status_code == 404


def make_video(path, frames=12, size=(64, 48)):
    import av
    import numpy as np
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), i * 20, dtype=np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def test_video_task_meta_frames_and_step(fakecvat, tmp_path):
    s = session(fakecvat)
    tid = new_task(s, segment_size=3)
    make_video(tmp_path / "clip.mp4")
    r = s.post(f"{s.base}/api/tasks/{tid}/data", data={"image_quality": "90", "frame_filter": "step=2"},
               files={"client_files[0]": ("clip.mp4", (tmp_path / "clip.mp4").read_bytes(), "video/mp4")})
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert (task["size"], task["mode"], task["data_compressed_chunk_type"]) == (6, "interpolation", "video")
    meta = s.get(f"{s.base}/api/tasks/{tid}/data/meta").json()
    assert [(f["name"], f["width"], f["height"]) for f in meta["frames"]] == [("clip.mp4", 64, 48)]
    assert (meta["start_frame"], meta["stop_frame"], meta["frame_filter"]) == (0, 10, "step=2")
    frame = Image.open(io.BytesIO(s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number=3").content))
    assert frame.size == (64, 48) and abs(frame.getpixel((10, 10))[0] - 120) < 12  # source frame 6
    assert task["overlap"] == 1  # interpolation default 5, capped at segment_size // 2


def test_status_without_request_is_finished(fakecvat):
    s = session(fakecvat)
    tid = new_task(s)
    r = s.get(f"{s.base}/api/tasks/{tid}/status")
    assert r.json() == {"state": "Finished", "message": "", "progress": 0.0} and r.headers["Deprecation"] == "true"


def test_a_share_file_damaged_after_task_creation_is_a_clear_400_not_a_500(tmp_path):
    """Share files are read in place: one truncated after the task was made answers its frame
    requests with a 400 naming the frame, and the server keeps serving the others."""
    from PIL import Image

    from fakecvat import FakeCVAT
    share = tmp_path / "share"
    share.mkdir()
    for name in ("a.jpg", "b.jpg"):
        buf = io.BytesIO()
        Image.new("RGB", (320, 240), (200, 30, 30)).save(buf, format="JPEG")
        (share / name).write_bytes(buf.getvalue())
    with FakeCVAT(share_dir=share) as server:
        s = requests.Session()
        s.auth = ("admin", "admin")
        tid = s.post(server.url + "/api/tasks", json={"name": "t", "labels": [{"name": "x"}]}).json()["id"]
        r = s.post(server.url + f"/api/tasks/{tid}/data", json={"image_quality": 70,
                                                                 "server_files": ["a.jpg", "b.jpg"]})
        assert r.status_code == 202, r.text
        rq = r.json()["rq_id"]
        for _ in range(100):
            if s.get(server.url + f"/api/requests/{requests.utils.quote(rq, safe='')}").json()["status"] == "finished":
                break
        data = (share / "a.jpg").read_bytes()
        (share / "a.jpg").write_bytes(data[: len(data) // 3])
        r = s.get(server.url + f"/api/tasks/{tid}/data", params={"type": "frame", "number": 0, "quality": "compressed"})
        assert r.status_code == 400 and "a.jpg" in r.text, (r.status_code, r.text)
        # "original" is the stored bytes, served as they are now (nothing is decoded)
        r = s.get(server.url + f"/api/tasks/{tid}/data", params={"type": "frame", "number": 0, "quality": "original"})
        assert r.status_code == 200 and r.content == data[: len(data) // 3]
        (share / "b.jpg").unlink()
        r = s.get(server.url + f"/api/tasks/{tid}/data", params={"type": "frame", "number": 1, "quality": "original"})
        assert r.status_code == 400 and "b.jpg" in r.text
        assert s.get(server.url + "/api/server/about").status_code == 200


def test_server_files_through_symlinks(fakecvat_factory, tmp_path):
    """A symlink inside the share is followed and the name kept as given (CVAT normalizes names,
    it does not resolve them); one that leads out of the share, as a directory or as the file
    itself, is refused before anything is read."""
    share, outside = tmp_path / "share", tmp_path / "outside"
    (share / "real").mkdir(parents=True)
    outside.mkdir()
    (share / "real" / "a.png").write_bytes(png(1))
    (outside / "secret.png").write_bytes(png(2))
    (share / "alias").symlink_to(share / "real")
    (share / "out").symlink_to(outside)
    (share / "evil.png").symlink_to(outside / "secret.png")
    server = fakecvat_factory(share_dir=share)
    s = session(server)
    for name in ("out/secret.png", "evil.png", "real/../out/secret.png"):
        tid = new_task(s)
        r = s.post(f"{s.base}/api/tasks/{tid}/data", json={"image_quality": 70, "server_files": [name]})
        assert r.status_code == 400 and "outside the share" in r.text, (name, r.text)
    tid = new_task(s)
    r = s.post(f"{s.base}/api/tasks/{tid}/data",
               json={"image_quality": 70, "server_files": ["alias/a.png", "real/./../real/a.png"]})
    assert r.status_code == 202, r.text
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    meta = s.get(f"{s.base}/api/tasks/{tid}/data/meta").json()
    assert [f["name"] for f in meta["frames"]] == ["alias/a.png", "real/a.png"]


def sideways(fmt: str, orientation: int) -> bytes:
    """A 40x30 photo stored sideways: red in its stored top-left corner, EXIF orientation set."""
    im = Image.new("RGB", (40, 30), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[274] = orientation
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif.tobytes(), quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("how", ["upload", "share"])
def test_exif_orientation_sizes_and_frames_upright(fakecvat_factory, tmp_path, fmt, how):
    """CVAT sizes an image as it shows once its EXIF orientation is applied (orientations 5-8
    swap width and height) and serves compressed frames upright; the original frame stays the
    stored bytes. Orientation 6 turns the stored top-left corner to the top right."""
    ext = ".jpg" if fmt == "JPEG" else ".png"
    files = {f"turned{ext}": sideways(fmt, 6), f"flipped{ext}": sideways(fmt, 3)}
    share = tmp_path / "share"
    share.mkdir()
    for name, data in files.items():
        (share / name).write_bytes(data)
    server = fakecvat_factory(share_dir=share)
    s = session(server)
    tid = new_task(s)
    if how == "upload":
        parts = {f"client_files[{i}]": (n, d, "image/" + fmt.lower()) for i, (n, d) in enumerate(files.items())}
        r = s.post(f"{s.base}/api/tasks/{tid}/data", files=parts, data={"image_quality": "95"})
    else:
        r = s.post(f"{s.base}/api/tasks/{tid}/data", json={"image_quality": 95, "server_files": list(files)})
    assert r.status_code == 202, r.text
    assert poll(s, r.json()["rq_id"])["status"] == "finished"
    meta = s.get(f"{s.base}/api/tasks/{tid}/data/meta").json()
    sizes = {f["name"]: (f["width"], f["height"]) for f in meta["frames"]}
    assert sizes == {f"flipped{ext}": (40, 30), f"turned{ext}": (30, 40)}
    number = [f["name"] for f in meta["frames"]].index(f"turned{ext}")
    shown = Image.open(io.BytesIO(s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number={number}"
                                        f"&quality=compressed").content))
    assert shown.size == (30, 40)
    red, blue = shown.getpixel((shown.width - 3, 2)), shown.getpixel((2, 2))
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60
    original = s.get(f"{s.base}/api/tasks/{tid}/data?type=frame&number={number}&quality=original")
    assert original.content == files[f"turned{ext}"]


@pytest.mark.parametrize("order", ["II", "MM"])
def test_exif_orientation_found_in_either_byte_order(tmp_path, order):
    """A JPEG's EXIF block may be little- or big-endian (cameras write both): the header walk
    finds the orientation either way, in an upload and in a share file's header."""
    from fakecvat.media import probe_image_bytes, probe_image_header
    o = "little" if order == "II" else "big"
    entry = (274).to_bytes(2, o) + (3).to_bytes(2, o) + (1).to_bytes(4, o) + (6).to_bytes(2, o) + b"\0\0"
    tiff = order.encode() + (42).to_bytes(2, o) + (8).to_bytes(4, o) + (1).to_bytes(2, o) + entry + bytes(4)
    app1 = b"Exif\0\0" + tiff
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    data = jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]
    assert Image.open(io.BytesIO(data)).getexif().get(274) == 6   # a well-formed EXIF block
    assert probe_image_bytes(data, "a.jpg") == (30, 40)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    assert probe_image_header(path) == (30, 40)
