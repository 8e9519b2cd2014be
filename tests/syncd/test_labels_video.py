"""Videos in syncd's label model: frames.<field> labels <-> a CVAT task's tracks and shapes.

Pure conversions on hand-built CVAT LabeledData (what a GET of the task's annotations returns),
then merged into the sample as ``syncd load`` would.
"""
import copy

import pytest

from syncd.errors import SyncdError
from syncd.ids import label_id, new_id
from syncd.labels import resolve_ids
from syncd.labels.video import check_frame_settings, export_video, frame_map, import_video
from syncd.merge import merge_video
from syncd.ops import derived_id
from syncd.schema import build_schema

from label_helpers import server_labels

W, H = 100, 50


def det(label, box, index=None, **kw):
    return {"_id": {"$oid": new_id()}, "_cls": "Detection", "label": label,
            "bounding_box": list(box), "confidence": None, "index": index, "attributes": {},
            "tags": [], **kw}


def video(frames, total=30):
    return {"filepath": "clip.mp4", "tags": [],
            "metadata": {"_cls": "VideoMetadata", "frame_width": W, "frame_height": H,
                         "total_frame_count": total},
            "frames": {str(n): {"frame_number": n, **fields} for n, fields in frames.items()}}


def dets(*d):
    return {"_cls": "Detections", "detections": list(d)}


def meta(size=30, start=0, step=1):
    return {"size": size, "start_frame": start, "stop_frame": start + (size - 1) * step,
            "frame_filter": f"step={step}" if step > 1 else "", "width": W, "height": H}


def as_server(data, task_id=7):
    """What a GET returns after our PUT: ids assigned, and (as ops._stamp_derived_ids does)
    a derived label_id on each track, whose mutable label_id spec CVAT never fills."""
    data = copy.deepcopy(data)
    for n, t in enumerate(data["tracks"]):
        t["id"] = 1000 + n
        for s in t["shapes"]:
            s["id"] = 5000 + n * 100 + s["frame"]
    for n, s in enumerate(data["shapes"]):
        s["id"] = 2000 + n
    return data


def stamp_tracks(data, task_labels, task_id=7):
    spec = {lb["id"]: a["id"] for lb in task_labels for a in lb["attributes"] if a["name"] == "label_id"}
    for t in data["tracks"]:
        t.setdefault("attributes", []).append(
            {"spec_id": spec[t["label_id"]], "value": derived_id(task_id, "tracks", t["id"])})
    return data


# ---- frame settings --------------------------------------------------------------------------------

def test_frame_map_start_stop_step():
    assert frame_map(10) == {n: n - 1 for n in range(1, 11)}
    assert frame_map(10, frame_start=2, frame_step=3) == {3: 0, 6: 1, 9: 2}
    assert frame_map(10, frame_start=1, frame_stop=4, frame_step=2) == {2: 0, 4: 1}


@pytest.mark.parametrize("kw, name", [({"frame_step": 0}, "frame_step"),
                                      ({"frame_step": 1.5}, "frame_step"),
                                      ({"frame_start": -1}, "frame_start"),
                                      ({"frame_start": 5, "frame_stop": 2}, "frame_stop")])
def test_bad_frame_settings_name_the_setting(kw, name):
    with pytest.raises(SyncdError, match=name):
        check_frame_settings(**kw)
    sample = video({1: {"detections": dets(det("car", [0.1, 0.1, 0.2, 0.2]))}})
    schema = build_schema([sample], "frames.detections")
    with pytest.raises(SyncdError, match=name):
        export_video(sample, schema, W, H, None, **kw)


def test_existing_tracks_refuse_a_frame_step():
    sample = video({1: {"detections": dets(det("car", [0.1, 0.1, 0.2, 0.2], index=1))}})
    schema = build_schema([sample], "frames.detections")
    with pytest.raises(SyncdError, match="frame_step=2.*track"):
        export_video(sample, schema, W, H, None, frame_step=2)


# ---- upload ----------------------------------------------------------------------------------------

