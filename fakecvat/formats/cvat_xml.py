"""CVAT XML 1.1: export "CVAT for images 1.1" / "CVAT for video 1.1", import "CVAT 1.1".

The layout is CVAT's (two-space indentation, ``<version>1.1</version>``, ``<meta>`` with the
task or job, labels with their attribute specs, then one ``<image>`` per frame or one
``<track>`` per object). Coordinates are written with two decimals, booleans as ``0``/``1``,
masks as ``rle``/``left``/``top``/``width``/``height`` over the inclusive bounding box.

Exports return the bytes of a zip (``annotations.xml``, plus ``images/<name>`` when images are
saved). Import takes XML or a zip holding one and returns request-shaped LabeledData with label
and attribute ids resolved; unknown names or broken files raise :class:`FormatError`.
"""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from . import ExportContext, FormatError
from ..models import interpolation

TAGS = {"rectangle": "box", "ellipse": "ellipse", "polygon": "polygon", "polyline": "polyline",
        "points": "points", "mask": "mask", "cuboid": "cuboid", "skeleton": "skeleton"}
SHAPE_OF_TAG = {v: k for k, v in TAGS.items()}
CUBOID_KEYS = ("xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
               "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2")


def _stamp(value: str | None) -> str:
    """CVAT writes Django datetimes with ``str()``: ``2024-01-02 03:04:05.123456+00:00``."""
    if not value:
        return ""
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return str(d.astimezone(timezone.utc))


class _Writer:
    """A tiny indenting XML writer (the same layout CVAT's SAX writer produces)."""

    def __init__(self):
        self.parts = ['<?xml version="1.0" encoding="utf-8"?>\n']
        self.level = 0

    def _indent(self):
        self.parts.append("\n" + "  " * self.level)

    def open(self, tag: str, attrs: list[tuple[str, str]] | None = None, first=False):
        if not first:
            self._indent()
        a = "".join(f" {k}={quoteattr(str(v))}" for k, v in (attrs or []))
        self.parts.append(f"<{tag}{a}>")
        self.level += 1

    def close(self, tag: str):
        self.level -= 1
        self._indent()
        self.parts.append(f"</{tag}>")

    def leaf(self, tag: str, text: str = "", attrs: list[tuple[str, str]] | None = None):
        self._indent()
        a = "".join(f" {k}={quoteattr(str(v))}" for k, v in (attrs or []))
        self.parts.append(f"<{tag}{a}>{escape(str(text))}</{tag}>")

    def meta(self, items: list):
        """items: [(key, str | list-of-items)]"""
        for k, v in items:
            if isinstance(v, list):
                self._indent()
                self.parts.append(f"<{k}>")
                self.level += 1
                self.meta(v)
                self.level -= 1
                self._indent()
                self.parts.append(f"</{k}>")
            else:
                self.leaf(k, v)

    def text(self) -> str:
        return "".join(self.parts) + "\n"


# ---- meta -------------------------------------------------------------------------------------

def _user(ctx: ExportContext, uid):
    u = ctx.users.get(uid) if uid is not None else None
    return [("username", u["username"]), ("email", u.get("email", ""))] if u else ""


def _labels_meta(ctx: ExportContext) -> list:
    by_id = {lb["id"]: lb for lb in ctx.labels}
    out = []
    for lb in ctx.labels:
        item = [("name", lb["name"]), ("color", lb.get("color", "")), ("type", lb.get("type") or "any"),
                ("attributes", [("attribute", [("name", a["name"]), ("mutable", str(bool(a.get("mutable")))),
                                               ("input_type", a["input_type"]),
                                               ("default_value", a.get("default_value", "")),
                                               ("values", "\n".join(a.get("values") or []))])
                                for a in lb.get("attributes") or []])]
        if lb.get("parent_id") is not None and lb["parent_id"] in by_id:
            item.append(("parent", by_id[lb["parent_id"]]["name"]))
        if lb.get("type") == "skeleton":
            svg = lb.get("svg") or ""
            for sub in ctx.labels:
                if sub.get("parent_id") == lb["id"]:
                    svg = svg.replace(f'data-label-id="{sub["id"]}"', f'data-label-name="{sub["name"]}"')
            item.append(("svg", svg))
        out.append(("label", item))
    return out


