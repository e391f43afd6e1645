"""decode_image: every mode and format a shop's photo folder holds, and every refusal, on real encoded bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from dataset_builder import encode
from PIL import Image

from productgan.data.decode import Refusal, decode_image

RED = (255, 0, 0)


def _decoded(data: bytes, **kwargs) -> Image.Image:
    img = decode_image(data, **kwargs)
    assert not isinstance(img, Refusal), img
    assert img.mode in ("L", "RGB")
    return img


def _refused(data: bytes, **kwargs) -> str:
    result = decode_image(data, **kwargs)
    assert isinstance(result, Refusal), f"expected a refusal, got {result}"
    return result.reason


def test_grey_and_rgb_png_unchanged():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    assert np.array_equal(np.asarray(_decoded(encode(Image.fromarray(grey, "L"), "PNG"))), grey)
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = _decoded(encode(Image.fromarray(rgb, "RGB"), "PNG"))
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb)


def test_rgba_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black ...
    rgba[:2] = (255, 0, 0, 255)  # ... except an opaque red top half
    rgba[3, 3] = (0, 0, 0, 128)  # and one half-transparent black pixel
    img = np.asarray(_decoded(encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert (img[:2] == RED).all()
    assert (img[2] == 255).all() and (img[3, :3] == 255).all()
    assert abs(int(img[3, 3, 0]) - 127) <= 1 and img[3, 3, 0] == img[3, 3, 1] == img[3, 3, 2]


def test_la_transparent_pixels_become_white():
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[0] = (40, 255)
    img = np.asarray(_decoded(encode(Image.fromarray(la, "LA"), "PNG")))
    assert img.shape == (2, 2) and (img[0] == 40).all() and (img[1] == 255).all()


def test_palette_with_transparency_composited_on_white():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 4, 2))  # top half: index 1 = red; bottom half: index 0, transparent
    img = np.asarray(_decoded(encode(p, "PNG", transparency=0)))
    assert (img[:2] == RED).all() and (img[2:] == 255).all()


def test_palette_without_transparency_is_rgb():
    p = Image.new("P", (3, 3), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img = _decoded(encode(p, "GIF"))
    assert img.mode == "RGB" and (np.asarray(img) == (10, 200, 30)).all()


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    img = np.asarray(_decoded(encode(cmyk, "JPEG", quality=95))).astype(int)
    assert img.shape == (16, 16, 3)
    assert (np.abs(img - RED) <= 8).all()


def test_16bit_grey_png_scaled_not_clipped():
    grey16 = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    data = encode(Image.fromarray(grey16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really stored as 16 bits
    img = np.asarray(_decoded(data))
    assert img.dtype == np.uint8 and img.tolist() == [[0, 100, 255, round(30000 * 255 / 65535)]]


def test_32bit_int_and_float_tiff():
    ints = np.array([[0, 100, 255]], dtype=np.int32)  # 8-bit data stored in mode I
    assert np.asarray(_decoded(encode(Image.fromarray(ints, "I"), "TIFF"))).tolist() == [[0, 100, 255]]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)  # [0, 1] floats
    assert np.asarray(_decoded(encode(Image.fromarray(floats, "F"), "TIFF"))).tolist() == [[0, 128, 255]]


def test_one_bit_image_becomes_black_and_white_grey():
    bits = Image.new("1", (8, 2), 0)
    bits.paste(1, (0, 0, 4, 2))
    img = np.asarray(_decoded(encode(bits, "PNG")))
    assert img.shape == (2, 8) and set(np.unique(img)) == {0, 255} and (img[:, :4] == 255).all()


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert (np.asarray(_decoded(data)) == RED).all()


@pytest.mark.parametrize(("fmt", "kwargs"), [("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("PNG", {})])
def test_lossless_formats_roundtrip(fmt, kwargs):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(_decoded(encode(Image.fromarray(rgb), fmt, **kwargs))), rgb)


def test_exif_orientation_applied():
    stored = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide, 10 high: left half black, right half white
    stored[:, 10:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img = np.asarray(_decoded(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())))
    assert img.shape == (20, 10, 3)  # upright: 10 wide, 20 high
    assert img[:8].mean() < 20 and img[12:].mean() > 235  # the left (black) half is now on top


def test_extension_is_ignored_content_decides(tmp_path):
    jpeg_named_png = tmp_path / "photo.png"
    jpeg_named_png.write_bytes(encode(Image.new("RGB", (6, 4), RED), "JPEG", quality=95))
    img = np.asarray(_decoded(jpeg_named_png.read_bytes())).astype(int)
    assert img.shape == (4, 6, 3) and (np.abs(img - RED) <= 8).all()


def test_refuses_empty_file():
    assert "empty" in _refused(b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_refuses_truncated_file(fmt):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(photo, fmt)
    assert "truncated or corrupt" in _refused(data[: len(data) // 2])


def test_refuses_text_file_named_jpg(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not the pixels you are looking for\n")
    assert "not an image" in _refused(fake.read_bytes())


# 10,000 pixels: over twice the limit (Pillow raises), between once and twice (Pillow only warns)
@pytest.mark.parametrize("limit", [1_000, 6_000])
def test_refuses_decompression_bomb(limit):
    before = Image.MAX_IMAGE_PIXELS
    data = encode(Image.new("L", (100, 100)), "PNG")
    reason = _refused(data, max_image_pixels=limit)
    assert "decompression bomb" in reason and str(limit) in reason
    assert Image.MAX_IMAGE_PIXELS == before  # the global is restored
    assert not isinstance(decode_image(data, max_image_pixels=10_000), Refusal)


def test_refuses_corrupt_bytes_in_a_valid_header():
    data = bytearray(encode(Image.new("RGB", (32, 32), RED), "PNG"))
    data[60:80] = b"\x00" * 20  # smash the compressed pixel data (CRC fails)
    assert "corrupt" in _refused(bytes(data))