def test_export_plain_labels_follow_start_and_step():
    frames = {n: {"detections": dets(det("car", [0.1, 0.2, 0.3, 0.4]))} for n in range(1, 11)}
    sample = video(frames, total=10)
    schema = build_schema([sample], "frames.detections")
    items, sent = export_video(sample, schema, W, H, None, frame_start=1, frame_step=3)
    # video frames 1, 4, 7 (0-based) = sample frames 2, 5, 8 -> task frames 0, 1, 2
    assert sorted(s["frame"] for s in items["shapes"]) == [0, 1, 2]
    assert items["shapes"][0]["points"] == [10.0, 10.0, 40.0, 30.0]
    assert items["tracks"] == []
    want = [label_id(frames[n]["detections"]["detections"][0]) for n in (2, 5, 8)]
    assert sent == {"frames.detections": want}


def test_export_tracks_group_by_index_with_outside_markers():
    a = {n: det("car", [0.1 * n / 10, 0.1, 0.2, 0.2], index=1) for n in (1, 2, 3, 6)}
    b = {n: det("car", [0.5, 0.5, 0.1, 0.1], index=2) for n in (2, 3)}
    frames = {n: {"detections": dets(*[x[n] for x in (a, b) if n in x])} for n in (1, 2, 3, 6)}
    sample = video(frames, total=8)
    schema = build_schema([sample], "frames.detections")
    items, sent = export_video(sample, schema, W, H, None)
    assert items["shapes"] == []
    t1, t2 = sorted(items["tracks"], key=lambda t: len(t["shapes"]), reverse=True)
    assert [(s["frame"], s["outside"]) for s in t1["shapes"]] == [
        (0, False), (1, False), (2, False), (3, True), (5, False), (6, True)]
    assert [(s["frame"], s["outside"]) for s in t2["shapes"]] == [(1, False), (2, False), (3, True)]
    assert t1["shapes"][0]["attributes"]["label_id"] == label_id(a[1])
    assert set(sent["frames.detections"]) == {label_id(x) for d in (a, b) for x in d.values()}
    # and the id form the PUT sends
    resolved = resolve_ids(items, server_labels(schema))
    assert len(resolved["tracks"]) == 2 and resolved["tracks"][0]["label_id"] == 1


# ---- download --------------------------------------------------------------------------------------

def drawn_track_task():
    """A track drawn in CVAT: keyframes at task frames 0 and 10, outside at 15."""
    schema = build_schema([video({})], {"frames.detections": {"type": "detections",
                                                              "classes": ["car"]}})
    labels = server_labels(schema)
    shape = lambda f, pts, out=False: {"id": 90 + f, "frame": f, "type": "rectangle",  # noqa: E731
                                        "points": pts, "occluded": False, "outside": out,
                                        "z_order": 0, "rotation": 0.0, "attributes": []}
    data = {"version": 0, "tags": [], "shapes": [], "tracks": [{
        "id": 77, "frame": 0, "label_id": 1, "group": 0, "source": "manual", "attributes": [],
        "elements": [], "shapes": [shape(0, [10.0, 10.0, 30.0, 20.0]),
                                   shape(10, [40.0, 20.0, 60.0, 40.0]),
                                   shape(15, [40.0, 20.0, 60.0, 40.0], True)]}]}
    return schema, labels, stamp_tracks(data, labels)


def test_drawn_track_comes_back_interpolated_on_frames_1_to_15():
    schema, labels, data = drawn_track_task()
    got = import_video(data, labels, meta(size=30), schema)["frames"]
    assert sorted(got, key=int) == [str(n) for n in range(1, 31)]
    seen = {}
    for n in range(1, 31):
        d = got[str(n)]["detections"]["detections"]
        if n > 15:
            assert d == []  # nothing once the track is outside
            continue
        assert len(d) == 1
        seen[n] = d[0]
    assert {lab["index"] for lab in seen.values()} == {1}
    assert [n for n, lab in seen.items() if lab.get("keyframe")] == [1, 11]
    for n, lab in seen.items():
        t = min((n - 1) / 10, 1.0)
        x1, y1 = 10 + 30 * t, 10 + 10 * t
        x2, y2 = 30 + 30 * t, 20 + 20 * t
        x, y, w, h = lab["bounding_box"]
        assert abs(x * W - x1) <= 1 and abs(y * H - y1) <= 1
        assert abs((x + w) * W - x2) <= 1 and abs((y + h) * H - y2) <= 1
    assert len({label_id(lab) for lab in seen.values()}) == 15
    # downloading again gives the same ids: merging twice is merging once
    again = import_video(data, labels, meta(size=30), schema)["frames"]
    assert [label_id(again[str(n)]["detections"]["detections"][0]) for n in seen] == \
           [label_id(lab) for lab in seen.values()]

    sample = video({})
    merged = merge_video(sample, {"frames": got}, {}, schema)
    assert sorted(n for n, fr in merged["frames"].items() if fr.get("detections")) == \
        sorted(str(n) for n in range(1, 16))
    assert merged["frames"]["11"]["detections"]["detections"][0]["keyframe"] is True
    twice = merge_video(merged, {"frames": again}, {}, schema)
    assert twice == merged


