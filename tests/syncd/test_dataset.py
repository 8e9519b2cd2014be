"""The dataset directory: discovery, sample files, metadata, masks, atomic writes (real files)."""

import json
import os
import threading

import av
import numpy as np
import pytest
from PIL import Image

import syncd.dataset as dataset
import syncd.mask_files as mask_files
import syncd.media_metadata as media_metadata
from syncd.atomic import write_bytes_atomic, write_json_atomic
from syncd.errors import MediaError, SampleFileError, SyncdError


def make_image(path, size=(40, 30), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=0).save(path, format=fmt)
    return path


def make_video(path, frames=6, size=(32, 24), rate=10, codec="mpeg4"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            arr = np.full((size[1], size[0], 3), i * 20, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# --- discovery ---------------------------------------------------------------------------------


def test_discover_finds_media_skips_hidden_and_non_media(tmp_path):
    make_image(tmp_path / "street" / "0001.jpg")
    make_image(tmp_path / "street" / "0002.JPEG", fmt="JPEG")
    make_image(tmp_path / "with space" / "ünï côdé.png")
    make_image(tmp_path / ".syncd" / "x.jpg")
    make_image(tmp_path / "a" / ".cache" / "y.png")
    make_image(tmp_path / ".hidden.png")
    (tmp_path / "street" / "0001.jpg.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "dir.jpg").mkdir()  # a directory named like an image is not media
    make_image(tmp_path / "dir.jpg" / "inner.gif", fmt="GIF")
    assert list(dataset.discover(tmp_path)) == [
        "dir.jpg/inner.gif", "street/0001.jpg", "street/0002.JPEG", "with space/ünï côdé.png"]


def test_discover_symlinks_outside_root_and_loops(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_image(root / "in.jpg")
    make_image(outside / "secret.jpg")
    (root / "out_dir").symlink_to(outside, target_is_directory=True)
    (root / "out_file.jpg").symlink_to(outside / "secret.jpg")
    (root / "sub").mkdir()
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "self").symlink_to(root / "sub", target_is_directory=True)
    (root / "dangling.jpg").symlink_to(tmp_path / "nope.jpg")
    (root / "alias.jpg").symlink_to(root / "in.jpg")  # in-root file link: its own sample
    assert list(dataset.discover(root)) == ["alias.jpg", "in.jpg"]


def test_discover_finds_every_media_of_many_folders_once(tmp_path):
    # (its speed is measured in bench/, scale.*: 100k and 1M media roots)
    for d in range(20):
        sub = tmp_path / f"d{d:02}"
        sub.mkdir()
        for i in range(100):
            (sub / f"{i:05}.jpg").touch()
            if i % 2:
                (sub / f"{i:05}.jpg.json").touch()
    found = list(dataset.discover(tmp_path))
    assert len(found) == len(set(found)) == 2000
    assert set(found) == {f"d{d:02}/{i:05}.jpg" for d in range(20) for i in range(100)}


def test_is_media():
    assert dataset.is_media("a/b.JPG") and dataset.is_media("v.webm")
    assert not dataset.is_media(".syncd/a.jpg") and not dataset.is_media("a/.x/b.png")
    assert not dataset.is_media("a.jpg.json") and not dataset.is_media("README")


# --- safe paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "a\x00.jpg",
                                 b"\xff.jpg", "", ".", "a/..", "\udcff.jpg"])
def test_safe_rel_rejects_hostile_paths(tmp_path, bad):
    with pytest.raises(SampleFileError):
        dataset.safe_rel(tmp_path, bad)


def test_safe_rel_normalises_and_catches_symlink_escape(tmp_path):
    assert dataset.safe_rel(tmp_path, "./a//b/./c.jpg") == "a/b/c.jpg"
    (tmp_path / "esc").symlink_to("/tmp", target_is_directory=True)
    with pytest.raises(SampleFileError, match="outside the dataset root"):
        dataset.safe_rel(tmp_path, "esc/x.jpg")
    assert dataset.sample_file(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg.json"


# --- metadata ----------------------------------------------------------------------------------


def test_image_metadata(tmp_path):
    meta = dataset.compute_metadata(make_image(tmp_path / "a.png", (64, 48), "RGBA"))
    assert meta == {"_cls": "ImageMetadata", "size_bytes": (tmp_path / "a.png").stat().st_size,
                    "mime_type": "image/png", "width": 64, "height": 48, "num_channels": 4}
    meta = dataset.compute_metadata(make_image(tmp_path / "g.tif", (5, 7), "L"))
    assert (meta["width"], meta["height"], meta["num_channels"]) == (5, 7, 1)
    assert meta["mime_type"] == "image/tiff"


@pytest.mark.parametrize("name,codec", [("v.mp4", "mpeg4"), ("v.webm", "libvpx")])
def test_video_metadata(tmp_path, name, codec):
    meta = dataset.compute_metadata(make_video(tmp_path / name, frames=6, codec=codec))
    assert meta["_cls"] == "VideoMetadata"
    assert (meta["frame_width"], meta["frame_height"]) == (32, 24)
    assert meta["frame_rate"] == pytest.approx(10.0)
    assert meta["total_frame_count"] == 6
    assert meta["duration"] == pytest.approx(0.6, abs=0.11)
    assert meta["mime_type"] == ("video/mp4" if name.endswith("mp4") else "video/webm")


def test_bad_media_raise_media_error_naming_file(tmp_path):
    (tmp_path / "zero.jpg").touch()
    (tmp_path / "text.png").write_text("I am not a PNG")
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2000))
    good = make_image(tmp_path / "trunc.png", (50, 50))
    (tmp_path / "half.png").write_bytes(good.read_bytes()[:20])
    for name in ("zero.jpg", "text.png", "junk.mp4", "half.png", "missing.jpg"):
        with pytest.raises(MediaError, match=name):
            dataset.compute_metadata(tmp_path / name)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    make_image(tmp_path / "big.png", (100, 100))
    monkeypatch.setattr(media_metadata, "MAX_IMAGE_PIXELS", 5000)  # the guard lives there
    with pytest.raises(MediaError, match="too large"):
        dataset.compute_metadata(tmp_path / "big.png")


