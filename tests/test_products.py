"""Colour product photos (issue 32), on shots the test renders itself (coloured shapes on white): augmentations
that respect a white background and the training knobs that carry them; what a GPU run does, at tiny sizes on the
CPU (128 and 256 px, bf16, torch.compile, and `bench_products gpu` end to end)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import write_prepared
from PIL import Image
from train_helpers import tiny_params

from benchmarks.product_photos import SHAPES, shapes_on_white
from productgan.gan.augment import DiffAugment, border_colour, parse_policy
from productgan.gan.export import load_generator
from productgan.gan.recipes import TrainParams
from productgan.gan.sample import generate_uint8
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


def test_colour_photos_train_resume_bit_exactly_and_export(tmp_path, monkeypatch, shop):
    """What `default` does on a shop's colour shots (the border fill, the augmentation's state), with the
    minibatch-stddev D and ADA that docs/own-photos.md recommends for runs of 30 minutes and every DiffAugment
    transform, stopped after 2 steps and resumed to 4, ends with the weights of 4 steps in one go; the exported
    generator makes the images."""
    monkeypatch.chdir(tmp_path)
    settings = dict(augment="color,translation,cutout", ada_target=0.6, d_arch="dcgan_mbstd", precision="fp32",
                    num_threads=1)
    straight = Trainer(tiny_params(tmp_path / "a", steps=4, **settings), shop, tmp_path / "a" / "gen", track=False)
    assert straight.augment.fill == "border" and straight.run().step == 4
    Trainer(tiny_params(tmp_path / "b", steps=2, **settings), shop, tmp_path / "b" / "gen", track=False).run()
    resumed = Trainer(tiny_params(tmp_path / "b", steps=4, **settings), shop, tmp_path / "b" / "gen", resume=True,
                      track=False)
    assert resumed.run().step == 4
    for a, b in ((straight.G, resumed.G), (straight.D, resumed.D), (straight.ema.model, resumed.ema.model)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert torch.equal(straight.augment.p, resumed.augment.p)
    generator, config = load_generator(tmp_path / "b" / "gen")
    images = generate_uint8(generator, [0, 1], seed=0, latent_dim=config.latent_dim)
    assert images.shape == (2, 3, 32, 32) and config.channels == 3


def test_augment_fill_auto_is_the_border_for_colour_photos_and_grey_for_grey_data(tmp_path, monkeypatch, shop):
    """`default` on a shop's colour shots fills with their white border; on grey data (Fashion-MNIST: `make run`) it
    keeps DiffAugment's fill, so the grey path trains exactly as before."""
    monkeypatch.chdir(tmp_path)
    x, y = shapes_on_white(16, 32)
    grey = write_prepared(tmp_path / "grey", {"train": (x[:, :1].copy(), y)}, SHAPES)
    p = tiny_params(tmp_path)
    assert TrainParams().augment_fill == p.augment_fill == "auto"
    assert Trainer(p, shop, tmp_path / "g1", track=False).augment.fill == "border"
    assert Trainer(p, grey, tmp_path / "g2", track=False).augment.fill == "grey"


@pytest.mark.parametrize("resolution", [128, 256])
def test_colour_photos_at_gpu_sizes_train_under_bf16_autocast_and_compile(tmp_path, monkeypatch, resolution):
    """What a GPU run does (issue 32 item 4), at tiny widths on the CPU: `default` with the border fill on colour
    shots at 128 and 256 px under bf16 autocast, its networks through torch.compile (dynamo with the aot_eager
    backend: no C++ compiler needed), the plain weights exported."""
    import functools

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    data = write_prepared(tmp_path / "shop", {"train": shapes_on_white(6, resolution)}, SHAPES)
    p = tiny_params(tmp_path, steps=2, batch_size=2, precision="bf16", compile=True, g_channels=2, d_channels=2,
                    augment_fill="border")
    trainer = Trainer(p, data, tmp_path / "gen", track=False)
    assert trainer.G_ddp is not trainer.G
    assert trainer.run().status == "FINISHED"
    G, cfg = load_generator(tmp_path / "gen")
    assert cfg.resolution == resolution
    assert generate_uint8(G, [0], seed=0, latent_dim=cfg.latent_dim).shape == (1, 3, resolution, resolution)


