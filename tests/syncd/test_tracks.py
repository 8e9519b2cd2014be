"""Track building and CVAT-style interpolation (syncd.labels.tracks), on hand-built tracks."""
import pytest

from syncd.labels.tracks import build_track, interpolate_track, polyshape, resolve_tracks


def kf(frame, points, type_="rectangle", outside=False, rotation=0.0, attributes=()):
    return {"frame": frame, "type": type_, "points": list(points), "outside": outside,
            "occluded": False, "z_order": 0, "rotation": rotation,
            "attributes": [{"spec_id": s, "value": v} for s, v in attributes]}


def by_frame(shapes):
    return {s["frame"]: s for s in shapes}


def test_rectangle_linear_between_keyframes_and_nothing_after_outside():
    track = {"shapes": [kf(0, [0, 0, 10, 10]), kf(10, [10, 20, 30, 40]),
                        kf(15, [10, 20, 30, 40], outside=True)]}
    got = by_frame(interpolate_track(track, stop_frame=29))
    assert sorted(got) == list(range(15))
    assert got[5]["points"] == [5.0, 10.0, 20.0, 25.0]
    assert got[3]["points"] == pytest.approx([3, 6, 16, 19])
    # after the second keyframe it moves toward the outside shape (identical here): it holds
    assert got[12]["points"] == [10.0, 20.0, 30.0, 40.0]
    assert [f for f, s in got.items() if s["keyframe"]] == [0, 10]


def test_visible_last_keyframe_holds_to_the_end_and_start_is_respected():
    track = {"shapes": [kf(2, [1, 1, 5, 5])]}
    got = interpolate_track(track, stop_frame=6, start_frame=4)
    assert [s["frame"] for s in got] == [4, 5, 6]
    assert all(s["points"] == [1.0, 1.0, 5.0, 5.0] and not s["keyframe"] for s in got)


def test_gap_after_outside_until_next_keyframe():
    track = {"shapes": [kf(0, [0, 0, 4, 4]), kf(3, [0, 0, 4, 4], outside=True),
                        kf(6, [2, 2, 6, 6])]}
    got = by_frame(interpolate_track(track, stop_frame=7))
    assert sorted(got) == [0, 1, 2, 6, 7]


def test_keyframe_beyond_stop_still_steers_the_interpolation():
    track = {"shapes": [kf(0, [0, 0, 0, 0]), kf(10, [10, 10, 10, 10])]}
    got = by_frame(interpolate_track(track, stop_frame=4))
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert got[4]["points"] == [4.0, 4.0, 4.0, 4.0]


def test_attributes_are_carried_from_the_previous_keyframe():
    track = {"shapes": [kf(0, [0, 0, 1, 1], attributes=[(7, "a"), (8, "x")]),
                        kf(2, [0, 0, 1, 1], attributes=[(7, "b")])]}
    got = by_frame(interpolate_track(track, stop_frame=3))
    assert {a["spec_id"]: a["value"] for a in got[1]["attributes"]} == {7: "a", 8: "x"}
    assert {a["spec_id"]: a["value"] for a in got[2]["attributes"]} == {7: "b", 8: "x"}
    assert got[2]["own_attributes"] == {7: "b"}


def test_rotation_turns_the_short_way():
    track = {"shapes": [kf(0, [0, 0, 2, 2], rotation=350), kf(2, [0, 0, 2, 2], rotation=10)]}
    got = by_frame(interpolate_track(track, stop_frame=2))
    assert got[1]["rotation"] == pytest.approx(0.0)


def test_points_single_point_moves_several_points_hold():
    one = {"shapes": [kf(0, [0, 0], "points"), kf(4, [8, 4], "points")]}
    assert by_frame(interpolate_track(one, 4))[1]["points"] == [2.0, 1.0]
    many = {"shapes": [kf(0, [0, 0, 1, 1], "points"), kf(4, [8, 4, 9, 5], "points")]}
    assert by_frame(interpolate_track(many, 4))[3]["points"] == [0.0, 0.0, 1.0, 1.0]


def test_polygon_translation_moves_every_vertex():
    a = [0, 0, 10, 0, 10, 10, 0, 10]
    b = [x + 4 for x in a]
    track = {"shapes": [kf(0, a, "polygon"), kf(4, b, "polygon")]}
    got = by_frame(interpolate_track(track, 4))
    assert got[1]["points"] == pytest.approx([x + 1 for x in a])
    assert polyshape(a, a, 0.5, closed=True) == pytest.approx(a)


def test_polyline_with_different_vertex_counts_stays_between_the_two():
    a = [0, 0, 10, 0]
    b = [0, 10, 5, 10, 10, 10]
    pts = polyshape(a, b, 0.5, closed=False)
    assert len(pts) % 2 == 0 and len(pts) >= 4
    assert pts[:2] == pytest.approx([0, 5]) and pts[-2:] == pytest.approx([10, 5])
    assert all(y == pytest.approx(5) for y in pts[1::2])


def shape(frame, x):
    return {"label": "car", "frame": frame, "type": "rectangle", "points": [x, 0.0, x + 1, 1.0],
            "occluded": False, "group": 0, "z_order": 0, "rotation": 0.0, "outside": False,
            "source": "manual", "attributes": {"label_id": f"{frame:024x}"}}


def test_build_track_marks_gaps_and_the_end_outside():
    seq = [(k, shape(k, k), {}) for k in (0, 1, 4)]
    track = build_track("car", seq, last_frame=9, only_keyframes=False, immutable={"make": "vw"})
    frames = [(s["frame"], s["outside"]) for s in track["shapes"]]
    assert frames == [(0, False), (1, False), (2, True), (4, False), (5, True)]
    assert track["frame"] == 0 and track["attributes"] == {"make": "vw"}
    assert "label" not in track["shapes"][0] and track["shapes"][2]["points"] == [1, 0.0, 2, 1.0]
    # ending on the last uploaded frame: no marker
    end = build_track("car", [(9, shape(9, 9), {})], last_frame=9, only_keyframes=False, immutable={})
    assert [s["outside"] for s in end["shapes"]] == [False]


def test_build_track_only_keyframes_sends_keyframes_and_frames_after_gaps():
    labs = {0: {"keyframe": True}, 1: {}, 2: {}, 3: {"keyframe": True}, 6: {}, 7: {}}
    seq = [(k, shape(k, k), lab) for k, lab in labs.items()]
    track = build_track("car", seq, last_frame=7, only_keyframes=True, immutable={})
    assert [(s["frame"], s["outside"]) for s in track["shapes"]] == [
        (0, False), (3, False), (4, True), (6, False)]


def test_resolve_tracks_puts_attributes_where_their_spec_allows():
    task_labels = [{"id": 5, "name": "car", "attributes": [
        {"id": 50, "name": "label_id", "mutable": True}, {"id": 51, "name": "make", "mutable": False},
        {"id": 52, "name": "moving", "mutable": True}]}]
    seq = [(0, dict(shape(0, 0), attributes={"label_id": "ab" * 12, "moving": True, "make": "x"}), {})]
    track = build_track("car", seq, 3, False, {"make": "vw", "moving": False})
    out = resolve_tracks([track, dict(track, label="bus")], task_labels)
    assert len(out) == 1
    assert out[0]["label_id"] == 5 and out[0]["attributes"] == [{"spec_id": 51, "value": "vw"}]
    assert out[0]["shapes"][0]["attributes"] == [{"spec_id": 50, "value": "ab" * 12},
                                                 {"spec_id": 52, "value": "true"}]