def test_content_hash(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"abc")
    # XXH3-128 of b"abc", prefixed with its name
    assert dataset.content_hash(tmp_path / "a.jpg") == "xxh128:06b05ab6733a618578af5f94892f3950"
    legacy = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256, as runs recorded before
    assert dataset.content_hash(tmp_path / "a.jpg", legacy=True) == legacy
    assert media_metadata.same_content(tmp_path / "a.jpg", legacy) and media_metadata.same_content(tmp_path / "a.jpg", dataset.content_hash(tmp_path / "a.jpg"))
    (tmp_path / "a.jpg").write_bytes(b"abd")
    assert not media_metadata.same_content(tmp_path / "a.jpg", legacy)
    assert not media_metadata.same_content(tmp_path / "a.jpg", "xxh128:06b05ab6733a618578af5f94892f3950")


# --- sample files ------------------------------------------------------------------------------


def test_read_sample_fresh_is_not_written(tmp_path):
    make_image(tmp_path / "s" / "a.jpg")
    sample = dataset.read_sample(tmp_path, "s/a.jpg")
    assert sample["filepath"] == "s/a.jpg" and sample["tags"] == []
    assert sample["metadata"]["width"] == 40
    assert not (tmp_path / "s" / "a.jpg.json").exists()
    with pytest.raises(SampleFileError, match="no sample file"):
        dataset.read_sample(tmp_path, "s/a.jpg", create=False)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_unparsable_sample_file_left_untouched(tmp_path, content):
    make_image(tmp_path / "a.jpg")
    sf = tmp_path / "a.jpg.json"
    sf.write_bytes(content)
    before = sf.stat().st_mtime_ns
    with pytest.raises(SampleFileError, match=r"a\.jpg\.json: invalid sample file"):
        dataset.read_sample(tmp_path, "a.jpg")
    with pytest.raises(SampleFileError, match="invalid sample file"):
        dataset.set_tags(tmp_path, "a.jpg", add=["x"])
    assert sf.read_bytes() == content and sf.stat().st_mtime_ns == before


def test_update_keeps_unknown_keys_and_writes_beside_media(tmp_path):
    make_image(tmp_path / "a b" / "ü.jpg")
    sf = tmp_path / "a b" / "ü.jpg.json"
    sf.write_text(json.dumps({"filepath": "a b/ü.jpg", "tags": ["keep"], "custom": {"x": [1]},
                              "ground_truth": {"_cls": "Detections", "detections": []}}))
    out = dataset.set_tags(tmp_path, "a b/ü.jpg", add=["requires_annotation", "keep"])
    on_disk = json.loads(sf.read_text())
    assert on_disk == out
    assert on_disk["tags"] == ["keep", "requires_annotation"]
    assert on_disk["custom"] == {"x": [1]} and on_disk["ground_truth"]["_cls"] == "Detections"
    out = dataset.set_tags(tmp_path, "a b/ü.jpg", add=["annotated"], remove=["requires_annotation"])
    assert json.loads(sf.read_text())["tags"] == ["keep", "annotated"]


def test_update_sample_creates_missing_file_with_metadata(tmp_path):
    make_image(tmp_path / "a.jpg")
    dataset.set_tags(tmp_path, "a.jpg", add=["t"])
    on_disk = json.loads((tmp_path / "a.jpg.json").read_text())
    assert on_disk["filepath"] == "a.jpg" and on_disk["tags"] == ["t"]
    assert on_disk["metadata"]["_cls"] == "ImageMetadata"


