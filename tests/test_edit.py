"""Edits measured on images whose truth is known: synthetic products drawn with Pillow (white or black
background; a shop photo's product with an anti-aliased outline, a handle, a white print and a soft shadow,
also through JPEG; a cut-out with a soft alpha edge) and real Fashion-MNIST products (grey on black)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from benchmarks.product_photos import CUT_OUT_RGB, cut_out, jpeg, shop_photo
from productgan.serve.edit import (
    EditError,
    Edits,
    apply_edits,
    background_color,
    hue_distance,
    mask_bbox,
    mean_hue,
    parse_color,
    product_mask,
    rgb_to_hsv,
)

LUMA = np.array([0.3, 0.59, 0.11])


def shaded_disc(bg: str = "white", size: int = 96, radius: int = 30) -> Image.Image:
    """An orange-brown ball with a radial shading gradient on a plain background."""
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    c = size // 2
    for r in range(radius, 0, -1):
        g = int(60 + 150 * (1 - r / radius))
        draw.ellipse((c - r, c - r, c + r, c + r), fill=(g, g // 2 + 40, 30))
    return img


def rectangle(w: int, h: int, size: int = 128, bg: str = "white", fill: str = "#c04020") -> Image.Image:
    img = Image.new("RGB", (size, size), bg)
    x0, y0 = (size - w) // 2, (size - h) // 2
    ImageDraw.Draw(img).rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    return img


def hard(image: Image.Image) -> np.ndarray:
    return product_mask(image) > 0.5


def target_hue(color: str) -> float:
    return float(rgb_to_hsv(np.asarray(parse_color(color), float) / 255.0)[0])


def principal_angle(mask: np.ndarray) -> float:
    """Orientation (degrees, counter-clockwise, y up) of the mask's long axis, from second moments."""
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), -(ys - ys.mean())
    return math.degrees(0.5 * math.atan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))


@pytest.fixture(scope="module")
def fmnist_products(fmnist_small) -> list[Image.Image]:
    """Real Fashion-MNIST test products (T-shirt, trouser, pullover, dress, ...) as 28x28 grey images."""
    x, y = fmnist_small["test"]
    picks = [int(np.flatnonzero(y == k)[0]) for k in (0, 1, 2, 3, 4, 8)]
    return [Image.fromarray(x[i, 0], "L") for i in picks]


# --- the mask ------------------------------------------------------------------------------------------


def test_mask_finds_the_product_on_white_and_on_black(fmnist_products):
    disc = shaded_disc("white")
    assert background_color(disc) == (255, 255, 255)
    box = mask_bbox(product_mask(disc))
    assert box == (18, 18, 79, 79)  # the drawn disc: centre 48, radius 30
    for img in fmnist_products:
        assert background_color(img) == (0,)
        m = product_mask(img)
        assert m[0, 0] == m[0, -1] == m[-1, 0] == m[-1, -1] == 0  # corners are background (garments may
        # touch an edge)
        assert (m > 0.5).sum() > 50  # the garment itself


def test_mask_uses_alpha_when_there_is_one():
    img = Image.new("RGBA", (40, 40), (255, 255, 255, 0))
    ImageDraw.Draw(img).rectangle((10, 10, 29, 19), fill=(200, 30, 30, 255))
    assert mask_bbox(product_mask(img)) == (10, 10, 30, 20)


# --- colour -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["#aa3355", "navy", "#2a8", "gold"])
def test_recolour_sets_the_mean_hue_and_keeps_shading(color):
    src = shaded_disc("white")
    out = apply_edits(src, color=color)
    mask = hard(src)
    assert hue_distance(mean_hue(out, mask), target_hue(color)) < 2.0
    lum_in = (np.asarray(src, float) @ LUMA)[mask]
    lum_out = (np.asarray(out, float) @ LUMA)[mask]
    assert np.corrcoef(lum_in, lum_out)[0, 1] > 0.95  # the shading survives
    assert abs(lum_out.mean() - np.asarray(parse_color(color)) @ LUMA) < 12  # as light as the colour asked
    # the background is not touched
    bg = product_mask(src) == 0
    assert np.array_equal(np.asarray(out)[bg], np.asarray(src)[bg])


