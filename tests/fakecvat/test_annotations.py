"""Annotation endpoints over plain HTTP: CVAT's error bodies, ids, permissions, side effects, speed."""
import time

import pytest
import requests
from cvat_sdk import make_client
from PIL import Image


@pytest.fixture
def setup(fakecvat, tmp_path):
    """A 6-frame task with jobs 0-2 and 3-5; returns (session, base url, task id, job ids, label ids)."""
    paths = []
    for i in range(6):
        p = tmp_path / f"f{i}.png"
        Image.new("RGB", (20, 10)).save(p)
        paths.append(str(p))
    with make_client(fakecvat.url, credentials=("admin", "admin")) as c:
        c.config.status_check_period = 0.01
        task = c.tasks.create_from_data({"name": "t", "segment_size": 3, "labels": [
            {"name": "car", "attributes": [
                {"name": "kind", "mutable": False, "input_type": "text", "values": [""], "default_value": "sedan"},
                {"name": "speed", "mutable": True, "input_type": "number", "values": ["0", "100", "1"], "default_value": "0"}]},
            {"name": "tree"}]}, resources=paths)
        jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
        labels = {lb.name: lb for lb in task.get_labels()}
    s = requests.Session()
    s.auth = ("admin", "admin")
    L = {"car": labels["car"].id, "tree": labels["tree"].id,
         **{a.name: a.id for a in labels["car"].attributes}}
    return s, fakecvat.url, task.id, [j.id for j in jobs], L


def rect(L, frame=0, **kw):
    return {"type": "rectangle", "frame": frame, "label_id": L["car"], "points": [1, 2, 3, 4], **kw}


def test_output_shape_has_every_key_and_defaults(setup):
    s, url, tid, jobs, L = setup
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"shapes": [rect(L)], "tags": [{"frame": 1, "label_id": L["tree"]}]})
    assert r.status_code == 200
    got = s.get(f"{url}/api/tasks/{tid}/annotations/").json()
    assert got["version"] == 0
    (shape,) = got["shapes"]
    assert set(shape) == {"id", "type", "frame", "label_id", "group", "source", "occluded", "outside", "z_order",
                          "rotation", "points", "attributes", "elements"}
    assert (shape["group"], shape["source"], shape["rotation"], shape["elements"]) == (None, "manual", 0.0, [])
    assert shape["attributes"] == [{"spec_id": L["kind"], "value": "sedan"}, {"spec_id": L["speed"], "value": "0"}]
    (tag,) = got["tags"]
    assert set(tag) == {"id", "frame", "label_id", "group", "source", "attributes"}


def test_ids_must_be_absent_and_errors_align_with_items(setup):
    s, url, tid, jobs, L = setup
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"shapes": [rect(L), rect(L, id=7)]})
    assert (r.status_code, r.json()) == (400, {"shapes": [{}, {"id": ["must be absent"]}]})
    r = s.patch(f"{url}/api/jobs/{jobs[0]}/annotations?action=create", json={"shapes": [rect(L, id=1)]})
    assert r.json() == {"shapes": [{"id": ["must be absent"]}]}
    r = s.put(f"{url}/api/jobs/{jobs[0]}/annotations", json={"shapes": [rect(L), {**rect(L), "points": [1, 2, 3]}]})
    assert r.json() == {"shapes": [{}, {"points": ["invalid length for shape type 'rectangle'"]}]}
    r = s.put(f"{url}/api/jobs/{jobs[0]}/annotations", json={"shapes": [rect(L, frame=-1)]})
    assert r.json() == {"shapes": [{"frame": ["Ensure this value is greater than or equal to 0."]}]}
    r = s.put(f"{url}/api/jobs/{jobs[0]}/annotations", json={"shapes": [{**rect(L), "type": "blob"}]})
    assert r.json() == {"shapes": [{"type": ['"blob" is not a valid choice.']}]}
    r = s.put(f"{url}/api/jobs/{jobs[0]}/annotations", json={"shapes": [{**rect(L), "type": "mask", "points": [1, 2, 3, 4]}]})
    assert r.status_code == 400


