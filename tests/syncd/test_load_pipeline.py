"""The fast load path keeps the guarantees: labels drawn in many jobs (downloaded from several
threads, each with its own client) all land in the right sample files; a sample file edited
between syncd's read and its write keeps the edit (the merge is redone on the new content);
re-loading after the run was recorded changes nothing; mask files are written once per label."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests
from PIL import Image

import syncd
from syncd import dataset, mask_files
from syncd.cvat import CVATClient

AUTH = ("admin", "admin")
W, H = 64, 48
OPTS = dict(label_field="gt", label_type="detections", classes=["cat", "dog"])


def make(root: Path, n: int) -> list[str]:
    rels = []
    for i in range(n):
        rel = f"s/img{i:02d}.jpg"
        (root / "s").mkdir(exist_ok=True)
        Image.new("RGB", (W, H), (i * 9 % 255, 80, 120)).save(root / rel)
        (root / (rel + ".json")).write_text(json.dumps({"filepath": rel, "tags": ["todo"], "keep": i}))
        rels.append(rel)
    return rels


def draw(url: str, tid: int, per_frame: dict[int, int], kind: str = "rectangle") -> None:
    s = requests.Session()
    s.auth = AUTH
    labels = s.get(f"{url}/api/labels", params={"task_id": tid, "page_size": "all"}).json()["results"]
    lid = next(lb["id"] for lb in labels if lb["name"] == "cat")
    shapes = []
    for frame, k in per_frame.items():
        for j in range(k):
            box = [2.0 + j, 3.0, 20.0 + j, 30.0]
            points = box if kind == "rectangle" else [0, 19 * 28, 2 + j, 3, 20 + j, 30]
            shapes.append({"type": kind, "frame": frame, "label_id": lid, "points": points,
                           "attributes": [], "group": 0, "source": "manual", "occluded": False,
                           "z_order": 0, "rotation": 0.0})
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"version": 0, "tags": [], "tracks": [], "shapes": shapes})
    assert r.status_code == 200, r.text


def labels_of(root: Path, rel: str) -> list[dict]:
    doc = json.loads((root / (rel + ".json")).read_text())
    return (doc.get("gt") or {}).get("detections") or []


def test_labels_from_many_jobs_all_land_in_their_samples_and_a_reload_changes_nothing(tmp_path, fakecvat):
    rels = make(tmp_path, 12)
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        tid = syncd.annotate(tmp_path, "r", rels, client=client, segment_size=2, **OPTS)["tasks"][0]
        assert len(client.jobs(tid)) == 6
        draw(fakecvat.url, tid, {f: f % 4 + 1 for f in range(12)})
        summary = syncd.load_annotations(tmp_path, "r", client=client)
        assert summary["samples"] == 12 and summary["labels"] == sum(f % 4 + 1 for f in range(12))
        before = {rel: (tmp_path / (rel + ".json")).read_bytes() for rel in rels}
        for f, rel in enumerate(rels):
            doc = json.loads(before[rel])
            assert len(labels_of(tmp_path, rel)) == f % 4 + 1, rel
            assert doc["keep"] == f and doc["filepath"] == rel   # keys syncd does not own survive
        syncd.load_annotations(tmp_path, "r", client=client)
        assert {rel: (tmp_path / (rel + ".json")).read_bytes() for rel in rels} == before


def test_a_sample_edited_between_read_and_write_keeps_the_edit(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.jpg.json").write_text(json.dumps({"filepath": "a.jpg", "tags": ["todo"]}))

    def change(sample):
        sample["tags"] = [t for t in sample["tags"] if t != "todo"] + ["done"]

    prep = dataset.prepare_update(tmp_path, "a.jpg", change)
    (tmp_path / "a.jpg.json").write_text(json.dumps({"filepath": "a.jpg", "tags": ["todo"], "note": "mine"}))
    assert dataset.commit_update(prep) is False           # nothing written over the edit
    assert json.loads((tmp_path / "a.jpg.json").read_text())["note"] == "mine"
    dataset.update_sample(tmp_path, "a.jpg", change)     # what the loader does next
    assert json.loads((tmp_path / "a.jpg.json").read_text()) == {"filepath": "a.jpg", "tags": ["done"],
                                                                  "note": "mine"}
    unchanged = dataset.prepare_update(tmp_path, "a.jpg", lambda s: None)
    assert unchanged.data is None and dataset.commit_update(unchanged) is True


def test_an_edit_of_a_settled_sample_file_that_keeps_its_size_and_mtime_is_still_seen(tmp_path):
    # a file last changed well before it was read is checked before the rename by its stat
    # alone; an edit that puts size and mtime back still moves the ctime, so it is not missed
    (tmp_path / "a.jpg").write_bytes(b"x")
    sample = tmp_path / "a.jpg.json"
    sample.write_text(json.dumps({"filepath": "a.jpg", "tags": ["todo"]}))
    time.sleep(0.1)  # older than fingerprint.FINE_SETTLE_NS when read
    st = sample.stat()
    prep = dataset.prepare_update(tmp_path, "a.jpg", lambda s: s.update(tags=["done"]))
    sample.write_text(json.dumps({"filepath": "a.jpg", "tags": ["mine"]}))   # same length
    os.utime(sample, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sample.stat().st_size == st.st_size and sample.stat().st_mtime_ns == st.st_mtime_ns
    assert dataset.commit_update(prep) is False
    assert json.loads(sample.read_text())["tags"] == ["mine"]
    time.sleep(0.1)
    prep = dataset.prepare_update(tmp_path, "a.jpg", lambda s: s.update(tags=["done"]))
    assert dataset.commit_update(prep) is True   # untouched since the read: written
    assert json.loads(sample.read_text())["tags"] == ["done"]


def test_instance_masks_are_written_once_per_label_and_reused_on_reload(tmp_path, fakecvat):
    rels = make(tmp_path, 3)
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        tid = syncd.annotate(tmp_path, "m", rels, client=client, label_field="gt", label_type="instances",
                             classes=["cat", "dog"])["tasks"][0]
        draw(fakecvat.url, tid, {0: 3, 2: 2}, kind="mask")
        syncd.load_annotations(tmp_path, "m", client=client)
        paths = {rel: [d["mask_path"] for d in labels_of(tmp_path, rel)] for rel in rels}
        assert [len(p) for p in paths.values()] == [3, 0, 2]
        files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
        assert files == sorted(p for ps in paths.values() for p in ps)
        for p in files:
            assert mask_files.read_mask(tmp_path, p).shape == (28, 19)
        assert not list(tmp_path.rglob("*.tmp"))


def test_a_batch_of_masks_replaces_a_file_only_when_committed_and_a_discarded_one_leaves_nothing(tmp_path):
    """Masks are staged, then committed together (one syncfs, then the renames) or dropped. A
    new mask is written at its own name (no sample file refers to it yet); one over an existing
    file replaces it only at the commit; a discarded batch leaves neither kind behind."""
    import numpy as np

    masks = [(f"s/.masks/a.jpg/gt/{i:024x}.png", np.eye(5 + i, dtype=bool)) for i in range(30)]
    old = tmp_path / masks[0][0]
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an old mask")
    os.chmod(old, 0o640)
    staged = mask_files.stage_masks(tmp_path, masks)
    assert old.read_bytes() == b"an old mask"   # still the old one until the commit
    mask_files.commit_masks(staged)
    for rel, array in masks:
        assert np.array_equal(mask_files.read_mask(tmp_path, rel) > 0, array), rel
    assert old.stat().st_mode & 0o777 == 0o640   # an overwritten mask keeps its mode
    dropped = mask_files.stage_masks(tmp_path, [("s/.masks/b.jpg/gt/1.png", np.ones((2, 2), bool)),
                                                (masks[1][0], np.zeros((2, 2), bool))])
    mask_files.discard_masks(dropped)
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "s/.masks/b.jpg/gt/1.png").exists()
    assert np.array_equal(mask_files.read_mask(tmp_path, masks[1][0]) > 0, masks[1][1])


def test_a_load_sweeps_temp_files_a_killed_writer_left_and_keeps_live_ones(tmp_path, fakecvat):
    """Loading stages many sample and mask files before renaming them; a load killed in between
    leaves hidden temp files. Loading that run again removes those of dead writers only."""
    import os
    import subprocess
    import sys

    from syncd.atomic import stage_bytes
    from syncd.runs import RunStore

    rels = make(tmp_path, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    left = tmp_path / "s" / f".img00.jpg.json.{dead_pid:x}.1a2b3c4.tmp"
    left.write_text("{half a sample")
    left_mask = tmp_path / "s" / ".masks" / "img01.jpg" / "gt" / f".65a0c0ffee0000000000abcd.png.{dead_pid:x}.5e6f7a8.tmp"
    left_mask.parent.mkdir(parents=True)
    left_mask.write_bytes(b"\x89PNG half a mask")
    live = stage_bytes(tmp_path / "s" / "other.json", b"{}")   # this process: still writing
    unrelated = tmp_path / "s" / f".notes.{dead_pid:x}.1a2b3c4.tmp"   # not a sample file's temp
    unrelated.write_text("a user's file")
    try:
        with CVATClient(fakecvat.url, username="admin", password="admin") as client:
            tid = syncd.annotate(tmp_path, "r", rels, client=client, **OPTS)["tasks"][0]
            draw(fakecvat.url, tid, {0: 1})
            # what a load killed part-way leaves in the run record (its first write)
            RunStore(tmp_path).update("r", status="loading")
            syncd.load_annotations(tmp_path, "r", client=client)
        assert not left.exists() and not left_mask.exists()
        assert os.path.exists(live.tmp) and unrelated.exists()
        assert len(labels_of(tmp_path, rels[0])) == 1
    finally:
        live.discard()


def test_a_mask_load_skips_a_broken_sample_file_untouched_and_merges_the_others(tmp_path, fakecvat):
    """Mask samples' files are staged in groups and made durable together: one that cannot be
    read is reported and left byte for byte, while the rest of its group gets its masks."""
    rels = make(tmp_path, 4)
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        tid = syncd.annotate(tmp_path, "m", rels, client=client, label_field="gt", label_type="instances",
                             classes=["cat", "dog"])["tasks"][0]
        draw(fakecvat.url, tid, {0: 2, 1: 1, 2: 2, 3: 1}, kind="mask")
        broken = tmp_path / (rels[1] + ".json")
        broken.write_text('{"filepath": "s/img01.jpg", "tags": ["todo"')   # cut short by an editor
        summary = syncd.load_annotations(tmp_path, "m", client=client)
    assert summary["samples"] == 3 and list(summary["skipped"]) == [rels[1]]
    assert broken.read_text() == '{"filepath": "s/img01.jpg", "tags": ["todo"'
    for rel, n in ((rels[0], 2), (rels[2], 2), (rels[3], 1)):
        paths = [d["mask_path"] for d in labels_of(tmp_path, rel)]
        assert len(paths) == n and all(mask_files.read_mask(tmp_path, p).shape == (28, 19) for p in paths)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_medium_changed_in_a_later_group_is_flagged_and_the_other_groups_merge(tmp_path, fakecvat):
    """A load stages its sample files in groups of MERGE_GROUP and checks each group's media
    and syncs its files in one task. A medium changed in the second group costs that sample
    only: it is flagged, its sample file untouched, every other sample of every group gets its
    box, and no staged file is left behind."""
    from syncd.ops import load

    n = 2 * load.MERGE_GROUP + 5
    rels = make(tmp_path, n)
    changed = rels[load.MERGE_GROUP + 3]
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        tid = syncd.annotate(tmp_path, "r", rels, client=client, **OPTS)["tasks"][0]
        draw(fakecvat.url, tid, {f: 1 for f in range(n)})
        before = (tmp_path / (changed + ".json")).read_bytes()
        Image.new("RGB", (W, H), (1, 2, 3)).save(tmp_path / changed)   # other pixels, same name
        summary = syncd.load_annotations(tmp_path, "r", client=client)
    assert set(summary["flagged"]) == {changed} and summary["samples"] == n - 1
    assert (tmp_path / (changed + ".json")).read_bytes() == before
    assert all(len(labels_of(tmp_path, rel)) == 1 for rel in rels if rel != changed)
    assert not [p.name for p in (tmp_path / "s").iterdir() if p.name.endswith(".tmp")]
