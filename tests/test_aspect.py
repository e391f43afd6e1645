"""Non-square products (``preprocess.aspect``): a catalogue's 3:4 photos keep their frame. The frame's rules, every
network at 3:4 and 4:3, and a folder of 3:4 photos through ingest -> preprocess -> train -> evaluate -> generate /
edit / project / the served model, all 24x32 instead of padded squares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from own_photos import run, served_images, tiny_run_params
from PIL import Image, ImageDraw

from productgan.data.preprocess import PreprocessParams
from productgan.data.resize import fit_and_pad
from productgan.frame import aspect_of, frame_size, parse_aspect
from productgan.gan.config import GeneratorConfig, start_map
from productgan.gan.networks import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator
from productgan.params import ParamsError


def test_the_frame_is_the_longer_side_at_an_aspect():
    assert frame_size(64, "3:4") == (64, 48) and frame_size(128, "4:3") == (96, 128) and frame_size(28) == (28, 28)
    assert parse_aspect("6:8") == (3, 4) and aspect_of(64, 48) == "3:4" and aspect_of(28, 28) == "1:1"
    assert start_map(64, "3:4") == (4, 3, 4)
    for bad in ("3x4", "0:4", "-3:4", "a:b", "3:4:5"):
        with pytest.raises(ValueError, match="W:H"):
            parse_aspect(bad)
    with pytest.raises(ValueError, match="use 32, 64 or 128 px for 3:4"):
        start_map(28, "3:4")  # a 7x7 start map has no whole 3:4 shape
    with pytest.raises(ParamsError, match="aspect"):
        PreprocessParams(resolution=28, aspect="3:4")


def test_a_photo_fills_a_frame_of_its_own_shape_and_is_padded_into_another():
    photo = Image.new("RGB", (300, 400), (10, 20, 30))
    assert fit_and_pad(photo, 64, "white", "3:4").shape == (3, 64, 48)
    assert (fit_and_pad(photo, 64, "white", "3:4") == np.array([10, 20, 30])[:, None, None]).all()  # no padding
    square = fit_and_pad(photo, 64, "white")
    assert square.shape == (3, 64, 64) and (square[:, :, 0] == 255).all()  # the square frame pads the sides


@pytest.mark.parametrize("aspect", ["3:4", "4:3"])
@pytest.mark.parametrize("arch", sorted(set(GENERATORS) - {"sndcgan"}))
def test_every_generator_makes_the_frame_and_every_discriminator_reads_it(arch, aspect):
    cfg = GeneratorConfig(arch=arch, resolution=32, aspect=aspect, channels=3, latent_dim=8, base_channels=4,
                          categories=["a", "b"])
    out = build_generator(cfg)(torch.randn(2, 8), torch.tensor([0, 1]))
    assert out.shape == (2, 3, *frame_size(32, aspect))
    for d_arch in DISCRIMINATORS:
        assert build_discriminator(cfg, arch=d_arch)(out, torch.tensor([0, 1])).shape == (2,)


def shop_photo(shape: str, rgb: tuple[int, int, int]) -> Image.Image:
    """A 3:4 catalogue photo: a product on white filling most of the frame."""
    img = Image.new("RGB", (60, 80), (255, 255, 255))
    getattr(ImageDraw.Draw(img), shape)((8, 10, 52, 70), fill=rgb)
    return img



def test_portrait_photos_train_generate_edit_and_serve_in_their_frame(tmp_path, cli_env):
    rng = np.random.default_rng(0)
    for name, shape in {"dress": "rectangle", "vase": "ellipse"}.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(12):
            colour = tuple(int(v) for v in rng.integers(20, 200, 3))
            shop_photo(shape, colour).save(tmp_path / "photos" / name / f"{i}.png")
    tiny_run_params(tmp_path, channels=3)
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run(tmp_path, env, "ingest", "--source", str(tmp_path / "photos"), "--out", "data")
    out = run(tmp_path, env, "preprocess", "--input", "data", "--out", "prepared", "--aspect", "3:4")
    assert "at 24x32x3" in out.stdout
    train = np.load(tmp_path / "prepared" / "train_images.npy")
    assert train.shape[1:] == (3, 32, 24)
    assert (train[:, :, 0, 0] == 255).all() and (train[:, :, 16, 12] < 255).any()  # white around, product inside

    out = run(tmp_path, env, "train", "--data", "prepared", "--out", "gen")
    assert "24x32x3" in out.stderr
    assert json.loads((tmp_path / "gen" / "generator.json").read_text())["aspect"] == "3:4"
    run(tmp_path, env, "evaluate", "--generator", "gen", "--data", "prepared", "--out", "eval")
    assert "fd_domain" in json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert Image.open(tmp_path / "eval" / "grid.png").height == 2 * 32  # one 32-pixel row per category

    run(tmp_path, env, "generate", "--checkpoint", "gen", "--category", "vase", "--n", "2", "--out", "out")
    assert [Image.open(p).size for p in sorted((tmp_path / "out").glob("vase_*.png"))] == [(24, 32)] * 2

    import productgan

    product = productgan.load(str(tmp_path / "gen"))
    assert product.generate("dress", n=1, seed=1, color="navy", rotate=10)[0].size == (24, 32)
    assert product.generate("dress", n=1, seed=1, size=128)[0].size == (96, 128)  # the longer side
    assert product.photo_array(tmp_path / "photos" / "vase" / "0.png").shape == (3, 32, 24)

    served = served_images(tmp_path / "gen", {"category": "vase", "n": 2.0, "hue_shift": 90.0})
    assert [image.size for image in served] == [(24, 32)] * 2
