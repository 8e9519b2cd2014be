"""Segmentation with mask_targets <-> one CVAT mask shape per class present."""
import numpy as np
from PIL import Image

from syncd.ids import new_id
from syncd.labels import export_sample, import_annotations, resolve_ids
from syncd.schema import build_schema

from label_helpers import server_labels

TARGETS = {0: "background", 1: "road", 2: "car", 3: "sky"}


def test_segmentation_round_trip_through_mask_shapes(tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[20:, :] = 1
    mask[5:12, 8:20] = 2
    Image.fromarray(mask).save(tmp_path / "seg.png")
    seg = {"_id": {"$oid": new_id()}, "_cls": "Segmentation", "mask_path": "seg.png"}
    sample = {"seg": seg}
    schema = build_schema([sample], {"seg": {"mask_targets": TARGETS}})
    assert schema["seg"].type == "segmentation" and schema["seg"].classes == ["road", "car", "sky"]
    items, sent = export_sample(sample, 0, schema, 40, 30, tmp_path)
    assert [(s["label"], s["type"]) for s in items["shapes"]] == [("road", "mask"), ("car", "mask")]
    assert all(s["attributes"]["label_id"] == seg["_id"]["$oid"] for s in items["shapes"])
    assert items["shapes"][1]["points"][-4:] == [8.0, 5.0, 19.0, 11.0]
    assert sent == {"seg": [seg["_id"]["$oid"]]}

    labels = server_labels(schema)
    data = resolve_ids(items, labels)
    got = import_annotations(data, labels, {0: {"sample": "s", "width": 40, "height": 30}},
                             schema)["s"]["seg"]
    assert got["_cls"] == "Segmentation" and got["_id"] == seg["_id"]
    assert got["mask"].dtype == np.uint8 and (got["mask"] == mask).all()


def test_segmentation_polygon_pieces_are_painted_with_the_target_value():
    schema = build_schema([], {"seg": {"type": "segmentation", "mask_targets": TARGETS}})
    labels = server_labels(schema)
    sky = next(lab for lab in labels if lab["name"] == "sky")
    data = {"shapes": [{"id": 1, "type": "polygon", "frame": 0, "label_id": sky["id"],
                        "points": [0, 0, 9, 0, 9, 4, 0, 4], "attributes": []}], "tags": []}
    got = import_annotations(data, labels, {0: {"sample": "s", "width": 10, "height": 10}},
                             schema)["s"]["seg"]
    assert (got["mask"][:5] == 3).all() and (got["mask"][5:] == 0).all()


def test_empty_segmentation_sends_nothing_and_comes_back_none():
    seg = {"_id": {"$oid": new_id()}, "_cls": "Segmentation", "mask": np.zeros((4, 4), np.uint8)}
    schema = build_schema([{"seg": seg}], {"seg": {"mask_targets": TARGETS}})
    items, sent = export_sample({"seg": seg}, 0, schema, 4, 4, None)
    assert items["shapes"] == [] and sent == {"seg": []}
