"""The fast upload path against a real fakecvat: what planning may trust (stored metadata whose
size matches the file) and what it must still check, media hashes recorded while the run
uploads (and after a crash), batches sent side by side keeping the samples' order, and share
files sized from their headers without being copied."""
import io
import json
from pathlib import Path

import pytest
import requests
import xxhash
from PIL import Image

import syncd
from syncd.cvat import CVATClient
from syncd.dataset import compute_metadata
from syncd.errors import SyncdError
from syncd.ops import hashing
from syncd.runs import RunStore

from sample_helpers import make_images

AUTH = ("admin", "admin")
OPTS = dict(label_field="gt", label_type="detections", classes=["cat", "dog"])


@pytest.fixture
def client(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def tagged(root: Path, names, *, metadata: bool = True) -> None:
    """Sample files tagged "todo", with their metadata as ``syncd tag`` / discovery leave it."""
    for name in names:
        doc = {"filepath": name, "tags": ["todo"]}
        if metadata:
            doc["metadata"] = compute_metadata(root / name)
        (root / (name + ".json")).write_text(json.dumps(doc))


def frames(url: str, tid: int) -> list[dict]:
    return requests.get(f"{url}/api/tasks/{tid}/data/meta", auth=AUTH).json()["frames"]


def content_hash(path: Path) -> str:
    """The hash a run records of a medium (XXH3-128 of its bytes), computed here independently."""
    return "xxh128:" + xxhash.xxh3_128_hexdigest(path.read_bytes())


def test_stored_metadata_is_trusted_but_a_truncated_file_is_still_skipped(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    tagged(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    data = (tmp_path / "b.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(data[: len(data) // 2])   # cut short after its metadata was taken
    before = (tmp_path / "a.jpg.json").read_bytes()
    result = syncd.annotate(tmp_path, "r1", tag="todo", client=client, **OPTS)
    assert set(result["skipped"]) == {"b.jpg"} and "cannot" in result["skipped"]["b.jpg"]
    assert [f["name"] for f in frames(fakecvat.url, result["tasks"][0])] == ["a.jpg", "c.jpg"]
    assert (tmp_path / "a.jpg.json").read_bytes() == before   # nothing rewritten for a trusted sample


def test_samples_without_metadata_gain_it_and_are_checked(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg", "b.png"])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    tagged(tmp_path, ["a.jpg", "b.png", "bad.jpg"], metadata=False)
    result = syncd.annotate(tmp_path, "r1", tag="todo", client=client, **OPTS)
    assert set(result["skipped"]) == {"bad.jpg"}
    for name in ("a.jpg", "b.png"):
        md = json.loads((tmp_path / (name + ".json")).read_text())["metadata"]
        assert md["_cls"] == "ImageMetadata" and md["size_bytes"] == (tmp_path / name).stat().st_size


def test_hashes_are_recorded_once_the_run_is_annotating(tmp_path, fakecvat, client):
    names = [f"img{i}.jpg" for i in range(5)]
    make_images(tmp_path, names)
    tagged(tmp_path, names)
    syncd.annotate(tmp_path, "r1", tag="todo", client=client, **OPTS)
    run = RunStore(tmp_path).get("r1")
    assert run["status"] == "annotating"
    assert run["hashes"] == {n: content_hash(tmp_path / n) for n in names}


def test_uploaded_files_are_hashed_as_they_are_sent(tmp_path):
    """The multipart body is unchanged by hashing, and each digest is of the bytes sent (small
    files go out whole, big ones in blocks)."""
    from syncd.cvat.upload import READ_BLOCK, MultipartStream
    small, big = tmp_path / "s.bin", tmp_path / "b.bin"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(bytes(range(256)) * (READ_BLOCK // 256 * 2 + 3))
    digests: dict = {}
    files = [("client_files[0]", "s.bin", str(small)), ("client_files[1]", "b.bin", str(big))]
    with_hash = MultipartStream([("f", "1")], files, digests=digests)
    body = b"".join(with_hash)
    assert len(body) == len(with_hash)
    assert body.count(big.read_bytes()) == 1 and body.count(small.read_bytes()) == 1
    assert {path: d[0] for path, d in digests.items()} == {str(small): content_hash(small), str(big): content_hash(big)}
    # written a moment ago: their timestamps could still be shared by a write in the same tick
    assert [d[1] for d in digests.values()] == [None, None]


def test_media_parts_carry_their_type_without_reading_the_systems_mime_tables(tmp_path):
    """Each part head names the file's type; media types come from syncd's own table, so the
    first upload of a process does not wait on ``mimetypes`` reading /etc/mime.types (~4 ms,
    in an upload thread, holding the GIL). Checked in a fresh interpreter: the module-level
    ``mimetypes`` state is per process."""
    import subprocess
    import sys
    names = ["a.JPG", "b.png", "c.webp", "d.tiff", "e.mp4", "f.mkv"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    code = f"""
import mimetypes, re
from syncd.cvat.upload import MultipartStream
files = [("client_files[%d]" % i, n, r"{tmp_path}/" + n) for i, n in enumerate({names!r})]
body = b"".join(MultipartStream([], files)).decode("latin-1")
print(re.findall(r"Content-Type: (\\S+)", body), mimetypes.inited)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(["image/jpeg", "image/png", "image/webp", "image/tiff", "video/mp4",
                               "video/x-matroska"]) + " False"
    from syncd.cvat.upload import content_type
    assert content_type("annotations.zip") == "application/zip"   # others: as mimetypes says


def test_an_uploading_run_starts_no_background_hashing(tmp_path, fakecvat, client):
    names = ["a.jpg", "b.jpg"]
    make_images(tmp_path, names)
    tagged(tmp_path, names)
    syncd.ops.plan_run(tmp_path, "r1", names, url=fakecvat.url, **OPTS)
    assert not hashing._jobs.get(hashing._job_key(tmp_path, "r1"))   # the upload hashes instead
    syncd.annotate(tmp_path, "r2", names, client=client, **OPTS)
    assert RunStore(tmp_path).get("r2")["hashes"] == {n: content_hash(tmp_path / n) for n in names}


def test_hashes_after_a_crash_are_taken_from_disk(tmp_path):
    """A process that planned a run and died leaves no background job: the batch's final
    write hashes the files itself."""
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    assert {n: h[0] for n, h in hashing.collect(tmp_path, "gone", ["a.jpg", "b.jpg"]).items()} == \
        {n: content_hash(tmp_path / n) for n in ("a.jpg", "b.jpg")}
    hashing.start(tmp_path, "r2", ["a.jpg", "b.jpg"])
    (tmp_path / "b.jpg").unlink()            # unreadable by then (or never readable): no hash
    got = hashing.collect(tmp_path, "r2", ["a.jpg", "b.jpg"], have={"a.jpg": "known"})
    assert set(got) <= {"b.jpg"}             # a.jpg was known; b.jpg hashed only if it still existed


def test_batches_sent_side_by_side_keep_the_sample_order(tmp_path, fakecvat, client):
    names = [f"s{i:02d}.jpg" for i in range(30)][::-1]   # an order sorting would change
    make_images(tmp_path, names)
    client.upload_batch_bytes = 3 * (tmp_path / names[0]).stat().st_size   # 10 batches
    client.upload_parallel = 4
    seen = []
    result = syncd.annotate(tmp_path, "r1", names, client=client,
                            progress=lambda done, total: seen.append((done, total)), **OPTS)
    assert [f["name"] for f in frames(fakecvat.url, result["tasks"][0])] == names
    total = sum((tmp_path / n).stat().st_size for n in names)
    assert seen and seen[-1] == (total, total)


def _jpeg_with_exif(path: Path, size) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # taken sideways: CVAT reports the upright size (its image reader swaps)
    Image.new("RGB", size, (10, 200, 30)).save(path, exif=exif.tobytes(), progressive=True)


def test_share_files_are_sized_from_headers_in_place(tmp_path, fakecvat_factory):
    share = tmp_path / "share"
    root = share / "ds"
    root.mkdir(parents=True)
    _jpeg_with_exif(root / "a.jpg", (70, 30))
    Image.new("RGB", (33, 21)).save(root / "b.png")
    Image.new("L", (17, 9)).save(root / "c.gif")
    names = ["a.jpg", "b.png", "c.gif"]
    server = fakecvat_factory(share_dir=share)
    with CVATClient(server.url, username="admin", password="admin") as c:
        result = syncd.annotate(root, "r1", names, client=c, share_root=str(share), **OPTS)
    meta = requests.get(f"{server.url}/api/tasks/{result['tasks'][0]}/data/meta", auth=AUTH).json()
    assert meta["storage"] == "share"
    assert [(f["name"], f["width"], f["height"]) for f in meta["frames"]] == \
        [("ds/a.jpg", 30, 70), ("ds/b.png", 33, 21), ("ds/c.gif", 17, 9)]
    frame = requests.get(f"{server.url}/api/tasks/{result['tasks'][0]}/data?type=frame&number=1&quality=original",
                         auth=AUTH)
    assert Image.open(io.BytesIO(frame.content)).size == (33, 21)
    assert not list(Path(server.app.config["MEDIA_DIR"]).rglob("b.png"))   # referenced, not copied
    # nothing was read to upload: the hashes came from the background job, from disk
    assert RunStore(root).get("r1")["hashes"] == {n: content_hash(root / n) for n in names}


def test_zero_copy_hashes_each_batch_while_cvat_takes_it(tmp_path, fakecvat_factory):
    """Planning a zero-copy run starts no hashing (it would contend with planning); each batch's
    media are hashed while its share names are sent, every batch's hashes are recorded."""
    share = tmp_path / "share"
    root = share / "ds"
    root.mkdir(parents=True)
    names = [f"s{i}.jpg" for i in range(5)]
    make_images(root, names)
    server = fakecvat_factory(share_dir=share)
    syncd.ops.plan_run(root, "planned", names, url=server.url, share_root=str(share), **OPTS)
    assert not hashing._jobs.get(hashing._job_key(root, "planned"))
    with CVATClient(server.url, username="admin", password="admin") as c:
        result = syncd.annotate(root, "r1", names, client=c, share_root=str(share), task_size=2, **OPTS)
    assert len(result["tasks"]) == 3
    run = RunStore(root).get("r1")
    assert run["hashes"] == {n: content_hash(root / n) for n in names}
    assert all(b["state"] == "annotating" for b in run["batches"]) and run["status"] == "annotating"
    assert not hashing._jobs.get(hashing._job_key(root, "r1"))   # every batch's job collected


def test_a_second_start_adds_to_the_jobs_not_yet_collected(tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    hashing.start(tmp_path, "r1", ["a.jpg"])
    hashing.start(tmp_path, "r1", ["b.jpg"])
    assert set(hashing._jobs[hashing._job_key(tmp_path, "r1")]) == {"a.jpg", "b.jpg"}
    got = hashing.collect(tmp_path, "r1", ["a.jpg", "b.jpg"])
    assert {n: h[0] for n, h in got.items()} == {n: content_hash(tmp_path / n) for n in ("a.jpg", "b.jpg")}
    assert hashing._job_key(tmp_path, "r1") not in hashing._jobs


@pytest.mark.parametrize("rule", [
    {"latency": 0.3, "status": None},                  # slow, as on a real CVAT (PBKDF2)
    {"status": 503, "retry_after": 0, "times": 1},     # the early attempt refused
], ids=["slow-login", "early-login-refused"])
def test_annotate_logs_in_once_whether_the_early_login_is_slow_or_refused(tmp_path, fakecvat, rule):
    # annotate logs in from a thread while it plans (CVATClient.log_in_ahead, whose own
    # tests show the thread logging in); the upload's requests then use that session, and an
    # early attempt that fails is made once, quietly, and the upload logs in itself as before
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    tagged(tmp_path, ["a.jpg", "b.jpg"])
    r = requests.post(fakecvat.url + "/_fakecvat/faults", json={"path": "^/api/auth/login$", **rule})
    assert r.status_code == 201
    with CVATClient(fakecvat.url, username="admin", password="admin", backoff=0.01) as cvat:
        result = syncd.annotate(tmp_path, "r1", tag="todo", client=cvat, **OPTS)
    assert len(frames(fakecvat.url, result["tasks"][0])) == 2
    rules = requests.get(fakecvat.url + "/_fakecvat/faults").json()["rules"]
    assert [r["hits"] for r in rules] == [1]


def test_a_wrong_password_still_fails_with_the_login_error_and_a_resumable_run(tmp_path, fakecvat):
    make_images(tmp_path, ["a.jpg"])
    tagged(tmp_path, ["a.jpg"])
    with CVATClient(fakecvat.url, username="admin", password="wrong") as cvat:
        with pytest.raises(SyncdError, match="login as 'admin'.*--resume"):
            syncd.annotate(tmp_path, "r1", tag="todo", client=cvat, **OPTS)
    with CVATClient(fakecvat.url, username="admin", password="admin") as cvat:
        result = syncd.resume(tmp_path, "r1", client=cvat)
    assert len(frames(fakecvat.url, result["tasks"][0])) == 1