@pytest.mark.parametrize("color", ["#aa3355", "#2a8", "royalblue"])
def test_recolour_real_fashion_mnist_products(fmnist_products, color):
    for img in fmnist_products:
        out = apply_edits(img, color=color)
        assert out.mode == "RGB" and out.size == img.size  # grey becomes RGB for a colour edit
        mask = hard(img)
        assert hue_distance(mean_hue(out, mask), target_hue(color)) < 3.0
        lum_in = np.asarray(img, float)[mask]
        lum_out = (np.asarray(out, float) @ LUMA)[mask]
        assert np.corrcoef(lum_in, lum_out)[0, 1] > 0.9
        bg = product_mask(img) == 0  # the (near-)black background is not touched
        assert np.array_equal(np.asarray(out)[bg], np.asarray(img.convert("RGB"))[bg])


def test_hue_shift_saturation_brightness():
    src = shaded_disc("white")
    mask = hard(src)
    base = mean_hue(src, mask)
    shifted = apply_edits(src, hue_shift=120)
    assert hue_distance(mean_hue(shifted, mask), (base + 120) % 360) < 2.0

    grey = np.asarray(apply_edits(src, saturation=0.0), float)
    assert (grey.max(-1) - grey.min(-1))[mask].max() <= 1.0

    half = np.asarray(src.convert("RGB"), float)
    dimmed = np.asarray(apply_edits(src, brightness=0.5), float)
    ratio = dimmed.max(-1)[mask].mean() / half.max(-1)[mask].mean()
    assert abs(ratio - 0.5) < 0.02
    assert np.array_equal(dimmed[~(product_mask(src) > 0)], half[~(product_mask(src) > 0)])


@pytest.mark.parametrize("quality", [None, 95, 90])
@pytest.mark.parametrize("edit", [{"color": "#2050d0"}, {"hue_shift": 120.0}, {"brightness": 0.6}])
def test_colour_edits_change_the_product_and_leave_background_and_shadow_alone(quality, edit):
    photo, coverage, shadow = shop_photo()
    if quality:
        photo = jpeg(photo, quality)
    before = np.asarray(photo, float)
    after = np.asarray(apply_edits(photo, **edit), float)
    change = np.abs(after - before).max(-1)
    background = coverage == 0
    if quality:  # JPEG rings within a pixel or two of an outline; the background beyond must not move
        background &= ~ndimage.binary_dilation(coverage > 0, iterations=2)
    handle_gap = background & (np.arange(128)[:, None] < 128 * 0.3)
    in_shadow = background & (shadow > 0.1)
    assert in_shadow.sum() > 300 and handle_gap.sum() > 100  # the picture has what the test is about
    assert change[background].max() <= 1, f"background moved by up to {change[background].max():.0f} levels"
    bag = (coverage == 1) & (before.min(-1) < 220)  # the bag's own colour, not its white print
    assert (change[bag] > 10).mean() == 1.0


def test_mask_of_a_shop_photo_is_the_product_without_its_shadow():
    photo, coverage, shadow = shop_photo()
    m = product_mask(photo)
    assert (m[coverage == 0] == 0).all()  # the shadow, the handle's gap, the white around it
    assert (m[(coverage == 1) & (np.asarray(photo).min(-1) < 220)] == 1).all()
    edge = (coverage > 0) & (coverage < 1)
    assert 0 < m[edge].mean() < 1  # the anti-aliased outline is blended


