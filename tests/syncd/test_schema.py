"""Label schemas: FiftyOne's inference and validation rules, and the CVAT label specs."""
import pytest

from syncd.ids import is_object_id, new_id
from syncd.schema import FieldSchema, SchemaError, build_schema, class_map, cvat_labels


def det(label, box=(0.1, 0.1, 0.2, 0.2), **kw):
    return {"_id": {"$oid": new_id()}, "_cls": "Detection", "label": label,
            "bounding_box": list(box), "confidence": None, "index": None, "attributes": {},
            "tags": [], **kw}


def dets(*labels):
    return {"_cls": "Detections", "detections": list(labels)}


SAMPLES = [
    {"filepath": "a.jpg", "gt": dets(det("cat", iscrowd=True, occluded=False, note="x"),
                                     det("dog", group_id=2)),
     "weather": {"_cls": "Classification", "_id": {"$oid": new_id()}, "label": "sunny"},
     "count": 3},
    {"filepath": "b.jpg", "gt": dets(det("bird")), "count": None},
]


def test_ids_look_like_object_ids_and_are_unique():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_object_id(i) for i in ids)
    assert not is_object_id("xyz") and not is_object_id(None) and not is_object_id("a" * 23)


def test_existing_field_type_classes_and_attributes_are_inferred():
    s = build_schema(SAMPLES, ["gt", "weather", "count"])
    gt = s["gt"]
    assert gt.type == "detections" and gt.existing
    assert gt.classes == ["bird", "cat", "dog"]
    assert gt.attributes["iscrowd"]["type"] == "checkbox"
    assert gt.attributes["iscrowd"]["values"] == [True, False]
    assert gt.attributes["occluded"]["type"] == "occluded"
    assert gt.attributes["group_id"]["type"] == "group_id"
    assert gt.attributes["note"] == {"type": "text", "values": [], "mutable": True,
                                     "read_only": False}
    assert s["weather"].type == "classification" and s["weather"].classes == ["sunny"]
    assert s["count"].type == "scalar" and s["count"].classes == [] and s["count"].attributes == {}


def test_attributes_false_list_and_dict():
    assert build_schema(SAMPLES, "gt", attributes=False)["gt"].attributes == {}
    assert list(build_schema(SAMPLES, "gt", attributes=["iscrowd"])["gt"].attributes) == ["iscrowd"]
    a = build_schema(SAMPLES, {"gt": {"attributes": {
        "size": {"type": "select", "values": ["s", "l"], "default": "s", "mutable": False}}}})
    assert a["gt"].attributes["size"]["mutable"] is False
    assert a["gt"].attributes["size"]["default"] == "s"


def test_instances_chosen_when_every_existing_detection_has_a_mask():
    samples = [{"inst": dets(det("cat", mask_path="m.png"))}]
    assert build_schema(samples, "inst")["inst"].type == "instances"
    assert build_schema(samples, "inst", label_type="detections")["inst"].type == "detections"


def test_new_field_needs_type_and_classes():
    with pytest.raises(SchemaError, match="type.*'new'"):
        build_schema(SAMPLES, "new")
    with pytest.raises(SchemaError, match="classes.*'new'|'new'.*classes"):
        build_schema(SAMPLES, "new", label_type="detections")
    s = build_schema(SAMPLES, "new", label_type="detections", classes=["a", "b"])
    assert not s["new"].existing and s["new"].classes == ["a", "b"]
    assert build_schema(SAMPLES, "flag", label_type="scalar")["flag"].classes == []


