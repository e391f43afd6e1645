"""Colour product photos (issue 32), on shots the test renders itself (coloured shapes on white): augmentations
that respect a white background, and the training knobs that carry them."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_prepared
from train_helpers import tiny_params

from benchmarks.product_photos import SHAPES, shapes_on_white
from productgan.gan.augment import DiffAugment, border_colour, parse_policy
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer
from productgan.params import ParamsError


@pytest.fixture()
def shop(tmp_path):
    """48 shapes on white at 32x32 RGB, as preprocess writes them."""
    return write_prepared(tmp_path / "shop", {"train": shapes_on_white(48, 32)}, SHAPES)


def test_white_background_augmentations_never_paint_black_or_grey_into_the_border():
    x, _ = shapes_on_white(32, 32, seed=1)
    images = torch.from_numpy(x).float().div(127.5).sub(1.0).contiguous(memory_format=torch.channels_last)
    ring = torch.ones(32, 32, dtype=torch.bool)
    ring[2:-2, 2:-2] = False  # the outer 2 pixels: the products keep a margin of > 1/8 + 2 px, so they stay clear
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        border = DiffAugment(parse_policy("translation,cutout"), torch.device("cpu"), p=1.0, fill="border")
        out = border(images.to(dtype), gen).float()
        assert torch.equal(out[:, :, ring], torch.ones_like(out[:, :, ring]))  # exactly white, every image
        assert not torch.equal(out, images)  # and the images did move and lose a box
    # with colour jitter as well the background stays one colour per image, never darker than the image's mean
    full = DiffAugment(parse_policy("color,translation,cutout"), torch.device("cpu"), p=1.0, fill="border")
    out = full(images, gen)
    edge = out[:, :, ring]
    assert edge.std(dim=2).max() < 1e-5 and (edge.mean(dim=2) >= out.mean(dim=(2, 3)) - 1e-5).all()
    # DiffAugment's own fill paints mid-grey boxes into the white border (what `border` is for)
    grey = DiffAugment(parse_policy("cutout"), torch.device("cpu"), p=1.0, fill="grey")(images, gen)
    assert (grey[:, :, ring] == 0).any()
    assert torch.allclose(border_colour(images), torch.ones(32, 3, 1, 1))
    with pytest.raises(ValueError, match="fill"):
        DiffAugment(("cutout",), torch.device("cpu"), fill="black")


def test_border_fill_and_the_adaptive_probability_reach_training_and_its_record(tmp_path, monkeypatch, shop, capsys):
    monkeypatch.chdir(tmp_path)
    p = tiny_params(tmp_path, steps=4, augment="translation,cutout", augment_fill="border", ada_target=0.6,
                    precision="fp32")
    trainer = Trainer(p, shop, tmp_path / "gen", track=False)
    assert trainer.augment.fill == "border" and trainer.augment.adaptive
    assert trainer.run().step == 4
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["augment_p"] == pytest.approx(float(trainer.augment.p))  # where the adaptive p ended
    assert "augment p " in capsys.readouterr().out  # and the progress line shows it as it moves
    with pytest.raises(ParamsError, match="augment_fill"):
        TrainParams(augment_fill="black")
