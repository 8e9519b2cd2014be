"""CVAT XML 1.1 export: "CVAT for images 1.1" (one ``<image>`` per frame) and "CVAT for video 1.1"
(one ``<track>`` per object).

The layout is CVAT's (two-space indentation, ``<version>1.1</version>``, ``<meta>`` with the
task or job, labels with their attribute specs, then the frames or tracks). Coordinates are
written with two decimals, booleans as ``0``/``1``, masks as ``rle``/``left``/``top``/``width``/
``height`` over the inclusive bounding box. Exports return the bytes of a zip
(``annotations.xml``, plus ``images/<name>`` when images are saved).
"""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

from . import ExportContext
from ..models import interpolation
from .cvat_xml import CUBOID_KEYS, TAGS


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


def _begin(ctx: ExportContext) -> tuple["_Names", _Writer]:
    """The document start both layouts share: version and the task or job's meta."""
    w = _Writer()
    w.open("annotations", first=True)
    w.leaf("version", "1.1")
    w.open("meta")
    w.meta(_meta(ctx))
    w.close("meta")
    return _Names(ctx), w


def annotations_xml_images(ctx: ExportContext, data: dict) -> str:
    names, w = _begin(ctx)
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
    names, w = _begin(ctx)
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
