"""FiftyOne's load_annotations merge rules: provenance by id, allow_* flags, nothing lost."""
import copy

import numpy as np

from syncd.ids import label_id, new_id
from syncd.labels import SCALAR_SENT
from syncd.merge import merge_field, merge_sample
from syncd.schema import build_schema


def det(name, box=(0.1, 0.1, 0.2, 0.2), _id=None, **kw):
    return {"_id": {"$oid": _id or new_id()}, "_cls": "Detection", "label": name,
            "bounding_box": list(box), "confidence": None, "index": None, "attributes": {},
            "tags": [], **kw}


def dets(*d):
    return {"_cls": "Detections", "detections": list(d)}


def ids(value):
    return [label_id(d) for d in value["detections"]]


def setup(**flags):
    a = det("cat", iscrowd=False, note="keep me", score_extra=0.9)
    b = det("dog", iscrowd=True)
    sample = {"filepath": "x.jpg", "gt": dets(a, b), "unknown_key": {"x": 1}}
    schema = build_schema([sample], {"gt": {"attributes": {
        "iscrowd": {"type": "checkbox"}, "note": {"type": "text", "read_only": True}},
        **flags}})
    return sample, schema, a, b


def test_edit_delete_add():
    sample, schema, a, b = setup()
    a2 = dict(copy.deepcopy(a), label="lion", bounding_box=[0.2, 0.2, 0.3, 0.3], iscrowd=True,
              note="changed in CVAT")
    a2.pop("score_extra")
    new = det("bird")
    down = {"gt": dets(a2, new)}
    out = merge_sample(sample, down, {"gt": [label_id(a), label_id(b)]}, schema)
    assert ids(out["gt"]) == [label_id(a), label_id(new)]      # b deleted, new appended
    m = out["gt"]["detections"][0]
    assert m["label"] == "lion" and m["bounding_box"] == [0.2, 0.2, 0.3, 0.3]
    assert m["iscrowd"] is True
    assert m["note"] == "keep me"            # read_only: ignored on merge
    assert m["score_extra"] == 0.9           # attribute outside the run: kept
    assert out["unknown_key"] == {"x": 1} and out["filepath"] == "x.jpg"
    assert sample["gt"]["detections"][0]["label"] == "cat"  # input not mutated


def test_flags_off_keep_everything_as_it_was():
    sample, schema, a, b = setup(allow_additions=False, allow_deletions=False,
                                 allow_label_edits=False, allow_spatial_edits=False)
    a2 = dict(copy.deepcopy(a), label="lion", bounding_box=[0.5, 0.5, 0.1, 0.1], iscrowd=True)
    out = merge_sample(sample, {"gt": dets(a2, det("bird"))},
                       {"gt": [label_id(a), label_id(b)]}, schema)
    assert ids(out["gt"]) == [label_id(a), label_id(b)]
    m = out["gt"]["detections"][0]
    assert m["label"] == "cat" and m["bounding_box"] == a["bounding_box"]
    assert m["iscrowd"] is True   # attributes are not gated by the label/spatial flags


def test_labels_not_sent_are_never_deleted():
    sample, schema, a, b = setup()
    out = merge_sample(sample, {"gt": dets()}, {"gt": [label_id(a)]}, schema)
    assert ids(out["gt"]) == [label_id(b)]


def test_duplicate_downloaded_ids_get_fresh_ids():
    sample, schema, a, b = setup()
    x = det("bird")
    copies = [copy.deepcopy(x), copy.deepcopy(x), copy.deepcopy(a)]  # a copied in CVAT too
    out = merge_sample(sample, {"gt": dets(a, b, *copies)}, {"gt": [label_id(a), label_id(b)]},
                       schema)
    got = ids(out["gt"])
    assert len(got) == 5 and len(set(got)) == 5
    assert got[:3] == [label_id(a), label_id(b), label_id(x)]


def test_locally_deleted_label_stays_deleted():
    sample, schema, a, b = setup()
    sample["gt"]["detections"] = [b]   # someone removed a after upload
    out = merge_sample(sample, {"gt": dets(a, b)}, {"gt": [label_id(a), label_id(b)]}, schema)
    assert ids(out["gt"]) == [label_id(b)]


