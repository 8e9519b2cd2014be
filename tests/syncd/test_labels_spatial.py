"""Detections, instances, polylines, polygons, keypoints <-> CVAT shapes, both ways."""
import numpy as np
import pytest
from PIL import Image

from syncd.ids import new_id
from syncd.labels.masks import rle_decode, rle_encode
from syncd.schema import build_schema

from label_helpers import through_cvat


def label(cls, name, **kw):
    return {"_id": {"$oid": new_id()}, "_cls": cls, "label": name, "attributes": {}, "tags": [],
            **kw}


def test_detections_rectangles_use_fiftyones_rounding_and_attributes():
    a = label("Detection", "cat", bounding_box=[0.25, 0.5, 0.5, 0.25], iscrowd=False,
              occluded=True, group_id=7, rotation=30.0)
    # 0.0125*200 = 2.5 -> round() gives 2 (banker's rounding, as FiftyOne's Python does)
    b = label("Detection", "dog", bounding_box=[0.0125, 0.0125, 0.5, 0.5])
    sample = {"gt": {"_cls": "Detections", "detections": [a, b]}}
    schema = build_schema([sample], "gt")
    items, _, sent, got = through_cvat(sample, schema, 200, 200)
    s0, s1 = items["shapes"]
    assert s0["type"] == "rectangle" and s0["points"] == [50.0, 100.0, 150.0, 150.0]
    assert all(isinstance(p, float) for p in s0["points"])
    assert s0["occluded"] is True and s0["group"] == 7 and s0["rotation"] == 30.0
    assert s0["attributes"] == {"iscrowd": False, "label_id": a["_id"]["$oid"]}
    assert s1["points"] == [2.0, 2.0, 102.0, 102.0]
    assert sent["gt"] == [a["_id"]["$oid"], b["_id"]["$oid"]]
    da, db = got["gt"]["detections"]
    assert da["_id"] == a["_id"] and da["label"] == "cat"
    assert da["bounding_box"] == [0.25, 0.5, 0.5, 0.25]
    assert da["iscrowd"] is False and da["occluded"] is True and da["group_id"] == 7
    assert da["rotation"] == 30.0
    assert db["bounding_box"] == [0.01, 0.01, 0.5, 0.5]


def test_rle_starts_with_background_run():
    m = np.array([[1, 1, 0], [0, 0, 1]], bool)
    assert rle_encode(m) == [0, 2, 3, 1]
    assert rle_encode(~m) == [2, 3, 1]
    assert (rle_decode([0, 2, 3, 1], 2, 3) == m).all()


def test_instances_become_mask_shapes_with_inclusive_box(tmp_path):
    mask = np.zeros((20, 40), np.uint8)
    mask[0, 0] = 255           # first pixel set: RLE gets a leading 0
    mask[5:15, 10:30] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "m.png")
    d = label("Detection", "cat", bounding_box=[0.1, 0.2, 0.4, 0.2], mask_path="masks/m.png")
    plain = label("Detection", "cat", bounding_box=[0.1, 0.1, 0.1, 0.1])  # no mask: not sent
    sample = {"inst": {"_cls": "Detections", "detections": [d, plain]}}
    schema = build_schema([sample], {"inst": {"type": "instances"}})
    items, _, sent, got = through_cvat(sample, schema, 100, 100, root=tmp_path)
    (shape,) = items["shapes"]
    assert shape["type"] == "mask"
    assert shape["points"][-4:] == [10.0, 20.0, 49.0, 39.0]   # xtl, ytl, xbr-1, ybr-1
    assert shape["points"][0] == 0.0
    assert sum(shape["points"][:-4]) == 40 * 20
    assert sent["inst"] == [d["_id"]["$oid"]]
    (back,) = got["inst"]["detections"]
    assert back["_id"] == d["_id"] and back["bounding_box"] == pytest.approx([0.1, 0.2, 0.4, 0.2])
    assert back["mask"].shape == (20, 40) and (back["mask"] == (mask > 0)).all()


def test_inline_mask_is_resized_to_the_rounded_box():
    d = label("Detection", "cat", bounding_box=[0.0, 0.0, 0.5, 0.5],
              mask=[[1, 0], [0, 1]])
    sample = {"inst": {"_cls": "Detections", "detections": [d]}}
    schema = build_schema([sample], "inst")
    assert schema["inst"].type == "instances"
    items, _, _, got = through_cvat(sample, schema, 8, 8)
    assert items["shapes"][0]["points"][-4:] == [0.0, 0.0, 3.0, 3.0]
    m = got["inst"]["detections"][0]["mask"]
    assert m.shape == (4, 4) and m[:2, :2].all() and m[2:, 2:].all() and not m[:2, 2:].any()


