"""Format modules on plain data: CVAT XML layout and round trip, bad files, COCO masks, interpolation."""
import io
import json
import zipfile

import pytest

from fakecvat.formats import ExportContext, FormatError, Frame, coco, cvat_xml_export, cvat_xml_import
from fakecvat.models import interpolation

LABELS = [
    {"id": 1, "name": "car", "color": "#ff0000", "type": "rectangle", "parent_id": None,
     "attributes": [{"id": 11, "name": "color", "mutable": False, "input_type": "select",
                     "default_value": "red", "values": ["red", "blue"]}]},
    {"id": 2, "name": "blob", "color": "#00ff00", "type": "mask", "parent_id": None, "attributes": []},
]
TASK = {"id": 5, "name": "demo", "mode": "annotation", "overlap": 0, "bug_tracker": "", "subset": "",
        "created_date": "2024-01-02T03:04:05.000001Z", "updated_date": "2024-01-02T03:04:06.000001Z",
        "owner_id": 1, "assignee_id": None, "data": {"frame_filter": ""}, "size": 3}


def ctx():
    return ExportContext(target="task", task=TASK, labels=LABELS, host="http://h",
                         frames=[Frame(i, f"im{i}.jpg", 100, 50) for i in range(3)],
                         users={1: {"username": "admin", "email": "a@x"}},
                         jobs=[{"id": 9, "start_frame": 0, "stop_frame": 2}], stop_frame=2)


def shape(**kw):
    base = {"id": 1, "type": "rectangle", "frame": 0, "label_id": 1, "group": None, "source": "manual",
            "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0, "points": [1, 2, 3, 4],
            "attributes": [{"spec_id": 11, "value": "blue"}], "elements": []}
    base.update(kw)
    return base


def test_images_xml_layout():
    data = {"tags": [], "tracks": [], "shapes": [shape(), shape(id=2, type="mask", label_id=2, points=[0, 2, 2, 5, 6, 6, 7], attributes=[])]}
    xml = cvat_xml_export.annotations_xml_images(ctx(), data)
    assert xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n    <task>\n      <id>5</id>')
    assert "<created>2024-01-02 03:04:05.000001+00:00</created>" in xml
    assert "<subset>default</subset>" in xml and "<url>http://h/api/jobs/9</url>" in xml
    assert ('    <box label="car" source="manual" occluded="0" xtl="1.00" ytl="2.00" xbr="3.00" ybr="4.00" z_order="0">\n'
            '      <attribute name="color">blue</attribute>\n    </box>') in xml
    assert '<mask label="blob" source="manual" occluded="0" rle="0, 2, 2" left="5" top="6" width="2" height="2" z_order="0">' in xml
    assert '<image id="2" name="im2.jpg" width="100" height="50">\n  </image>' in xml


def test_xml_round_trip_and_zip():
    data = {"tags": [{"id": 1, "frame": 1, "label_id": 1, "group": 3, "source": "auto", "attributes": []}],
            "shapes": [shape(type="ellipse", points=[10, 10, 15, 7], rotation=30.0)], "tracks": []}
    blob = cvat_xml_export.export_images(ctx(), data)
    back = cvat_xml_import.import_file(blob, LABELS)
    (s,) = back["shapes"]
    assert (s["type"], s["points"], s["rotation"], s["attributes"]) == ("ellipse", [10, 10, 15, 7], 30.0, [{"spec_id": 11, "value": "blue"}])
    (t,) = back["tags"]
    assert (t["frame"], t["group"], t["source"]) == (1, 3, "auto")
    assert zipfile.ZipFile(io.BytesIO(blob)).namelist() == ["annotations.xml"]


@pytest.mark.parametrize("raw, needle", [
    (b"<annotations><image id='0' name='a'><box label='car' xtl='x' ytl='1' xbr='2' ybr='2'/></image></annotations>", "xtl"),
    (b"<annotations><image", "parse"),
    (b"<other/>", "annotations"),
    (b"<annotations><image id='0' name='a'><box label='car' xtl='1' ytl='1' xbr='2' ybr='2'><attribute name='size'>1</attribute></box></image></annotations>", "size"),
    (b"PK\x03\x04broken", "archive"),
])
def test_bad_files_are_refused_with_a_reason(raw, needle):
    with pytest.raises(FormatError, match=needle):
        cvat_xml_import.import_file(raw, LABELS)


def test_interpolation_between_keyframes_and_outside():
    track = {"shapes": [{"type": "rectangle", "frame": 0, "points": [0, 0, 10, 10]},
                        {"type": "rectangle", "frame": 4, "points": [40, 40, 50, 50], "outside": False},
                        {"type": "rectangle", "frame": 6, "points": [40, 40, 50, 50], "outside": True}]}
    got = {f["frame"]: f for f in interpolation.frames(track, stop_frame=9)}
    assert sorted(got) == [0, 1, 2, 3, 4, 5, 6]
    assert got[2]["points"] == [20, 20, 30, 30] and not got[2]["keyframe"]
    assert got[6]["outside"] and interpolation.shape_at(track, 8) is None


def test_coco_masks_and_boxes():
    data = {"tags": [], "tracks": [], "shapes": [shape(), shape(id=2, type="mask", label_id=2, points=[1, 3, 2, 0, 0, 2, 1], attributes=[])]}
    doc = json.loads(zipfile.ZipFile(io.BytesIO(coco.export(ctx(), data))).read("annotations/instances_default.json"))
    box, mask = doc["annotations"]
    assert box["bbox"] == [1, 2, 2, 2] and box["attributes"] == {"color": "blue", "occluded": False, "rotation": 0.0}
    assert mask["iscrowd"] == 1 and mask["area"] == 3.0 and mask["bbox"] == [0.0, 0.0, 3.0, 2.0]
    assert sum(mask["segmentation"]["counts"]) == 100 * 50
