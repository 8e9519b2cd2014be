"""Shared helpers of the syncd end-to-end tests: real image files on disk and the sample files
(``<media>.json``) syncd writes next to them."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

W, H = 64, 48


def make_images(root: Path, names, shade: int = 0) -> None:
    """One small RGB image per name (sub-folders created); each a different colour, ``shade``
    changes the pixels of a file already made."""
    for i, name in enumerate(names):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (W, H), ((i * 40 + shade) % 255, 90, 160)).save(p)


def read(root: Path, rel: str) -> dict:
    """The sample file of media ``rel``."""
    return json.loads((root / (rel + ".json")).read_text())
