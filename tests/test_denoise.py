"""preprocess.denoise: median (Pillow) and bilateral (OpenCV) filters on each decoded image before resizing,
recorded in the prepared manifest."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FMNIST_CATEGORIES
from dataset_builder import Entry, encode, fmnist_entries, write_dataset
from PIL import Image

from productgan.data.arrays import load_manifest, load_split
from productgan.data.denoise import denoise_image
from productgan.data.preprocess import PreprocessParams, run_preprocess
from productgan.data.resize import fit_and_pad
from productgan.params import ParamsError


def _edge(size: int = 64, noise: float = 0.0, salt: float = 0.0, seed: int = 0) -> Image.Image:
    """A dark left half (40) and a bright right half (200), with Gaussian noise and salt-and-pepper specks."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 40.0)
    img[:, size // 2 :] = 200.0
    img += rng.normal(0.0, noise, img.shape)
    specks = rng.random(img.shape) < salt
    img[specks] = rng.choice([0.0, 255.0], int(specks.sum()))
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "L")


def test_median_removes_specks_and_bilateral_smooths_flat_areas_but_keeps_the_edge():
    clean = np.asarray(_edge(), np.float64)
    specked = _edge(salt=0.05)
    assert np.abs(np.asarray(denoise_image(specked, "median", 3), np.float64) - clean).mean() < 0.2 * np.abs(
        np.asarray(specked, np.float64) - clean).mean()

    noisy = _edge(noise=12.0)
    smooth = np.asarray(denoise_image(noisy, "bilateral", 5, 40.0), np.float64)
    raw = np.asarray(noisy, np.float64)
    assert smooth[:, 4:28].std() < 0.6 * raw[:, 4:28].std()  # the flat dark half: noise reduced
    # the edge between columns 31 and 32 keeps its full height (a blur would halve it at the boundary)
    assert smooth[:, 33].mean() - smooth[:, 30].mean() > 150
    assert denoise_image(noisy, "none") is noisy
    rgb = Image.merge("RGB", [noisy] * 3)
    assert denoise_image(rgb, "bilateral", 5, 40.0).mode == "RGB"


def test_photos_are_denoised_before_resizing_and_the_manifest_records_it(tmp_path):
    photo = _edge(112, salt=0.05)
    entries = [Entry("shop/Bag/specks.png", encode(photo, "PNG"), category="Bag")]
    data = write_dataset(tmp_path / "data", entries, ["Bag"])
    for method in ("none", "median", "bilateral"):
        params = PreprocessParams(val_fraction=0.0, test_fraction=0.0, denoise=method)
        run_preprocess(data, tmp_path / method, params, progress=False)
        x, _ = load_split(tmp_path / method, "train")
        # the filter ran on the 112 px photo, then the result was resized to 28 px
        assert np.array_equal(x[0], fit_and_pad(denoise_image(photo, method), 28, "auto"))
        manifest = load_manifest(tmp_path / method)
        assert manifest["params"]["denoise"] == method and manifest["params"]["denoise_size"] == 3
        assert (manifest["denoise_library"] or "none").split()[0] == {"none": "none", "median": "pillow",
                                                                      "bilateral": "opencv"}[method]
    none, median = load_split(tmp_path / "none", "train")[0], load_split(tmp_path / "median", "train")[0]
    assert not np.array_equal(none, median)


def test_idx_images_at_their_own_size_are_denoised_too(tmp_path, fmnist_small):
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    data = write_dataset(tmp_path / "data", fmnist_entries({"train": (x[:20], y[:20]), "test": (xt[:10], yt[:10])}),
                         FMNIST_CATEGORIES)
    run_preprocess(data, tmp_path / "p", PreprocessParams(denoise="median"), progress=False)
    out, _ = load_split(tmp_path / "p", "test")
    expected = np.stack([np.asarray(denoise_image(Image.fromarray(im[0]), "median")) for im in xt[:10]])
    assert np.array_equal(out[:, 0], expected) and not np.array_equal(out, xt[:10])


@pytest.mark.parametrize(("settings", "match"), [({"denoise": "gaussian"}, "denoise: must be one of"),
                                                 ({"denoise_size": 4}, "denoise_size: must be an odd window"),
                                                 ({"denoise_sigma": 0.0}, "denoise_sigma: must be positive")])
def test_bad_denoise_settings_are_refused_with_the_key(settings, match):
    with pytest.raises(ParamsError, match=f"^{match}"):
        PreprocessParams(**settings)
