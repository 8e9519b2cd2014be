"""Masks: reading them, CVAT's mask RLE, instance <-> ``mask`` shape, segmentation split/raster.

CVAT (>= 2.3) stores a mask shape as ``points = [run lengths..., xtl, ytl, xbr, ybr]``: the
row-major runs of the box-cropped binary mask, alternating, always starting with a run of
background (a leading 0 if the first pixel is set), followed by the box with *inclusive*
right/bottom edges. FiftyOne sends an instance whose box is ``xtl = round(x*W)``,
``xbr = xtl + round(w*W)`` as ``[..., xtl, ytl, xbr-1, ybr-1]`` (§3.2), so a box of ``n`` pixels
comes back as ``xbr - xtl + 1 = n`` pixels.
"""
from __future__ import annotations

import base64
import io
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


# ---------------------------------------------------------------------------------------------
# reading


def decode_inline(mask: Any) -> np.ndarray | None:
    """An inline mask: ndarray, nested lists, or FiftyOne's ``{"$binary": {"base64": ...}}``."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        return mask
    if isinstance(mask, dict):
        b64 = mask.get("$binary")
        b64 = b64.get("base64") if isinstance(b64, dict) else b64
        raw = base64.b64decode(b64)
        try:  # FiftyOne zlib-compresses the np.save() bytes
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        return np.load(io.BytesIO(raw), allow_pickle=False)
    return np.asarray(mask)


def read_png(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            im = im.convert("L")
        return np.asarray(im)


def load_mask(label: dict, root: str | Path | None) -> np.ndarray | None:
    """The label's mask from inline ``mask`` or ``mask_path`` (relative to ``root``)."""
    if label.get("mask") is not None:
        return decode_inline(label["mask"])
    path = label.get("mask_path")
    if path:
        p = Path(path)
        if not p.is_absolute() and root is not None:
            p = Path(root) / p
        return read_png(p)
    return None


def has_mask(label: dict) -> bool:
    return label.get("mask") is not None or bool(label.get("mask_path"))


# ---------------------------------------------------------------------------------------------
# RLE


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of a binary mask, starting with a (possibly empty) background run."""
    flat = np.asarray(mask).astype(bool).ravel()
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return runs


def rle_decode(counts: list, height: int, width: int) -> np.ndarray:
    """Inverse of rle_encode; tolerant of runs that do not add up to the box (pads/truncates)."""
    total = height * width
    flat = np.zeros(total, dtype=bool)
    pos, value = 0, False
    for n in counts:
        n = int(round(n))
        if value and n > 0:
            flat[pos:min(pos + n, total)] = True
        pos += n
        value = not value
        if pos >= total:
            break
    return flat.reshape(height, width)


# ---------------------------------------------------------------------------------------------
# instance <-> mask shape


def _resize(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    m = m.astype(bool)
    if m.shape == (h, w):
        return m
    im = Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    return np.asarray(im) > 0


def instance_points(mask: np.ndarray, bbox: list[float], width: int, height: int) -> list[float] | None:
    """A Detection mask -> CVAT mask-shape points (None when its box rounds to nothing)."""
    x, y, w, h = bbox
    xtl, ytl = round(x * width), round(y * height)
    bw, bh = round(w * width), round(h * height)
    if bw < 1 or bh < 1:
        return None
    m = _resize(mask, bw, bh)
    return [float(c) for c in rle_encode(m)] + [float(xtl), float(ytl), float(xtl + bw - 1),
                                                 float(ytl + bh - 1)]


def mask_shape_box(points: list) -> tuple[int, int, int, int]:
    """(xtl, ytl, w, h) in pixels of a CVAT mask shape (inclusive box)."""
    xtl, ytl, xbr, ybr = (int(round(v)) for v in points[-4:])
    return xtl, ytl, max(xbr - xtl + 1, 1), max(ybr - ytl + 1, 1)


def mask_shape_to_instance(points: list, width: int, height: int) -> tuple[list[float], np.ndarray]:
    """CVAT mask-shape points -> (relative bounding box, box-cropped bool mask)."""
    xtl, ytl, w, h = mask_shape_box(points)
    mask = rle_decode(points[:-4], h, w)
    return [xtl / width, ytl / height, w / width, h / height], mask


def mask_shape_to_full(points: list, width: int, height: int) -> np.ndarray:
    """A mask shape painted onto a full-frame bool array (clipped to the frame)."""
    xtl, ytl, w, h = mask_shape_box(points)
    crop = rle_decode(points[:-4], h, w)
    full = np.zeros((height, width), dtype=bool)
    x0, y0 = max(xtl, 0), max(ytl, 0)
    x1, y1 = min(xtl + w, width), min(ytl + h, height)
    if x1 > x0 and y1 > y0:
        full[y0:y1, x0:x1] = crop[y0 - ytl:y1 - ytl, x0 - xtl:x1 - xtl]
    return full


# ---------------------------------------------------------------------------------------------
# polygons


def polygon_to_full(flat: list, width: int, height: int) -> np.ndarray:
    """A polygon in absolute pixels ``[x1, y1, x2, y2, ...]`` rasterised at frame size."""
    im = Image.new("L", (width, height), 0)
    pts = [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
    if len(pts) >= 2:
        ImageDraw.Draw(im).polygon(pts, fill=1, outline=1)
    return np.asarray(im) > 0


def polygon_to_instance(flat: list, width: int, height: int) -> tuple[list[float], np.ndarray] | None:
    """A polygon in absolute pixels -> (relative box, box-cropped mask) of the filled shape."""
    xs, ys = [float(v) for v in flat[0::2]], [float(v) for v in flat[1::2]]
    if len(xs) < 3:
        return None
    x0, y0 = math.floor(min(xs)), math.floor(min(ys))
    w, h = max(math.ceil(max(xs)) - x0, 1), max(math.ceil(max(ys)) - y0, 1)
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon([(x - x0, y - y0) for x, y in zip(xs, ys)], fill=1, outline=1)
    return [x0 / width, y0 / height, w / width, h / height], np.asarray(im) > 0


# ---------------------------------------------------------------------------------------------
# segmentation


def split_segmentation(mask: np.ndarray, mask_targets: dict[int, str]) -> list[tuple[str, list[float], np.ndarray]]:
    """A semantic mask -> one (class, relative box, cropped bool mask) per target present.

    Boxes are relative to the mask's own size, so masks stored at another resolution than the
    image still land in the right place (the instance path rescales them).
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    mh, mw = m.shape
    out = []
    for value, cls in sorted(mask_targets.items()):
        if value == 0:
            continue
        on = m == value
        if not on.any():
            continue
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        out.append((cls, [x0 / mw, y0 / mh, (x1 - x0) / mw, (y1 - y0) / mh], on[y0:y1, x0:x1]))
    return out


def empty_segmentation(width: int, height: int, mask_targets: dict[int, str]) -> np.ndarray:
    dtype = np.uint8 if max(mask_targets or {0: ""}) <= 255 else np.uint16
    return np.zeros((height, width), dtype=dtype)
