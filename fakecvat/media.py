"""Decoding task media: image headers and pixels (Pillow), video (PyAV), frames, chunks, previews.

Nothing here knows about tasks or HTTP: functions take file paths and return sizes or bytes.
Probing reads only image headers (``Image.open`` is lazy), so sizing 1000 images stays well
under a second. Unreadable media raise :class:`MediaError` with a message naming the file.
"""
from __future__ import annotations

import bisect
import collections
import io
import os
import threading
import zipfile
import zlib
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".pbm", ".pgm", ".ppm"}
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jfif": "image/jpeg", ".png": "image/png",
        ".bmp": "image/bmp", ".gif": "image/gif", ".webp": "image/webp", ".tif": "image/tiff",
        ".tiff": "image/tiff", ".mp4": "video/mp4", ".webm": "video/webm", ".avi": "video/x-msvideo",
        ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


class MediaError(ValueError):
    """A media file that cannot be read; ``str()`` is a user-facing message naming the file."""


def _ext(name: str) -> str:
    # (os.path, not Path(name).suffix: called for every file of tasks thousands of files long,
    # where building the Path was ~5 ms of a 1000-file share task's ~45 ms)
    return os.path.splitext(name)[1].lower()


def is_video(name: str) -> bool:
    return _ext(name) in VIDEO_EXTS


def mime_type(name: str) -> str:
    return MIME.get(_ext(name), "application/octet-stream")


# ---- images ------------------------------------------------------------------------------

def probe_image(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) as CVAT reports it: swapped for an EXIF orientation of 5-8 (a photo
    taken sideways), as CVAT's image reader does, whose frames are served upright.

    The file is checked too, so one cut short fails the task's creation (as in CVAT, which
    decodes every image into chunks there) rather than a later frame or chunk request:
    a JPEG must reach its end-of-image marker after its first scan, a PNG has its chunks
    verified, anything else is decoded.
    """
    if isinstance(path, (str, Path)):
        try:
            with open(path, "rb") as f:
                return probe_image_bytes(f.read(), name or Path(path).name)
        except OSError as e:
            raise MediaError(f"Unable to read the image file {name or Path(path).name}: {e}") from e
    return _probe_with_pillow(path, name or "image")


def probe_image_bytes(data: bytes, name: str) -> tuple[int, int]:
    """``probe_image`` of an upload still in memory (no second read of the file).

    A well-formed JPEG is sized from its frame header and checked for completeness without a
    decode: a scan's entropy-coded data cannot contain FF D9 (every FF in it is stuffed), so
    an end-of-image marker after the first start-of-scan means the file was not cut short.
    This costs microseconds where a 1/8-scale decode cost ~0.5 ms per 640x480 image, most of
    a 1000-image task's processing. Anything this reader does not understand goes to Pillow.
    """
    if data[:2] == b"\xff\xd8":
        size, scan, orientation = _jpeg_markers(data)
        if size and scan is not None and (Image.MAX_IMAGE_PIXELS is None
                                          or size[0] * size[1] <= Image.MAX_IMAGE_PIXELS):
            # (searched from the end, where a whole file's marker is: scanning forwards
            # through the entropy-coded data took ~38 us per 640x480 JPEG, from the end ~0.3)
            if data.rfind(b"\xff\xd9", scan) < 0:
                raise MediaError(f"Unable to read the image file {name}: image file is truncated "
                                 f"(no end-of-image marker)")
            return _upright(size, orientation)
    return _probe_with_pillow(io.BytesIO(data), name)


def _probe_with_pillow(fp, name: str) -> tuple[int, int]:
    """Size and pixel check through Pillow: JPEGs decoded at 1/8 scale, PNG chunks verified,
    other formats decoded."""
    try:
        with Image.open(fp) as im:
            size = im.size
            if im.format == "JPEG":
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
            elif im.format == "PNG":
                im.verify()
            else:
                im.load()
            return _upright(size, _orientation_of(im))
    except UnidentifiedImageError as e:  # its message names the in-memory buffer: say it plainly
        raise MediaError(f"Unable to read the image file {name}: cannot identify image file") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(f"Unable to read the image file {name}: {e}") from e


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_markers(data: bytes) -> tuple[tuple[int, int] | None, int | None, int]:
    """Walk a JPEG's marker segments from the start of ``data``: (the size its start-of-frame
    states, the offset where its first scan's entropy-coded data begins, the EXIF orientation
    its APP1 segment states, 1 without one); size or offset is None when not found in ``data``
    or when the segments cannot be walked (the caller then asks Pillow)."""
    size, orientation = None, 1
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return size, None, orientation
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:  # end of image before any scan
            return size, None, orientation
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return size, None, orientation
        if marker in _SOF and size is None:
            if length < 8 or pos + 9 > end:
                return None, None, orientation
            h, w = int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big")
            if w <= 0 or h <= 0:
                return None, None, orientation
            size = (w, h)
        elif marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[pos + 4:pos + 2 + length])
        pos += 2 + length
        if marker == 0xDA:
            return size, (pos if pos <= end else None), orientation
    return size, None, orientation


def _exif_orientation(raw: bytes) -> int:
    """Tag 274 (Orientation) of an EXIF block (with or without its ``Exif\\0\\0`` header),
    read by Pillow's own EXIF parser; 1 when absent or unreadable (CVAT's "no orientation")."""
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(274, 1)
    except Exception:  # a broken EXIF block (Pillow warns and reads nothing)
        return 1
    return value if isinstance(value, int) else 1


def _orientation_of(im: Image.Image) -> int:
    """The EXIF orientation of an opened image. A PNG's comes from the eXIf chunk read at open:
    its ``getexif()`` would load the pixels, which ``verify()`` forbids."""
    if im.format == "PNG":
        return _exif_orientation(im.info.get("exif") or b"")
    try:
        value = im.getexif().get(274, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The size an image shows with its EXIF orientation applied: 5-8 turn it sideways."""
    return (size[1], size[0]) if orientation > 4 else size


