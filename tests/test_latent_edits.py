"""Editing through the generator: principal directions (SeFa), latent edits from a seed or a projected
latent (another category, a strip to another product, a step along a direction), projection of a photo
(perceptual + pixel distance, encoder warm start), image edits after latent edits; the Python API and the
`project` / `directions` / `generate` commands. Tiny random generators (behaviour, not beauty)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import build_tiny_generator
from PIL import Image
from torch import nn

from productgan.cli import cli
from productgan.gan.sample import latents, to_uint8
from productgan.render import to_pil
from productgan.serve.api import ProductGenerator, RequestError, load
from productgan.serve.edit import apply_edits
from productgan.serve.edit_request import EditError, LatentEdits
from productgan.serve.latent import sefa_directions
from productgan.serve.project import ProjectParams, project, train_encoder


def arrays(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(i) for i in images])


@pytest.fixture()
def product(tiny_generator_dir) -> ProductGenerator:
    return load(tiny_generator_dir)


def test_directions_are_unit_vectors_strongest_first_the_same_on_every_load(product, tiny_generator_dir):
    found = product.directions()
    assert found.vectors.shape == (10, 32)
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(10), atol=1e-5)
    assert found.explained == sorted(found.explained, reverse=True) and 0 < sum(found.explained) <= 1
    assert torch.equal(load(tiny_generator_dir).directions().vectors, found.vectors)


def test_sefa_directions_are_the_right_singular_vectors_of_the_z_columns(product):
    """SeFa's closed form on a generator whose first Linear is set: W's z columns = U diag(s) Vᵀ, so the
    directions are V's columns by falling s, each s² / Σs² of the spectrum; the class-embedding columns play
    no part; two calls agree exactly."""
    g, dim = product.generator, 32
    linear = g.fc[0]
    rng = torch.Generator().manual_seed(1)
    u = torch.linalg.qr(torch.randn(linear.out_features, dim, generator=rng, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(dim, dim, generator=rng, dtype=torch.float64))[0]
    s = torch.linspace(3.0, 0.1, dim, dtype=torch.float64)
    with torch.no_grad():
        linear.weight[:, :dim] = (u @ torch.diag(s) @ v.T).float()
    found = sefa_directions(g, dim, count=5)
    assert found.vectors.shape == (5, dim)
    cos = (found.vectors.double() @ v[:, :5]).diagonal().abs()
    assert torch.allclose(cos, torch.ones(5, dtype=torch.float64), atol=1e-5)
    assert np.allclose(found.explained, (s[:5] ** 2 / (s**2).sum()).numpy(), atol=1e-6)
    for vec in found.vectors:  # a fixed sign: the largest component positive
        assert vec[vec.abs().argmax()] > 0
    with torch.no_grad():
        linear.weight[:, dim:] = torch.randn(linear.out_features, dim, generator=rng)
    again = sefa_directions(g, dim, count=5)
    assert torch.allclose(again.vectors, found.vectors, atol=1e-6)
    assert torch.equal(sefa_directions(g, dim, count=5).vectors, again.vectors)


@pytest.mark.parametrize(("fc", "message"), [
    (nn.Sequential(nn.Conv2d(16, 4, 1)), "ConvFirst.fc starts with Conv2d"),
    (None, "ConvFirst has no first layer `fc`"),
])
def test_sefa_refuses_a_first_layer_it_cannot_read(fc, message):
    class ConvFirst(nn.Module):
        pass

    g = ConvFirst()
    g.fc = fc
    with pytest.raises(ValueError, match=message):
        sefa_directions(g, 8)


COLOUR_CATEGORIES = ["bag", "chair", "shoe"]


def test_directions_of_a_colour_generator_change_its_colour_images(tmp_path):
    """A 32 px RGB generator: every direction offered moves every product (RGB images), the directions are the
    same on every load, and `productgan directions` draws its RGB grids."""
    folder = build_tiny_generator(tmp_path / "g", channels=3, resolution=32, categories=COLOUR_CATEGORIES)
    product = load(folder)
    found = product.directions()
    assert len(found) == product.params.directions and found.vectors.shape[1] == 32
    assert torch.equal(load(folder).directions().vectors, found.vectors)
    for name in COLOUR_CATEGORIES:
        plain = arrays(product.generate(name, n=2, seed=5))
        assert plain.shape == (2, 32, 32, 3)
        for k in range(len(found)):
            moved = arrays(product.generate(name, n=2, seed=5, direction=k, strength=3.0))
            # an untrained generator draws nearly flat images (a few levels of texture): every pixel still moves
            assert np.abs(moved.astype(float) - plain).mean() > 0.5, f"direction {k} leaves {name} unchanged"
    res = CliRunner().invoke(cli, ["directions", "--checkpoint", str(folder), "--out", str(tmp_path / "d"),
                                   "--count", "2", "--columns", "3"])
    assert res.exit_code == 0, res.output
    grid = Image.open(tmp_path / "d" / "direction_1.png")
    assert grid.mode == "RGB" and np.asarray(grid).std(-1).max() > 0  # colour, not grey
    assert json.loads((tmp_path / "d" / "directions.json").read_text())["method"] == "sefa"


def test_latent_edits_from_a_seed(product):
    plain = arrays(product.generate("Dress", n=2, seed=3))
    # a step of 0 changes nothing; a real step changes every image
    assert np.array_equal(arrays(product.generate("Dress", n=2, seed=3, direction=0, strength=0.0)), plain)
    moved = arrays(product.generate("Dress", n=2, seed=3, direction=0, strength=4.0))
    assert all(not np.array_equal(m, p) for m, p in zip(moved, plain, strict=True))
    other = arrays(product.generate("Dress", n=2, seed=3, direction=1, strength=4.0))
    assert not np.array_equal(moved, other)
    # another category with the same latent is that category's image of the seed
    assert np.array_equal(arrays(product.generate("Dress", n=2, seed=3, to_category="Bag")),
                          arrays(product.generate("Bag", n=2, seed=3)))
    # image edits come after latent edits
    edited = product.generate("Dress", n=1, seed=3, direction=0, strength=4.0, color="#aa3355", rotate=10)
    assert np.array_equal(np.asarray(edited[0]), np.asarray(apply_edits(to_pil(moved[0][None]), color="#aa3355",
                                                                           rotate=10)))


def test_interpolate_to_a_seed_gives_n_frames_between_the_two_products(product):
    frames = arrays(product.generate("Coat", n=5, seed=1, interpolate_to=9))
    assert frames.shape == (5, 28, 28)
    assert np.array_equal(frames[0], arrays(product.generate("Coat", n=1, seed=1))[0])
    assert np.array_equal(frames[-1], arrays(product.generate("Coat", n=1, seed=9))[0])
    to_bag = arrays(product.generate("Coat", n=4, seed=1, interpolate_to=9, to_category="Bag"))
    assert np.array_equal(to_bag[-1], arrays(product.generate("Bag", n=1, seed=9))[0])


def test_a_given_latent_replaces_the_seed(product):
    z = latents(4, 1, 32)[0].numpy()
    for form in (z, z.tolist(), ",".join(f"{v:.9g}" for v in z)):
        assert np.array_equal(arrays(product.generate("Sandal", latent=form)),
                              arrays(product.generate("Sandal", n=1, seed=4)))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"direction": 10, "strength": 1.0}, "direction=10 is out of range; this generator offers directions 0..9"),
    ({"direction": 1}, "direction and strength go together"),
    ({"direction": 1, "strength": 99.0}, "strength=99.0 is out of range; use -20..20"),
    ({"direction": 1.5, "strength": 1.0}, "direction=1.5 must be a whole number"),
    ({"to_category": "Hat"}, "unknown category 'Hat'"),
    ({"interpolate_to": "x.png"}, "interpolate_to='x.png' is not a seed"),
    ({"interpolate_to": 3, "n": 1}, "an interpolation needs 2..64 frames (n), got 1"),
    ({"latent": [0.1, 0.2], "n": 1}, "latent has 2 numbers; this generator's latents have 32"),
    ({"latent": "a,b", "n": 1}, "latent must be a list of numbers"),
    ({"latent": [50.0] * 32, "n": 1}, "latent values must be finite and within ±10"),
    ({"latent": [0.0] * 32, "n": 2}, "n=2 with a latent"),
])
def test_bad_latent_edits_are_refused_with_a_reason(product, kwargs, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        product.generate("Dress", **{"n": 2, **kwargs})


def test_latent_edits_parse_like_request_cells():
    assert LatentEdits.from_mapping({"direction": 2.0, "strength": "1.5", "interpolate_to": 7.0,
                                     "to_category": float("nan")}) == LatentEdits(None, "7", 2, 1.5)
    with pytest.raises(EditError, match="unknown latent edit"):
        LatentEdits.from_mapping({"angle": 3})


def _own_image(product: ProductGenerator, seed: int, label: int) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(product.generator(latents(seed, 1, 32), torch.tensor([label])))[0]


def test_projection_finds_a_generated_products_latent(product):
    target = _own_image(product, 11, 3)
    params = ProjectParams(steps=150, candidates=4, encoder=False)
    start = project(product.generator, target, 3, 32, ProjectParams(steps=0, candidates=4, encoder=False))
    found = project(product.generator, target, 3, 32, params)
    assert found.pixel_mse < 0.3 * start.pixel_mse
    assert found.latent.shape == (32,) and found.reconstruction.shape == (1, 28, 28)
    assert np.array_equal(found.reconstruction, arrays(product.generate("Dress", latent=found.latent))[0][None])
    assert found.feature_distance is None and not found.warm_start  # no feature function given: pixels only
    # a perceptual feature function joins the distance and is reported
    pooled = project(product.generator, target, 3, 32, ProjectParams(steps=5, candidates=2, encoder=False),
                     features=lambda x: torch.nn.functional.avg_pool2d(x, 4).flatten(1))
    assert pooled.feature_distance is not None and pooled.summary()["pixel_rmse_0_255"] > 0


def test_encoder_warm_start_is_trained_once_per_generator_and_cached(product, tmp_path):
    params = ProjectParams(steps=0, candidates=1, encoder_steps=30, encoder_batch_size=16)
    first = train_encoder(product.generator, 32, 10, params, cache_dir=tmp_path)
    assert len(list((tmp_path / "encoders").glob("*.safetensors"))) == 1
    again = train_encoder(product.generator, 32, 10, params, cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(),
                                                  strict=True))
    warm = project(product.generator, _own_image(product, 2, 0), 0, 32, params, encoder=first)
    assert warm.warm_start


def test_photo_array_fits_a_photo_like_preprocess(product, tmp_path):
    photo = Image.new("RGB", (56, 40), (10, 10, 10))
    photo.paste((200, 180, 160), (10, 5, 40, 35))
    assert product.photo_array(photo).shape == (1, 28, 28)
    photo.save(tmp_path / "p.png")
    assert np.array_equal(product.photo_array(str(tmp_path / "p.png")), product.photo_array(photo))
    with pytest.raises(RequestError, match="uint8"):
        product.photo_array(np.zeros((3, 28, 28), np.uint8))


@pytest.fixture()
def small_settings(tmp_path, monkeypatch, tiny_prepared):
    """A params file with a quick domain classifier and projection (the commands read params.yaml)."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "evaluate": {"classifier_steps": 20, "cache_dir": str(tmp_path / "cache")},
        "project": {"steps": 20, "candidates": 2, "encoder_steps": 20, "data": str(tiny_prepared)},
        "generate": {"steps": 4, "cell": 28},
    }))
    monkeypatch.setenv("PRODUCTGAN_PARAMS", str(path))
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))
    return path


