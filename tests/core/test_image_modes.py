"""One rule turns every single-channel mode into 8-bit gray, and Pillow's pixel limit follows ours."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.data.images import ImageRejected, decode_image, to_rgb
from core.data.ingest_limits import IngestLimits

RAMP = np.linspace(0.0, 1.0, 64 * 16).reshape(16, 64)


def _gray(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(to_rgb(image), dtype=np.int16)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def _expected() -> np.ndarray:
    return np.round(RAMP * 255).astype(np.int16)


def test_float_images_in_zero_to_one_are_not_black():
    gray = _gray(Image.fromarray(RAMP.astype(np.float32)))
    np.testing.assert_array_equal(gray, _expected())


def test_float_images_in_zero_to_255_keep_their_values():
    gray = _gray(Image.fromarray((RAMP * 255).astype(np.float32)))
    np.testing.assert_array_equal(gray, _expected())


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_values_scale_the_same_in_i_and_i16(mode):
    values = np.round(RAMP * 65535).astype(np.uint16 if mode == "I;16" else np.int32)
    image = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values).convert("I")
    assert image.mode == mode
    np.testing.assert_array_equal(_gray(image), _expected())


def test_a_dark_sixteen_bit_image_stays_dark_in_i_as_in_i16():
    values = np.full((16, 16), 1000)
    as_i = _gray(Image.fromarray(values.astype(np.int32)).convert("I"))
    as_i16 = _gray(Image.fromarray(values.astype(np.uint16)))
    np.testing.assert_array_equal(as_i, as_i16)
    assert as_i.max() == round(1000 * 255 / 65535)


def test_eight_bit_values_in_mode_i_are_kept():
    values = np.round(RAMP * 255).astype(np.int32)
    np.testing.assert_array_equal(_gray(Image.fromarray(values).convert("I")), _expected())


def _png_bytes(size: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_our_pixel_limit_wins_over_pillows_lower_one(monkeypatch):
    # Pillow refuses images over twice its own limit before we can look at them.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    image = decode_image(_png_bytes(200), IngestLimits(max_pixels=100_000))
    assert image.size == (200, 200)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def test_a_200_megapixel_scan_is_allowed_by_a_raised_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    header = _png_header_only(20_000, 10_000)  # 200,000,000 pixels, no pixel data
    with pytest.raises(ImageRejected) as caught:
        decode_image(header, IngestLimits(max_pixels=300_000_000))
    # Past the pixel checks, it fails only for holding almost no pixel data.
    assert "truncated" in str(caught.value)
    with pytest.raises(ImageRejected, match="TRANSFER_STUDIO_MAX_PIXELS") as refused:
        decode_image(header, IngestLimits(max_pixels=80_000_000))
    assert "178956970" not in str(refused.value)
