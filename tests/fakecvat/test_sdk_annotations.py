"""The official cvat-sdk reads and writes every kind of annotation, exports CVAT XML and imports it back."""
import zipfile
from xml.etree import ElementTree

import pytest
from cvat_sdk import make_client, models
from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction
from PIL import Image

LABELS = [
    {"name": "car", "attributes": [
        {"name": "color", "mutable": False, "input_type": "select", "values": ["red", "blue"], "default_value": "red"},
        {"name": "moving", "mutable": True, "input_type": "checkbox", "values": ["false"], "default_value": "false"}]},
    {"name": "road", "type": "polygon"},
    {"name": "blob", "type": "mask"},
    {"name": "day", "type": "tag"},
    {"name": "person", "type": "skeleton", "svg": "",
     "sublabels": [{"name": "head", "type": "points"}, {"name": "foot", "type": "points"}]},
]


@pytest.fixture
def client(fakecvat):
    with make_client(fakecvat.url, credentials=("admin", "admin")) as c:
        c.config.status_check_period = 0.01
        yield c


@pytest.fixture
def task(client, tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"img_{i}.png"
        Image.new("RGB", (64, 48), (i * 30, 10, 10)).save(p)
        paths.append(str(p))
    return client.tasks.create_from_data({"name": "ann", "labels": LABELS, "segment_size": 3}, resources=paths)


def ids(task):
    out = {}
    for lb in task.get_labels():
        out[lb.name] = lb.id
        for s in lb.sublabels or []:
            out[f"{lb.name}.{s.name}"] = s.id
        for a in lb.attributes:
            out[f"{lb.name}:{a.name}"] = a.id
    return out


def every_kind(L, frame=0):
    """One of every shape type, a tag and a track, as a LabeledDataRequest."""
    return models.LabeledDataRequest(
        tags=[models.LabeledImageRequest(frame=frame, label_id=L["day"])],
        shapes=[
            models.LabeledShapeRequest(type="rectangle", frame=frame, label_id=L["car"], points=[1, 2, 30, 40],
                                       rotation=15.0, attributes=[models.AttributeValRequest(spec_id=L["car:color"], value="blue")]),
            models.LabeledShapeRequest(type="polygon", frame=frame, label_id=L["road"], points=[0, 0, 10, 0, 10, 10]),
            models.LabeledShapeRequest(type="polyline", frame=frame, label_id=L["road"], points=[0, 0, 5, 5]),
            models.LabeledShapeRequest(type="points", frame=frame, label_id=L["road"], points=[3, 3]),
            models.LabeledShapeRequest(type="ellipse", frame=frame, label_id=L["car"], points=[20, 20, 30, 15]),
            models.LabeledShapeRequest(type="cuboid", frame=frame, label_id=L["car"], points=[float(i) for i in range(16)]),
            models.LabeledShapeRequest(type="mask", frame=frame, label_id=L["blob"], points=[1, 3, 2, 0, 0, 2, 1]),
            models.LabeledShapeRequest(type="skeleton", frame=frame, label_id=L["person"], points=[], elements=[
                models.SubLabeledShapeRequest(type="points", frame=frame, label_id=L["person.head"], points=[5, 5]),
                models.SubLabeledShapeRequest(type="points", frame=frame, label_id=L["person.foot"], points=[5, 20], outside=True),
            ]),
        ],
        tracks=[models.LabeledTrackRequest(frame=frame, label_id=L["car"], shapes=[
            models.TrackedShapeRequest(type="rectangle", frame=frame, points=[0, 0, 10, 10],
                                       attributes=[models.AttributeValRequest(spec_id=L["car:moving"], value="true")]),
            models.TrackedShapeRequest(type="rectangle", frame=frame + 2, points=[10, 10, 20, 20], outside=True),
        ])],
    )


def test_every_kind_round_trips_at_task_level(task):
    L = ids(task)
    task.set_annotations(every_kind(L))
    got = task.get_annotations()
    assert got.version == 0
    assert [t.label_id for t in got.tags] == [L["day"]]
    by_type = {s.type.value: s for s in got.shapes}
    assert set(by_type) == {"rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"}
    rect = by_type["rectangle"]
    assert rect.points == [1, 2, 30, 40] and rect.rotation == 15.0 and rect.source == "manual"
    assert {(a.spec_id, a.value) for a in rect.attributes} == {(L["car:color"], "blue"), (L["car:moving"], "false")}
    assert by_type["mask"].points == [1, 3, 2, 0, 0, 2, 1]
    sk = by_type["skeleton"]
    assert sorted((e.label_id, e.points, e.outside) for e in sk.elements) == sorted(
        [(L["person.head"], [5, 5], False), (L["person.foot"], [5, 20], True)])
    assert all(s.elements == [] for s in got.shapes if s.type.value != "skeleton")
    (track,) = got.tracks
    assert [(s.frame, s.outside) for s in track.shapes] == [(0, False), (2, True)]
    assert track.attributes[0].spec_id == L["car:color"] and track.attributes[0].value == "red"  # immutable default
    assert [a.value for a in track.shapes[1].attributes] == ["true"]  # carried from the previous keyframe


def test_update_create_delete_and_remove(task):
    L = ids(task)
    task.set_annotations(every_kind(L))
    rect = next(s for s in task.get_annotations().shapes if s.type.value == "rectangle")
    task.update_annotations(models.PatchedLabeledDataRequest(shapes=[models.LabeledShapeRequest(
        id=rect.id, type="rectangle", frame=1, label_id=L["car"], points=[5, 5, 9, 9])]), action=AnnotationUpdateAction.UPDATE)
    task.update_annotations(models.PatchedLabeledDataRequest(tags=[models.LabeledImageRequest(frame=4, label_id=L["day"])]),
                            action=AnnotationUpdateAction.CREATE)
    got = task.get_annotations()
    moved = next(s for s in got.shapes if s.id == rect.id)
    assert (moved.frame, moved.points) == (1, [5, 5, 9, 9])
    assert sorted(t.frame for t in got.tags) == [0, 4]
    task.remove_annotations(ids=[rect.id])
    assert rect.id not in {s.id for s in task.get_annotations().shapes}
    task.remove_annotations()
    got = task.get_annotations()
    assert (got.tags, got.shapes, got.tracks) == ([], [], [])


def test_job_level_sees_only_its_frames(task, client):
    L = ids(task)
    jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
    second = client.jobs.retrieve(jobs[1].id)
    task.set_annotations(models.LabeledDataRequest(shapes=[
        models.LabeledShapeRequest(type="points", frame=f, label_id=L["road"], points=[1, 1]) for f in range(6)]))
    assert sorted(s.frame for s in second.get_annotations().shapes) == [3, 4, 5]
    second.set_annotations(every_kind(L, frame=3))
    got = second.get_annotations()
    assert len(got.shapes) == 8 and len(got.tags) == 1 and len(got.tracks) == 1
    assert sorted(s.frame for s in task.get_annotations().shapes) == [0, 1, 2] + [3] * 8
    second.update_annotations(models.PatchedLabeledDataRequest(tags=[models.LabeledImageRequest(
        id=got.tags[0].id, frame=3, label_id=L["day"])]), action=AnnotationUpdateAction.DELETE)
    assert second.get_annotations().tags == []
    second.remove_annotations()
    assert sorted(s.frame for s in task.get_annotations().shapes) == [0, 1, 2]


def test_export_cvat_xml_and_import_back(task, tmp_path):
    L = ids(task)
    task.set_annotations(every_kind(L))
    out = tmp_path / "export.zip"
    task.export_dataset("CVAT for images 1.1", str(out), include_images=False)
    root = ElementTree.fromstring(zipfile.ZipFile(out).read("annotations.xml"))
    assert root.find("version").text == "1.1" and root.find("meta/task/name").text == "ann"
    img0 = root.find("image[@id='0']")
    assert img0.get("name") == "img_0.png" and img0.get("width") == "64"
    box = img0.find("box")
    assert (box.get("xtl"), box.get("ybr"), box.get("rotation")) == ("1.00", "40.00", "15.00")
    assert box.find("attribute[@name='color']").text == "blue"
    mask = img0.find("mask")
    assert (mask.get("rle"), mask.get("left"), mask.get("width"), mask.get("height")) == ("1, 3, 2", "0", "3", "2")
    assert img0.find("polygon").get("points") == "0.00,0.00;10.00,0.00;10.00,10.00"
    assert img0.find("tag").get("label") == "day"
    assert [p.get("label") for p in img0.find("skeleton").findall("points")] == ["head", "foot"]
    assert len(root.find("image[@id='1']").findall("box")) == 1  # the track, interpolated on frame 1
    assert root.find("image[@id='2']").findall("box") == []  # outside from frame 2

    task.remove_annotations()
    task.import_annotations("CVAT 1.1", str(out))
    got = task.get_annotations()
    assert sorted(s.type.value for s in got.shapes) == sorted(
        ["rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"] + ["rectangle"] * 2)  # the track: frames 0, 1
    rects = [s for s in got.shapes if s.type.value == "rectangle"]
    assert any(s.points == [1, 2, 30, 40] and s.rotation == 15.0 for s in rects)
    assert next(s for s in got.shapes if s.type.value == "mask").points == [1, 3, 2, 0, 0, 2, 1]
    assert len(got.tags) == 1


def test_video_export_and_import_keeps_tracks(task, tmp_path):
    L = ids(task)
    task.set_annotations(every_kind(L))
    out = tmp_path / "video.zip"
    task.export_dataset("CVAT for video 1.1", str(out), include_images=False)
    root = ElementTree.fromstring(zipfile.ZipFile(out).read("annotations.xml"))
    first = root.find("track[@id='0']")
    assert first.get("label") == "car"
    assert [(b.get("frame"), b.get("keyframe"), b.get("outside")) for b in first.findall("box")] == [
        ("0", "1", "0"), ("1", "0", "0"), ("2", "1", "1")]
    task.remove_annotations()
    task.import_annotations("CVAT 1.1", str(out))
    got = task.get_annotations()
    assert len(got.tracks) == 1 + 8  # the track, and every shape as a one-frame track
    assert [(s.frame, s.outside) for s in got.tracks[0].shapes] == [(0, False), (2, True)]


def test_export_with_images_and_coco(task, tmp_path):
    L = ids(task)
    task.set_annotations(every_kind(L))
    out = tmp_path / "ds.zip"
    task.export_dataset("CVAT for images 1.1", str(out), include_images=True)
    assert "images/img_3.png" in zipfile.ZipFile(out).namelist()
    coco = tmp_path / "coco.zip"
    task.export_dataset("COCO 1.0", str(coco), include_images=False)
    import json
    doc = json.loads(zipfile.ZipFile(coco).read("annotations/instances_default.json"))
    assert [c["name"] for c in doc["categories"]][:3] == ["car", "road", "blob"]
    assert any(a["bbox"] == [1.0, 2.0, 29.0, 38.0] for a in doc["annotations"])


def test_job_import_and_broken_file_fails_request(task, client, tmp_path):
    from cvat_sdk.core.exceptions import BackgroundRequestException
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotations><image id='0' name='img_0.png'><box label='nope' xtl='1' ytl='1' xbr='2' ybr='2'/></image></annotations>")
    with pytest.raises(BackgroundRequestException, match="nope"):
        task.import_annotations("CVAT 1.1", str(bad))
    good = tmp_path / "good.xml"
    good.write_text("<annotations><image id='4' name='img_4.png'><box label='car' xtl='1' ytl='1' xbr='2' ybr='2'/></image></annotations>")
    job = client.jobs.retrieve(sorted(task.get_jobs(), key=lambda j: j.start_frame)[1].id)
    job.import_annotations("CVAT 1.1", str(good))
    (shape,) = job.get_annotations().shapes
    assert (shape.frame, shape.points) == (4, [1, 1, 2, 2])