def test_project_command_writes_reconstruction_latent_distance_and_edits(tmp_path, small_settings,
                                                                         tiny_generator_dir, fmnist_small):
    xt, yt = fmnist_small["test"]
    Image.fromarray(xt[0, 0]).save(tmp_path / "photo.png")
    out = tmp_path / "proj"
    runner = CliRunner()
    res = runner.invoke(cli, ["project", str(tmp_path / "photo.png"), "--checkpoint", str(tiny_generator_dir),
                              "--category", str(int(yt[0])), "--out", str(out), "--direction", "0", "--strength",
                              "3", "--to-category", "Bag", "--color", "navy"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "project.json").read_text())
    assert report["feature_distance"] > 0 and report["pixel_mse"] > 0 and report["warm_start"]
    assert report["latent_edits"] == {"direction": 0, "strength": 3.0, "to_category": "Bag"}
    latent = np.load(out / "latent.npy")
    assert latent.shape == (32,) and latent.dtype == np.float32
    assert Image.open(out / "edited.png").mode == "RGB"  # navy: the colour edit ran after the latent edits
    assert "feature distance" in res.output

    # the latent drives `generate --latent`: the same image as the reconstruction
    res = runner.invoke(cli, ["generate", "--checkpoint", str(tiny_generator_dir), "--category", str(int(yt[0])),
                              "--latent", str(out / "latent.npy"), "--out", str(tmp_path / "gen")])
    assert res.exit_code == 0, res.output
    made = [p for p in (tmp_path / "gen").glob("*.png") if p.name != "grid.png"]
    assert len(made) == 1
    assert np.array_equal(np.asarray(Image.open(made[0])), np.asarray(Image.open(out / "reconstruction.png")))

    # a strip to a seed, and to a second photo (projected too)
    Image.fromarray(xt[1, 0]).save(tmp_path / "photo2.png")
    for to in ("5", str(tmp_path / "photo2.png")):
        res = runner.invoke(cli, ["project", str(tmp_path / "photo.png"), "--checkpoint", str(tiny_generator_dir),
                                  "--category", "0", "--out", str(tmp_path / "strip"), "--interpolate-to", to])
        assert res.exit_code == 0, res.output
        assert Image.open(tmp_path / "strip" / "strip.png").width >= 4 * 28