def _meta(ctx: ExportContext) -> list:
    task, data = ctx.task, ctx.task.get("data") or {}
    segs = ctx.jobs if ctx.job is None else [ctx.job]
    body = [("id", str(ctx.job["id"] if ctx.job else task["id"])), ("name", task["name"]),
            ("size", str(len(ctx.frames))), ("mode", task.get("mode") or "annotation"),
            ("overlap", str(task.get("overlap") or 0)), ("bugtracker", task.get("bug_tracker") or ""),
            ("created", _stamp(task.get("created_date"))),
            ("updated", _stamp((ctx.job or task).get("updated_date"))),
            ("subset", task.get("subset") or "default"),
            ("start_frame", str(ctx.frames[0].number if ctx.frames else 0)),
            ("stop_frame", str(ctx.frames[-1].number if ctx.frames else 0)),
            ("frame_filter", data.get("frame_filter") or ""),
            ("segments", [("segment", [("id", str(j["id"])), ("start", str(j["start_frame"])),
                                       ("stop", str(j["stop_frame"])), ("url", f"{ctx.host}/api/jobs/{j['id']}")])
                          for j in segs]),
            ("owner", _user(ctx, task.get("owner_id"))),
            ("assignee", _user(ctx, (ctx.job or task).get("assignee_id"))),
            ("labels", _labels_meta(ctx))]
    video = data.get("video")
    if video:
        body.append(("original_size", [("width", str(video.get("width", ""))), ("height", str(video.get("height", "")))]))
        body.append(("source", str(video.get("name") or video.get("path") or "").rsplit("/", 1)[-1]))
    return [("job" if ctx.job else "task", body), ("dumped", str(datetime.now(timezone.utc)))]


# ---- geometry attributes ------------------------------------------------------------------------

def _f(v: float) -> str:
    return "{:.2f}".format(v)


def _geometry_attrs(s: dict) -> list[tuple[str, str]]:
    t, p = s["type"], s["points"]
    if t == "rectangle":
        out = [("xtl", _f(p[0])), ("ytl", _f(p[1])), ("xbr", _f(p[2])), ("ybr", _f(p[3]))]
        if s.get("rotation"):
            out.append(("rotation", _f(s["rotation"])))
        return out
    if t == "ellipse":
        out = [("cx", _f(p[0])), ("cy", _f(p[1])), ("rx", _f(p[2] - p[0])), ("ry", _f(p[1] - p[3]))]
        if s.get("rotation"):
            out.append(("rotation", _f(s["rotation"])))
        return out
    if t == "cuboid":
        return [(k, _f(v)) for k, v in zip(CUBOID_KEYS, p)]
    if t == "mask":
        left, top, right, bottom = (int(v) for v in p[-4:])
        return [("rle", ", ".join(str(int(v)) for v in p[:-4])), ("left", str(left)), ("top", str(top)),
                ("width", str(right - left + 1)), ("height", str(bottom - top + 1))]
    if t == "skeleton":
        return []
    return [("points", ";".join(f"{_f(x)},{_f(y)}" for x, y in zip(p[0::2], p[1::2])))]


class _Names:
    def __init__(self, ctx: ExportContext):
        self.labels = {lb["id"]: lb["name"] for lb in ctx.labels}
        self.specs = {a["id"]: a["name"] for lb in ctx.labels for a in lb.get("attributes") or []}

    def attrs(self, w: _Writer, attributes):
        for a in attributes:
            if a["spec_id"] in self.specs:
                w.leaf("attribute", a["value"], [("name", self.specs[a["spec_id"]])])


# ---- CVAT for images ------------------------------------------------------------------------------

def _image_shape(w: _Writer, names: _Names, s: dict, element=False):
    attrs = [("label", names.labels.get(s["label_id"], "")), ("source", s.get("source", "manual"))]
    if element:
        attrs.append(("outside", str(int(s.get("outside", False)))))
    if s["type"] != "skeleton":
        attrs.append(("occluded", str(int(s.get("occluded", False)))))
    attrs += _geometry_attrs(s)
    if not element:
        attrs.append(("z_order", str(s.get("z_order", 0))))
    if s.get("group"):
        attrs.append(("group_id", str(s["group"])))
    tag = TAGS[s["type"]]
    w.open(tag, attrs)
    if s["type"] == "skeleton":
        for e in s.get("elements") or []:
            _image_shape(w, names, e, element=True)
    names.attrs(w, s.get("attributes") or [])
    w.close(tag)


def _track_shapes_by_frame(ctx: ExportContext, tracks: list[dict]) -> dict[int, list[dict]]:
    """Tracks seen as per-frame shapes (CVAT for images shows every interpolated frame)."""
    out: dict[int, list[dict]] = {}
    for t in tracks:
        elements = [(e, {f["frame"]: f for f in interpolation.frames(e, ctx.stop_frame)}) for e in t.get("elements") or []]
        for f in interpolation.frames(t, ctx.stop_frame):
            if f["outside"]:
                continue
            shape = dict(f, label_id=t["label_id"], source=t.get("source", "manual"), group=t.get("group"),
                         attributes=list(t.get("attributes") or []) + f["attributes"])
            if elements:
                shape["elements"] = [dict(ef[f["frame"]], label_id=e["label_id"], source=e.get("source", "manual"),
                                          attributes=list(e.get("attributes") or []) + ef[f["frame"]]["attributes"])
                                     for e, ef in elements if f["frame"] in ef]
            out.setdefault(f["frame"], []).append(shape)
    return out