def test_open_polylines_and_filled_polygons():
    pl = label("Polyline", "road", points=[[[0.1, 0.1], [0.5, 0.5], [0.9, 0.1]]],
               closed=False, filled=False)
    pg = label("Polyline", "lake", points=[[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]],
                                           [[0.6, 0.6], [0.7, 0.6], [0.7, 0.7]]],
               closed=True, filled=True)
    lines = {"lines": {"_cls": "Polylines", "polylines": [pl]}}
    polys = {"polys": {"_cls": "Polylines", "polylines": [pg]}}
    schema = build_schema([lines], "lines")
    assert schema["lines"].type == "polylines"
    items, _, sent, got = through_cvat(lines, schema, 100, 100)
    assert items["shapes"][0]["type"] == "polyline"
    assert items["shapes"][0]["points"] == [10.0, 10.0, 50.0, 50.0, 90.0, 10.0]
    (b,) = got["lines"]["polylines"]
    assert b["_id"] == pl["_id"] and b["points"] == pl["points"]
    assert b["closed"] is False and b["filled"] is False

    schema = build_schema([polys], "polys")
    assert schema["polys"].type == "polygons"
    items, _, sent, got = through_cvat(polys, schema, 100, 100)
    assert [s["type"] for s in items["shapes"]] == ["polygon", "polygon"]
    assert sent["polys"] == [pg["_id"]["$oid"]]
    (b,) = got["polys"]["polylines"]   # the two parts come back as one Polyline
    assert b["_id"] == pg["_id"] and np.allclose(b["points"][0], pg["points"][0]) and np.allclose(b["points"][1], pg["points"][1])
    assert b["closed"] is True and b["filled"] is True


def test_polyline_filter_by_filled_matches_type():
    pl = label("Polyline", "road", points=[[[0.1, 0.1], [0.5, 0.5]]], filled=False)
    pg = label("Polyline", "lake", points=[[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]], filled=True)
    sample = {"f": {"_cls": "Polylines", "polylines": [pl, pg]}}
    schema = build_schema([sample], {"f": {"type": "polylines"}})
    items, _, sent, _ = through_cvat(sample, schema, 10, 10)
    assert sent["f"] == [pl["_id"]["$oid"]] and len(items["shapes"]) == 1


def test_keypoints_round_trip_skip_nan():
    kp = label("Keypoint", "person", points=[[0.1, 0.2], [float("nan"), float("nan")],
                                             [0.3, 0.4]])
    sample = {"kp": {"_cls": "Keypoints", "keypoints": [kp]}}
    schema = build_schema([sample], "kp")
    items, _, sent, got = through_cvat(sample, schema, 10, 10)
    assert items["shapes"][0]["type"] == "points"
    assert items["shapes"][0]["points"] == [1.0, 2.0, 3.0, 4.0]
    (b,) = got["kp"]["keypoints"]
    assert b["_id"] == kp["_id"] and np.allclose(b["points"], [[0.1, 0.2], [0.3, 0.4]])


def test_shared_class_names_map_back_to_their_fields():
    a = label("Detection", "cat", bounding_box=[0.1, 0.1, 0.2, 0.2])
    k = label("Keypoint", "cat", points=[[0.5, 0.5]])
    sample = {"gt": {"_cls": "Detections", "detections": [a]},
              "kp": {"_cls": "Keypoints", "keypoints": [k]}}
    schema = build_schema([sample], ["gt", "kp"])
    items, _, _, got = through_cvat(sample, schema, 10, 10)
    assert {s["label"] for s in items["shapes"]} == {"cat_gt", "cat_kp"}
    assert got["gt"]["detections"][0]["label"] == "cat"
    assert got["kp"]["keypoints"][0]["label"] == "cat"


def _add_polyline(data, labels):
    data["shapes"].append({"id": 99, "type": "polyline", "frame": 0, "label_id": labels[0]["id"],
                           "points": [1, 1, 5, 5], "occluded": False, "group": 0,
                           "attributes": []})


@pytest.mark.parametrize("mode", ["keep", "ignore"])
def test_unexpected_shape_types_keep_or_ignore(mode):
    schema = build_schema([], {"gt": {"type": "detections", "classes": ["car"]}})
    _, _, _, got = through_cvat({}, schema, 10, 10, unexpected=mode, edit=_add_polyline)
    assert got["gt"] == {"_cls": "Detections", "detections": []}
    if mode == "keep":
        (pl,) = got["polylines"]["polylines"]
        assert pl["label"] == "car" and pl["points"] == [[[0.1, 0.1], [0.5, 0.5]]]
    else:
        assert "polylines" not in got


def test_polygon_drawn_on_instances_field_becomes_masked_detection():
    schema = build_schema([], {"inst": {"type": "instances", "classes": ["car"]}})

    def edit(data, labels):
        data["shapes"].append({"id": 5, "type": "polygon", "frame": 0,
                               "label_id": labels[0]["id"], "points": [2, 2, 6, 2, 6, 6, 2, 6],
                               "attributes": []})
    _, _, _, got = through_cvat({}, schema, 10, 10, edit=edit)
    (d,) = got["inst"]["detections"]
    assert d["bounding_box"] == pytest.approx([0.2, 0.2, 0.4, 0.4])
    assert d["mask"].shape == (4, 4) and d["mask"].all()