def test_project_command_errors_name_the_fix(tmp_path, small_settings, tiny_generator_dir):
    Image.new("L", (28, 28)).save(tmp_path / "photo.png")
    runner = CliRunner()
    res = runner.invoke(cli, ["project", str(tmp_path / "photo.png"), "--checkpoint", str(tiny_generator_dir),
                              "--category", "0", "--out", str(tmp_path / "o"), "--data", str(tmp_path)])
    assert res.exit_code != 0 and "not a prepared dataset" in res.output
    res = runner.invoke(cli, ["project", str(tmp_path / "photo.png"), "--checkpoint", str(tiny_generator_dir),
                              "--category", "0", "--out", str(tmp_path / "o"), "--direction", "3"])
    assert res.exit_code != 0 and "direction and strength go together" in res.output


def test_directions_command_draws_one_grid_per_direction(tmp_path, small_settings, tiny_generator_dir):
    res = CliRunner().invoke(cli, ["directions", "--checkpoint", str(tiny_generator_dir), "--out",
                                   str(tmp_path / "d"), "--count", "3", "--columns", "5"])
    assert res.exit_code == 0, res.output
    index = json.loads((tmp_path / "d" / "directions.json").read_text())
    assert index["files"] == ["direction_0.png", "direction_1.png", "direction_2.png"]
    assert len(index["explained_variance"]) == 3 and index["strengths"][0] == -4.0
    assert Image.open(tmp_path / "d" / "direction_0.png").height > 10 * 28  # a row per category


def test_projection_leaves_the_shared_generator_untouched(product):
    """A served generator answers many callers at once: projecting a photo takes gradients for its latent only,
    and changes nothing on the generator (no requires_grad switched, no gradient kept in its weights)."""
    product.generator.requires_grad_(False)  # as a caller may have frozen it: a projection must not switch it back
    before = {n: p.requires_grad for n, p in product.generator.named_parameters()}
    photo = _own_image(product, 5, 1)
    project(product.generator, photo, 1, 32, ProjectParams(steps=3, candidates=2, encoder=False))
    assert {n: p.requires_grad for n, p in product.generator.named_parameters()} == before
    assert all(p.grad is None for p in product.generator.parameters())
    assert not product.generator.training
    with pytest.raises(ValueError, match="eval mode"):
        project(product.generator.train(), photo, 1, 32, ProjectParams(steps=1, candidates=2))
    product.generator.eval().requires_grad_(True)
