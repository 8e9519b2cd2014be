"""What syncd knows about one media file: which files are media, their FiftyOne metadata, their hash.

``compute_metadata`` gives the ``ImageMetadata`` / ``VideoMetadata`` dict FiftyOne would compute,
and refuses (MediaError, one line naming the file) what CVAT could not use: empty, truncated or
undecodable files, decompression bombs, videos without frames. Nothing here reads or writes
sample files; ``dataset`` and ``mask_files`` build on it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import xxhash

from syncd import fingerprint
from syncd.errors import MediaError
from syncd.fileio import read_to_end

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS

# Decompression-bomb guard, checked from the header before anything decodes pixels.
MAX_IMAGE_PIXELS = 1 << 28  # 268M pixels, e.g. 16384 x 16384

_VIDEO_MIME = {".mp4": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
               ".mkv": "video/x-matroska", ".webm": "video/webm"}
_IMAGE_MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".bmp": "image/bmp", ".gif": "image/gif", ".webp": "image/webp",
               ".tif": "image/tiff", ".tiff": "image/tiff"}


def media_mime(name: str) -> str | None:
    """The MIME type of a media file syncd handles, from its name's extension; None for others.
    (``mimetypes.guess_type`` reads the system's mime.types files on its first call, ~4 ms,
    which a command's first upload paid while holding the GIL, and answers as that machine's
    files say.)"""
    ext = media_ext(name)
    return _IMAGE_MIME.get(ext) or _VIDEO_MIME.get(ext)


def media_ext(name: str) -> str:
    """The lower-case extension of a file name or forward-slash path (``""`` if none), as the
    sets above hold them: ``posixpath.splitext(name)[1].lower()``, without its generic path
    handling (this runs several times per sample of every run: ~0.3 instead of ~1 us)."""
    dot = name.rfind(".")
    if dot <= 0:
        return ""
    start = name.rfind("/") + 1
    if dot < start:  # the last dot is in a directory's name
        return ""
    # a name's leading dots do not start an extension (".mp4" and "..mp4" have none)
    if not name[start:dot].lstrip("."):
        return ""
    return name[dot:].lower()


# Media content hashes tell a medium changed while in annotation: accidental change, not an
# adversary (who could edit the run record too), so a fast non-cryptographic 128-bit hash does,
# as rsync uses XXH3-128 to tell changed files. It hashes 43 MB in ~2 ms of CPU where sha256
# took ~31 ms (with the SHA extensions), CPU that uploading shares with a CVAT on the same host.
# Runs recorded before it hold bare sha256 hex, still checked as such (``same_content``).
HASH_PREFIX = "xxh128:"
new_hasher = xxhash.xxh3_128


def hash_value(hasher) -> str:
    """The recorded form of a finished ``new_hasher()``: ``xxh128:<32 hex>``."""
    return HASH_PREFIX + hasher.hexdigest()


def hash_bytes(data) -> str:
    return HASH_PREFIX + xxhash.xxh3_128_hexdigest(data)


# Files up to this size are read whole and hashed in one call (an image: ~16 us instead of ~24
# for a 43 KB JPEG streamed through hashlib.file_digest); bigger ones (videos) are streamed.
WHOLE_READ_BYTES = 16 * 1024 * 1024


def hash_file(path) -> tuple[str, list[int] | None]:
    """(content hash of a file's bytes, its stat fingerprint or None): the bytes read between
    two ``fstat``s (``syncd.fingerprint``), whole or, for big files, streamed through one reused
    buffer."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            before = os.fstat(fd)
            if before.st_size <= WHOLE_READ_BYTES:
                digest = hash_bytes(read_to_end(fd, before.st_size))
            else:
                with open(fd, "rb", closefd=False) as f:
                    digest = hash_value(hashlib.file_digest(f, new_hasher))
            return digest, fingerprint.settled(before, os.fstat(fd))
        finally:
            os.close(fd)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror}") from None


def content_hash(path, *, legacy: bool = False) -> str:
    """The content hash of a file's bytes, streamed (``legacy``: bare sha256 hex, the form
    runs recorded before XXH3)."""
    if not legacy:
        return hash_file(path)[0]
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror}") from None


def same_content(path, recorded: str) -> bool:
    """Whether ``path`` still holds the bytes whose hash a run ``recorded`` (either form)."""
    return content_hash(path, legacy=not recorded.startswith(HASH_PREFIX)) == recorded


