"""Sample files are written by syncd's own indenting JSON encoder: its bytes must be exactly
what ``json.dumps(indent=2, ensure_ascii=False, allow_nan=False)`` gives, and it must refuse
what json refuses, with json's own errors."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from syncd.atomic import dumps_json
from syncd.json_indent import dumps_indented


def reference(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20),
                    st.floats(allow_nan=False, allow_infinity=False), st.text())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(), inner, max_size=5)),
                      max_leaves=40)


@settings(max_examples=1000, deadline=None)
@given(values)
def test_same_text_as_json_dumps(value):
    assert dumps_indented(value) == reference(value)


def test_a_sample_file_with_labels_is_byte_identical():
    sample = {"filepath": "a/b.jpg", "tags": ["annotated"],
              "metadata": {"_cls": "ImageMetadata", "width": 640, "height": 480},
              "gt": {"_cls": "Detections", "detections": [
                  {"_id": {"$oid": "0" * 24}, "_cls": "Detection", "label": "çà \"q\" \u2028\x00",
                   "bounding_box": [0.1, 1e-07, 0.5, -0.0], "confidence": None, "tags": [],
                   "attributes": {}, "iscrowd": False, "n": 10**30}]}}
    assert dumps_json(sample) == (reference(sample) + "\n").encode("utf-8")


@pytest.mark.parametrize("f", [6.103515625e-05, 1e-07, 0.0001, 0.00009999, 1e16, 9999999999999998.0,
                               1.5e300, -2.5e-10, 123.456, 0.1, 5e-324, 0.12345678901234568,
                               12345678901234568.0, 10.00001, -0.00001])
def test_floats_either_encoder_would_spell_differently(f):
    doc = {"b": [f, {"c": f}], "n": None, "s": "0.0000 1e5 in a string"}
    assert dumps_indented(doc) == reference(doc)
    assert dumps_json(doc) == (reference(doc) + "\n").encode("utf-8")


@pytest.mark.parametrize("value", [{"x": float("nan")}, [float("inf")], {"x": object()}, {"x": {1, 2}}])
def test_refuses_what_json_refuses_with_the_same_error(value):
    with pytest.raises((TypeError, ValueError)) as ours:
        dumps_indented(value)
    with pytest.raises(type(ours.value)) as theirs:
        reference(value)
    assert str(ours.value) == str(theirs.value)


# (one dict per key kind: in {1: ..., True: ...} the two keys are equal and collapse into one)
@pytest.mark.parametrize("value", [{1: "a", None: 2}, {True: [3], False: 0, 2.5: "x"}, {"t": (1, 2)},
                                   [[[[[[[[]]]]]]]] * 2])
def test_values_json_converts_come_out_as_json_converts_them(value):
    assert dumps_indented(value) == reference(value)


def test_typical_sample_files_take_the_fast_way():
    """Boxes are floats with 16-17 significant digits, and nearly every sample file holds null:
    neither may send a file to the slow encoder (a guard once matched every such file)."""
    import random

    import orjson

    from syncd.json_indent import _orjson_agrees
    rng = random.Random(1)
    doc = {"gt": {"detections": [{"_id": {"$oid": "651e3fab1e23d4e5f6a7b8c9"},   # "1e3" inside
                                  "bounding_box": [rng.random() for _ in range(4)], "n": 10.5,
                                  "confidence": None, "crowd": False}
                                 for _ in range(20)]}}
    assert _orjson_agrees(doc)
    assert dumps_indented(doc) == orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() == reference(doc)


def test_deep_and_circular_values():
    deep = [0]
    for _ in range(200):
        deep = [deep]
    assert dumps_indented(deep) == reference(deep)
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps_indented(loop)