def test_update_sample_concurrent_edit_is_not_lost(tmp_path):
    make_image(tmp_path / "a.jpg")
    sf = tmp_path / "a.jpg.json"
    sf.write_text(json.dumps({"filepath": "a.jpg", "tags": []}))
    calls = []

    def change(sample):
        calls.append(json.loads(json.dumps(sample)))
        if len(calls) == 1:
            # Another tool edits the file between syncd's read and its write.
            other = json.loads(sf.read_text())
            other["note"] = "written by a person"
            other["tags"].append("human")
            sf.write_text(json.dumps(other))
        sample["tags"].append("syncd")
        sample["ours"] = 1

    out = dataset.update_sample(tmp_path, "a.jpg", change)
    on_disk = json.loads(sf.read_text())
    assert on_disk == out
    assert on_disk["note"] == "written by a person" and on_disk["ours"] == 1
    assert on_disk["tags"] == ["human", "syncd"]
    assert len(calls) == 2 and calls[1]["note"] == "written by a person"


def test_update_sample_no_change_does_not_rewrite(tmp_path):
    make_image(tmp_path / "a.jpg")
    sf = tmp_path / "a.jpg.json"
    sf.write_text('{"filepath": "a.jpg", "tags": ["t"]}')
    dataset.set_tags(tmp_path, "a.jpg", add=["t"])
    assert sf.read_text() == '{"filepath": "a.jpg", "tags": ["t"]}'


def test_update_sample_keeps_mode_and_leaves_no_temp_files(tmp_path):
    make_image(tmp_path / "a.jpg")
    sf = tmp_path / "a.jpg.json"
    sf.write_text("{}")
    sf.chmod(0o640)
    for i in range(5):
        dataset.update_sample(tmp_path, "a.jpg", lambda s, i=i: {**s, "n": i})
    assert sf.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.jpg.json"]
    assert json.loads(sf.read_text()) == {"n": 4}


def test_a_new_sample_file_gets_the_umask_mode_like_any_new_file(tmp_path):
    make_image(tmp_path / "a.jpg")
    old = os.umask(0o027)
    try:
        dataset.set_tags(tmp_path, "a.jpg", add=["t"])
        (tmp_path / "by_open.txt").write_text("x")      # what open(..., "w") gives
    finally:
        os.umask(old)
    assert (tmp_path / "a.jpg.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "by_open.txt").stat().st_mode & 0o777 == 0o640


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")
    assert not write_bytes_atomic(target, b"new", before_replace=lambda: False)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_errors_are_one_line(tmp_path):
    err = SyncdError("line one\nline two")
    assert str(err) == "line one line two"


# --- masks -------------------------------------------------------------------------------------


def write_mask(root, rel_media: str, field: str, label_id: str, array) -> str:
    """What a load does for one new mask: its path, then a batch of one staged and committed."""
    rel = mask_files.mask_rel(rel_media, field, label_id)
    mask_files.commit_masks(mask_files.stage_masks(root, [(rel, array)]))
    return rel

def test_masks_round_trip_below_root_and_hidden(tmp_path):
    make_image(tmp_path / "s" / "a.jpg")
    inst = np.zeros((6, 8), bool)
    inst[1:3, 2:5] = True
    rel = write_mask(tmp_path, "s/a.jpg", "ground_truth", "65a0c0ffee0000000000abcd", inst)
    assert rel == "s/.masks/a.jpg/ground_truth/65a0c0ffee0000000000abcd.png"
    assert np.array_equal(mask_files.read_mask(tmp_path, rel) > 0, inst)
    seg = np.arange(12, dtype=np.int64).reshape(3, 4) * 20
    rel2 = write_mask(tmp_path, "s/a.jpg", "frames.seg", "id2", seg)
    assert np.array_equal(mask_files.read_mask(tmp_path, rel2), seg)
    wide = np.array([[0, 1000], [65535, 3]])
    rel3 = write_mask(tmp_path, "s/a.jpg", "seg", "id3", wide)
    assert np.array_equal(mask_files.read_mask(tmp_path, tmp_path / rel3), wide)
    assert list(dataset.discover(tmp_path)) == ["s/a.jpg"]  # masks are never media


def test_masks_refuse_escapes_and_bad_arrays(tmp_path):
    make_image(tmp_path / "a.jpg")
    with pytest.raises(MediaError):
        write_mask(tmp_path, "a.jpg", "../x", "id", np.zeros((2, 2), bool))
    with pytest.raises(MediaError):
        write_mask(tmp_path, "a.jpg", "f", "id", np.zeros((2, 2), float))
    with pytest.raises(SampleFileError):
        mask_files.read_mask(tmp_path, "../outside.png")
    with pytest.raises(SampleFileError):
        mask_files.read_mask(tmp_path, "/etc/hostname")
    with pytest.raises(MediaError, match="not found"):
        mask_files.read_mask(tmp_path, "nope.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_a_sample_file_error(tmp_path):
    make_image(tmp_path / "ro" / "a.jpg")
    (tmp_path / "ro").chmod(0o555)
    try:
        with pytest.raises(SampleFileError, match="cannot write sample file"):
            dataset.set_tags(tmp_path, "ro/a.jpg", add=["x"])
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_discover_missing_root(tmp_path):
    with pytest.raises(SyncdError, match="not a directory"):
        list(dataset.discover(tmp_path / "nope"))


@pytest.mark.parametrize("levels, refused", [(99, None), (100, "nested deeper than 100 levels"),
                                             (5000, "nested")])
def test_deeply_nested_sample_files_are_refused_in_one_line(tmp_path, levels, refused):
    """A sample file nested past 100 levels (a field value of lists in lists) is refused with
    a line naming the file; up to that it reads. 5000 levels is past every parser's limit."""
    make_image(tmp_path / "a.jpg")
    value = "[" * levels + "]" * levels
    text = '{"filepath": "a.jpg", "tags": [], "x": %s}' % value
    (tmp_path / "a.jpg.json").write_text(text)
    if refused is None:
        assert dataset.read_sample(tmp_path, "a.jpg")["filepath"] == "a.jpg"
        return
    with pytest.raises(SampleFileError) as err:
        dataset.read_sample(tmp_path, "a.jpg")
    assert str(tmp_path / "a.jpg.json") in str(err.value) and refused in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fmt, ext, orientation, size", [
    ("JPEG", ".jpg", 6, (30, 40)), ("JPEG", ".jpg", 8, (30, 40)), ("JPEG", ".jpg", 3, (40, 30)),
    ("JPEG", ".jpg", 1, (40, 30)), ("PNG", ".png", 6, (40, 30))])
