"""Every label type end to end against a real fakecvat: ``syncd.annotate`` makes the task, an
"annotator" draws through CVAT's REST API using the task's label ids and attribute spec ids (as
CVAT's UI would), then ``syncd.load_annotations`` merges into the sample files on disk.

Images are 64x48 so expected coordinates are easy to read: absolute CVAT pixels / (W, H).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

import syncd
from syncd.cvat import CVATClient

from sample_helpers import H, W, make_images, read
AUTH = ("admin", "admin")


# ---- helpers: the annotator's side, written against CVAT's API only --------------------------

@pytest.fixture
def client(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def write(root: Path, rel: str, doc: dict) -> None:
    (root / (rel + ".json")).write_text(json.dumps({"filepath": rel, "tags": [], **doc}))


class Task:
    """What an annotator sees of a task: its labels (by name), attribute specs and jobs."""

    def __init__(self, url: str, tid: int):
        self.url, self.id = url, tid
        labels = requests.get(f"{url}/api/labels?task_id={tid}&page_size=all", auth=AUTH).json()["results"]
        self.labels = {lb["name"]: lb for lb in labels}
        jobs = requests.get(f"{url}/api/jobs?task_id={tid}&page_size=all", auth=AUTH).json()["results"]
        self.jobs = sorted(jobs, key=lambda j: j["start_frame"])

    def lid(self, name: str) -> int:
        return self.labels[name]["id"]

    def spec(self, label: str, attr: str) -> int:
        return next(a["id"] for a in self.labels[label]["attributes"] if a["name"] == attr)

    def attr(self, label: str, attr: str, value: str) -> dict:
        return {"spec_id": self.spec(label, attr), "value": value}

    def draw(self, shapes=(), tags=(), job: int = 0) -> None:
        r = requests.put(f"{self.url}/api/jobs/{self.jobs[job]['id']}/annotations", auth=AUTH,
                         json={"version": 0, "tags": list(tags), "shapes": list(shapes), "tracks": []})
        assert r.status_code == 200, r.text

    def add(self, shapes=(), tags=(), job: int = 0) -> None:
        """Add to what the job holds (PATCH action=create), as the editor's save does."""
        r = requests.patch(f"{self.url}/api/jobs/{self.jobs[job]['id']}/annotations?action=create", auth=AUTH,
                           json={"version": 0, "tags": list(tags), "shapes": list(shapes), "tracks": []})
        assert r.status_code == 200, r.text

    def annotations(self, job: int = 0) -> dict:
        return requests.get(f"{self.url}/api/jobs/{self.jobs[job]['id']}/annotations", auth=AUTH).json()


def shape(task: Task, label: str, kind: str, points, frame: int = 0, **extra) -> dict:
    return {"type": kind, "frame": frame, "label_id": task.lid(label), "points": [float(p) for p in points],
            "attributes": [], **extra}


def tag(task: Task, label: str, frame: int = 0, **extra) -> dict:
    return {"frame": frame, "label_id": task.lid(label), "attributes": [], **extra}


def cvat_mask_points(mask: np.ndarray, xtl: int, ytl: int) -> list[int]:
    """CVAT's mask shape: row-major runs of the box crop, starting with background, then the
    box with inclusive right/bottom edges. Written here from CVAT's docs, not syncd's code."""
    flat = mask.astype(bool).ravel()
    runs, current, n = [], False, 0
    for v in flat:
        if v == current:
            n += 1
        else:
            runs.append(n)
            current, n = v, 1
    runs.append(n)
    h, w = mask.shape
    return runs + [xtl, ytl, xtl + w - 1, ytl + h - 1]


def annotate(root: Path, client, names, **options) -> Task:
    result = syncd.annotate(root, "run", names, client=client, **options)
    assert len(result["tasks"]) == 1
    return Task(client.url, result["tasks"][0])


def load(root: Path, client, **kw) -> dict:
    return syncd.load_annotations(root, "run", client=client, **kw)


# ---- tags ------------------------------------------------------------------------------------

