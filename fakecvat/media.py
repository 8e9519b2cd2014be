"""Decoding task media: image headers and pixels (Pillow), video (PyAV), frames, chunks, previews.

Nothing here knows about tasks or HTTP: functions take file paths and return sizes or bytes.
Probing reads only image headers (``Image.open`` is lazy), so sizing 1000 images stays well
under a second. Unreadable media raise :class:`MediaError` with a message naming the file.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".pbm", ".pgm", ".ppm"}
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jfif": "image/jpeg", ".png": "image/png",
        ".bmp": "image/bmp", ".gif": "image/gif", ".webp": "image/webp", ".tif": "image/tiff",
        ".tiff": "image/tiff", ".mp4": "video/mp4", ".webm": "video/webm", ".avi": "video/x-msvideo",
        ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


class MediaError(ValueError):
    """A media file that cannot be read; ``str()`` is a user-facing message naming the file."""


def is_video(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTS


def mime_type(name: str) -> str:
    return MIME.get(Path(name).suffix.lower(), "application/octet-stream")


# ---- images ------------------------------------------------------------------------------

def probe_image(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header only; EXIF rotation is ignored (as CVAT's meta does)."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"Unable to read the image file {name or Path(path).name}: {e}") from e


def load_image(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.copy()


def to_jpeg(image: Image.Image, quality: int) -> bytes:
    """Encode as CVAT's compressed frames are: RGB JPEG at the task's image_quality."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=max(1, min(int(quality), 95)))
    return buf.getvalue()


def preview_jpeg(image: Image.Image, size: int = 256) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((size, size))
    return to_jpeg(thumb, 85)


# ---- video -------------------------------------------------------------------------------

def probe_video(path: str | Path, name: str | None = None) -> dict:
    """``{"width", "height", "frames", "fps"}``; counts frames by demuxing when the container
    does not say (cheap: packets are not decoded)."""
    import av
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"No video stream found in {name or Path(path).name}")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            count = stream.frames
            if not count:
                count = sum(1 for p in container.demux(stream) if p.size)
            return {"width": width, "height": height, "frames": int(count), "fps": fps}
    except MediaError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise MediaError(f"Unable to read the video file {name or Path(path).name}: {e}") from e


def video_frame(path: str | Path, number: int) -> Image.Image:
    """Decode frame ``number`` (0-based, source numbering) of a video as a PIL image."""
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i == number:
                return frame.to_image()
    raise MediaError(f"Frame {number} is out of range in {Path(path).name}")


# ---- chunks ------------------------------------------------------------------------------

def zip_chunk(entries: list[tuple[str, bytes]]) -> bytes:
    """A CVAT 'imageset' chunk: a zip of frames in order (stored, JPEG is already compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def checksum(data: bytes) -> str:
    """CVAT's X-Checksum: crc32 over the length and the first 1000 bytes."""
    return str(zlib.crc32(str(len(data)).encode() + data[:1000]))