@pytest.mark.parametrize("schema, match", [
    ({"x": {"type": "boxes", "classes": ["a"]}}, "unsupported label type 'boxes'"),
    ({"gt": {"type": "classifications"}}, "'gt'.*Detections.*classifications"),
    ({"count": {"type": "detections", "classes": ["a"]}}, "'count'.*scalar"),
    ({"x": {"type": "detections", "classes": ["c" * 65]}}, "exceeds the 64"),
    ({"x": {"type": "detections", "classes": ["a"],
            "attributes": {"s": {"type": "select"}}}}, "'s'.*requires.*values"),
    ({"x": {"type": "detections", "classes": ["a"],
            "attributes": {"s": {"type": "radio", "values": [1, 2], "default": 3}}}}, "default 3"),
    ({"x": {"type": "detections", "classes": ["a"], "attributes": {"s": {"type": "slider"}}}},
     "unsupported type 'slider'"),
    ({"x": {"type": "detections", "classes": ["a"], "attributes": ["label_id"]}}, "reserved"),
    ({"x": {"type": "detections", "classes": ["a"],
            "attributes": {"o1": {"type": "occluded"}, "o2": {"type": "occluded"}}}},
     "only one 'occluded'"),
    ({"seg": {"type": "segmentation"}}, "requires 'mask_targets'"),
])
def test_validation_errors_name_the_problem(schema, match):
    with pytest.raises(SchemaError, match=match):
        build_schema(SAMPLES, schema)


def test_mixed_classes_in_one_field_rejected():
    samples = [{"f": dets(det("a"))}, {"f": {"_cls": "Classification", "label": "a"}}]
    with pytest.raises(SchemaError, match="mixed"):
        build_schema(samples, "f")


def test_segmentation_classes_come_from_mask_targets():
    s = build_schema([], {"seg": {"type": "segmentation",
                                  "mask_targets": {"0": "background", "1": "road", "2": "car"}}})
    assert s["seg"].classes == ["road", "car"] and s["seg"].mask_targets == {0: "background",
                                                                             1: "road", 2: "car"}


def test_cvat_labels_shared_classes_classless_fields_and_label_id():
    s = build_schema(SAMPLES, {
        "gt": {"attributes": {"iscrowd": {"type": "radio", "values": [True, False],
                                          "default": False}}},
        "kp": {"type": "keypoints", "classes": ["cat", "person"]},
        "count": {},
        "quality": {"type": "scalar", "classes": ["good", "bad"]}})
    labels = {lab["name"]: lab for lab in cvat_labels(s)}
    assert set(labels) == {"bird", "cat_gt", "dog", "cat_kp", "person", "count", "good", "bad"}
    attrs = {a["name"]: a for a in labels["cat_gt"]["attributes"]}
    assert attrs["iscrowd"] == {"name": "iscrowd", "mutable": True, "input_type": "radio",
                                "default_value": "false", "values": ["true", "false"]}
    assert attrs["label_id"]["input_type"] == "text" and attrs["label_id"]["values"] == []
    assert [a["name"] for a in labels["count"]["attributes"]] == ["value"]
    assert labels["good"]["attributes"] == []
    cmap = class_map(s)
    assert cmap["cat_gt"] == ("gt", "cat") and cmap["cat_kp"] == ("kp", "cat")
    assert cmap["count"] == ("count", None) and cmap["good"] == ("quality", "good")


def test_occluded_and_group_id_are_not_cvat_attributes():
    s = build_schema(SAMPLES, "gt")
    names = {a["name"] for lab in cvat_labels(s) for a in lab["attributes"]}
    assert names == {"iscrowd", "note", "label_id"}


def test_per_class_attributes():
    s = build_schema([], {"f": {"type": "detections", "classes": [
        "plain", {"classes": ["car"], "attributes": {"make": {"type": "text"}}}]}})
    labels = {lab["name"]: [a["name"] for a in lab["attributes"]] for lab in cvat_labels(s)}
    assert labels == {"plain": ["label_id"], "car": ["make", "label_id"]}


def test_field_schema_json_round_trip():
    s = build_schema([], {"seg": {"type": "segmentation", "mask_targets": {1: "road"},
                                  "allow_deletions": False}})
    j = s["seg"].to_json()
    assert j["mask_targets"] == {"1": "road"}
    assert FieldSchema.from_json(j) == s["seg"]