def test_import_maps_task_frames_through_start_and_step():
    schema, labels, data = drawn_track_task()
    got = import_video(data, labels, meta(size=4, start=5, step=3), schema)["frames"]
    # task frame k -> video frame 5 + 3k (0-based) -> sample frame 6 + 3k
    assert sorted(got, key=int) == ["6", "9", "12", "15"]
    assert all(len(got[n]["detections"]["detections"]) == 1 for n in got)


def test_overlapping_jobs_are_read_once():
    schema, labels, _ = drawn_track_task()
    box = lambda f, i: {"id": i, "frame": f, "label_id": 1, "type": "rectangle", "group": 0,  # noqa: E731
                        "points": [1.0, 1.0, 5.0, 5.0], "occluded": False, "outside": False,
                        "z_order": 0, "rotation": 0.0, "source": "manual", "attributes": []}
    job1 = {"tags": [], "tracks": [], "shapes": [box(3, 1), box(4, 2)]}
    job2 = {"tags": [], "tracks": [], "shapes": [box(3, 3), box(4, 4), box(6, 5)]}
    got = import_video([(job1, 0, 4), {"annotations": job2, "start_frame": 3, "stop_frame": 7}],
                       labels, meta(size=8), schema)["frames"]
    counts = {n: len(v["detections"]["detections"]) for n, v in got.items()}
    assert counts == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1, "6": 0, "7": 1, "8": 0}


# ---- round trips of existing tracks ----------------------------------------------------------------

def existing_tracks_sample():
    cars = {n: det("car", [0.1 + 0.01 * n, 0.2, 0.2, 0.2], index=3) for n in range(1, 6)}
    bus = {n: det("bus", [0.5, 0.5, 0.2, 0.2], index=7) for n in (4, 5)}
    still = det("car", [0.0, 0.0, 0.1, 0.1])
    frames = {n: {"detections": dets(*[x[n] for x in (cars, bus) if n in x])} for n in range(1, 6)}
    frames[2]["detections"]["detections"].append(still)
    return video(frames, total=8), cars, bus, still


def round_trip(sample, edit=None):
    schema = build_schema([sample], "frames.detections")
    items, sent = export_video(sample, schema, W, H, None)
    labels = server_labels(schema)
    data = as_server(resolve_ids(items, labels))
    if edit:
        edit(data)
    data = stamp_tracks(data, labels)
    down = import_video(data, labels, meta(size=8), schema)
    return merge_video(sample, down, sent, schema), schema


def test_existing_tracks_round_trip_with_ids_and_indexes_kept():
    sample, cars, bus, still = existing_tracks_sample()
    before = copy.deepcopy(sample)
    merged, _ = round_trip(sample)
    assert sample == before  # the input is not modified
    for n in range(1, 9):
        got = {label_id(d): d for d in (merged["frames"].get(str(n), {}).get("detections") or
                                        {"detections": []})["detections"]}
        want = {label_id(x[n]): x[n] for x in (cars, bus) if n in x}
        if n == 2:
            want[label_id(still)] = still
        assert set(got) == set(want), n
        for lid, d in got.items():
            assert d["index"] == want[lid]["index"]
            assert d["bounding_box"] == pytest.approx(want[lid]["bounding_box"], abs=0.01)
            assert "keyframe" not in d  # the field had no keyframes: none are added


