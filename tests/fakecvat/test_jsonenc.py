"""fakecvat encodes answers with orjson; what orjson refuses or would change still comes out
as the standard library writes it."""
import json

from fakecvat import jsonenc


def test_plain_answers_are_compact_json_of_the_same_value():
    doc = {"count": 2, "results": [{"id": 1, "name": "çà", "points": [0.1, 1e-07]}], "next": None}
    out = jsonenc.dumps(doc)
    assert json.loads(out) == doc and b" " not in out.replace("çà".encode(), b"")


def test_values_orjson_refuses_or_changes_fall_back_to_the_stdlib():
    for doc in ({"big": 2 ** 70}, {"x": float("nan"), "y": None}, {1: "int key"}):
        assert jsonenc.dumps(doc) == json.dumps(doc, separators=(",", ":")).encode()
    assert b"NaN" in jsonenc.dumps({"x": float("nan"), "y": None})   # not silently null
