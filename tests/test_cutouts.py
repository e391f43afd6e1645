"""Transparent cut-outs (``preprocess.channels: 4``): a folder of RGBA photos goes ingest -> preprocess -> train ->
evaluate -> generate / the Python API / the served model, recoloured, with its alpha kept as a real channel the
whole way; grids and Inception see cut-outs on a backdrop; colour augmentation leaves the outline alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from own_photos import run, served_images, tiny_run_params
from PIL import Image, ImageDraw

from productgan.data.resize import fit_and_pad, to_channels
from productgan.gan.augment import color
from productgan.metrics.inception import preprocess as inception_input
from productgan.render import flatten_alpha, to_pil

CATEGORIES = {"bag": "rectangle", "ball": "ellipse"}


def cutout(shape: str, rgb: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    """A product on nothing: opaque inside its outline, fully transparent around it (garbage colour there)."""
    img = Image.new("RGBA", size, (12, 200, 40, 0))
    box = (size[0] // 6, size[1] // 6, size[0] - size[0] // 6, size[1] - size[1] // 6)
    getattr(ImageDraw.Draw(img), shape)(box, fill=(*rgb, 255))
    return img


def write_cutouts(folder: Path, per_category: int = 12) -> None:
    rng = np.random.default_rng(0)
    for name, shape in CATEGORIES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_category):
            rgb = tuple(int(v) for v in rng.integers(30, 230, 3))
            size = (int(rng.integers(30, 60)), int(rng.integers(40, 80)))  # not square: padded
            cutout(shape, rgb, size).save(folder / name / f"{i}.png")



def test_a_cutout_keeps_its_alpha_through_resize_and_is_padded_transparent():
    img = cutout("ellipse", (200, 30, 30), (40, 60))
    pixels = fit_and_pad(to_channels(img, 4), 28, "white")
    assert pixels.shape == (4, 28, 28)
    alpha = pixels[3]
    assert alpha[0, 0] == 0 and alpha[:, 0].max() == 0 and alpha[14, 14] == 255  # padded columns are transparent
    assert (pixels[:3][:, alpha == 0] == 255).all()  # one colour under transparency, not the photo's garbage
    edge = pixels[:3][:, (alpha >= 64) & (alpha < 255)]  # (8-bit premultiplied colour is coarse below)
    assert edge[1].max() < 60  # premultiplied: the green stored under the transparent pixels does not bleed in
    # a photo without alpha is opaque; a cut-out trained without alpha is seen on white
    assert (fit_and_pad(to_channels(Image.new("RGB", (28, 28), (5, 6, 7)), 4), 28, "auto")[3] == 255).all()
    on_white = fit_and_pad(to_channels(img, 3), 28, "white")
    assert on_white.shape == (3, 28, 28) and (on_white[:, 0, 0] == 255).all()


def test_colour_augmentation_leaves_a_cutouts_outline_alone():
    x = torch.rand(8, 4, 16, 16) * 2 - 1
    out = color(x, torch.tensor(1.0), torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 3], x[:, 3]) and not torch.equal(out[:, :3], x[:, :3])


def test_inception_and_grids_see_cutouts_on_a_backdrop():
    img = np.zeros((1, 4, 8, 8), np.uint8)
    img[0, :3] = 10
    img[0, 3, :4] = 255  # top half opaque dark, bottom half transparent
    x = inception_input(img, torch.device("cpu"))
    white = np.full((1, 3, 8, 8), 255, np.uint8)
    white[0, :, :4] = 10
    assert torch.equal(x, inception_input(white, torch.device("cpu")))  # on white, as decode composites photos
    flat = flatten_alpha(img)
    assert flat.shape == (1, 3, 8, 8) and flat[0, 0, 0, 0] == 10 and flat[0, 0, 7, 0] == 200
    assert to_pil(img[0]).mode == "RGBA"


def test_cutout_photos_train_and_generate_pngs_with_alpha_and_serve_them(tmp_path, cli_env):
    write_cutouts(tmp_path / "photos")
    tiny_run_params(tmp_path, channels=4)
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run(tmp_path, env, "ingest", "--source", str(tmp_path / "photos"), "--out", "data")
    run(tmp_path, env, "preprocess", "--input", "data", "--out", "prepared")
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["channels"] == 4
    train = np.load(tmp_path / "prepared" / "train_images.npy")
    assert train.shape[1:] == (4, 32, 32)
    assert (train[:, 3, 0, 0] == 0).all() and (train[:, 3, 16, 16] == 255).all()  # transparent around, opaque on

    run(tmp_path, env, "train", "--data", "prepared", "--out", "gen")
    assert json.loads((tmp_path / "gen" / "generator.json").read_text())["channels"] == 4
    assert Image.open(tmp_path / "gen" / "grid.png").mode == "RGB"  # a grid people look at: on a backdrop

    run(tmp_path, env, "evaluate", "--generator", "gen", "--data", "prepared", "--out", "eval")
    assert "fd_domain" in json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert Image.open(tmp_path / "eval" / "grid.png").mode == "RGB"

    run(tmp_path, env, "generate", "--checkpoint", "gen", "--category", "bag", "--n", "2", "--out", "out")
    pngs = sorted((tmp_path / "out").glob("bag_*.png"))
    assert len(pngs) == 2 and all(Image.open(p).mode == "RGBA" for p in pngs)

    import productgan

    product = productgan.load(str(tmp_path / "gen"))
    plain = product.generate("bag", n=1, seed=3)[0]
    navy = product.generate("bag", n=1, seed=3, color="navy")[0]
    assert plain.mode == navy.mode == "RGBA"
    assert np.array_equal(np.asarray(plain)[..., 3], np.asarray(navy)[..., 3])  # recolouring keeps the outline
    visible = np.asarray(navy)[..., 3] > 0
    if visible.any():
        assert not np.array_equal(np.asarray(plain)[..., :3][visible], np.asarray(navy)[..., :3][visible])

    served = served_images(tmp_path / "gen", {"category": "ball", "n": 2.0, "color": "navy"})
    assert len(served) == 2 and all(image.mode == "RGBA" for image in served)  # the served model keeps alpha