def test_edited_track_merges_as_edits():
    sample, cars, bus, still = existing_tracks_sample()

    def edit(data):
        car = next(t for t in data["tracks"] if len(t["shapes"]) > 3)
        # the annotator removes keyframes 1..3 (frames 2..4) and moves the last one
        car["shapes"] = [s for s in car["shapes"] if s["frame"] not in (1, 2, 3)]
        car["shapes"][1]["points"] = [50.0, 10.0, 70.0, 20.0]
        # and deletes the bus track
        data["tracks"] = [t for t in data["tracks"] if t is car]
    merged, _ = round_trip(sample, edit)
    for n in range(1, 6):
        d = [x for x in merged["frames"][str(n)]["detections"]["detections"] if x.get("index") == 3]
        assert len(d) == 1 and label_id(d[0]) == label_id(cars[n])  # interpolated frames kept their ids
    assert merged["frames"]["5"]["detections"]["detections"][0]["bounding_box"] == \
        pytest.approx([0.5, 0.2, 0.2, 0.2])
    x3 = merged["frames"]["3"]["detections"]["detections"]
    assert x3[0]["bounding_box"][0] == pytest.approx((11 + (50 - 11) * 2 / 4) / W)
    assert all(d["label"] != "bus" for n in ("4", "5") for d in merged["frames"][n]["detections"]["detections"])


def test_new_track_gets_the_next_free_index():
    sample, cars, bus, still = existing_tracks_sample()

    def edit(data):
        extra = copy.deepcopy(data["tracks"][0])
        extra["id"] = 4242
        for s in extra["shapes"]:
            s["attributes"] = []
        data["tracks"].append(extra)
    merged, _ = round_trip(sample, edit)
    idx = {d.get("index") for d in merged["frames"]["1"]["detections"]["detections"]}
    assert idx == {3, 8}


def test_keyframe_added_in_cvat_does_not_steal_the_previous_keyframes_id():
    sample, cars, bus, still = existing_tracks_sample()

    def edit(data):
        car = next(t for t in data["tracks"] if len(t["shapes"]) > 3)
        # CVAT's UI copies every attribute (label_id too) onto a keyframe drawn on frame 7
        added = copy.deepcopy(car["shapes"][4])
        added.update(frame=6, outside=False, points=[80.0, 10.0, 90.0, 20.0])
        car["shapes"] = car["shapes"][:5] + [added]
    merged, _ = round_trip(sample, edit)
    ids = [label_id(d) for n in range(1, 8) for d in merged["frames"][str(n)]["detections"]["detections"]
           if d.get("index") == 3]
    assert len(ids) == 7 and len(set(ids)) == 7
    assert ids[:5] == [label_id(cars[n]) for n in range(1, 6)]
    assert merged["frames"]["7"]["detections"]["detections"][0]["bounding_box"] == \
        pytest.approx([0.8, 0.2, 0.1, 0.2])


def test_tracked_polylines_and_keypoints_round_trip():
    def pl(n):
        return {"_id": {"$oid": new_id()}, "_cls": "Polyline", "label": "lane", "index": 1,
                "points": [[[0.1, 0.1 * n], [0.5, 0.2], [0.9, 0.1]]], "closed": False,
                "filled": False, "attributes": {}, "tags": []}

    def kp(n):
        return {"_id": {"$oid": new_id()}, "_cls": "Keypoint", "label": "eye", "index": 4,
                "points": [[0.2, 0.2 + 0.1 * n]], "attributes": {}, "tags": []}
    lanes, eyes = {n: pl(n) for n in (1, 2, 3)}, {n: kp(n) for n in (1, 2, 3)}
    sample = video({n: {"lanes": {"_cls": "Polylines", "polylines": [lanes[n]]},
                        "eyes": {"_cls": "Keypoints", "keypoints": [eyes[n]]}} for n in (1, 2, 3)},
                   total=3)
    schema = build_schema([sample], ["frames.lanes", "frames.eyes"])
    items, sent = export_video(sample, schema, W, H, None)
    assert sorted(t["shapes"][0]["type"] for t in items["tracks"]) == ["points", "polyline"]
    labels = server_labels(schema)
    data = stamp_tracks(as_server(resolve_ids(items, labels)), labels)
    merged = merge_video(sample, import_video(data, labels, meta(size=3), schema), sent, schema)
    for n in (1, 2, 3):
        lane = merged["frames"][str(n)]["lanes"]["polylines"]
        eye = merged["frames"][str(n)]["eyes"]["keypoints"]
        assert [label_id(x) for x in lane] == [label_id(lanes[n])] and lane[0]["index"] == 1
        assert [label_id(x) for x in eye] == [label_id(eyes[n])] and eye[0]["index"] == 4
        flat = lambda pts: [c for p in pts for c in p]  # noqa: E731
        assert flat(lane[0]["points"][0]) == pytest.approx(flat(lanes[n]["points"][0]), abs=0.02)
