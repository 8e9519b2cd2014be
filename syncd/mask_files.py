"""Mask files of segmentation labels: where they live below the root, writing and reading them.

A mask is a PNG at ``<dir>/.masks/<media name>/<field>/<label_id>.png`` (relative to the root),
the place FiftyOne's ``mask_path`` points to. Paths go through ``dataset.safe_rel`` and the
same inside-the-root checks as sample files, so no mask is written or read outside the root.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path

from syncd.atomic import fsync_dir, write_bytes_atomic
from syncd.dataset import _check_inside, safe_rel  # the root's path checks, shared with sample files
from syncd.errors import MediaError, SampleFileError
from syncd.media_metadata import open_image

MASKS_DIR = ".masks"  # hidden, so discovery never mistakes mask PNGs for media
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def mask_rel(rel_media: str, field: str, label_id: str) -> str:
    """Where the mask of ``label_id`` in ``field`` of media ``rel_media`` lives (relative)."""
    for what, value in (("field", field), ("label id", label_id)):
        if not isinstance(value, str) or not _NAME_PART.match(value) or ".." in value:
            raise MediaError(f"{rel_media}: unusable mask {what} {value!r}")
    directory, name = posixpath.split(rel_media)
    return posixpath.join(directory, MASKS_DIR, name, field, f"{label_id}.png")


def _mask_png(rel: str, array) -> bytes:
    """A mask array encoded as PNG (MediaError naming ``rel`` if it cannot be one)."""
    import io

    import numpy as np
    from PIL import Image

    arr = np.asarray(array)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise MediaError(f"{rel}: mask must be HxW or HxWx3/4, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535 or (arr.ndim == 3 and hi > 255):
            raise MediaError(f"{rel}: mask values {lo}..{hi} do not fit a PNG")
        arr = arr.astype(np.uint8 if hi <= 255 else np.uint16)
    else:
        raise MediaError(f"{rel}: mask dtype {arr.dtype} is not bool or integer")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_mask(root, rel_media, field: str, label_id: str, array) -> str:
    """Write a 2-D mask (bool, or integer class ids) or an RGB(A) mask as PNG; return its path.

    Bool masks are stored as 0/255 greyscale; ``read_mask`` gives uint8 back, so callers that
    want bool use ``mask > 0`` (as FiftyOne does for instance masks).
    """
    return write_masks(root, rel_media, field, [(label_id, array)])[0]


def write_masks(root, rel_media, field: str, masks: list[tuple[str, object]]) -> list[str]:
    """``write_mask`` for several labels of one field of one sample: they share a directory,
    so it is created and checked (realpath) once and fsynced once after every file is in place
    (each file is still written atomically: temp file, fsync, rename). Returns the paths, in
    order. The directory checks are what a mask costs most; this matters at 20 masks a sample.
    """
    rel_media = safe_rel(root, rel_media)
    rels = [mask_rel(rel_media, field, lid) for lid, _ in masks]
    if not rels:
        return []
    datas = [_mask_png(rel, array) for rel, (_, array) in zip(rels, masks)]
    directory = Path(root) / posixpath.dirname(rels[0])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # re-check now that the directories exist (a planted symlink escapes)
        _check_inside(root, posixpath.dirname(rels[0]), repr(rels[0]))
        for rel, data in zip(rels, datas):
            target = Path(root) / rel
            try:  # the file itself can lead elsewhere only as a symlink: one lstat, not a realpath
                if stat.S_ISLNK(os.lstat(target).st_mode):
                    _check_inside(root, rel, repr(rel))
            except FileNotFoundError:
                pass
            write_bytes_atomic(target, data, sync_dir=False)
        fsync_dir(directory)
    except OSError as exc:
        raise MediaError(f"{directory}: cannot write mask: {exc.strerror or exc}") from None
    return rels


def read_mask(root, mask_path):
    """Read a mask PNG (path relative to the root, or absolute inside it) into a numpy array."""
    import numpy as np

    p = os.fspath(mask_path)
    if isinstance(p, str) and os.path.isabs(p):
        root_real = os.path.realpath(root)
        real = os.path.realpath(p)
        if not real.startswith(root_real + os.sep):
            raise SampleFileError(f"{p!r}: mask path leads outside the dataset root {root}")
        p = os.path.relpath(real, root_real)
    rel = safe_rel(root, p)
    path = Path(root) / rel
    if not path.is_file():
        raise MediaError(f"{path}: mask file not found")
    with open_image(path) as img:
        try:
            return np.asarray(img)
        except (OSError, ValueError, SyntaxError) as exc:
            raise MediaError(f"{path}: cannot decode mask: {exc}") from None
