"""Colour product photos (issue 32), on shots the test renders itself (coloured shapes on white): augmentations
that respect a white background and the training knobs that carry them; the FastGAN-style networks (``fastgan``:
G with skip-layer excitation, a D that rebuilds real images) train, resume bit for bit, export and serve."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import write_prepared
from PIL import Image
from train_helpers import tiny_params

from benchmarks.product_photos import SHAPES, shapes_on_white
from productgan.gan.augment import DiffAugment, border_colour, parse_policy
from productgan.gan.config import GeneratorConfig
from productgan.gan.export import load_generator
from productgan.gan.fastgan import quarter
from productgan.gan.networks import ConditionalGenerator, build_discriminator, build_generator
from productgan.gan.recipes import TrainParams
from productgan.gan.sample import generate_uint8
from productgan.gan.trainer import Trainer
from productgan.params import ParamsError

# the FastGAN-style networks at tiny width, hinge loss, D's reconstruction loss, adaptive border-filled DiffAugment;
# precision fixed: `auto` measures fp32 against bf16, and two runs that pick differently differ
FASTGAN = {"arch": "fastgan", "d_arch": "fastgan", "loss": "hinge", "augment": "color,translation,cutout",
           "augment_fill": "border", "ada_target": 0.6, "recon_weight": 1.0, "precision": "fp32"}


def fastgan_params(tmp, **settings) -> TrainParams:
    return tiny_params(tmp, **{**FASTGAN, **settings})


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


def test_fastgan_trains_exports_and_keeps_the_generator_contract(tmp_path, monkeypatch, shop):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(fastgan_params(tmp_path, steps=3), shop, tmp_path / "gen", track=False)
    result = trainer.run()
    assert result.status == "FINISHED" and result.step == 3
    assert trainer.loss.recon_weight == 1.0 and trainer.augment.adaptive and trainer.augment.fill == "border"
    G, cfg = load_generator(tmp_path / "gen")
    assert cfg.arch == "fastgan" and isinstance(G, ConditionalGenerator) and isinstance(G.fc[0], torch.nn.Linear)
    images = generate_uint8(G, [0, 1, 2], seed=4, latent_dim=cfg.latent_dim)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, generate_uint8(G, [0, 1, 2], seed=4, latent_dim=cfg.latent_dim))
    z, labels = torch.randn(2, cfg.latent_dim), torch.tensor([0, 2])
    with torch.no_grad():  # the embedding argument replaces embed(labels), as serving's class mixing uses it
        assert torch.equal(G(z, labels, embedding=G.embed(labels)), G(z, labels))
        assert not torch.equal(G(z, labels, embedding=G.embed(torch.tensor([1, 1]))), G(z, labels))


def test_fastgan_resumes_bit_for_bit(tmp_path, monkeypatch, shop):
    monkeypatch.chdir(tmp_path)
    whole = Trainer(fastgan_params(tmp_path / "a", steps=4), shop, tmp_path / "ga", track=False)
    assert whole.run().step == 4
    first = Trainer(fastgan_params(tmp_path / "b", steps=2), shop, tmp_path / "gb", track=False)
    assert first.run().step == 2
    resumed = Trainer(fastgan_params(tmp_path / "b", steps=4), shop, tmp_path / "gb", resume=True, track=False)
    assert resumed.run().step == 4
    for a, b in ((whole.G, resumed.G), (whole.D, resumed.D), (whole.ema.model, resumed.ema.model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(whole.augment.p, resumed.augment.p)
    assert whole.history["loss_d"] == resumed.history["loss_d"]
    exported = [load_generator(tmp_path / g)[0].state_dict() for g in ("ga", "gb")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])


def test_a_fastgan_generator_serves_generation_directions_interpolation_and_recolour(tmp_path, monkeypatch, shop):
    from productgan.serve.api import load

    monkeypatch.chdir(tmp_path)
    Trainer(fastgan_params(tmp_path, steps=2), shop, tmp_path / "gen", track=False).run()
    product = load(tmp_path / "gen")
    plain = np.stack([np.asarray(i) for i in product.generate("square", n=2, seed=3)])
    assert plain.shape == (2, 32, 32, 3)
    found = product.directions()  # SeFa on fc's Linear
    assert len(found) == product.params.directions
    moved = np.stack([np.asarray(i) for i in product.generate("square", n=2, seed=3, direction=0, strength=4.0)])
    assert not np.array_equal(moved, plain)
    strip = product.interpolate(categories=("circle", "triangle"), seed=1, steps=4)
    assert len(strip) == 4 and np.array_equal(np.asarray(strip[0]), np.asarray(product.generate("circle", seed=1)[0]))
    recoloured = np.asarray(product.generate("square", n=1, seed=3, color="#aa3355")[0])
    assert recoloured.shape == (32, 32, 3)


@pytest.mark.parametrize(("resolution", "channels"), [(28, 3), (32, 1), (64, 3), (128, 3), (256, 3)])
def test_fastgan_networks_at_every_size(resolution, channels):
    cfg = GeneratorConfig(arch="fastgan", resolution=resolution, channels=channels, latent_dim=8, base_channels=4,
                          categories=SHAPES)
    G, D = build_generator(cfg), build_discriminator(cfg, 4, "fastgan")
    labels = torch.tensor([0, 1, 2, 1])
    x = G(torch.randn(4, 8), labels)
    assert x.shape == (4, channels, resolution, resolution) and x.abs().max() <= 1
    logits, recon = D(x, labels, torch.tensor([0, 3]))  # the first two images are rebuilt
    assert logits.shape == (4,) and recon.ndim == 0
    (logits.sum() + recon).backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)
    assert D.decode_whole[1].weight.grad is not None and D.decode_part[1].weight.grad is not None
    D.eval()  # spectral norm's power iteration stands still: two calls see the same weights
    with torch.no_grad():
        assert torch.equal(D(x, labels), D(x, labels, torch.tensor([1]))[0])  # without quadrants: the logits alone


def test_quarter_picks_each_images_own_quadrant():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4).contiguous(memory_format=torch.channels_last)
    q = quarter(x, torch.tensor([1, 2]))
    assert torch.equal(q[0, 0], x[0, 0, :2, 2:]) and torch.equal(q[1, 0], x[1, 0, 2:, :2])


@pytest.mark.parametrize("d_arch", ["fastgan_bn", "fastgan_plain"])
def test_each_fastgan_discriminator_trains_with_its_reconstruction_loss(tmp_path, monkeypatch, shop, d_arch):
    """With BatchNorm in D real and generated images go through it apart, the real pass (the one whose decoders
    rebuild the images) last: the pass DDP syncs uses every parameter."""
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(fastgan_params(tmp_path, d_arch=d_arch), shop, tmp_path / "gen", track=False)
    assert trainer.loss.d_separate == (d_arch == "fastgan_bn")
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    assert trainer.run().status == "FINISHED"
    after = trainer.D.state_dict()
    assert not torch.equal(before["decode_whole.1.weight"], after["decode_whole.1.weight"])  # the decoders learn


def test_reconstruction_needs_the_fastgan_discriminator():
    with pytest.raises(ParamsError, match="recon_weight"):
        TrainParams(recon_weight=1.0)  # default's dcgan D has no decoders


@pytest.mark.parametrize("resolution", [128, 256])
def test_products_at_gpu_sizes_trains_under_bf16_autocast_and_compile(tmp_path, monkeypatch, resolution):
    """What a GPU run does (issue 32 item 4), at tiny widths on the CPU: the products recipe at 128 and 256 px under
    bf16 autocast, its networks through torch.compile (dynamo with the aot_eager backend: no C++ compiler needed),
    the plain weights exported."""
    import functools

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    data = write_prepared(tmp_path / "shop", {"train": shapes_on_white(6, resolution)}, SHAPES)
    p = tiny_params(tmp_path, recipe="products", steps=2, batch_size=2, precision="bf16", compile=True,
                    g_channels=2, d_channels=2)
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
    doc = json.loads((results / "products_tiny_gpu_products_128px.json").read_text())
    assert doc["resolution"] == 128 and doc["train"]["step"] == 2 and doc["train"]["images_per_s"] > 0
    assert doc["metrics"]["class_accuracy"] is not None and doc["fid_meta"] is None  # no Inception metric asked
    assert (results / "products_tiny_gpu_products_128px.png").is_file()