def test_classification(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    t = annotate(tmp_path, client, ["a.jpg", "b.jpg"], label_field="weather", label_type="classification",
                 classes=["sunny", "rainy"], attributes={"confident": {"type": "checkbox"}})
    assert set(t.labels) == {"sunny", "rainy"}
    t.draw(tags=[tag(t, "rainy", 0, attributes=[t.attr("rainy", "confident", "true")]),
                 tag(t, "sunny", 1)])
    load(tmp_path, client)
    a = read(tmp_path, "a.jpg")["weather"]
    assert a["_cls"] == "Classification" and a["label"] == "rainy" and a["confident"] is True
    assert read(tmp_path, "b.jpg")["weather"]["label"] == "sunny"


def test_classifications(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    t = annotate(tmp_path, client, ["a.jpg"], label_field="kinds", label_type="classifications",
                 classes=["indoor", "night", "blurry"])
    t.draw(tags=[tag(t, "indoor"), tag(t, "blurry")])
    load(tmp_path, client)
    v = read(tmp_path, "a.jpg")["kinds"]
    assert v["_cls"] == "Classifications"
    assert sorted(c["label"] for c in v["classifications"]) == ["blurry", "indoor"]
    assert len({c["_id"]["$oid"] for c in v["classifications"]}) == 2


def test_scalar_with_classes(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    write(tmp_path, "b.jpg", {"tod": "day"})
    t = annotate(tmp_path, client, ["a.jpg", "b.jpg"], label_field="tod", label_type="scalar",
                 classes=["day", "night"])
    # b's existing value went up as a tag; the annotator sets a and changes b
    sent = t.annotations()["tags"]
    assert [(x["frame"], x["label_id"]) for x in sent] == [(1, t.lid("day"))]
    t.draw(tags=[tag(t, "night", 0), tag(t, "night", 1)])
    load(tmp_path, client)
    assert read(tmp_path, "a.jpg")["tod"] == "night"
    assert read(tmp_path, "b.jpg")["tod"] == "night"


def test_scalar_without_classes(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    t = annotate(tmp_path, client, ["a.jpg", "b.jpg"], label_field="count", label_type="scalar")
    assert set(t.labels) == {"count"}  # the field's one label carries a "value" text attribute
    t.draw(tags=[tag(t, "count", 0, attributes=[t.attr("count", "value", "42")]),
                 tag(t, "count", 1, attributes=[t.attr("count", "value", "many")])])
    load(tmp_path, client)
    assert read(tmp_path, "a.jpg")["count"] == 42  # coerced like FiftyOne's coerce_text_attrs
    assert read(tmp_path, "b.jpg")["count"] == "many"


# ---- boxes and masks ---------------------------------------------------------------------------

def test_detections_with_attributes_occluded_and_group_id(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    old = "64b000000000000000000001"
    write(tmp_path, "a.jpg", {"gt": {"_cls": "Detections", "detections": [
        {"_id": {"$oid": old}, "_cls": "Detection", "label": "car", "bounding_box": [0.25, 0.25, 0.5, 0.5],
         "attributes": {}, "tags": [], "color": "red", "hidden": True, "grp": 7}]}})
    attributes = {"color": {"type": "select", "values": ["red", "blue"]},
                  "hidden": {"type": "occluded"}, "grp": {"type": "group_id"}}
    t = annotate(tmp_path, client, ["a.jpg"], label_field="gt", label_type="detections",
                 classes=["car", "bike"], attributes=attributes)
    # occluded/group_id ride on CVAT's own shape flags, not as attributes
    assert {a["name"] for a in t.labels["car"]["attributes"]} == {"color", "label_id"}
    up = t.annotations()["shapes"]
    assert len(up) == 1 and up[0]["occluded"] is True and up[0]["group"] == 7
    assert up[0]["points"] == [16.0, 12.0, 48.0, 36.0]
    assert t.attr("car", "color", "red") in up[0]["attributes"]

    # the annotator adds a blue bike, not occluded, in group 2; the car is left as it was
    t.add(shapes=[shape(t, "bike", "rectangle", [0, 0, 8, 6], occluded=False, group=2,
                                attributes=[t.attr("bike", "color", "blue")])])
    load(tmp_path, client)
    dets = {d["label"]: d for d in read(tmp_path, "a.jpg")["gt"]["detections"]}
    assert dets["car"]["_id"]["$oid"] == old
    assert (dets["car"]["color"], dets["car"]["hidden"], dets["car"]["grp"]) == ("red", True, 7)
    assert dets["car"]["bounding_box"] == pytest.approx([0.25, 0.25, 0.5, 0.5])
    assert (dets["bike"]["color"], dets["bike"]["hidden"], dets["bike"]["grp"]) == ("blue", False, 2)
    assert dets["bike"]["bounding_box"] == pytest.approx([0, 0, 8 / W, 6 / H])


def test_instances_with_masks_written_as_pngs(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    # an existing instance whose mask is a PNG below the root
    old = "64b000000000000000000002"
    (tmp_path / "masks").mkdir()
    existing = np.zeros((12, 16), np.uint8)
    existing[2:10, 3:12] = 255
    Image.fromarray(existing).save(tmp_path / "masks" / "old.png")
    write(tmp_path, "a.jpg", {"inst": {"_cls": "Detections", "detections": [
        {"_id": {"$oid": old}, "_cls": "Detection", "label": "blob", "attributes": {}, "tags": [],
         "bounding_box": [0.5, 0.5, 16 / W, 12 / H], "mask_path": "masks/old.png"}]}})
    t = annotate(tmp_path, client, ["a.jpg"], label_field="inst", label_type="instances", classes=["blob"])
    up = t.annotations()["shapes"]
    assert len(up) == 1 and up[0]["type"] == "mask"
    assert up[0]["points"][-4:] == [32.0, 24.0, 47.0, 35.0]   # inclusive box of 16x12 pixels

    # the annotator paints a new 10x7 L-shaped mask at (4, 5)
    drawn = np.zeros((7, 10), bool)
    drawn[:, :3] = True
    drawn[4:, :] = True
    t.add(shapes=[shape(t, "blob", "mask", cvat_mask_points(drawn, 4, 5))])
    load(tmp_path, client)
    dets = read(tmp_path, "a.jpg")["inst"]["detections"]
    assert len(dets) == 2
    kept = next(d for d in dets if d["_id"]["$oid"] == old)
    new = next(d for d in dets if d["_id"]["$oid"] != old)
    for d in dets:  # masks live as PNG files below the root, never inline
        assert "mask" not in d and not Path(d["mask_path"]).is_absolute()
        assert (tmp_path / d["mask_path"]).is_file()
    got = np.asarray(Image.open(tmp_path / kept["mask_path"])) > 0
    assert got.shape == existing.shape and (got == (existing > 0)).all()
    assert kept["bounding_box"] == pytest.approx([0.5, 0.5, 16 / W, 12 / H])
    got = np.asarray(Image.open(tmp_path / new["mask_path"])) > 0
    assert got.shape == drawn.shape and (got == drawn).all()   # pixel-exact
    assert new["bounding_box"] == pytest.approx([4 / W, 5 / H, 10 / W, 7 / H])


def test_segmentation_with_mask_targets(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    t = annotate(tmp_path, client, ["a.jpg"], label_field="seg", label_type="segmentation",
                 mask_targets={1: "road", 2: "car"})
    assert set(t.labels) == {"road", "car"}
    road = np.zeros((8, W), bool)
    road[:] = True                          # rows 40..47, full width
    car = np.ones((4, 6), bool)             # at (10, 20)
    t.draw(shapes=[shape(t, "road", "mask", cvat_mask_points(road, 0, 40)),
                   shape(t, "car", "mask", cvat_mask_points(car, 10, 20))])
    load(tmp_path, client)
    seg = read(tmp_path, "a.jpg")["seg"]
    assert seg["_cls"] == "Segmentation" and "mask" not in seg
    got = np.asarray(Image.open(tmp_path / seg["mask_path"]))
    want = np.zeros((H, W), np.uint8)
    want[40:48, :] = 1
    want[20:24, 10:16] = 2
    assert got.shape == (H, W) and (got == want).all()


# ---- points and lines --------------------------------------------------------------------------

def test_keypoints(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    t = annotate(tmp_path, client, ["a.jpg"], label_field="kp", label_type="keypoints", classes=["face"])
    t.draw(shapes=[shape(t, "face", "points", [8, 12, 16, 24, 32, 36])])
    load(tmp_path, client)
    kps = read(tmp_path, "a.jpg")["kp"]
    assert kps["_cls"] == "Keypoints" and len(kps["keypoints"]) == 1
    k = kps["keypoints"][0]
    assert k["label"] == "face"
    assert np.allclose(k["points"], [[8 / W, 12 / H], [16 / W, 24 / H], [32 / W, 36 / H]])


def test_polylines(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    t = annotate(tmp_path, client, ["a.jpg"], label_field="lanes", label_type="polylines", classes=["lane"])
    t.draw(shapes=[shape(t, "lane", "polyline", [0, 47, 32, 24, 63, 0])])
    load(tmp_path, client)
    p = read(tmp_path, "a.jpg")["lanes"]["polylines"]
    assert len(p) == 1 and p[0]["label"] == "lane"
    assert p[0]["closed"] is False and p[0]["filled"] is False
    assert np.allclose(p[0]["points"], [[[0, 47 / H], [0.5, 0.5], [63 / W, 0]]])


def test_polygons(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    t = annotate(tmp_path, client, ["a.jpg"], label_field="areas", label_type="polygons", classes=["lot"])
    t.draw(shapes=[shape(t, "lot", "polygon", [8, 8, 40, 8, 40, 40, 8, 40])])
    load(tmp_path, client)
    p = read(tmp_path, "a.jpg")["areas"]["polylines"]
    assert len(p) == 1 and p[0]["closed"] is True and p[0]["filled"] is True
    assert np.allclose(p[0]["points"], [[[8 / W, 8 / H], [40 / W, 8 / H], [40 / W, 40 / H], [8 / W, 40 / H]]])


# ---- several fields ----------------------------------------------------------------------------

def test_multi_field_schema_with_a_shared_class(tmp_path, fakecvat, client):
    make_images(tmp_path, ["a.jpg"])
    schema = {
        "boxes": {"type": "detections", "classes": ["cat", "dog"]},
        "scene": {"type": "classification", "classes": ["cat", "other"]},
        "outline": {"type": "polygons", "classes": ["cat"]},
    }
    t = annotate(tmp_path, client, ["a.jpg"], label_schema=schema)
    # a class shared by several fields is made unique per field; the others keep their names
    assert set(t.labels) == {"cat_boxes", "cat_scene", "cat_outline", "dog", "other"}
    t.draw(shapes=[shape(t, "cat_boxes", "rectangle", [0, 0, 32, 24]),
                   shape(t, "dog", "rectangle", [32, 24, 64, 48]),
                   shape(t, "cat_outline", "polygon", [1, 1, 20, 1, 20, 20])],
           tags=[tag(t, "cat_scene")])
    load(tmp_path, client)
    doc = read(tmp_path, "a.jpg")
    assert sorted(d["label"] for d in doc["boxes"]["detections"]) == ["cat", "dog"]
    assert doc["scene"]["label"] == "cat"
    assert [p["label"] for p in doc["outline"]["polylines"]] == ["cat"]
    # nothing leaked into fields named after the CVAT label or the shape type
    assert not {"cat_boxes", "detections", "polylines", "classifications"} & set(doc)


def test_untouched_labels_of_every_type_come_back_unchanged(tmp_path, fakecvat, client):
    """Existing labels of every family go up, nobody edits them, and loading leaves them as
    they were: same ids, same geometry (within CVAT's pixel rounding), same masks."""
    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "m").mkdir()
    inst = np.zeros((6, 8), np.uint8)
    inst[1:5, 2:7] = 255
    Image.fromarray(inst).save(tmp_path / "m" / "inst.png")
    semantic = np.zeros((H, W), np.uint8)
    semantic[0:10, 0:20] = 1
    semantic[30:40, 30:50] = 2
    Image.fromarray(semantic).save(tmp_path / "m" / "seg.png")

    def oid(n):
        return {"$oid": f"64c0000000000000000000{n:02d}"}
    base = {"attributes": {}, "tags": []}
    doc = {
        "cls": {"_id": oid(1), "_cls": "Classification", "label": "day", **base},
        "boxes": {"_cls": "Detections", "detections": [
            {"_id": oid(2), "_cls": "Detection", "label": "car", "bounding_box": [0.25, 0.25, 0.25, 0.25], **base}]},
        "inst": {"_cls": "Detections", "detections": [
            {"_id": oid(3), "_cls": "Detection", "label": "car", "bounding_box": [0.5, 0.5, 8 / W, 6 / H],
             "mask_path": "m/inst.png", **base}]},
        "kp": {"_cls": "Keypoints", "keypoints": [
            {"_id": oid(4), "_cls": "Keypoint", "label": "face", "points": [[0.25, 0.5], [0.5, 0.25]], **base}]},
        "lines": {"_cls": "Polylines", "polylines": [
            {"_id": oid(5), "_cls": "Polyline", "label": "lane", "points": [[[0, 0], [0.5, 0.5]]],
             "closed": False, "filled": False, **base}]},
        "seg": {"_id": oid(6), "_cls": "Segmentation", "mask_path": "m/seg.png", **base},
        "n": 3,
    }
    write(tmp_path, "a.jpg", doc)
    schema = {"cls": {}, "boxes": {}, "inst": {}, "kp": {}, "lines": {},
              "seg": {"mask_targets": {1: "road", 2: "sky"}}, "n": {}}
    t = annotate(tmp_path, client, ["a.jpg"], label_schema=schema)
    ann = t.annotations()
    assert len(ann["tags"]) == 2 and len(ann["shapes"]) == 6   # seg: one mask shape per class

    load(tmp_path, client)
    out = read(tmp_path, "a.jpg")
    assert out["cls"]["_id"] == oid(1) and out["cls"]["label"] == "day"
    assert out["n"] == 3
    box = out["boxes"]["detections"][0]
    assert box["_id"] == oid(2) and box["bounding_box"] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    i = out["inst"]["detections"][0]
    assert i["_id"] == oid(3)
    assert (np.asarray(Image.open(tmp_path / i["mask_path"])) > 0).tolist() == (inst > 0).tolist()
    k = out["kp"]["keypoints"][0]
    assert k["_id"] == oid(4) and np.allclose(k["points"], [[0.25, 0.5], [0.5, 0.25]])
    ln = out["lines"]["polylines"][0]
    assert ln["_id"] == oid(5) and np.allclose(ln["points"], [[[0, 0], [0.5, 0.5]]])
    assert out["seg"]["_id"] == oid(6)
    assert (np.asarray(Image.open(tmp_path / out["seg"]["mask_path"])) == semantic).all()


def test_edits_in_cvat_keep_ids_and_deletions_apply_for_every_family(tmp_path, fakecvat, client):
    """Re-annotation: the annotator relabels a classification, deletes one of two tags, moves a
    keypoint, deletes a polyline and repaints an instance mask; ids of edited labels are kept,
    deleted ones are gone, and the mask file holds the new pixels."""
    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "m").mkdir()
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "m" / "i.png")

    def oid(n):
        return {"$oid": f"64f0000000000000000000{n:02d}"}
    base = {"attributes": {}, "tags": []}
    write(tmp_path, "a.jpg", {
        "cls": {"_id": oid(1), "_cls": "Classification", "label": "day", **base},
        "multi": {"_cls": "Classifications", "classifications": [
            {"_id": oid(2), "_cls": "Classification", "label": "x", **base},
            {"_id": oid(3), "_cls": "Classification", "label": "y", **base}]},
        "kp": {"_cls": "Keypoints", "keypoints": [
            {"_id": oid(4), "_cls": "Keypoint", "label": "p", "points": [[0.25, 0.25]], **base}]},
        "lines": {"_cls": "Polylines", "polylines": [
            {"_id": oid(5), "_cls": "Polyline", "label": "l", "points": [[[0, 0], [0.5, 0.5]]],
             "closed": False, "filled": False, **base},
            {"_id": oid(6), "_cls": "Polyline", "label": "l", "points": [[[0.5, 0], [0, 0.5]]],
             "closed": False, "filled": False, **base}]},
        "inst": {"_cls": "Detections", "detections": [
            {"_id": oid(7), "_cls": "Detection", "label": "i", "bounding_box": [0, 0, 4 / W, 4 / H],
             "mask_path": "m/i.png", **base}]},
    })
    schema = {"cls": {"classes": ["day", "night"]}, "multi": {}, "kp": {}, "lines": {}, "inst": {}}
    t = annotate(tmp_path, client, ["a.jpg"], label_schema=schema)
    ann = t.annotations()

    def by_id(items, n):
        want = oid(n)["$oid"]
        return next(x for x in items if any(a["value"] == want for a in x["attributes"]))

    def without_ids(x):
        return {k: v for k, v in x.items() if k != "id"}

    cls_tag = without_ids(by_id(ann["tags"], 1))
    cls_tag["label_id"] = t.lid("night")      # relabel: the spec ids differ per label
    cls_tag["attributes"] = [t.attr("night", "label_id", oid(1)["$oid"])]
    kp = without_ids(by_id(ann["shapes"], 4))
    kp["points"] = [32.0, 24.0]
    inst = without_ids(by_id(ann["shapes"], 7))
    painted = np.zeros((3, 5), bool)
    painted[1, :] = True
    inst["points"] = [float(v) for v in cvat_mask_points(painted, 10, 10)]
    # what the editor saves: the job's whole content (y's tag and the second line deleted)
    t.draw(tags=[cls_tag, without_ids(by_id(ann["tags"], 2))],
           shapes=[kp, without_ids(by_id(ann["shapes"], 5)), inst])
    load(tmp_path, client)

    out = read(tmp_path, "a.jpg")
    assert out["cls"]["_id"] == oid(1) and out["cls"]["label"] == "night"
    assert [c["_id"] for c in out["multi"]["classifications"]] == [oid(2)]
    [k] = out["kp"]["keypoints"]
    assert k["_id"] == oid(4) and np.allclose(k["points"], [[0.5, 0.5]])
    assert [ln["_id"] for ln in out["lines"]["polylines"]] == [oid(5)]
    [i] = out["inst"]["detections"]
    assert i["_id"] == oid(7) and i["bounding_box"] == pytest.approx([10 / W, 10 / H, 5 / W, 3 / H])
    # the edit is written to the file the label refers to (as a FiftyOne user keeps mask_path)
    assert i["mask_path"] == "m/i.png"
    assert ((np.asarray(Image.open(tmp_path / "m" / "i.png")) > 0) == painted).all()


# ---- photos taken sideways -------------------------------------------------------------------

def test_boxes_on_a_sideways_photo_use_the_upright_frame(tmp_path, fakecvat, client):
    """A phone photo stored 64x48 with EXIF orientation 6 shows 48x64 in CVAT. Relative boxes
    (FiftyOne's, as the App shows the photo: upright) go to CVAT in the upright frame's pixels,
    and what the annotator draws there comes back relative to the same frame."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (W, H), (20, 90, 160)).save(tmp_path / "a.jpg", exif=exif.tobytes())
    box = [0.25, 0.125, 0.5, 0.25]
    write(tmp_path, "a.jpg", {"gt": {"_cls": "Detections", "detections": [
        {"_id": {"$oid": "651e3fab1e23d4e5f6a7b8c9"}, "_cls": "Detection", "label": "car",
         "bounding_box": box, "tags": [], "attributes": {}}]}})
    t = annotate(tmp_path, client, ["a.jpg"], label_field="gt", label_type="detections", classes=["car"])
    meta = requests.get(f"{client.url}/api/tasks/{t.id}/data/meta", auth=AUTH).json()
    assert (meta["frames"][0]["width"], meta["frames"][0]["height"]) == (H, W)
    sent = t.annotations()["shapes"]
    assert [s["points"] for s in sent] == [[12.0, 8.0, 36.0, 24.0]]   # 0.25*48, 0.125*64, ...
    t.add(shapes=[shape(t, "car", "rectangle", [0, 32, 24, 64])])      # bottom-left quarter, upright
    load(tmp_path, client)
    boxes = sorted(d["bounding_box"] for d in read(tmp_path, "a.jpg")["gt"]["detections"])
    assert boxes == [[0.0, 0.5, 0.5, 0.5], box]
