"""Product photos whose truth is known, rendered here (free to commit, unlike the catalogue sets): a catalogue
shot on white and a transparent cut-out. tests/test_edit.py asserts on them; bench_edits.py draws them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BAG_RGB = (200.0, 70.0, 40.0)  # the shop photo's bag where fully lit
CUT_OUT_RGB = (40, 150, 60)  # the cut-out's colour


def shop_photo(size: int = 128) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """A lit orange-red bag on white, the way a catalogue shot looks: (RGB image, coverage, shadow).

    coverage (H, W) in [0, 1]: how much of each pixel the bag covers (drawn 4x larger and box-filtered, so the
    outline is anti-aliased); its handle encloses a gap of background (above 0.3 x size), a white print sits
    on its front. shadow (H, W) in [0, 1]: a soft light-grey shadow under it (at most 40 levels below white)."""
    big = size * 4
    shape = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(shape)
    draw.rounded_rectangle((big * 0.25, big * 0.3, big * 0.75, big * 0.72), radius=big * 0.06, fill=255)
    draw.ellipse((big * 0.38, big * 0.15, big * 0.62, big * 0.4), outline=255, width=big * 3 // 100)
    mark = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mark).rectangle((big * 0.42, big * 0.45, big * 0.58, big * 0.55), fill=255)
    coverage = np.asarray(shape.resize((size, size), Image.Resampling.BOX), float) / 255.0
    white_print = np.asarray(mark.resize((size, size), Image.Resampling.BOX), float)[..., None] / 255.0
    blur = Image.new("L", (size, size), 0)
    ImageDraw.Draw(blur).ellipse((size * 0.2, size * 0.66, size * 0.85, size * 0.82), fill=255)
    shadow = np.asarray(blur.filter(ImageFilter.GaussianBlur(size * 0.03)), float) / 255.0
    lit = 0.75 + 0.25 * np.arange(size)[None, :, None] / size  # lit from the right
    bag = np.array(BAG_RGB) * lit * (1 - white_print) + 255.0 * white_print
    ground = 255.0 - 40.0 * shadow[..., None]
    pixels = bag * coverage[..., None] + ground * (1 - coverage[..., None])
    return Image.fromarray(pixels.round().astype(np.uint8), "RGB"), coverage, shadow


def cut_out(size: int = 64, seed: int = 0) -> Image.Image:
    """An RGBA cut-out: a green oval with an anti-aliased alpha edge (straight alpha: every visible pixel holds
    the product's colour); under alpha 0, seeded noise (what a cut-out tool leaves there)."""
    big = size * 4
    shape = Image.new("L", (big, big), 0)
    ImageDraw.Draw(shape).ellipse((big * 0.16, big * 0.23, big * 0.84, big * 0.78), fill=255)
    alpha = np.asarray(shape.resize((size, size), Image.Resampling.BOX))
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)
    rgb[alpha > 0] = CUT_OUT_RGB
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after a round trip through JPEG at ``quality`` (4:2:0 chroma, Pillow's default)."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


SHAPES = ["circle", "square", "triangle"]


def shapes_on_white(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tiny product shots as preprocess stores them ((n, 3, size, size) uint8, labels): a circle, square or
    triangle (label ``i % 3``, SHAPES) in a random dark colour, near the centre with a white margin of over a
    quarter of the size all round."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        label = i % len(SHAPES)
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        r = size * rng.uniform(0.15, 0.22)
        c = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
        colour = tuple(int(v) for v in rng.integers(0, 200, 3))
        box = [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
        if label == 0:
            draw.ellipse(box, fill=colour)
        elif label == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(c[0], c[1] - r), (c[0] - r, c[1] + r), (c[0] + r, c[1] + r)], fill=colour)
        images.append(np.asarray(img).transpose(2, 0, 1))
        labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64)
