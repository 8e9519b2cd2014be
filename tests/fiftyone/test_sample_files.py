"""The sample files syncd writes are FiftyOne samples: after a one-shot run through fakecvat
(detections with an attribute, a classification, polylines, keypoints, an instance mask and a
segmentation), every ``<media>.json`` loads with ``fiftyone.Sample.from_dict`` once its paths are
made absolute, its labels equal what the annotator drew, and the samples go into a dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import syncd
from fo_helpers import H, W, make_images
from syncd.cvat import CVATClient

pytestmark = pytest.mark.xdist_group("fiftyone")

SCHEMA = {
    "ground_truth": {"type": "detections", "classes": ["cat", "dog"],
                     "attributes": {"iscrowd": {"type": "checkbox", "values": [True, False], "default": False}}},
    "weather": {"type": "classification", "classes": ["sunny", "rainy"]},
    "lanes": {"type": "polylines", "classes": ["lane"]},
    "joints": {"type": "keypoints", "classes": ["person"]},
    "instances": {"type": "instances", "classes": ["car"]},
    "seg": {"type": "segmentation", "mask_targets": {0: "background", 1: "road", 2: "sky"}},
}


def rle(mask: np.ndarray) -> list[float]:
    """CVAT's mask encoding: row-major run lengths over the box, starting with a 0-run."""
    runs, value, n = [], False, 0
    for px in mask.ravel().astype(bool):
        if px != value:
            runs.append(n)
            value, n = px, 0
        n += 1
    return [float(r) for r in runs + [n]]


def mask_shape(label_id, frame, mask, xtl, ytl):
    """A CVAT mask shape: the box-cropped RLE followed by the inclusive box corners."""
    h, w = mask.shape
    return {"type": "mask", "frame": frame, "label_id": label_id, "attributes": [],
            "points": rle(mask) + [float(xtl), float(ytl), float(xtl + w - 1), float(ytl + h - 1)]}


def as_fiftyone(fo, root: Path, rel: str):
    """A sample file as FiftyOne loads it: ``filepath`` and every ``mask_path`` made absolute
    (FiftyOne resolves neither against anything)."""
    d = json.loads((root / f"{rel}.json").read_text())
    d["filepath"] = str(root / d["filepath"])

    def absolutize(value):
        if isinstance(value, dict):
            if isinstance(value.get("mask_path"), str):
                value["mask_path"] = str(root / value["mask_path"])
            for v in value.values():
                absolutize(v)
        elif isinstance(value, list):
            for v in value:
                absolutize(v)

    absolutize(d)
    return fo.Sample.from_dict(d)


LISTS = {"Detections": "detections", "Classifications": "classifications", "Polylines": "polylines",
         "Keypoints": "keypoints"}


def fiftyone_ids(sample) -> set[str]:
    ids = set()
    for field in SCHEMA:
        value = sample[field] if sample.has_field(field) else None  # syncd omits empty fields
        if value is not None:
            ids |= {lb.id for lb in getattr(value, LISTS[type(value).__name__])} \
                if type(value).__name__ in LISTS else {value.id}
    return ids


def written_ids(doc) -> set[str]:
    """The ``_id`` of every label dict in a sample file."""
    if isinstance(doc, list):
        return set().union(*map(written_ids, doc)) if doc else set()
    if not isinstance(doc, dict):
        return set()
    own = {doc["_id"]["$oid"]} if isinstance(doc.get("_id"), dict) and "_cls" in doc else set()
    return own.union(*(written_ids(v) for k, v in doc.items() if k != "_id"))