def test_light_parts_the_product_shades_into_are_product():
    """A white cap with a dark seam on white: its folds shade gently from white to light grey and back, inside
    a sharp outline. They are product (recoloured), the background around stays."""
    size = 96
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((16, 24, 80, 72), fill=(245, 245, 245), outline=(60, 60, 60), width=3)
    folds = np.asarray(img, float).copy()
    ys, xs = np.mgrid[0:size, 0:size]
    inside = (((xs - 48) / 28.0) ** 2 + ((ys - 48) / 20.0) ** 2) < 1
    folds[inside] = (255 - 30 * (0.5 + 0.5 * np.sin(xs[inside] / 4.0)))[:, None]  # white to 225, smoothly
    photo = Image.fromarray(folds.round().astype(np.uint8), "RGB")
    out = np.asarray(apply_edits(photo, color="#2050d0"), float)
    change = np.abs(out - folds).max(-1)
    assert (change[inside] > 10).mean() > 0.99
    outside = ~ndimage.binary_dilation((((xs - 48) / 32.0) ** 2 + ((ys - 48) / 24.0) ** 2) < 1, iterations=1)
    assert change[outside].max() == 0


def test_cut_out_is_recoloured_to_its_soft_edge_and_keeps_its_alpha():
    """An RGBA cut-out with an anti-aliased alpha edge. Straight alpha: a half-transparent edge pixel holds the
    product's own colour, so it is recoloured in full (no rim of the old colour); alpha and the hidden pixels
    (alpha 0) stay exactly as they were."""
    cut = cut_out()
    a = np.asarray(cut)[..., 3]
    green_hue = float(rgb_to_hsv(np.array(CUT_OUT_RGB) / 255.0)[0])
    for edit, hue in (({"color": "#aa3355"}, target_hue("#aa3355")), ({"hue_shift": 180.0}, (green_hue + 180) % 360),
                      ({"brightness": 0.5}, None)):
        out = apply_edits(cut, **edit)
        assert out.mode == "RGBA"
        got = np.asarray(out)
        assert np.array_equal(got[..., 3], a)
        assert np.array_equal(got[a == 0], np.asarray(cut)[a == 0])
        assert ((a > 0) & (a < 255)).sum() > 20
        if hue is not None:
            hues = rgb_to_hsv(got[..., :3][a > 0] / 255.0)[:, 0]
            assert max(hue_distance(float(h), hue) for h in hues) < 2.0  # the soft edge too
        else:
            assert np.abs(got[..., :3][a > 0] - np.array(CUT_OUT_RGB) * 0.5).max() <= 1


def test_opaque_rgba_photo_is_masked_by_its_colours():
    """A photo saved with an alpha channel that is opaque everywhere is a photo: its white stays white."""
    photo, coverage, _ = shop_photo(64)
    rgba = photo.convert("RGBA")
    assert np.array_equal(product_mask(rgba), product_mask(photo))
    out = apply_edits(rgba, color="#2050d0")
    assert out.mode == "RGBA" and np.asarray(out)[..., 3].min() == 255
    assert np.array_equal(np.asarray(out)[..., :3], np.asarray(apply_edits(photo, color="#2050d0")))


def test_alpha_photo_keeps_its_alpha_through_a_recolour():
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((8, 8, 31, 31), fill=(40, 160, 40, 255))
    out = apply_edits(img, color="#aa3355")
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(img.getchannel("A")))
    assert hue_distance(mean_hue(out, product_mask(img)), target_hue("#aa3355")) < 2.0


# --- geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25])
def test_scale_shrinks_the_bounding_box_by_the_factor(factor):
    src = rectangle(60, 40)
    x0, y0, x1, y1 = mask_bbox(product_mask(src))
    out = apply_edits(src, scale=factor)
    assert out.size == src.size
    a0, b0, a1, b1 = mask_bbox(product_mask(out))
    assert abs((a1 - a0) - 60 * factor) <= 2 and abs((b1 - b0) - 40 * factor) <= 2
    assert abs((a0 + a1) / 2 - (x0 + x1) / 2) <= 1.5 and abs((b0 + b1) / 2 - (y0 + y1) / 2) <= 1.5
    # the canvas around the product is plain background
    assert np.asarray(out)[0].min() >= 250


def test_scale_real_products(fmnist_products):
    for img in fmnist_products:
        x0, y0, x1, y1 = mask_bbox(product_mask(img))
        a0, b0, a1, b1 = mask_bbox(product_mask(apply_edits(img, scale=0.6)))
        assert abs((a1 - a0) - 0.6 * (x1 - x0)) <= 2 and abs((b1 - b0) - 0.6 * (y1 - y0)) <= 2


