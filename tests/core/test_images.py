"""Decoding (modes, EXIF, animations, bad files) and the shared prepare_image resize."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.data.images import ImageRejected, decode_image, load_rgb_image, prepare_image, to_rgb
from core.data.ingest_limits import IngestLimits
from core.errors import ConfigError, DatasetError

LIMITS = IngestLimits()


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_rgba_alpha_is_composited_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    decoded = decode_image(_encode(image), LIMITS)
    assert decoded.mode == "RGB" and decoded.getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_transparency_becomes_rgb_on_white():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0] + [10, 200, 10] * 255)
    data = _encode(image, "GIF", transparency=0)
    assert decode_image(data, LIMITS).getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    pixels = np.full((20, 20), 32768, dtype=np.uint16)
    decoded = decode_image(_encode(Image.fromarray(pixels)), LIMITS)
    assert decoded.mode == "RGB" and abs(decoded.getpixel((0, 0))[0] - 127) <= 1


def test_cmyk_and_grayscale_become_rgb():
    assert decode_image(_encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), LIMITS).mode == "RGB"
    assert decode_image(_encode(Image.new("L", (20, 20), 80)), LIMITS).getpixel((1, 1)) == (80, 80, 80)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(_encode(image, "JPEG", exif=exif), LIMITS)
    assert decoded.size == (20, 40)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = decode_image(buffer.getvalue(), LIMITS).getpixel((10, 10))
    assert red > 200 and blue < 50


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty file"),
    (b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
    (b"just some text", "not an image"),
])
def test_non_images_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        decode_image(data, LIMITS)


def test_truncated_image_is_rejected():
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageRejected, match="truncated"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_too_small_image_is_rejected():
    with pytest.raises(ImageRejected, match="too small: 8x40"):
        decode_image(_encode(Image.new("RGB", (8, 40))), LIMITS)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    data = _encode(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageRejected, match="too many pixels: 3000x3000"):
        decode_image(data, IngestLimits(max_pixels=1_000_000))


def test_load_rgb_image_reads_paths_bytes_and_file_objects(tmp_path):
    data = _encode(Image.new("LA", (30, 20), (100, 255)))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (path, str(path), data, io.BytesIO(data)):
        image = load_rgb_image(source)
        assert image.mode == "RGB" and image.size == (30, 20)


def test_load_rgb_image_names_the_unreadable_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_rgb_image(path)


@pytest.mark.parametrize("resize", ["squash", "crop", "pad"])
def test_prepare_image_gives_float_square_raw_pixels(resize):
    out = prepare_image(Image.new("RGB", (60, 30), (200, 100, 50)), 24, resize)
    assert out.shape == (24, 24, 3) and out.dtype == np.float32
    assert out[12, 12].tolist() == [200.0, 100.0, 50.0]


def test_prepare_image_pad_letterboxes_with_black_and_crop_keeps_centre():
    image = Image.new("RGB", (60, 30), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 15, 30))  # red left quarter
    padded = prepare_image(image, 20, "pad")
    assert padded[0, 10].tolist() == [0.0, 0.0, 0.0] and padded[10, 10].tolist() == [255.0, 255.0, 255.0]
    cropped = prepare_image(image, 20, "crop")
    assert cropped[:, 0].min() > 200  # the red quarter is cropped away
    squashed = prepare_image(image, 20, "squash")
    assert squashed[10, 0].tolist() == [255.0, 0.0, 0.0]


def test_prepare_image_converts_other_modes_and_rejects_bad_options():
    assert prepare_image(Image.new("L", (10, 10), 7), 4)[0, 0].tolist() == [7.0, 7.0, 7.0]
    with pytest.raises(ConfigError, match="resize='zoom'"):
        prepare_image(Image.new("RGB", (10, 10)), 4, "zoom")


def test_to_rgb_keeps_rgb_images_untouched():
    image = Image.new("RGB", (5, 5))
    assert to_rgb(image) is image
