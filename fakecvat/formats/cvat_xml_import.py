"""CVAT XML 1.1 import ("CVAT 1.1"): XML or a zip holding one → request-shaped LabeledData with
label and attribute ids resolved by name. Unknown names or broken files raise
:class:`FormatError`; DTDs and entities are refused outright."""
from __future__ import annotations

import io
import zipfile
from xml.etree import ElementTree

from . import FormatError
from .cvat_xml import CUBOID_KEYS, SHAPE_OF_TAG


def _read_xml(raw: bytes) -> ElementTree.Element:
    if raw[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                xmls = [n for n in z.namelist() if n.lower().endswith(".xml")]
                if not xmls:
                    raise FormatError("No annotation file (*.xml) was found in the archive")
                raw = z.read(sorted(xmls, key=lambda n: (n.count("/"), n))[0])
        except zipfile.BadZipFile as e:
            raise FormatError(f"Cannot read the archive: {e}") from e
    if b"<!DOCTYPE" in raw[:2048] or b"<!ENTITY" in raw:
        raise FormatError("Unsupported XML: DTDs and entities are not allowed")
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as e:
        raise FormatError(f"Failed to parse the annotation file: {e}") from e
    if root.tag != "annotations":
        raise FormatError(f"Unexpected root element <{root.tag}>; expected <annotations>")
    return root


class _Resolver:
    def __init__(self, label_docs: list[dict]):
        self.top = {lb["name"]: lb for lb in label_docs if lb.get("parent_id") is None}
        self.sub = {(lb["parent_id"], lb["name"]): lb for lb in label_docs if lb.get("parent_id") is not None}

    def label(self, name, parent=None) -> dict:
        lb = self.top.get(name) if parent is None else self.sub.get((parent["id"], name))
        if lb is None:
            raise FormatError(f"Label '{name}' is not registered for this task")
        return lb

    @staticmethod
    def attrs(el, lb, which=None) -> list[dict]:
        out = []
        for a in el.findall("attribute"):
            spec = next((s for s in lb.get("attributes") or [] if s["name"] == a.get("name")), None)
            if spec is None:
                raise FormatError(f"Attribute '{a.get('name')}' is not registered for label '{lb['name']}'")
            if which is not None and bool(spec.get("mutable")) != which:
                continue
            out.append({"spec_id": spec["id"], "value": a.text or ""})
        return out


def _num(el, key) -> float:
    try:
        return float(el.attrib[key])
    except KeyError:
        raise FormatError(f"<{el.tag}> has no '{key}' attribute")
    except ValueError:
        raise FormatError(f"<{el.tag}> has an invalid '{key}' value: {el.attrib[key]!r}")


def _points(el) -> tuple[str, list[float], float]:
    t = SHAPE_OF_TAG[el.tag]
    rot = float(el.get("rotation", 0) or 0)
    if t == "rectangle":
        return t, [_num(el, k) for k in ("xtl", "ytl", "xbr", "ybr")], rot
    if t == "ellipse":
        cx, cy, rx, ry = (_num(el, k) for k in ("cx", "cy", "rx", "ry"))
        return t, [cx, cy, cx + rx, cy - ry], rot
    if t == "cuboid":
        return t, [_num(el, k) for k in CUBOID_KEYS], rot
    if t == "mask":
        try:
            rle = [float(v) for v in el.attrib["rle"].split(",") if v.strip()]
        except (KeyError, ValueError):
            raise FormatError("<mask> has an invalid 'rle' attribute")
        left, top, width, height = (_num(el, k) for k in ("left", "top", "width", "height"))
        return t, rle + [left, top, left + width - 1, top + height - 1], 0.0
    if t == "skeleton":
        return t, [], 0.0
    try:
        pts = [float(v) for pair in el.attrib["points"].split(";") for v in pair.split(",")]
    except (KeyError, ValueError):
        raise FormatError(f"<{el.tag}> has an invalid 'points' attribute")
    return t, pts, 0.0


def _bool(el, key) -> bool:
    return el.get(key, "0") in ("1", "true", "True")


def _shape(el, frame, res: _Resolver, parent_label=None) -> dict:
    lb = res.label(el.get("label"), parent_label)
    t, pts, rot = _points(el)
    s = {"type": t, "frame": frame, "label_id": lb["id"], "points": pts, "rotation": rot,
         "occluded": _bool(el, "occluded"), "outside": _bool(el, "outside"), "z_order": int(el.get("z_order", 0) or 0),
         "source": el.get("source") or "manual", "group": int(el.get("group_id", 0) or 0),
         "attributes": res.attrs(el, lb)}
    if t == "skeleton":
        s["elements"] = [_shape(e, frame, res, lb) for e in el if e.tag in SHAPE_OF_TAG]
    return s


def import_file(raw: bytes, label_docs: list[dict], frame_by_name: dict[str, int] | None = None) -> dict:
    """CVAT XML (or a zip with it) → request-shaped LabeledData (``tags``, ``shapes``, ``tracks``)."""
    root = _read_xml(raw)
    res = _Resolver(label_docs)
    out = {"tags": [], "shapes": [], "tracks": []}
    try:
        for el in root:
            if el.tag == "image":
                frame = int(el.get("id"))
                if frame_by_name and el.get("name") in frame_by_name:
                    frame = frame_by_name[el.get("name")]
                for s in el:
                    if s.tag in SHAPE_OF_TAG:
                        out["shapes"].append(_shape(s, frame, res))
                    elif s.tag == "tag":
                        lb = res.label(s.get("label"))
                        out["tags"].append({"frame": frame, "label_id": lb["id"], "source": s.get("source") or "manual",
                                            "group": int(s.get("group_id", 0) or 0), "attributes": res.attrs(s, lb)})
            elif el.tag == "track":
                out["tracks"].append(_track(el, res))
    except (TypeError, ValueError) as e:
        raise FormatError(f"Invalid annotation file: {e}") from e
    return out


def _track(el, res: _Resolver) -> dict:
    lb = res.label(el.get("label"))
    shapes, elements, track_attrs = [], {}, {}
    for s in el:
        if s.tag not in SHAPE_OF_TAG:
            continue
        frame = int(s.get("frame"))
        keyframe = s.get("keyframe", "1") in ("1", "true", "True")
        t, pts, rot = _points(s)
        for a in res.attrs(s, lb, which=False):
            track_attrs[a["spec_id"]] = a
        outside = _bool(s, "outside")
        if t == "skeleton":  # a skeleton is outside when all of its points are
            outside = all(_bool(e, "outside") for e in s if e.tag in SHAPE_OF_TAG)
        if keyframe or outside:
            shapes.append({"type": t, "frame": frame, "points": pts, "rotation": rot, "occluded": _bool(s, "occluded"),
                           "outside": outside, "z_order": int(s.get("z_order", 0) or 0),
                           "attributes": res.attrs(s, lb, which=True)})
        if t == "skeleton":
            for e in s:
                if e.tag not in SHAPE_OF_TAG:
                    continue
                sub = res.label(e.get("label"), lb)
                et, epts, erot = _points(e)
                entry = elements.setdefault(sub["id"], {"label_id": sub["id"], "frame": frame, "source": el.get("source") or "manual",
                                                         "attributes": [], "shapes": []})
                if e.get("keyframe", "1") in ("1", "true", "True") or _bool(e, "outside"):
                    entry["shapes"].append({"type": et, "frame": frame, "points": epts, "rotation": erot,
                                            "occluded": _bool(e, "occluded"), "outside": _bool(e, "outside"),
                                            "attributes": res.attrs(e, sub, which=True)})
    if not shapes:
        raise FormatError(f"Track {el.get('id')} has no keyframes")
    return {"frame": shapes[0]["frame"], "label_id": lb["id"], "source": el.get("source") or "manual",
            "group": int(el.get("group_id", 0) or 0), "attributes": list(track_attrs.values()), "shapes": shapes,
            "elements": list(elements.values())}