@pytest.mark.parametrize("angle", [15, 30, -45])
def test_rotation_turns_the_mask_by_the_angle(angle):
    src = rectangle(80, 16)
    assert abs(principal_angle(hard(src))) < 0.5
    out = apply_edits(src, rotate=angle)
    got = principal_angle(hard(out))
    assert abs(got - angle) < 1.5
    # and it is the same rectangle, turned: IoU with the exact rotated polygon
    c = 64.0
    corners = [(-40, -8), (40, -8), (40, 8), (-40, 8)]
    t = math.radians(angle)
    poly = [(c + x * math.cos(t) + y * math.sin(t), c - x * math.sin(t) + y * math.cos(t)) for x, y in corners]
    expect = Image.new("L", src.size, 0)
    ImageDraw.Draw(expect).polygon(poly, fill=255)
    e, g = np.asarray(expect) > 127, hard(out)
    assert (e & g).sum() / (e | g).sum() > 0.9


def test_flip_mirrors_the_product():
    src = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(src).polygon([(10, 40), (10, 8), (50, 40)], fill="#3050c0")  # a right triangle
    out = apply_edits(src, flip=True)
    assert np.array_equal(np.asarray(out), np.asarray(src)[:, ::-1])


def test_size_uses_lanczos_and_keeps_aspect(fmnist_products):
    img = fmnist_products[0]
    out = apply_edits(img, size=256)
    assert out.size == (256, 256) and out.mode == "L"
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((256, 256), Image.Resampling.LANCZOS)))
    wide = rectangle(60, 40).crop((0, 0, 96, 64))
    assert apply_edits(wide, size=48).size == (48, 32)


def test_background_transparent_and_white(fmnist_products):
    img = fmnist_products[3]
    clear = apply_edits(img, background="transparent")
    assert clear.mode == "RGBA"
    alpha = np.asarray(clear.getchannel("A"))
    assert alpha[0, 0] == alpha[-1, -1] == 0
    assert np.array_equal(alpha > 127, hard(img))
    white = apply_edits(img, background="white")
    bg = product_mask(img) == 0
    assert np.asarray(white)[bg].min() == 255
    m = hard(img)
    assert np.abs(np.asarray(white, float)[m] - np.asarray(img, float)[m]).mean() < 20  # product kept


def test_edits_compose(fmnist_products):
    img = fmnist_products[1]
    out = apply_edits(img, color="#aa3355", scale=0.8, rotate=15, flip=True, size=112, background="transparent")
    assert out.mode == "RGBA" and out.size == (112, 112)
    assert hue_distance(mean_hue(out, np.asarray(out.getchannel("A")) / 255.0), target_hue("#aa3355")) < 3.0


# --- parsing and validation ---------------------------------------------------------------------------


def test_parse_color_forms_and_errors():
    assert parse_color("#a35") == (170, 51, 85)
    assert parse_color("#aa3355") == (170, 51, 85)
    assert parse_color("navy") == (0, 0, 128)
    for bad in ["#12345", "aa3355", "notacolour", ""]:
        with pytest.raises(EditError, match="is not a colour"):
            parse_color(bad)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"color": "#zz"}, "is not a colour"),
        ({"scale": 0}, "scale=0"),
        ({"size": 0}, "size=0"),
        ({"size": 12.5}, "whole number"),
        ({"background": "pink"}, "background='pink'"),
        ({"saturation": -1}, "saturation=-1"),
        ({"rotate": "left"}, "must be numbers"),
        ({"flip": "maybe"}, "flip='maybe'"),
        ({"colour": "red"}, "unknown edit"),
    ],
)
def test_bad_edits_are_refused_with_a_clear_message(values, message):
    with pytest.raises(EditError, match=message):
        Edits.from_mapping(values)


def test_missing_values_mean_no_edit():
    edits = Edits.from_mapping({"color": None, "scale": float("nan"), "flip": "false", "size": 64.0})
    assert edits == Edits(size=64)
    img = shaded_disc()
    assert np.array_equal(np.asarray(apply_edits(img, Edits())), np.asarray(img))