def test_the_gpu_benchmark_command_runs_end_to_end_on_a_cpu_at_tiny_size(tmp_path, monkeypatch):
    """`bench_products gpu` (photos -> ingest -> preprocess at 128 px -> train -> evaluate -> img/s and metrics
    printed and saved) on the CPU at tiny widths, so that the first GPU session measures with one command
    (benchmarks/RESULTS.md "Colour product photos" names it)."""
    from benchmarks import bench_products, results_file

    photos = tmp_path / "photos"
    x, y = shapes_on_white(24, 128)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (photos / SHAPES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(photos / SHAPES[label] / f"{i}.png")
    results = tmp_path / "results"
    monkeypatch.setattr(bench_products, "WORK_ROOT", tmp_path / "work")
    monkeypatch.setattr(bench_products, "RESULTS_DIR", results)
    monkeypatch.setattr(results_file, "RESULTS_DIR", results)
    evaluate = {"metrics": ["fd_domain", "class_accuracy"], "n": 16, "batch_size": 16, "classifier_steps": 5,
                "grid_per_category": 2}
    monkeypatch.setattr(sys, "argv", [
        "bench_products.py", "gpu", "--name", "tiny", "--photos", str(photos), "--device", "cpu", "--minutes", "5",
        "--steps", "2", "--batch", "4", "--recipe-params", json.dumps({"g_channels": 2, "d_channels": 2}),
        "--eval-params", json.dumps(evaluate)])
    bench_products.main()
    doc = json.loads((results / "products_tiny_gpu_default_128px.json").read_text())
    assert doc["resolution"] == 128 and doc["train"]["step"] == 2 and doc["train"]["images_per_s"] > 0
    assert doc["metrics"]["class_accuracy"] is not None and doc["fid_meta"] is None  # no Inception metric asked
    assert (results / "products_tiny_gpu_default_128px.png").is_file()


def test_a_bench_run_in_parts_keeps_the_earlier_rows_and_refuses_other_settings(tmp_path, monkeypatch):
    """A second seed measured later joins the file of the first (rows of the same variant and seed are replaced,
    every command is kept in ``measured_by``); a file measured with other settings stops the command before it
    measures anything, naming the file and --save-suffix."""
    from benchmarks import bench_products

    monkeypatch.setattr(bench_products, "RESULTS_DIR", tmp_path)
    settings = {"minutes": 30.0, "cores": 2, "batch": 64, "precision": "bf16"}

    def measured(rows: list[dict]) -> dict:
        doc = bench_products.with_earlier_rows("w_run_30min", {"dataset": "w", "rows": rows}, settings,
                                               key=lambda r: (r["variant"], r["seed"]))
        (tmp_path / "products_w_run_30min.json").write_text(json.dumps(doc))
        return doc

    measured([{"variant": "a", "seed": 0, "fid2k": 80.0}, {"variant": "b", "seed": 0, "fid2k": 70.0}])
    doc = measured([{"variant": "a", "seed": 1, "fid2k": 81.0}, {"variant": "b", "seed": 0, "fid2k": 69.0}])
    assert [(r["variant"], r["seed"], r["fid2k"]) for r in doc["rows"]] == [("a", 0, 80.0), ("a", 1, 81.0),
                                                                              ("b", 0, 69.0)]
    assert len(doc["measured_by"]) == 2 and doc["batch"] == 64
    with pytest.raises(SystemExit, match="products_w_run_30min.json.*--save-suffix"):
        bench_products.earlier_result("w_run_30min", {**settings, "batch": 32})
