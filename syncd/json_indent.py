"""``json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)``, byte for byte, faster.

Python's C JSON encoder does not indent (3.11): with ``indent`` the standard library falls back
to its pure-Python, generator-per-token encoder, which was a quarter of the CPU time of merging
downloaded labels into sample files (every sample file is written indented, for the people who
read and edit them). Two faster ways, same bytes:

- ``orjson`` with ``OPT_INDENT_2`` writes exactly what json.dumps writes, except some floats
  (Python uses an exponent below 1e-4 and from 1e16 on: ``6.1e-05`` where orjson writes
  ``0.000061``) and NaN/infinity (``null`` where json raises). Its output is used when one walk
  of the value finds only plain types and floats both spell alike (``_orjson_agrees``);
  otherwise the next way decides (and raises json's own errors). ~0.03 s for 1000 sample
  files with 20 boxes each.
- a walk of plain ``dict``/``list``/``str``/``int``/``float``/``bool``/``None`` values with one
  function call per container, joining each container's items at once, and the C string
  escaper (~0.12 s for the same files). For anything else (other key or value types,
  subclasses, NaN/infinity, cycles, very deep nesting) it hands the whole value to
  ``json.dumps`` so results and errors stay exactly the standard ones.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

# Floats both encoders spell alike: Python's repr uses an exponent below 1e-4 and from 1e16
# on, orjson never does (checked against json.dumps over 300,000 random floats); NaN and
# infinity, which orjson writes as null and json refuses, fall outside too.
_LOW, _HIGH = 1e-4, 1e16


def _orjson_agrees(v) -> bool:
    """Whether orjson's text for ``v`` (already encoded by it, so acyclic and < 255 levels)
    is json.dumps' text: plain dicts, lists, str, int, bool and None only, and floats that
    are 0 or of a magnitude within [1e-4, 1e16).

    (It replaced checks of orjson's output: a regex for exponents, and for any file holding
    null, which is nearly every sample file, a second encoding by json.dumps to find NaN.
    Those cost 80 us per sample file with 20 boxes; this walk costs ~20.)"""
    for x in (v.values() if type(v) is dict else v):
        t = type(x)
        if t is float:
            a = abs(x)
            if not _LOW <= a < _HIGH and a != 0.0:  # (NaN compares false both ways)
                return False
        elif t is dict or t is list:
            if not _orjson_agrees(x):
                return False
        elif t is not str and t is not int and t is not bool and x is not None:
            return False
    return True


try:  # the C escaper (what json.dumps uses with ensure_ascii=False)
    from _json import encode_basestring as _esc
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import py_encode_basestring as _esc

_INF = float("inf")
_NL = ["\n" + "  " * i for i in range(64)]
_MAX_LEVEL = len(_NL) - 2  # deeper values go to json.dumps (no recursion limit surprises here)


class _Unusual(Exception):
    """A value this encoder does not handle itself: json.dumps decides."""


def _float(f: float) -> str:
    if f != f or f == _INF or f == -_INF:
        raise _Unusual
    return float.__repr__(f)


def _unusual(v: Any) -> str:
    raise _Unusual


_SCALARS = {str: _esc, int: int.__repr__, float: _float, bool: lambda v: "true" if v else "false",
            type(None): lambda v: "null"}
_get = _SCALARS.get


def _encode(o: Any, level: int) -> str:
    t = type(o)
    if t is dict:
        if not o:
            return "{}"
        if level >= _MAX_LEVEL:
            raise _Unusual
        parts = []
        for k, v in o.items():
            if type(k) is not str:
                raise _Unusual  # json converts int/float/bool/None keys: let it
            tv = type(v)
            if tv is dict or tv is list:
                parts.append(_esc(k) + ": " + _encode(v, level + 1))
            else:
                parts.append(_esc(k) + ": " + _get(tv, _unusual)(v))
        inner = _NL[level + 1]
        return "{" + inner + ("," + inner).join(parts) + _NL[level] + "}"
    if t is list:
        if not o:
            return "[]"
        if level >= _MAX_LEVEL:
            raise _Unusual
        parts = [_encode(v, level + 1) if type(v) is dict or type(v) is list else _get(type(v), _unusual)(v)
                 for v in o]
        inner = _NL[level + 1]
        return "[" + inner + ("," + inner).join(parts) + _NL[level] + "]"
    return _get(t, _unusual)(o)


def dumps_indented(obj: Any) -> str:
    """What ``json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)`` returns (and
    raises). A value that holds itself is sent to json.dumps too (its circular-reference
    error), found by the depth limit rather than tracked ids."""
    return dumps_indented_bytes(obj).decode("utf-8")


def dumps_indented_bytes(obj: Any) -> bytes:
    """``dumps_indented(obj)`` encoded as UTF-8 (what files get; orjson makes bytes)."""
    try:
        out = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    except (TypeError, ValueError):  # big ints, other types, deep nesting...: json decides
        out = None
    if out is not None and (type(obj) is dict or type(obj) is list) and _orjson_agrees(obj):
        return out
    try:
        return _encode(obj, 0).encode("utf-8")
    except _Unusual:
        return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
