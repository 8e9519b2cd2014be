"""Property tests: random labels survive export -> resolve_ids -> CVAT -> import within a pixel."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from syncd.ids import new_id
from syncd.schema import build_schema

from label_helpers import through_cvat

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


sizes = st.tuples(st.integers(8, 300), st.integers(8, 300))
unit = st.floats(0, 1, allow_nan=False)


@st.composite
def boxes(draw):
    x, y = draw(st.floats(0, 0.9)), draw(st.floats(0, 0.9))
    return [x, y, draw(st.floats(0.01, 1 - x)), draw(st.floats(0.01, 1 - y))]


@SETTINGS
@given(sizes, st.lists(boxes(), min_size=1, max_size=5), st.booleans())
def test_boxes_round_trip_within_a_pixel(size, bxs, crowd):
    w, h = size
    labs = [{"_id": {"$oid": new_id()}, "_cls": "Detection", "label": "a", "bounding_box": b,
             "iscrowd": crowd} for b in bxs]
    sample = {"gt": {"_cls": "Detections", "detections": labs}}
    got = through_cvat(sample, build_schema([sample], "gt"), w, h).got["gt"]["detections"]
    assert [g["_id"] for g in got] == [lab["_id"] for lab in labs]
    for g, lab in zip(got, labs):
        x, y, bw, bh = lab["bounding_box"]
        gx, gy, gw, gh = g["bounding_box"]
        assert abs(gx - x) * w <= 0.5 + 1e-6 and abs(gy - y) * h <= 0.5 + 1e-6
        assert abs((gx + gw) - (x + bw)) * w <= 0.5 + 1e-6
        assert abs((gy + gh) - (y + bh)) * h <= 0.5 + 1e-6
        assert g["iscrowd"] is crowd


@SETTINGS
@given(sizes, st.lists(st.lists(st.tuples(unit, unit), min_size=2, max_size=8),
                       min_size=1, max_size=3))
def test_open_polylines_round_trip_within_a_pixel(size, parts):
    w, h = size
    lab = {"_id": {"$oid": new_id()}, "_cls": "Polyline", "label": "road",
           "points": [[list(p) for p in part] for part in parts], "closed": False,
           "filled": False}
    sample = {"lines": {"_cls": "Polylines", "polylines": [lab]}}
    (g,) = through_cvat(sample, build_schema([sample], "lines"), w, h).got["lines"]["polylines"]
    assert g["_id"] == lab["_id"] and len(g["points"]) == len(parts)
    for gp, part in zip(g["points"], lab["points"]):
        d = np.abs(np.array(gp) - np.array(part)) * [w, h]
        assert d.max() <= 0.5 + 1e-6


@st.composite
def masked_detections(draw):
    w, h = draw(sizes)
    bw, bh = draw(st.integers(1, min(w, 40))), draw(st.integers(1, min(h, 40)))
    xtl, ytl = draw(st.integers(0, w - bw)), draw(st.integers(0, h - bh))
    bits = draw(st.lists(st.booleans(), min_size=bw * bh, max_size=bw * bh))
    mask = np.array(bits, bool).reshape(bh, bw)
    return w, h, [xtl / w, ytl / h, bw / w, bh / h], mask


@SETTINGS
@given(masked_detections())
def test_instance_masks_round_trip_exactly(case):
    w, h, box, mask = case
    lab = {"_id": {"$oid": new_id()}, "_cls": "Detection", "label": "cat", "bounding_box": box,
           "mask": mask}
    sample = {"inst": {"_cls": "Detections", "detections": [lab]}}
    schema = build_schema([sample], "inst")
    (g,) = through_cvat(sample, schema, w, h).got["inst"]["detections"]
    assert g["_id"] == lab["_id"]
    assert np.allclose(np.array(g["bounding_box"]) * [w, h, w, h],
                       np.array(box) * [w, h, w, h])
    assert g["mask"].shape == mask.shape and (g["mask"] == mask).all()


@SETTINGS
@given(st.integers(4, 40), st.integers(4, 40), st.data())
def test_segmentation_masks_round_trip_exactly(w, h, data):
    values = data.draw(st.lists(st.sampled_from([0, 1, 2, 5]), min_size=w * h, max_size=w * h))
    mask = np.array(values, np.uint8).reshape(h, w)
    seg = {"_id": {"$oid": new_id()}, "_cls": "Segmentation", "mask": mask}
    schema = build_schema([{"seg": seg}], {"seg": {"mask_targets": {
        0: "bg", 1: "a", 2: "b", 5: "c"}}})
    got = through_cvat({"seg": seg}, schema, w, h).got["seg"]
    if mask.any():
        assert got["_id"] == seg["_id"] and (got["mask"] == mask).all()
    else:
        assert got is None