def test_label_and_spec_rules(setup):
    s, url, tid, jobs, L = setup
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"shapes": [rect(L, label_id=9999)]})
    assert (r.status_code, r.json()) == (400, ["label_id `9999` is invalid"])
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"tags": [
        {"frame": 0, "label_id": L["tree"], "attributes": [{"spec_id": L["kind"], "value": "x"}]}]})
    assert r.json() == [f"spec_id `{L['kind']}` is invalid"]
    track = {"frame": 0, "label_id": L["car"], "attributes": [{"spec_id": L["speed"], "value": "5"}],
             "shapes": [{"type": "rectangle", "frame": 0, "points": [1, 2, 3, 4]}]}
    assert s.put(f"{url}/api/tasks/{tid}/annotations", json={"tracks": [track]}).json() == [f"spec_id `{L['speed']}` is invalid"]
    track["attributes"] = [{"spec_id": L["kind"], "value": "suv"}]
    track["shapes"][0]["attributes"] = [{"spec_id": L["speed"], "value": 5}]
    r = s.put(f"{url}/api/tasks/{tid}/annotations", json={"tracks": [track]})
    assert r.status_code == 200 and r.json()["tracks"][0]["shapes"][0]["attributes"] == [{"spec_id": L["speed"], "value": "5"}]


def test_patch_actions(setup):
    s, url, tid, jobs, L = setup
    r = s.patch(f"{url}/api/jobs/{jobs[0]}/annotations", json={})
    assert (r.status_code, r.json()) == (400, ["Please specify a correct 'action' for the request"])
    created = s.patch(f"{url}/api/jobs/{jobs[0]}/annotations?action=create", json={"shapes": [rect(L), rect(L, frame=1)]}).json()
    a, b = created["shapes"]
    assert isinstance(a["id"], int) and b["id"] == a["id"] + 1
    r = s.patch(f"{url}/api/jobs/{jobs[0]}/annotations?action=update", json={"shapes": [{**rect(L), "id": a["id"], "points": [0, 0, 9, 9]}]})
    assert r.json()["shapes"][0]["id"] == a["id"]
    body = {"shapes": [{**rect(L, frame=1), "id": b["id"]}]}
    assert s.patch(f"{url}/api/jobs/{jobs[0]}/annotations?action=delete", json=body).json()["shapes"] == body["shapes"]
    r = s.patch(f"{url}/api/jobs/{jobs[0]}/annotations?action=delete", json={"shapes": [rect(L)]})
    assert r.status_code == 400
    shapes = s.get(f"{url}/api/jobs/{jobs[0]}/annotations").json()["shapes"]
    assert [(x["id"], x["points"]) for x in shapes] == [(a["id"], [0.0, 0.0, 9.0, 9.0])]


def test_task_put_splits_by_jobs_and_normalises_tracks(setup):
    s, url, tid, jobs, L = setup
    track = {"frame": 0, "label_id": L["car"], "shapes": [
        {"type": "rectangle", "frame": 1, "points": [0, 0, 10, 10]},
        {"type": "rectangle", "frame": 5, "points": [40, 40, 50, 50]}]}
    s.put(f"{url}/api/tasks/{tid}/annotations", json={"shapes": [rect(L, frame=f) for f in (0, 4, 6)], "tracks": [track]})
    j0 = s.get(f"{url}/api/jobs/{jobs[0]}/annotations").json()
    j1 = s.get(f"{url}/api/jobs/{jobs[1]}/annotations").json()
    assert [x["frame"] for x in j0["shapes"]] == [0] and [x["frame"] for x in j1["shapes"]] == [4]  # frame 6: no job
    (t0,) = j0["tracks"]
    assert t0["frame"] == 0 and [(x["frame"], x["outside"]) for x in t0["shapes"]] == [(0, True), (1, False)]
    (t1,) = j1["tracks"]
    assert [x["frame"] for x in t1["shapes"]] == [3, 5]
    assert t1["shapes"][0]["points"] == [20.0, 20.0, 30.0, 30.0]  # interpolated where the job starts
    assert s.put(f"{url}/api/tasks/{tid}/annotations", json={"tracks": [{**track, "shapes": []}]}).json()["tracks"] == []


def test_write_bumps_updated_date_and_delete_clears(setup):
    s, url, tid, jobs, L = setup
    before = s.get(f"{url}/api/jobs/{jobs[1]}").json()["updated_date"]
    time.sleep(0.01)
    s.patch(f"{url}/api/jobs/{jobs[1]}/annotations?action=create", json={"tags": [{"frame": 3, "label_id": L["tree"]}]})
    assert s.get(f"{url}/api/jobs/{jobs[1]}").json()["updated_date"] > before
    assert s.get(f"{url}/api/tasks/{tid}").json()["updated_date"] > before
    assert s.delete(f"{url}/api/tasks/{tid}/annotations").status_code == 204
    assert s.get(f"{url}/api/tasks/{tid}/annotations").json() == {"version": 0, "tags": [], "shapes": [], "tracks": []}