def compute_metadata(path) -> dict:
    """FiftyOne ``ImageMetadata`` / ``VideoMetadata`` dict of a media file (MediaError if not)."""
    path = Path(path)
    ext = media_ext(path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"{path}: cannot read media: {exc.strerror}") from None
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    if ext in IMAGE_EXTS:
        return _image_metadata(path, ext, size)
    if ext in VIDEO_EXTS:
        return _video_metadata(path, ext, size)
    raise MediaError(f"{path}: not a supported media type ({ext or 'no extension'})")


def open_image(path: Path):
    """Open an image lazily (header only) with the bomb guard; MediaError on failure."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise MediaError(f"{path}: image too large (decompression bomb guard)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"{path}: cannot read image: {exc}") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise MediaError(f"{path}: image has no pixels ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS:
        img.close()
        raise MediaError(f"{path}: image too large ({w}x{h} pixels exceeds {MAX_IMAGE_PIXELS})")
    return img


DECODE_CHECK_PIXELS = 1 << 26  # above this, decoding to check would cost too much memory


def _check_decodes(path: Path, img) -> None:
    """Refuse truncated/corrupt pixel data, which the header alone does not reveal.

    JPEG decodes in draft mode (1/8 scale, still reads the whole stream); PNG ``verify`` checks
    every chunk without inflating pixels; other formats decode when small enough.
    """
    w, h = img.size
    try:
        if img.format == "PNG":
            img.verify()
            return
        if img.format == "JPEG":
            img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
        elif w * h > DECODE_CHECK_PIXELS:
            return
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise MediaError(f"{path}: cannot decode image: {exc}") from None


def _image_metadata(path: Path, ext: str, size: int) -> dict:
    from PIL import Image

    with open_image(path) as img:
        width, height = img.size
        if img.format == "JPEG" and _turned_sideways(img):
            width, height = height, width  # as FiftyOne's get_image_info (and CVAT) report it
        channels = len(img.getbands())
        mime = Image.MIME.get(img.format or "", _IMAGE_MIME[ext])
        _check_decodes(path, img)
    return {"_cls": "ImageMetadata", "size_bytes": size, "mime_type": mime,
            "width": width, "height": height, "num_channels": channels}


def _turned_sideways(img) -> bool:
    """Whether the image's EXIF orientation (5-8) turns it a quarter: FiftyOne then reports
    its width and height swapped (for JPEGs only), and CVAT sizes and shows it upright."""
    try:
        return img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # an unreadable EXIF block: no orientation, as Pillow and FiftyOne see it
        return False


def _video_metadata(path: Path, ext: str, size: int) -> dict:
    import av

    try:
        with av.open(str(path)) as container:
            fmt = container.format.name
            if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg probes content: a JPEG named .mp4
                raise MediaError(f"{path}: cannot read video: the file holds a still image ({fmt})")
            if not container.streams.video:
                # FFmpeg drops streams whose codec it does not know: say so, not just "none"
                raise MediaError(f"{path}: no video stream (none in the file, or its codec is "
                                 f"not supported)")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            declared = stream.frames
            # Count packets (demux only, no decode): Matroska/WebM store no frame count, and a
            # truncated MP4 still declares every frame in its header.
            frames = sum(1 for p in container.demux(stream) if p.size)
            if declared and frames < declared:
                raise MediaError(f"{path}: the video is truncated or damaged: {frames} of its "
                                 f"{declared} frames are in the file")
            if not frames:
                raise MediaError(f"{path}: the video has no frames")
            # CVAT decodes every frame: a file whose first frame does not decode (unsupported
            # codec, damaged data) is refused here, naming the file, not later by the server
            container.seek(0)
            if next(container.decode(stream), None) is None:
                raise MediaError(f"{path}: cannot decode the video's first frame")
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: cannot read video: {exc}") from None
    if not width or not height:
        raise MediaError(f"{path}: video has no frame size")
    if not duration and fps and frames:
        duration = frames / fps
    return {"_cls": "VideoMetadata", "size_bytes": size, "mime_type": _VIDEO_MIME[ext],
            "frame_width": width, "frame_height": height, "frame_rate": fps,
            "total_frame_count": int(frames), "duration": duration}
