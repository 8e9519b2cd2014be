"""Classification(s) and scalars <-> CVAT tags, both ways, through real id resolution."""
from syncd.ids import is_object_id, new_id
from syncd.labels import import_annotations
from syncd.schema import build_schema

from label_helpers import server_labels, through_cvat


def clf(label, **kw):
    return {"_id": {"$oid": new_id()}, "_cls": "Classification", "label": label, **kw}


def test_classification_round_trip_keeps_id_and_attributes():
    c = clf("sunny", confidence_note="high", windy=True)
    sample = {"weather": c}
    schema = build_schema([sample], "weather")
    items, data, sent, got = through_cvat(sample, schema)
    assert items["shapes"] == [] and items["tracks"] == []
    assert items["tags"][0]["label"] == "sunny"
    assert items["tags"][0]["attributes"] == {"confidence_note": "high", "windy": True,
                                              "label_id": c["_id"]["$oid"]}
    assert {a["value"] for a in data["tags"][0]["attributes"]} == {"high", "true",
                                                                   c["_id"]["$oid"]}
    assert sent == {"weather": [c["_id"]["$oid"]]}
    back = got["weather"]
    assert back["_id"] == c["_id"] and back["label"] == "sunny"
    assert back["confidence_note"] == "high" and back["windy"] is True
    assert "label_id" not in back


def test_classifications_round_trip():
    a, b = clf("cat"), clf("dog")
    sample = {"tags_f": {"_cls": "Classifications", "classifications": [a, b]}}
    schema = build_schema([sample], "tags_f")
    _, _, sent, got = through_cvat(sample, schema)
    assert sent["tags_f"] == [a["_id"]["$oid"], b["_id"]["$oid"]]
    back = got["tags_f"]
    assert back["_cls"] == "Classifications"
    assert [(x["label"], x["_id"]) for x in back["classifications"]] == [("cat", a["_id"]),
                                                                         ("dog", b["_id"])]


def test_scalar_with_classes_is_the_class_name():
    sample = {"quality": "good"}
    schema = build_schema([sample], {"quality": {"type": "scalar", "classes": ["good", "bad"]}})
    items, _, sent, got = through_cvat(sample, schema)
    assert items["tags"] == [{"label": "good", "frame": 0, "group": 0, "source": "manual",
                              "attributes": {}}]
    assert got["quality"] == "good"
    # a value outside the classes is not sent
    items, _, sent, got = through_cvat({"quality": "meh"}, schema)
    assert items["tags"] == [] and sent["quality"] == [] and got["quality"] is None


def test_scalar_without_classes_rides_on_the_value_attribute_and_is_coerced():
    for value in (3, 2.5, True, "text"):
        sample = {"count": value}
        schema = build_schema([sample], "count")
        items, _, _, got = through_cvat(sample, schema)
        assert items["tags"][0]["label"] == "count"
        assert got["count"] == value and type(got["count"]) is type(value)


def test_bool_scalar_with_classes():
    schema = build_schema([], {"ok": {"type": "scalar", "classes": [True, False]}})
    items, _, _, got = through_cvat({"ok": False}, schema)
    assert items["tags"][0]["label"] == "false"
    assert got["ok"] == "false"  # FiftyOne: a scalar with classes comes back as the class name


def test_tag_without_label_id_gets_a_new_id_and_bad_label_id_is_ignored():
    schema = build_schema([], {"w": {"type": "classifications", "classes": ["a"]}})
    labels = server_labels(schema)
    spec = labels[0]["attributes"][0]["id"]
    data = {"tags": [{"id": 1, "frame": 0, "label_id": 1, "group": 0,
                      "attributes": [{"spec_id": spec, "value": "not-an-id"}]},
                     {"id": 2, "frame": 0, "label_id": 1, "group": 0, "attributes": []}],
            "shapes": [], "tracks": []}
    got = import_annotations(data, labels, {0: {"sample": "s", "width": 10, "height": 10}}, schema)
    ids = [c["_id"]["$oid"] for c in got["s"]["w"]["classifications"]]
    assert len(set(ids)) == 2 and all(is_object_id(i) for i in ids)


def test_empty_fields_are_reported_empty_for_every_frame():
    schema = build_schema([], {"w": {"type": "classifications", "classes": ["a"]},
                               "n": {"type": "scalar"}})
    got = import_annotations({"tags": [], "shapes": [], "tracks": []}, server_labels(schema),
                             {0: {"sample": "x", "width": 5, "height": 5},
                              1: {"sample": "y", "width": 5, "height": 5}}, schema)
    assert got == {s: {"w": {"_cls": "Classifications", "classifications": []}, "n": None}
                   for s in ("x", "y")}


def test_cvat_attributes_named_like_identity_keys_cannot_replace_id_or_type():
    """A project made elsewhere may carry attributes called "_id" or "_cls": their values are
    not the label's id or type (the merge would lose track of the label, FiftyOne refuse it)."""
    from syncd.ids import is_object_id
    from syncd.labels import import_annotations
    from syncd.schema import build_schema

    sample = {"gt": {"_cls": "Detections", "detections": []}}
    schema = build_schema([sample], "gt", label_type="detections", classes=["car"])
    labels = [{"id": 1, "name": "car", "type": "any", "attributes": [
        {"id": 11, "name": "_id", "input_type": "text", "values": [""]},
        {"id": 12, "name": "_cls", "input_type": "text", "values": [""]},
        {"id": 13, "name": "make", "input_type": "text", "values": [""]}]}]
    data = {"tags": [], "tracks": [], "shapes": [
        {"id": n, "type": "rectangle", "frame": 0, "label_id": 1, "points": [1, 2, 30, 40],
         "occluded": False, "group": 0, "attributes": [{"spec_id": 11, "value": "not-an-id"},
                                                        {"spec_id": 12, "value": "Polyline"},
                                                        {"spec_id": 13, "value": "vw"}]}
        for n in (1, 2)]}
    got = import_annotations(data, labels, {0: {"sample": "s", "width": 100, "height": 100}}, schema)
    dets = got["s"]["gt"]["detections"]
    assert [d["_cls"] for d in dets] == ["Detection", "Detection"]
    ids = [d["_id"]["$oid"] for d in dets]
    assert all(is_object_id(i) for i in ids) and len(set(ids)) == 2
    assert [d["make"] for d in dets] == ["vw", "vw"]