def probe_image_header(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, for files CVAT reads where they are (the share).

    No pixel is decoded: a share file is not an upload that may have been cut short, and
    sizing 1000 of them must cost milliseconds (a few small reads each), not a decode. The
    JPEG and PNG headers are read directly; anything else, or a header this reader does not
    understand, goes through Pillow's lazy ``Image.open`` (still header-only), which also
    gives the usual error for a file that is not an image at all.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        size = None
    else:
        try:  # (a raw descriptor: a buffered file object cost more than the read itself)
            size = _jpeg_or_png_size(lambda n: os.read(fd, n))
        except OSError:
            size = None
        finally:
            os.close(fd)
    if size and (Image.MAX_IMAGE_PIXELS is None or size[0] * size[1] <= Image.MAX_IMAGE_PIXELS):
        return size  # (a huge one goes through Pillow's decompression-bomb guard below)
    try:
        with Image.open(path) as im:
            return _upright(im.size, _orientation_of(im))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(f"Unable to read the image file {name or Path(path).name}: {e}") from e


def _jpeg_or_png_size(read) -> tuple[int, int] | None:
    """The size a JPEG's start-of-frame or a PNG's IHDR states, turned upright by the JPEG's
    EXIF orientation, or None (not one of those, or not a header read this simply, e.g. a
    frame header behind more than 64 KiB of metadata, or a PNG with an EXIF chunk: the caller
    asks Pillow). ``read(n)``: up to n more bytes of the file."""
    head = _read_up_to(read, 4096)  # the frame header is usually within the first few hundred bytes
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return (w, h) if w > 0 and h > 0 and b"eXIf" not in head else None
    if not head.startswith(b"\xff\xd8"):
        return None
    size, _, orientation = _jpeg_markers(head)
    if size is None and len(head) == 4096:  # behind EXIF/ICC metadata: look further
        size, _, orientation = _jpeg_markers(head + _read_up_to(read, HEADER_BYTES - 4096))
    return _upright(size, orientation) if size else None


HEADER_BYTES = 64 * 1024


def _read_up_to(read, n: int) -> bytes:
    """``n`` bytes, or fewer at the end of the file (a raw read may return less)."""
    parts = []
    while n > 0:
        part = read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def load_image(path: str | Path) -> Image.Image:
    """The image upright (its EXIF orientation applied), as CVAT decodes frames for chunks and
    previews; "original" frames stay the stored bytes, which viewers turn themselves."""
    with Image.open(path) as im:
        im.load()
        return ImageOps.exif_transpose(im)  # (a copy, turned or not)


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
    """``{"width", "height", "frames", "fps", "duration"}`` of a video's first video stream.

    The frame count is the number of non-empty packets (demuxing only, no decoding), capped by
    the container's own count when it has one: a truncated file whose header still promises
    every frame is sized by what is really there. The first frame is decoded, so an unsupported
    codec or garbage data fails here, at task creation, not later on a frame request.
    """
    import av
    label = name or Path(path).name
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"No video stream found in {label}: it holds no video, or its codec "
                                 f"is not supported")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            declared = int(stream.frames or 0)
            packets = sum(1 for p in container.demux(stream) if p.size)
        count = min(declared, packets) if declared else packets
        if count <= 0:
            raise MediaError(f"The video file {label} contains no frames")
        first = video_frames(path, [0], name=label)[0]
        if not width or not height:
            width, height = first.size
    except MediaError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise MediaError(f"Unable to read the video file {label}: {e}") from e
    return {"width": width, "height": height, "frames": int(count), "fps": fps,
            "duration": round(count / fps, 6) if fps else None}


def video_frame(path: str | Path, number: int) -> Image.Image:
    """Decode frame ``number`` (0-based, source numbering) of a video as a PIL image."""
    return video_frames(path, [number])[0]


