"""Deterministic benchmark data: JPEGs that look like photos to an encoder (smooth regions,
edges, a little noise), so their size (~50-90 KB at 640x480) is what cameras send."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_images(directory: Path, n: int, width: int = 640, height: int = 480, *, seed: int = 0) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(n):
        base = rng.uniform(40, 200, 3).astype(np.float32)
        slope = rng.uniform(-0.2, 0.2, (2, 3)).astype(np.float32)
        img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
        for _ in range(6):  # a few objects with hard edges
            x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
            w, h = rng.integers(20, 200), rng.integers(20, 160)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape).astype(np.float32)
        path = directory / f"img_{i:05d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=85)
        out.append(path)
    return out