def test_image_metadata_sized_as_fiftyone_sizes_photos_taken_sideways(tmp_path, fmt, ext, orientation, size):
    """FiftyOne's metadata swaps width and height of a JPEG whose EXIF orientation turns it a
    quarter (5-8), and only of JPEGs; syncd's metadata is FiftyOne's."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / ("a" + ext)
    Image.new("RGB", (40, 30)).save(path, fmt, exif=exif.tobytes())
    meta = media_metadata.compute_metadata(path)
    assert (meta["width"], meta["height"]) == size  # (tests/fiftyone checks FiftyOne agrees)


def _raised(fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        return e


@pytest.mark.parametrize("read", [lambda root, rel: dataset.read_sample(root, rel, create=False),
                                  dataset.read_discovered], ids=["read_sample", "read_discovered"])
def test_a_sample_file_is_read_through_a_symlink_only_inside_the_root_and_only_if_a_file(tmp_path, read):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.json"
    outside.write_text('{"filepath": "secret", "tags": ["leak"]}')
    (root / "kept.json").write_text('{"filepath": "in.jpg", "tags": ["inside"]}')
    (root / "in.jpg.json").symlink_to(root / "kept.json")
    (root / "out.jpg.json").symlink_to(outside)
    (root / "dir.jpg.json").mkdir()
    os.mkfifo(root / "fifo.jpg.json")  # nobody writes to it: opening it for reading must not block
    assert read(root, "in.jpg")["tags"] == ["inside"]
    with pytest.raises(SampleFileError, match="outside the dataset root"):
        read(root, "out.jpg")
    for name in ("dir.jpg", "fifo.jpg"):
        # in a thread, so that a reader that blocks on the FIFO fails this test instead of
        # hanging the suite
        outcome = []
        reader = threading.Thread(target=lambda: outcome.append(_raised(read, root, name)), daemon=True)
        reader.start()
        reader.join(10)
        assert outcome, f"reading {name}.json blocked"
        assert isinstance(outcome[0], SampleFileError), outcome
        assert f"{name}.json: cannot read sample file: not a regular file" in str(outcome[0])
    with pytest.raises(SampleFileError, match="none.jpg.json: no sample file"):
        read(root, "none.jpg")


@pytest.mark.parametrize("name", ["", ".", "..", ".mp4", "..mp4", "a.", "a..b", "A.MP4", "d.x/file",
                                  "d.x/.hidden", "d/..x.JPG", "d/a.b.c", "/a.png", "a/b/c", ".a.b",
                                  "x.tar.gz", "d/...", "é.JPEG"])
def test_media_ext_is_posix_splitext_lowered(name):
    import posixpath

    from syncd.media_metadata import media_ext
    assert media_ext(name) == posixpath.splitext(name)[1].lower()
