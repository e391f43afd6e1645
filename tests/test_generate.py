"""Generation by category and seed: determinism (API and CLI), truncation, interpolation, categories by
name and index, clear errors. Uses the random-weight tiny generator (behaviour, not beauty)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from productgan.cli import cli
from productgan.gan.sample import latents, to_uint8
from productgan.resolve import find_generator_dir
from productgan.serve.api import GenerateParams, ProductGenerator, RequestError, load
from productgan.serve.edit import hue_distance, mean_hue, product_mask

REPO = Path(__file__).resolve().parents[1]


def arrays(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(i) for i in images])


@pytest.fixture()
def product(tiny_generator_dir) -> ProductGenerator:
    return load(tiny_generator_dir)


def test_same_seed_same_images(product):
    a = product.generate("Dress", n=4, seed=7)
    b = load(product.source).generate("Dress", n=4, seed=7)  # a fresh load, too
    assert len(a) == 4 and a[0].size == (28, 28) and a[0].mode == "L"
    assert np.array_equal(arrays(a), arrays(b))
    assert not np.array_equal(arrays(a), arrays(product.generate("Dress", n=4, seed=8)))
    assert len({arr.tobytes() for arr in arrays(a)}) == 4  # four different products


def test_categories_by_name_and_index(product):
    want = arrays(product.generate("Dress", n=2, seed=1))
    for same in (3, "3", "Dress", " dress ", np.int64(3)):
        assert np.array_equal(arrays(product.generate(same, n=2, seed=1)), want)
    assert product.categories[0] == "T-shirt/top"
    assert not np.array_equal(arrays(product.generate("Coat", n=2, seed=1)), want)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"category": "Hat"}, "unknown category 'Hat'; known: T-shirt/top, Trouser"),
        ({"category": 10}, "unknown category 10"),
        ({"category": "Bag", "n": 0}, "n=0 is out of range; ask for 1..64"),
        ({"category": "Bag", "n": 65}, "n=65 is out of range"),
        ({"category": "Bag", "seed": -1}, "seed=-1 is out of range"),
        ({"category": "Bag", "truncation": 0.0}, "truncation=0.0 is out of range"),
        ({"category": "Bag", "color": "#xyz"}, "is not a colour"),
    ],
)
def test_bad_requests_raise_clear_errors(product, kwargs, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        product.generate(**kwargs)


def test_output_pixels_are_limited_per_request(product):
    """images x output size^2 over generate.max_megapixels is refused before anything is made."""
    with pytest.raises(RequestError, match=r"83.89 megapixels asked in one request .* limit is 64 megapixels "
                                           r"\(params generate.max_megapixels\)"):
        product.generate("Bag", n=5, seed=1, size=4096)
    with pytest.raises(RequestError, match="67.11 megapixels"):
        product.interpolate(category="Bag", seeds=(1, 2), steps=4, size=4096)
    small = load(product.source, params=GenerateParams(max_megapixels=0.01))  # 12 images of 28x28 px
    assert len(small.generate("Bag", n=12)) == 12
    with pytest.raises(RequestError, match="0.01019 megapixels asked"):
        small.generate("Bag", n=13)


def test_truncation_trades_variety_for_typicality(product):
    wide = product.generate_arrays("Shirt", n=32, seed=3).astype(float)
    narrow = product.generate_arrays("Shirt", n=32, seed=3, truncation=0.3).astype(float)
    assert np.array_equal(narrow, product.generate_arrays("Shirt", n=32, seed=3, truncation=0.3))
    assert narrow.std(axis=0).mean() < 0.6 * wide.std(axis=0).mean()  # samples closer to each other
    assert np.array_equal(wide, product.generate_arrays("Shirt", n=32, seed=3, truncation=1.0))  # 1 = off


def test_generate_with_edits(product):
    images = product.generate("Sneaker", n=3, seed=5, color="#aa3355", rotate=15, size=64, background="transparent")
    assert [(i.mode, i.size) for i in images] == [("RGBA", (64, 64))] * 3
    plain = product.generate("Sneaker", n=3, seed=5)
    coloured = product.generate("Sneaker", n=3, seed=5, edits={"color": "#aa3355"})
    for p, c in zip(plain, coloured, strict=True):
        assert hue_distance(mean_hue(c, product_mask(p) > 0.5), 342.86) < 3.0


def test_interpolate_between_seeds(product):
    frames = product.interpolate(category="Bag", seeds=(1, 2), steps=5)
    assert len(frames) == 5
    assert np.array_equal(np.asarray(frames[0]), np.asarray(product.generate("Bag", seed=1)[0]))
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(product.generate("Bag", seed=2)[0]))
    px = [np.asarray(f, float) for f in frames]
    steps = [np.abs(px[i + 1] - px[i]).mean() for i in range(len(px) - 1)]
    assert min(steps) > 0  # it moves at every step ...
    total = np.abs(np.asarray(frames[0], float) - np.asarray(frames[-1], float)).mean()
    assert max(steps) < total  # ... in smaller steps than the whole way


def test_interpolate_between_categories_mixes_the_class_embedding(product):
    frames = product.interpolate(categories=("Dress", "Coat"), seed=4, steps=3)
    ends = [np.asarray(product.generate(c, seed=4)[0]) for c in ("Dress", "Coat")]
    assert np.array_equal(np.asarray(frames[0]), ends[0]) and np.array_equal(np.asarray(frames[-1]), ends[1])
    # the midpoint is the generator at the average embedding, not a pixel blend
    g = product.generator
    with torch.no_grad():
        z = latents(4, 1, product.config.latent_dim)
        emb = 0.5 * (g.embed.weight[3] + g.embed.weight[4])
        mid = to_uint8(g.net(g.fc(torch.cat([z, emb[None]], 1)).view(-1, g.c0, *g.map0)))[0, 0]
    assert np.abs(np.asarray(frames[1], int) - mid.astype(int)).max() <= 1


def test_interpolate_categories_without_embedding_cross_fades(product):
    class NoEmbed(torch.nn.Module):  # a generator that hides its class lookup
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.inner(z, labels)

    wrapped = ProductGenerator(NoEmbed(product.generator), product.config)
    frames = wrapped.interpolate(categories=("Dress", "Coat"), seed=4, steps=3)
    ends = [np.asarray(product.generate(c, seed=4)[0], float) for c in ("Dress", "Coat")]
    assert np.abs(np.asarray(frames[1], float) - (ends[0] + ends[1]) / 2).max() <= 1


def test_concurrent_requests_never_change_each_others_images(product):
    """16 threads share one loaded generator (as the served model's threads do): plain, interpolating
    (between categories, at two batch sizes), direction and given-latent requests interleaved; every answer
    equals the same request answered alone."""
    latent = np.linspace(-1, 1, product.config.latent_dim)
    requests = [
        lambda: product.generate("Dress", n=8, seed=7),
        lambda: product.generate("Dress", n=8, seed=3, interpolate_to=9, to_category="Coat"),
        lambda: product.generate("Bag", n=5, seed=1, interpolate_to=2, to_category="Sneaker"),
        lambda: product.generate("Coat", n=3, seed=2, direction=1, strength=2.5),
        lambda: product.generate("Sandal", latent=latent, to_category="Bag"),
        lambda: product.interpolate(categories=("Trouser", "Shirt"), seed=4, steps=6),
    ]
    alone = [arrays(make()) for make in requests]

    def client(number: int) -> list[int]:
        """Requests in an order of its own; the indexes whose answer differs from the answer alone."""
        order = [(number + k) % len(requests) for k in range(3 * len(requests))]
        return [k for k in order if not np.array_equal(arrays(requests[k]()), alone[k])]

    with ThreadPoolExecutor(16) as pool:
        differing = [k for found in pool.map(client, range(16)) for k in found]
    assert differing == []


def test_every_generator_takes_a_class_embedding_as_an_argument():
    """The interpolation contract of every architecture: ``embedding=`` replaces embed(labels), and
    ``mixed_embedding`` at weight 0 / 1 is one class / the other."""
    from productgan.gan.config import GeneratorConfig
    from productgan.gan.networks import GENERATORS, build_generator

    for arch in sorted(GENERATORS):
        cfg = GeneratorConfig(resolution=28, channels=1, latent_dim=16, base_channels=8, categories=["a", "b", "c"],
                              arch=arch)
        g = build_generator(cfg).eval()
        z, labels, other = torch.randn(2, 16), torch.tensor([0, 1]), torch.tensor([2, 2])
        with torch.no_grad():
            plain = g(z, labels)
            assert torch.equal(g(z, labels, embedding=g.embed(labels)), plain), arch
            assert torch.equal(g(z, labels, embedding=g.mixed_embedding(labels, other, torch.zeros(2, 1))), plain)
            swapped = g(z, labels, embedding=g.mixed_embedding(labels, other, torch.ones(2, 1)))
            assert torch.equal(swapped, g(z, labels, embedding=g.embed(other))), arch
            assert not torch.equal(swapped, plain), arch


def test_find_generator_dir_below_a_model_folder(tiny_generator_dir, tmp_path):
    nested = tmp_path / "model" / "artifacts"
    nested.mkdir(parents=True)
    (tiny_generator_dir).rename(nested / "generator")
    assert find_generator_dir(tmp_path / "model") == nested / "generator"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no generator.json"):
        find_generator_dir(empty)
    with pytest.raises(FileNotFoundError, match="not an MLflow URI"):
        load(tmp_path / "missing")


# --- the command line ---------------------------------------------------------------------------------


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_generate_is_deterministic(tiny_generator_dir, tmp_path, monkeypatch, cli_env):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the GenerateParams defaults apply
    args = ["generate", "--checkpoint", str(tiny_generator_dir), "--category", "T-shirt/top", "--category", "9",
            "--n", "3", "--seed", "7", "--color", "#2a8"]
    run_cli([*args, "--out", "a"])
    # the real entry point in a fresh process gives the same bytes
    subprocess.run([sys.executable, "-m", "productgan", *args, "--out", "b"], check=True, env=cli_env)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(
        [f"T-shirt-top_7_{i}.png" for i in range(3)] + [f"Ankle-boot_7_{i}.png" for i in range(3)]
        + ["grid.png", "generate.json"]
    )
    for name in names:
        if name.endswith(".png"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    grid = Image.open(tmp_path / "a" / "grid.png")
    assert grid.width >= 3 * 112 and grid.height >= 2 * 112  # upscaled cells, labelled
    record = json.loads((tmp_path / "a" / "generate.json").read_text())
    assert record["categories"] == ["T-shirt/top", "Ankle boot"] and record["edits"] == {"color": "#2a8"}
    img = Image.open(tmp_path / "a" / "T-shirt-top_7_0.png")
    direct = load(tiny_generator_dir).generate("T-shirt/top", n=3, seed=7, color="#2a8")[0]
    assert np.array_equal(np.asarray(img), np.asarray(direct))


def test_cli_errors_are_one_clear_line(tiny_generator_dir, tmp_path):
    result = CliRunner().invoke(
        cli, ["generate", "--checkpoint", str(tiny_generator_dir), "--category", "Hat", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "unknown category 'Hat'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        cli, ["generate", "--checkpoint", str(tiny_generator_dir), "--color", "bluish", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "color='bluish' is not a colour" in result.output
    result = CliRunner().invoke(cli, ["generate", "--category", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--model" in result.output and "--checkpoint" in result.output


def test_cli_interpolate_seeds_and_categories(tiny_generator_dir, tmp_path):
    out = tmp_path / "seeds.png"
    run_cli(["interpolate", "--checkpoint", str(tiny_generator_dir), "--category", "Bag", "--seeds", "1", "2",
             "--steps", "4", "--out", str(out)])
    strip = Image.open(out)
    assert strip.width > 4 * 112 and strip.height < 2 * 112
    out2 = tmp_path / "cats.png"
    run_cli(["interpolate", "--checkpoint", str(tiny_generator_dir), "--categories", "Dress", "Coat",
             "--seed", "3", "--out", str(out2), "--color", "navy"])
    assert Image.open(out2).width > GenerateParams().steps * 112


def test_cli_edit_any_photo(tmp_path):
    photo = tmp_path / "shop.jpg"
    img = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(img).rounded_rectangle((30, 20, 90, 70), radius=8, fill=(60, 90, 200))
    img.save(photo, quality=92)
    out = tmp_path / "edited.png"
    run_cli(["edit", str(photo), "--color", "#aa3355", "--scale", "0.5", "--size", "240", "--out", str(out)])
    edited = Image.open(out)
    assert edited.size == (240, 180)
    mask = product_mask(edited) > 0.5
    assert hue_distance(mean_hue(edited, mask), 342.86) < 3.0
    ys, xs = np.nonzero(mask)
    assert abs((xs.max() - xs.min() + 1) - 61 * 0.5 * 2) <= 4  # 61 px wide, halved, then doubled by --size

    clear = tmp_path / "clear.png"
    run_cli(["edit", str(photo), "--background", "transparent", "--out", str(clear)])
    assert Image.open(clear).mode == "RGBA"
    jpeg = tmp_path / "x.jpg"
    result = CliRunner().invoke(cli, ["edit", str(photo), "--background", "transparent", "--out", str(jpeg)])
    assert result.exit_code == 1 and "JPEG has no transparency" in result.output
    (tmp_path / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(cli, ["edit", str(tmp_path / "notes.txt"), "--flip", "--out", str(out)])
    assert result.exit_code == 1 and "not an image" in result.output