def test_syncd_sample_files_load_in_fiftyone(fo, tmp_path, fakecvat, annotator, fo_dataset):
    root = tmp_path / "data"
    make_images(root, ["a.png", "sub/b.png"])
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        result = syncd.annotate(root, "all", ["a.png", "sub/b.png"], client=client, label_schema=SCHEMA)
        (tid,) = result["tasks"]
        (job,) = annotator.jobs(tid)
        labels = annotator.labels(job["id"])
        lid = {name: lb["id"] for name, lb in labels.items()}

        car = np.zeros((10, 12), bool)
        car[2:8, 3:11] = True
        car[0, 0] = True  # a run starting at the box's first pixel
        road = np.ones((18, W), bool)
        sky = np.zeros((10, 20), bool)
        sky[:, 5:] = True
        annotator.put(job["id"], tags=[
            {"frame": 0, "label_id": lid["sunny"], "attributes": []},
            {"frame": 1, "label_id": lid["rainy"], "attributes": []},
        ], shapes=[
            {"type": "rectangle", "frame": 0, "label_id": lid["cat"], "points": [8.0, 6.0, 40.0, 30.0],
             "attributes": [{"spec_id": annotator.spec(labels["cat"], "iscrowd"), "value": "true"}]},
            {"type": "rectangle", "frame": 1, "label_id": lid["dog"], "points": [0.0, 0.0, 32.0, 24.0],
             "attributes": []},
            {"type": "polyline", "frame": 0, "label_id": lid["lane"], "attributes": [],
             "points": [0.0, 40.0, 32.0, 20.0, 64.0, 40.0]},
            {"type": "points", "frame": 0, "label_id": lid["person"], "attributes": [],
             "points": [16.0, 12.0, 32.0, 24.0]},
            mask_shape(lid["car"], 0, car, 10, 20),
            mask_shape(lid["road"], 0, road, 0, 30),
            mask_shape(lid["sky"], 0, sky, 40, 0),
        ])
        annotator.complete(job["id"])
        syncd.load_annotations(root, "all", client=client, cleanup=True)

    a = as_fiftyone(fo, root, "a.png")
    b = as_fiftyone(fo, root, "sub/b.png")
    assert a.filepath == str(root / "a.png") and b.filepath == str(root / "sub" / "b.png")
    assert (a.metadata.width, a.metadata.height) == (W, H)

    (cat,) = a.ground_truth.detections
    assert cat.label == "cat" and cat.iscrowd is True
    assert cat.bounding_box == pytest.approx([8 / W, 6 / H, 32 / W, 24 / H], abs=1 / W)
    assert [d.label for d in b.ground_truth.detections] == ["dog"]
    assert b.ground_truth.detections[0].iscrowd is False  # the checkbox's default
    assert (a.weather.label, b.weather.label) == ("sunny", "rainy")

    (lane,) = a.lanes.polylines
    assert lane.label == "lane" and not lane.closed and not lane.filled
    assert np.allclose(lane.points, [[[0, 40 / H], [0.5, 20 / H], [1, 40 / H]]], atol=1 / W)

    (person,) = a.joints.keypoints
    assert person.label == "person"
    assert np.allclose(person.points, [[0.25, 0.25], [0.5, 0.5]], atol=1 / W)

    (inst,) = a.instances.detections
    assert inst.label == "car"
    assert inst.bounding_box == pytest.approx([10 / W, 20 / H, 12 / W, 10 / H], abs=1e-6)
    assert (inst.get_mask() > 0).tolist() == car.tolist()  # FiftyOne reads the PNG at mask_path

    expected = np.zeros((H, W), np.uint8)
    expected[30:48, :] = 1
    expected[0:10, 45:60] = 2
    got = a.seg.get_mask()
    assert got.shape == (H, W) and (got == expected).all()

    # Every label keeps the id syncd wrote (FiftyOne ObjectIds), so later runs can match them.
    for rel, s in (("a.png", a), ("sub/b.png", b)):
        assert fiftyone_ids(s) == written_ids(json.loads((root / f"{rel}.json").read_text()))
    assert len(fiftyone_ids(a)) == 6  # cat, sunny, lane, person, car, and the segmentation

    # They also make a dataset together (one schema across samples).
    fo_dataset.add_samples([a, b])
    assert fo_dataset.count("ground_truth.detections") == 2
    assert fo_dataset.count_values("weather.label") == {"sunny": 1, "rainy": 1}


@pytest.mark.parametrize("fmt, orientation", [("JPEG", 6), ("JPEG", 7), ("JPEG", 2), ("PNG", 6)])
def test_syncd_metadata_is_fiftyones_for_photos_taken_sideways(fo, tmp_path, fmt, orientation):
    """The metadata syncd computes (and writes into sample files) is what FiftyOne's
    compute_metadata computes, EXIF orientation included."""
    from PIL import Image

    import fiftyone.core.metadata as fom
    from syncd.media_metadata import compute_metadata

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / ("a.jpg" if fmt == "JPEG" else "a.png")
    Image.new("RGB", (W, H)).save(path, fmt, exif=exif.tobytes())
    ours = compute_metadata(path)
    theirs = fom.ImageMetadata.build_for(str(path))
    assert (ours["width"], ours["height"], ours["num_channels"]) == \
        (theirs.width, theirs.height, theirs.num_channels)
