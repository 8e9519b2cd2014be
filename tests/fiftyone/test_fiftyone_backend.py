"""FiftyOne's own CVAT backend (fiftyone==1.22.1, ``backend="cvat"``) driven against fakecvat:
annotate -> an annotator draws through CVAT's REST API -> load_annotations, as a FiftyOne user
would do against a real CVAT server."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from fo_helpers import H, W, make_images

pytestmark = pytest.mark.xdist_group("fiftyone")


def creds(server) -> dict:
    # Always explicit: FiftyOne would otherwise fall back to app.cvat.ai and an input() prompt.
    return {"url": server.url, "username": "admin", "password": "admin"}


def frames_to_samples(results, task_id) -> dict[int, str]:
    """CVAT frame index -> FiftyOne sample id, as FiftyOne recorded it at upload."""
    return {int(f): v["sample_id"] for f, v in results.frame_id_map[task_id].items()}


def test_new_detections_round_trip_with_status(fo, tmp_path, fakecvat, annotator, fo_dataset, caplog, capsys):
    paths = make_images(tmp_path, ["a.png", "b.png", "c.png"])
    fo_dataset.add_samples([fo.Sample(filepath=p) for p in paths])

    results = fo_dataset.annotate("boxes", backend="cvat", **creds(fakecvat), label_field="ground_truth",
                                  label_type="detections", classes=["cat", "dog"], segment_size=2,
                                  job_assignees=["user1", "user2"])
    assert len(results.task_ids) == 1
    tid = results.task_ids[0]
    jobs = annotator.jobs(tid)
    assert [(j["start_frame"], j["stop_frame"]) for j in jobs] == [(0, 1), (2, 2)]
    assert sorted(j["assignee"]["username"] for j in jobs) == ["user1", "user2"]
    assert sorted(results.job_ids[tid]) == sorted(j["id"] for j in jobs)

    status = results.get_status()["ground_truth"][tid]
    assert status["status"] == "annotation"
    assert {int(j) for j in status["jobs"]} == {j["id"] for j in jobs}

    # The annotator draws in both jobs (task-level frame numbers) and finishes them.
    # Box corners in pixels, (xtl, ytl, xbr, ybr); fractional on purpose.
    drawn = {0: ("cat", [8.0, 6.0, 40.0, 30.0]), 1: ("dog", [0.0, 0.0, 32.0, 24.0]),
             2: ("cat", [10.5, 4.25, 30.75, 47.0])}
    for job in jobs:
        labels = annotator.labels(job["id"])
        annotator.put(job["id"], shapes=[
            {"type": "rectangle", "frame": f, "label_id": labels[name]["id"], "points": pts,
             "attributes": []}
            for f, (name, pts) in drawn.items() if job["start_frame"] <= f <= job["stop_frame"]])
        annotator.complete(job["id"])

    caplog.set_level(logging.INFO, logger="fiftyone")
    results.print_status()
    printed = caplog.text + capsys.readouterr().out
    assert "Status for label field 'ground_truth'" in printed
    assert f"Task {tid} " in printed and "Status: completed" in printed
    assert all(f"Job {j['id']}:" in printed for j in jobs)
    assert all(j["status"] == "completed" for j in results.get_status()["ground_truth"][tid]["jobs"].values())

    frames = frames_to_samples(results, tid)
    fo_dataset.load_annotations("boxes", **creds(fakecvat), unexpected="keep", cleanup=True)

    for frame, (name, (x1, y1, x2, y2)) in drawn.items():
        sample = fo_dataset[frames[frame]]
        dets = sample.ground_truth.detections
        assert [d.label for d in dets] == [name], sample.filepath
        assert dets[0].bounding_box == pytest.approx([x1 / W, y1 / H, (x2 - x1) / W, (y2 - y1) / H], abs=1 / W)
    # frame order is the sample order FiftyOne uploaded
    assert [frames[f] for f in sorted(frames)] == fo_dataset.values("id")
    # cleanup=True deleted the task in CVAT, and the run forgot it
    assert annotator.task_status(tid) == 404
    assert fo_dataset.load_annotation_results("boxes", **creds(fakecvat)).task_ids == []


def test_existing_labels_reannotated_keep_their_ids(fo, tmp_path, fakecvat, annotator, fo_dataset):
    paths = make_images(tmp_path, ["x.png", "y.png"])
    Det = fo.Detection
    x = fo.Sample(filepath=paths[0], ground_truth=fo.Detections(detections=[
        Det(label="cat", bounding_box=[0.1, 0.1, 0.2, 0.2]),
        Det(label="dog", bounding_box=[0.5, 0.5, 0.25, 0.25]),
        Det(label="cat", bounding_box=[0.0, 0.5, 0.25, 0.25]),
    ]))
    y = fo.Sample(filepath=paths[1], ground_truth=fo.Detections(detections=[
        Det(label="dog", bounding_box=[0.25, 0.25, 0.5, 0.5])]))
    fo_dataset.add_samples([x, y])
    x, y = fo_dataset.first(), fo_dataset.last()
    moved, deleted, kept = (d.id for d in x.ground_truth.detections)
    relabelled = y.ground_truth.detections[0].id

    # An existing field: FiftyOne infers type and classes and uploads the labels it has.
    results = fo_dataset.annotate("fix", backend="cvat", **creds(fakecvat), label_field="ground_truth")
    tid = results.task_ids[0]
    frames = {v: k for k, v in frames_to_samples(results, tid).items()}
    (job,) = annotator.jobs(tid)
    labels = annotator.labels(job["id"])
    assert {"cat", "dog"} <= set(labels)

    # Every uploaded shape carries its FiftyOne id in the label_id attribute (the id round trip).
    shapes = annotator.annotations(job["id"])["shapes"]
    by_fo_id = {}
    for s in shapes:
        lab = next(lb for lb in labels.values() if lb["id"] == s["label_id"])
        value = next(a["value"] for a in s["attributes"] if a["spec_id"] == annotator.spec(lab, "label_id"))
        by_fo_id[value] = s
    assert set(by_fo_id) == {moved, deleted, kept, relabelled}
    assert by_fo_id[moved]["frame"] == frames[x.id] and by_fo_id[relabelled]["frame"] == frames[y.id]

    # The annotator moves one box, deletes one, relabels one (carrying its id over to the new
    # label's attribute, as an API client would), leaves one untouched and draws a new one.
    out = [dict(by_fo_id[kept]), dict(by_fo_id[moved], points=[0.0, 0.0, 16.0, 12.0])]
    out.append(dict(by_fo_id[relabelled], label_id=labels["cat"]["id"],
                    attributes=[{"spec_id": annotator.spec(labels["cat"], "label_id"), "value": relabelled}]))
    out.append({"type": "rectangle", "frame": frames[y.id], "label_id": labels["dog"]["id"],
                "points": [48.0, 36.0, 64.0, 48.0], "attributes": []})
    for s in out:
        s.pop("id", None)
    annotator.put(job["id"], shapes=out)
    annotator.complete(job["id"])

    # As in a new process: FiftyOne reloads the run and logs in again with what we pass.
    fo_dataset.clear_cache()
    fo_dataset.load_annotations("fix", **creds(fakecvat), unexpected="keep", cleanup=True)

    x, y = fo_dataset.first(), fo_dataset.last()
    xd = {d.id: d for d in x.ground_truth.detections}
    assert set(xd) == {moved, kept}
    assert xd[moved].label == "cat"
    assert xd[moved].bounding_box == pytest.approx([0.0, 0.0, 0.25, 0.25], abs=1 / W)
    assert xd[kept].bounding_box == pytest.approx([0.0, 0.5, 0.25, 0.25], abs=1 / W)
    yd = {d.id: d for d in y.ground_truth.detections}
    assert yd[relabelled].label == "cat"
    assert yd[relabelled].bounding_box == pytest.approx([0.25, 0.25, 0.5, 0.5], abs=1 / W)
    (new,) = [d for i, d in yd.items() if i != relabelled]
    assert new.label == "dog" and new.bounding_box == pytest.approx([0.75, 0.75, 0.25, 0.25], abs=1 / W)
    assert annotator.task_status(tid) == 404


def test_every_label_type_survives_a_round_trip_in_a_project(fo, tmp_path, fakecvat, annotator, fo_dataset):
    """Existing labels of every image type go up (tags, masks as RLE, polygons, polylines,
    points, a scalar as a tag attribute) into a new project and come back unchanged."""
    paths = make_images(tmp_path, ["p.png", "q.png"])
    car = np.zeros((10, 12), bool)
    car[2:8, 3:11] = True
    seg = np.zeros((H, W), np.uint8)
    seg[30:, :] = 1
    seg[:10, 40:] = 2
    fo_dataset.add_samples([
        fo.Sample(filepath=paths[0], weather=fo.Classification(label="sunny"), count=3,
                  inst=fo.Detections(detections=[
                      fo.Detection(label="car", bounding_box=[10 / W, 20 / H, 12 / W, 10 / H], mask=car)]),
                  lanes=fo.Polylines(polylines=[fo.Polyline(
                      label="lane", points=[[(0, 40 / H), (0.5, 20 / H), (1, 40 / H)]], closed=False, filled=False)]),
                  zones=fo.Polylines(polylines=[fo.Polyline(
                      label="zone", points=[[(0.125, 0.125), (0.5, 0.125), (0.5, 0.5)]], closed=True, filled=True)]),
                  joints=fo.Keypoints(keypoints=[fo.Keypoint(label="person", points=[(0.25, 0.25), (0.5, 0.5)])]),
                  seg=fo.Segmentation(mask=seg)),
        fo.Sample(filepath=paths[1], weather=fo.Classification(label="rainy")),
    ])
    fo_dataset.default_mask_targets = {0: "background", 1: "road", 2: "sky"}
    before = {s.id: s.to_dict() for s in fo_dataset}

    results = fo_dataset.annotate(
        "all", backend="cvat", **creds(fakecvat), project_name="interop", task_assignee="user1",
        label_schema={"weather": {}, "inst": {"type": "instances"}, "lanes": {"type": "polylines"},
                      "zones": {"type": "polygons"}, "joints": {}, "seg": {}, "count": {"type": "scalar"}})
    (tid,) = results.task_ids
    task = annotator.call("GET", f"/api/tasks/{tid}")
    assert task["assignee"]["username"] == "user1"
    project = annotator.call("GET", f"/api/projects/{task['project_id']}")
    assert project["name"] == "interop" and results.project_ids == [project["id"]]
    (job,) = annotator.jobs(tid)
    uploaded = annotator.annotations(job["id"])
    # every label arrived as one item (the two segmentation classes as two masks), none dropped
    # or merged by the server; the classifications and the scalar are tags
    assert sorted(s["type"] for s in uploaded["shapes"]) == ["mask", "mask", "mask", "points", "polygon", "polyline"]
    assert len(uploaded["tags"]) == 3
    annotator.complete(job["id"])

    fo_dataset.clear_cache()
    fo_dataset.load_annotations("all", **creds(fakecvat), unexpected="keep", cleanup=True)

    p, q = fo_dataset.first(), fo_dataset.last()
    old = before[p.id]
    assert p.weather.id == old["weather"]["_id"]["$oid"] and p.weather.label == "sunny"
    assert q.weather.label == "rainy" and p.count == 3
    (inst,) = p.inst.detections
    assert inst.id == old["inst"]["detections"][0]["_id"]["$oid"] and inst.label == "car"
    # FiftyOne 1.22.1 itself reads a mask's box one pixel narrower than it wrote it (w = xbr - xtl)
    assert np.abs(np.multiply(inst.bounding_box, [W, H, W, H]) - [10, 20, 12, 10]).max() <= 1 + 1e-9
    assert (inst.mask > 0).tolist() == car.tolist()
    for field, drawn in (("lanes", [[0, 40 / H], [0.5, 20 / H], [1, 40 / H]]),
                         ("zones", [[0.125, 0.125], [0.5, 0.125], [0.5, 0.5]])):
        (pl,) = p[field].polylines
        assert pl.id == old[field]["polylines"][0]["_id"]["$oid"]
        assert np.allclose(pl.points, [drawn], atol=1 / W)
    (person,) = p.joints.keypoints
    assert person.id == old["joints"]["keypoints"][0]["_id"]["$oid"]
    assert np.allclose(person.points, [[0.25, 0.25], [0.5, 0.5]], atol=1 / W)
    assert p.seg.id == old["seg"]["_id"]["$oid"]
    # ... and loses the last column of a segmentation the same way
    assert p.seg.mask.shape == (H, W) and (p.seg.mask[:, :-1] == seg[:, :-1]).all()
    assert annotator.task_status(tid) == 404


def test_existing_project_schema_is_patched_and_kept(fo, tmp_path, fakecvat, annotator, fo_dataset):
    """Annotating into a project made in CVAT: FiftyOne adds its ``label_id`` attribute to the
    project's labels (PATCH with the labels as the server returned them), uses the project's
    schema, and cleanup leaves the project alone since the run did not create it."""
    project = annotator.call("POST", "/api/projects", json={
        "name": "team project", "labels": [{"name": "car", "attributes": []}, {"name": "bus", "attributes": []}]})
    (path,) = make_images(tmp_path, ["p.png"])
    fo_dataset.add_sample(fo.Sample(filepath=path, gt=fo.Detections(detections=[
        fo.Detection(label="car", bounding_box=[0.125, 0.125, 0.25, 0.25])])))
    det_id = fo_dataset.first().gt.detections[0].id

    results = fo_dataset.annotate("proj", backend="cvat", **creds(fakecvat), label_field="gt",
                                  project_name="team project")
    assert results.project_ids == []  # found, not created
    labels = annotator.call("GET", f"/api/labels?project_id={project['id']}")["results"]
    assert {lb["name"]: [a["name"] for a in lb["attributes"]] for lb in labels} == \
        {"car": ["label_id"], "bus": ["label_id"]}
    (tid,) = results.task_ids
    (job,) = annotator.jobs(tid)
    (shape,) = annotator.annotations(job["id"])["shapes"]
    shape = {k: v for k, v in shape.items() if k != "id"}
    annotator.put(job["id"], shapes=[dict(shape, points=[32.0, 24.0, 48.0, 36.0])])
    annotator.complete(job["id"])

    fo_dataset.clear_cache()
    fo_dataset.load_annotations("proj", **creds(fakecvat), unexpected="keep", cleanup=True)
    (det,) = fo_dataset.first().gt.detections
    assert det.id == det_id and det.label == "car"
    assert det.bounding_box == pytest.approx([0.5, 0.5, 0.25, 0.25], abs=1 / W)
    assert annotator.task_status(tid) == 404
    assert annotator.call("GET", f"/api/projects/{project['id']}")["name"] == "team project"