class _VideoIndex:
    """Where each frame of a video is: presentation timestamps in frame order, and which
    frames are keyframes (where decoding can start). Built by demuxing only (no decoding)."""

    def __init__(self, pts: list[int], keyframes: list[int]):
        self.pts = pts                                   # frame index -> pts
        self.frame_of = {p: i for i, p in enumerate(pts)}  # pts -> frame index
        self.keyframes = keyframes                       # sorted frame indices

    def keyframe_before(self, n: int) -> int | None:
        i = bisect.bisect_right(self.keyframes, n) - 1
        return self.keyframes[i] if i >= 0 else None


_INDEXES: "collections.OrderedDict[tuple, _VideoIndex | None]" = collections.OrderedDict()
_INDEX_LOCK = threading.Lock()


def _video_index(path: str | Path) -> _VideoIndex | None:
    """The (cached, per file version) index of ``path``; None when timestamps cannot identify
    frames (missing or repeated pts): callers then decode from the start as before."""
    import av
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _INDEX_LOCK:
        if key in _INDEXES:
            _INDEXES.move_to_end(key)
            return _INDEXES[key]
    index = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts, keys = [], []
            for p in container.demux(stream):
                if not p.size:
                    continue
                if p.pts is None:
                    pts = None
                    break
                pts.append(p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
        if pts and len(set(pts)) == len(pts):
            pts.sort()
            frame_of = {p: i for i, p in enumerate(pts)}
            keyframes = sorted(frame_of[k] for k in keys)
            if keyframes and keyframes[0] == 0:
                index = _VideoIndex(pts, keyframes)
    except Exception:
        index = None
    with _INDEX_LOCK:
        _INDEXES[key] = index
        while len(_INDEXES) > 32:
            _INDEXES.popitem(last=False)
    return index


def _seek_frames(path, wanted: list[int], index: _VideoIndex) -> dict[int, Image.Image]:
    """Decode ``wanted`` (sorted) by seeking to the keyframe before each run of frames: the
    cost is the distance from a keyframe, not from the start of the file. Frames that could
    not be identified are simply not returned (the caller falls back)."""
    import av
    got: dict[int, Image.Image] = {}
    targets = set(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, pos = None, None
        for n in wanted:
            if n in got:
                continue
            k = index.keyframe_before(n)
            if k is None:
                break
            if frames is None or pos is None or pos >= n or k > pos:
                # not already decoding towards n from within its GOP: jump
                container.seek(index.pts[k], stream=stream, backward=True, any_frame=False)
                frames, pos = container.decode(stream), None
            for frame in frames:
                i = index.frame_of.get(frame.pts)
                if i is None:
                    return got  # unexpected timestamps: let the caller decode linearly
                pos = i
                if i in targets:
                    got[i] = frame.to_image()
                if i >= n:
                    break
            else:
                frames = None
    return got


def video_frames(path: str | Path, numbers, name: str | None = None) -> list[Image.Image]:
    """Decode the given source frames (any order, repeats allowed) in one pass over the file,
    stopping after the last one needed: a chunk of 36 frames costs one decode, not 36.

    When the file's timestamps identify its frames, decoding starts at the keyframe before the
    first wanted frame instead of at frame 0 (frame 1500 of a 1-minute H.264 video: one GOP of
    decoding, not 1500 frames)."""
    import av
    wanted = sorted(set(int(n) for n in numbers))
    label = name or Path(path).name
    got: dict[int, Image.Image] = {}
    if wanted and wanted[-1] > 0:
        try:
            index = _video_index(path)
            if index is not None and wanted[-1] < len(index.pts):
                got = _seek_frames(path, wanted, index)
        except Exception:
            got = {}  # any trouble seeking: the plain decode below decides
    if wanted and any(n not in got for n in wanted):
        got = {}
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                targets = set(wanted)
                for i, frame in enumerate(container.decode(stream)):
                    if i in targets:
                        got[i] = frame.to_image()
                    if i >= wanted[-1]:
                        break
        except Exception as e:  # a file that broke after probing (truncated, replaced)
            if not got or wanted[-1] not in got:
                raise MediaError(f"Unable to decode frames of the video file {label}: {e}") from e
    missing = [n for n in wanted if n not in got]
    if missing:
        raise MediaError(f"Frame {missing[0]} is out of range in {label}")
    return [got[int(n)] for n in numbers]


def encode_video(images: list[Image.Image], quality: int, fps: float = 25.0) -> bytes:
    """An MP4 (MPEG-4 part 2) of the images, as CVAT's "video" chunks are MP4 segments.

    ``quality`` (1..100, CVAT's image_quality) maps to the encoder's quantizer, 100 being the
    finest; MPEG-4 part 2 accepts odd frame sizes, unlike H.264 in yuv420p.
    """
    import av
    from fractions import Fraction
    if not images:
        return b""
    w, h = images[0].size
    buf = io.BytesIO()
    qscale = max(1, min(31, round(31 - (max(1, min(int(quality), 100)) - 1) * 30 / 99)))
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001) if fps else 25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.qmin = stream.codec_context.qmax = qscale
        for im in images:
            if im.size != (w, h):
                im = im.resize((w, h))
            for packet in stream.encode(av.VideoFrame.from_image(im.convert("RGB"))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


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
