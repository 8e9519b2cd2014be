"""Checks of CVAT answers whose shape syncd relies on, so a malformed one fails in one line.

A CVAT behind a broken proxy, a version that changed a field, or anything else answering in
its place can send a 200 with a body that is JSON but not what the schema promises. Reading
it anyway would stop a load deep inside label conversion with a Python traceback
(``unhashable type: 'list'``) that names neither the request nor the field. These checks run
before anything is converted or written, name the call and the first field that is wrong,
and raise CVATError: the run stays as it was and the load can simply be run again.
"""
from __future__ import annotations

from typing import Any

from .errors import CVATError

_KINDS = ("tags", "shapes", "tracks")


def check_labeled_data(data: Any, where: str) -> dict:
    """``data`` if it is CVAT's LabeledData as far as syncd reads it: an object whose tags,
    shapes and tracks are lists of objects with integer ``frame`` and ``label_id``, list
    ``attributes`` of objects, list ``points`` on shapes and list ``shapes`` on tracks.
    (Type checks only, ~0.3 us per object: the values themselves are read defensively.)"""
    if type(data) is not dict:
        raise _bad(where, "the body", f"a JSON object, got {_kind(data)}")
    for kind in _KINDS:
        items = data.get(kind, [])
        if type(items) is not list:
            raise _bad(where, kind, f"a list, got {_kind(items)}")
        for n, item in enumerate(items):
            _check_object(item, where, f"{kind}[{n}]", points=kind == "shapes")
            if kind == "tracks":
                shapes = item.get("shapes", [])
                if type(shapes) is not list:
                    raise _bad(where, f"tracks[{n}].shapes", f"a list, got {_kind(shapes)}")
                for m, shape in enumerate(shapes):
                    _check_object(shape, where, f"tracks[{n}].shapes[{m}]", points=True, label=False)
    return data


def _check_object(item: Any, where: str, path: str, *, points: bool, label: bool = True) -> None:
    if type(item) is not dict:
        raise _bad(where, path, f"an object, got {_kind(item)}")
    if type(item.get("frame")) is not int:
        raise _bad(where, f"{path}.frame", f"an integer, got {_kind(item.get('frame'))}")
    if label and type(item.get("label_id")) is not int:
        raise _bad(where, f"{path}.label_id", f"an integer, got {_kind(item.get('label_id'))}")
    attrs = item.get("attributes", [])
    if type(attrs) is not list or any(type(a) is not dict for a in attrs):
        raise _bad(where, f"{path}.attributes", "a list of objects")
    if points and type(item.get("points", [])) is not list:
        raise _bad(where, f"{path}.points", f"a list, got {_kind(item.get('points'))}")


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _bad(where: str, path: str, expected: str) -> CVATError:
    # (status 200: an answer came, a successful one; None would read as "no answer")
    return CVATError(f"{where}: CVAT's answer is not what its API describes: {path} should be "
                     f"{expected}", status=200)
