"""Image probing at task creation: sizes from headers, and files cut short are refused.

The JPEG check reads markers instead of decoding (fakecvat/media.py), so these cases pin what
it must still catch: truncation anywhere in the scan, including files whose EXIF thumbnail
carries its own end-of-image marker before the main image's scan.
"""
from __future__ import annotations

import io

import pytest
from PIL import Image

from fakecvat import media


def jpeg(progressive=False, exif_thumbnail=False, size=(320, 240)) -> bytes:
    im = Image.effect_noise(size, 40).convert("RGB")
    buf = io.BytesIO()
    if exif_thumbnail:
        # an APP1 segment that embeds a complete JPEG (FF D8 ... FF D9) before the main scan
        thumb = io.BytesIO()
        im.resize((16, 12)).save(thumb, "JPEG")
        im.save(buf, "JPEG", progressive=progressive, quality=90)
        data = buf.getvalue()
        app1 = b"Exif\x00\x00" + thumb.getvalue()
        seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
        return data[:2] + seg + data[2:]
    im.save(buf, "JPEG", progressive=progressive, quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("exif_thumbnail", [False, True])
def test_whole_jpeg_is_sized_and_cut_ones_refused(progressive, exif_thumbnail):
    data = jpeg(progressive, exif_thumbnail)
    assert media.probe_image_bytes(data, "a.jpg") == (320, 240)
    # Pillow agrees the whole file decodes
    with Image.open(io.BytesIO(data)) as im:
        im.load()
    for keep in (0.2, 0.5, 0.8, 0.97):
        cut = data[:int(len(data) * keep)]
        with pytest.raises(media.MediaError, match=r"a\.jpg.*truncated"):
            media.probe_image_bytes(cut, "a.jpg")
    with pytest.raises(media.MediaError, match="a.jpg"):
        media.probe_image_bytes(data[:-1], "a.jpg")


def test_bytes_after_the_end_marker_are_accepted():
    # cameras append trailers (maker notes, MPF previews) after EOI; CVAT's decoder ignores them
    assert media.probe_image_bytes(jpeg() + b"\x00" * 100 + b"TRAILER", "t.jpg") == (320, 240)


def test_unwalkable_jpeg_goes_to_pillow_and_fails_with_the_name():
    with pytest.raises(media.MediaError, match="corrupt.jpg"):
        media.probe_image_bytes(b"\xff\xd8garbage", "corrupt.jpg")


def test_probe_from_a_path_matches_bytes(tmp_path):
    data = jpeg(progressive=True)
    (tmp_path / "a.jpg").write_bytes(data)
    assert media.probe_image(tmp_path / "a.jpg") == (320, 240)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(media.MediaError, match="cut.jpg"):
        media.probe_image(tmp_path / "cut.jpg")
    with pytest.raises(media.MediaError, match="missing.jpg"):
        media.probe_image(tmp_path / "missing.jpg")


def test_png_and_other_formats_still_decode_checked():
    im = Image.effect_noise((64, 48), 40).convert("RGB")
    for fmt, name in (("PNG", "a.png"), ("BMP", "a.bmp")):
        buf = io.BytesIO()
        im.save(buf, fmt)
        data = buf.getvalue()
        assert media.probe_image_bytes(data, name) == (64, 48)
        with pytest.raises(media.MediaError, match=name.replace(".", r"\.")):
            media.probe_image_bytes(data[: len(data) // 2], name)