def test_permissions_legacy_and_missing(setup, fakecvat):
    s, url, tid, jobs, L = setup
    other = requests.Session()
    other.auth = ("user1", "user1-pass")
    assert other.get(f"{url}/api/tasks/{tid}/annotations").status_code == 403
    assert other.put(f"{url}/api/jobs/{jobs[0]}/annotations", json={}).status_code == 403
    s.patch(f"{url}/api/jobs/{jobs[0]}", json={"assignee": 2})
    assert other.get(f"{url}/api/jobs/{jobs[0]}/annotations").status_code == 200  # the assignee is job staff
    r = s.get(f"{url}/api/tasks/{tid}/annotations?format=CVAT%201.1")
    assert r.status_code == 410 and r.headers["Content-Type"].startswith("text/plain")
    assert s.get(f"{url}/api/jobs/999/annotations").json() == {"detail": "No Job matches the given query."}
    empty = s.post(f"{url}/api/tasks", json={"name": "no data", "labels": [{"name": "a"}]}).json()
    assert s.get(f"{url}/api/tasks/{empty['id']}/annotations").status_code == 400


def test_export_errors_and_download(setup):
    s, url, tid, jobs, L = setup
    r = s.post(f"{url}/api/tasks/{tid}/dataset/export?format=Nope&save_images=False")
    assert (r.status_code, r.json()) == (400, ["Unknown format specified for the request"])
    assert s.post(f"{url}/api/tasks/{tid}/dataset/export?format=YOLO%201.1").status_code == 405
    s.put(f"{url}/_fakecvat/async", json={"mode": "polls", "value": 3})
    r = s.post(f"{url}/api/tasks/{tid}/dataset/export?format=CVAT%20for%20images%201.1&save_images=False")
    assert r.status_code == 202
    rq_id = r.json()["rq_id"]
    assert rq_id == f"action=export&target=task&target_id={tid}&user_id=1&format=CVAT_for_images_1~1&subresource=annotations"
    assert s.post(f"{url}/api/tasks/{tid}/dataset/export?format=CVAT%20for%20images%201.1&save_images=False").status_code == 409
    for _ in range(5):
        rq = s.get(f"{url}/api/requests/{requests.utils.quote(rq_id, safe='')}").json()
        if rq["status"] == "finished":
            break
    assert rq["status"] == "finished" and rq["result_url"].startswith(url + f"/api/tasks/{tid}/dataset/download?rq_id=")
    d = s.get(rq["result_url"])
    assert d.status_code == 200 and d.content[:2] == b"PK" and "attachment" in d.headers["Content-Disposition"]


def test_annotator_helper_writes_by_names(setup):
    s, url, tid, jobs, L = setup
    r = s.post(f"{url}/_fakecvat/jobs/{jobs[1]}/annotations", json={
        "shapes": [{"type": "rectangle", "frame": 3, "label": "car", "points": [1, 1, 5, 5], "attributes": {"kind": "suv"}}],
        "tags": [{"frame": 4, "label": "tree"}]})
    assert r.status_code == 201
    got = s.get(f"{url}/api/jobs/{jobs[1]}/annotations").json()
    assert got["shapes"][0]["attributes"][0] == {"spec_id": L["kind"], "value": "suv"}
    assert got["tags"][0]["label_id"] == L["tree"]
    r = s.post(f"{url}/_fakecvat/jobs/{jobs[1]}/annotations", json={"shapes": [{"type": "rectangle", "frame": 3, "label": "boat", "points": [1, 1, 5, 5]}]})
    assert r.status_code == 400 and "boat" in r.text


@pytest.mark.no_schema_check  # validating 10k shapes with jsonschema would dominate the run
def test_ten_thousand_shapes_round_trip(setup):
    """Correctness at size; the speed of this path is measured in bench/, not here."""
    s, url, tid, jobs, L = setup
    data = {"shapes": [rect(L, frame=i % 6, points=[i, 1, i + 5, 9]) for i in range(10000)]}
    assert s.put(f"{url}/api/tasks/{tid}/annotations", json=data).status_code == 200
    got = s.get(f"{url}/api/tasks/{tid}/annotations").json()["shapes"]
    assert len(got) == 10000 and len({sh["id"] for sh in got}) == 10000
    assert sorted(sh["points"][0] for sh in got) == [float(i) for i in range(10000)]