def test_new_field_and_dest_field():
    schema = build_schema([], {"pred": {"type": "detections", "classes": ["car"]}})
    d = det("car")
    out = merge_sample({"filepath": "x"}, {"pred": dets(d)}, {"pred": []}, schema)
    assert ids(out["pred"]) == [label_id(d)]
    out = merge_sample({"filepath": "x"}, {"pred": dets(d)}, {"pred": []}, schema,
                       dest_field="pred_v2")
    assert "pred" not in out and ids(out["pred_v2"]) == [label_id(d)]
    # nothing downloaded into a field that does not exist: it is not created
    out = merge_sample({"filepath": "x"}, {"pred": dets()}, {"pred": []}, schema)
    assert "pred" not in out


def test_unexpected_fields_are_added():
    schema = build_schema([], {"gt": {"type": "detections", "classes": ["car"]}})
    pl = {"_id": {"$oid": new_id()}, "_cls": "Polyline", "label": "car", "points": [[[0, 0]]]}
    out = merge_sample({}, {"gt": dets(), "polylines": {"_cls": "Polylines", "polylines": [pl]}},
                       {"gt": []}, schema)
    assert out["polylines"]["polylines"] == [pl] and "gt" not in out


def test_single_label_fields():
    schema = build_schema([], {"w": {"type": "classification", "classes": ["a", "b"]}})
    fs = schema["w"]
    cur = {"_id": {"$oid": new_id()}, "_cls": "Classification", "label": "a"}
    edited = dict(cur, label="b")
    assert merge_field(cur, edited, [label_id(cur)], fs)["label"] == "b"
    assert merge_field(cur, None, [label_id(cur)], fs) is None
    new = {"_id": {"$oid": new_id()}, "_cls": "Classification", "label": "b"}
    assert merge_field(cur, new, [label_id(cur)], fs) == new      # replaced
    assert merge_field(cur, new, [], fs) == cur                    # unsent current kept
    assert merge_field(None, new, [], fs) == new


def test_scalars():
    fs = build_schema([], {"n": {"type": "scalar"}})["n"]
    assert merge_field(None, 3, [], fs) == 3
    assert merge_field(2, 3, [SCALAR_SENT], fs) == 3
    assert merge_field(2, None, [SCALAR_SENT], fs) is None
    assert merge_field(2, None, [], fs) == 2              # never sent: never deleted
    off = build_schema([], {"n": {"type": "scalar", "allow_label_edits": False,
                                  "allow_additions": False, "allow_deletions": False}})["n"]
    assert merge_field(2, 3, [SCALAR_SENT], off) == 2
    assert merge_field(None, 3, [], off) is None
    assert merge_field(2, None, [SCALAR_SENT], off) == 2


def test_segmentation_and_mask_edits_replace_the_mask():
    seg_id = new_id()
    cur = {"_id": {"$oid": seg_id}, "_cls": "Segmentation", "mask_path": "m/seg.png"}
    schema = build_schema([{"seg": cur}], {"seg": {"mask_targets": {1: "road"}}})
    new_mask = np.ones((2, 2), np.uint8)
    down = {"_id": {"$oid": seg_id}, "_cls": "Segmentation", "mask": new_mask}
    out = merge_field(cur, down, [seg_id], schema["seg"])
    assert out["mask"] is new_mask and out["mask_path"] == "m/seg.png"
    schema["seg"].allow_spatial_edits = False
    assert "mask" not in merge_field(cur, down, [seg_id], schema["seg"])


def test_immutable_attributes_are_not_cleared():
    a = det("cat", size="big")
    schema = build_schema([{"gt": dets(a)}], {"gt": {"attributes": {
        "size": {"type": "select", "values": ["big", "small"], "mutable": False}}}})
    down = dets(dict(copy.deepcopy(a), label="lion"))
    down["detections"][0].pop("size")
    out = merge_field(dets(a), down, [label_id(a)], schema["gt"])
    assert out["detections"][0]["size"] == "big" and out["detections"][0]["label"] == "lion"