def annotations_xml_images(ctx: ExportContext, data: dict) -> str:
    names = _Names(ctx)
    w = _Writer()
    w.open("annotations", first=True)
    w.leaf("version", "1.1")
    w.open("meta")
    w.meta(_meta(ctx))
    w.close("meta")
    shapes: dict[int, list] = {}
    for s in data["shapes"]:
        shapes.setdefault(s["frame"], []).append(s)
    for f, lst in _track_shapes_by_frame(ctx, data["tracks"]).items():
        shapes.setdefault(f, []).extend(lst)
    tags: dict[int, list] = {}
    for t in data["tags"]:
        tags.setdefault(t["frame"], []).append(t)
    for fr in ctx.frames:
        w.open("image", [("id", str(fr.number)), ("name", fr.name), ("width", str(fr.width)), ("height", str(fr.height))])
        for s in shapes.get(fr.number, []):
            _image_shape(w, names, s)
        for t in tags.get(fr.number, []):
            attrs = [("label", names.labels.get(t["label_id"], "")), ("source", t.get("source", "manual"))]
            if t.get("group"):
                attrs.append(("group_id", str(t["group"])))
            w.open("tag", attrs)
            names.attrs(w, t.get("attributes") or [])
            w.close("tag")
        w.close("image")
    w.close("annotations")
    return w.text()


# ---- CVAT for video ---------------------------------------------------------------------------------

def _video_shape(w: _Writer, names: _Names, s: dict, track_attrs, label: str | None = None, elements=None):
    attrs = [("frame", str(s["frame"]))] if label is None else [("label", label)]
    attrs.append(("keyframe", str(int(s.get("keyframe", True)))))
    if s["type"] != "skeleton":
        attrs += [("outside", str(int(s["outside"]))), ("occluded", str(int(s["occluded"])))]
    attrs += _geometry_attrs(s)
    if label is None:
        attrs.append(("z_order", str(s.get("z_order", 0))))
    tag = TAGS[s["type"]]
    if s["type"] == "skeleton" and not elements:
        return
    w.open(tag, attrs)
    for es, elabel, eattrs in elements or []:
        _video_shape(w, names, es, eattrs, label=elabel)
    names.attrs(w, list(track_attrs) + list(s.get("attributes") or []))
    w.close(tag)


def _video_track(ctx, w, names, idx: int, t: dict):
    attrs = [("id", str(idx)), ("label", names.labels.get(t["label_id"], "")), ("source", t.get("source", "manual"))]
    if t.get("group"):
        attrs.append(("group_id", str(t["group"])))
    w.open("track", attrs)
    el_frames = [({f["frame"]: f for f in interpolation.frames(e, ctx.stop_frame)}, names.labels.get(e["label_id"], ""),
                  e.get("attributes") or []) for e in t.get("elements") or []]
    for f in interpolation.frames(t, ctx.stop_frame):
        elements = [(ef[f["frame"]], lab, ea) for ef, lab, ea in el_frames if f["frame"] in ef]
        _video_shape(w, names, f, t.get("attributes") or [], elements=elements)
    w.close("track")


def annotations_xml_video(ctx: ExportContext, data: dict) -> str:
    names = _Names(ctx)
    w = _Writer()
    w.open("annotations", first=True)
    w.leaf("version", "1.1")
    w.open("meta")
    w.meta(_meta(ctx))
    w.close("meta")
    n = 0
    for t in data["tracks"]:
        _video_track(ctx, w, names, n, t)
        n += 1
    for s in data["shapes"]:
        # a lone shape is a one-frame track: a keyframe, then outside on the next frame
        keys = [dict(s, keyframe=True, outside=False)]
        if s["frame"] + 1 <= ctx.stop_frame:
            keys.append(dict(s, frame=s["frame"] + 1, keyframe=True, outside=True))
        track = {"label_id": s["label_id"], "source": s.get("source", "manual"), "group": s.get("group"),
                 "attributes": [], "shapes": keys,
                 "elements": [{"label_id": e["label_id"], "source": e.get("source", "manual"), "attributes": [],
                               "shapes": [dict(e, frame=k["frame"], outside=e.get("outside", False) or k["outside"])
                                          for k in keys]} for e in s.get("elements") or []]}
        _video_track(ctx, w, names, n, track)
        n += 1
    w.close("annotations")
    return w.text()


# ---- zip --------------------------------------------------------------------------------------------

def _zip(xml: str, ctx: ExportContext, save_images: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("annotations.xml", xml)
        if save_images:
            for fr in ctx.frames:
                if fr.path:
                    z.write(fr.path, f"images/{fr.name}")
    return buf.getvalue()


def export_images(ctx: ExportContext, data: dict, save_images: bool = False) -> bytes:
    return _zip(annotations_xml_images(ctx, data), ctx, save_images)


def export_video(ctx: ExportContext, data: dict, save_images: bool = False) -> bytes:
    return _zip(annotations_xml_video(ctx, data), ctx, save_images)


# ---- import -----------------------------------------------------------------------------------------

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
