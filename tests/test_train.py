"""`productgan train`: both recipes at every resolution and channel count, reproducibility, the divergence
guard, checkpoints, and the MLflow run. Tiny networks and a few steps on real Fashion-MNIST images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FMNIST_CATEGORIES
from nan_injection import inject_nan
from PIL import Image
from train_helpers import prepared_at, small_prepared, tiny_params

from productgan.gan.augment import DiffAugment, parse_policy, translation
from productgan.gan.checkpoint import checkpoint_path, list_checkpoints, load_latest, save_checkpoint
from productgan.gan.export import load_generator
from productgan.gan.sample import generate_uint8
from productgan.gan.trainer import Trainer
from productgan.io import read_json
from productgan.params import ParamsError


@pytest.fixture()
def small_data(tmp_path, fmnist_small):
    return small_prepared(tmp_path, fmnist_small)

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("recipe", ["baseline", "default"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [28, 32, 64, 128])
def test_each_recipe_trains_and_exports(tmp_path, monkeypatch, fmnist_small, recipe, channels, resolution, precision):
    monkeypatch.chdir(tmp_path)
    x, y = fmnist_small["train"]
    data = prepared_at(tmp_path / "prepared", x[:32], y[:32], resolution, channels)
    # 32 images < augment_auto_below: the default recipe also runs DiffAugment here. Both precisions pinned (auto
    # would pick by timing): bf16 once made DiffAugment's shift non-finite at 128x128x3 (grid_sample)
    params = tiny_params(tmp_path, recipe=recipe, precision=precision)
    result = Trainer(params, data, tmp_path / "gen", track=False).run()
    assert result.status == "FINISHED" and result.step == 2
    G, cfg = load_generator(tmp_path / "gen")
    assert (cfg.resolution, cfg.channels, cfg.categories) == (resolution, channels, FMNIST_CATEGORIES)
    assert cfg.meta["recipe"] == recipe and cfg.meta["step"] == 2
    images = generate_uint8(G, [0, 9], seed=1, latent_dim=cfg.latent_dim)
    assert images.shape == (2, channels, resolution, resolution)
    grid = np.asarray(Image.open(tmp_path / "gen" / "grid.png"))
    assert grid.shape[0] == 10 * (resolution + 2) + 2  # one row per category
    assert read_json(tmp_path / "gen" / "run.json")["status"] == "FINISHED"


def test_seeded_runs_are_reproducible_on_cpu(tmp_path, monkeypatch, small_data):
    monkeypatch.chdir(tmp_path)
    states = []
    for i, seed in enumerate([3, 3, 4]):
        p = tiny_params(tmp_path / f"r{i}", steps=3, seed=seed)
        trainer = Trainer(p, small_data, tmp_path / f"g{i}", track=False)
        assert trainer.run().status == "FINISHED"
        states.append(trainer.ema.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_lr_schedule_and_restart_scale(tmp_path, small_data):
    p = tiny_params(tmp_path, steps=100, lr_schedule="linear", lr_warmup_steps=10,
                                                           lr_final_factor=0.1, lr_decay_start=0.0)
    t = Trainer(p, small_data, tmp_path / "g", track=False)
    assert t.lr_factor(0) == pytest.approx(0.1)
    assert t.lr_factor(10) == pytest.approx(1.0)
    assert t.lr_factor(100) == pytest.approx(0.1)
    t.lr_scale = 0.5
    assert t.lr_factor(55) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5))
    # the default recipe's shape: held until 75% of the run, then linear to 0
    held = Trainer(tiny_params(tmp_path / "h", steps=100, lr_decay_start=0.75), small_data,
                   tmp_path / "g2", track=False)
    assert held.params.lr_schedule == "linear" and held.params.lr_final_factor == 0.0
    assert [held.lr_factor(s) for s in (0, 50, 75)] == [1.0, 1.0, 1.0]
    assert held.lr_factor(90) == pytest.approx(0.4) and held.lr_factor(100) == pytest.approx(0.0)


def test_a_time_budget_is_a_step_count_measured_once_and_the_log_shows_the_clock(tmp_path, monkeypatch,
                                                                                   small_data, capsys):
    """The shipped settings: far more steps than a CPU reaches (a GPU's budget), ``max_minutes`` ends the run. A
    short warm-up turns the budget into a step count before step 0, then rolls itself back: the run is the run of
    that many steps (recorded in run.json, the checkpoint and the generator), its schedule anneals to that step,
    and each log line says how much of the budget is spent."""
    monkeypatch.chdir(tmp_path)
    p = tiny_params(tmp_path, steps=10**6, max_minutes=0.05, checkpoint_every=10**6, sample_every=10**6,
                    num_threads=1)
    t = Trainer(p, small_data, tmp_path / "g", track=False)
    result = t.run()
    budget = t.time_budget
    assert result.status == "FINISHED" and result.step == t.total_steps == budget.steps < p.steps
    assert budget.max_minutes == 0.05 and budget.warmup_steps >= 7 and budget.grid_s == 0.0  # no grid in 3 s
    assert t.progress(result.step) == 1.0 and t.lr_factor(result.step) == 0.0  # annealed to the counted end
    assert read_json(tmp_path / "g" / "run.json")["time_budget"] == budget.to_dict()
    _, state = load_latest(tmp_path / "ckpt")
    assert state["time_budget"] == budget.to_dict() and state["step"] == budget.steps
    assert load_generator(tmp_path / "g")[1].meta["time_budget"]["steps"] == budget.steps
    out = capsys.readouterr()
    assert f"time budget 0.05 min = {budget.steps:,} steps" in out.err
    assert re.search(rf"train: step \d+/{budget.steps} .* img/s( augment p \d\.\d\d)?, \d+\.\d of 0\.05 min", out.out)
    # the warm-up left no trace: the same seed and that many steps without a budget give the same weights
    same = Trainer(tiny_params(tmp_path / "n", steps=budget.steps, num_threads=1), small_data, tmp_path / "gn",
                   track=False)
    assert same.run().step == budget.steps
    assert all(torch.equal(v, same.G.state_dict()[k]) for k, v in t.G.state_dict().items())


def test_top_k_keeps_the_images_d_rates_best_and_shrinks_over_the_run(tmp_path, small_data):
    p = tiny_params(tmp_path, steps=100, g_topk=0.5, augment="none", loss="bce")
    t = Trainer(p, small_data, tmp_path / "g", track=False)
    assert [t.g_keep(s) for s in (0, 50, 100)] == pytest.approx([1.0, 0.75, 0.5])
    # G's loss counts only the images D rates most real: the others get no gradient
    fake = torch.randn(4, 1, 28, 28, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long)
    scores = torch.tensor([3.0, -2.0, 1.0, -1.0])
    t.loss.D_ddp = lambda x, y: scores * x.flatten(1)[:, 0]  # a D whose logits we know
    loss = t.loss.accumulate_g_main(fake, labels, keep=0.5)
    logits = scores * fake.detach()[:, 0, 0, 0]
    assert loss.item() == pytest.approx(torch.nn.functional.softplus(-logits.topk(2).values).mean().item())
    picked = set(logits.topk(2).indices.tolist())
    assert [bool(fake.grad[i].abs().sum() > 0) for i in range(4)] == [i in picked for i in range(4)]
    with pytest.raises(ParamsError, match="g_topk"):
        tiny_params(tmp_path, g_topk=0.0)


def test_consistency_pulls_d_on_shifted_images_to_d_on_the_originals(tmp_path, small_data):
    p = tiny_params(tmp_path, precision="fp32", cr_lambda=10.0, augment="none", loss="bce")
    t = Trainer(p, small_data, tmp_path / "g", track=False)
    assert t.loss.d_separate  # the DCGAN D has BatchNorm: real and generated batches go through it apart
    gen = torch.Generator().manual_seed(1)
    real, fake = (torch.rand(4, 1, 28, 28, generator=gen) * 2 - 1 for _ in range(2))
    labels = torch.zeros(4, dtype=torch.long)
    w = torch.randn(28 * 28, generator=gen, requires_grad=True)
    t.loss.D_ddp = lambda x, y: x.flatten(1) @ w  # a D whose logits move when the image shifts
    t.loss.gen.manual_seed(7)
    out = t.loss.accumulate_d_main(real, fake, labels)
    t.loss.gen.manual_seed(7)  # the same shifts, drawn in the order D main draws them
    shifted_real = translation(real, torch.ones(()), t.loss.gen)
    shifted_fake = translation(fake, torch.ones(()), t.loss.gen)
    assert not torch.equal(shifted_real, real)
    with torch.no_grad():
        d = {k: v.flatten(1) @ w for k, v in
             {"real": real, "fake": fake, "sreal": shifted_real, "sfake": shifted_fake}.items()}
        expected = (F.softplus(-d["real"]).mean() + F.softplus(d["fake"]).mean()
                    + 10.0 * (d["sreal"] - d["real"]).square().mean() + 10.0 * (d["sfake"] - d["fake"]).square().mean())
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert w.grad is not None and w.grad.abs().sum() > 0
    # and in the training loop, where D is the real network
    assert Trainer(p, small_data, tmp_path / "g2", track=False).run().status == "FINISHED"
    with pytest.raises(ParamsError, match="cr_lambda"):
        tiny_params(tmp_path, cr_lambda=-1.0)


@pytest.mark.parametrize("d_arch", ["dcgan", "dcgan_sn"])  # BatchNorm D (two passes) and a joint pass
def test_relativistic_loss_compares_each_batch_with_the_other_ones_mean(tmp_path, small_data, d_arch):
    relativistic_bce = {"loss": "ra-bce", "augment": "none", "d_arch": d_arch}
    p = tiny_params(tmp_path, precision="fp32", **relativistic_bce)
    t = Trainer(p, small_data, tmp_path / "g", track=False)
    gen = torch.Generator().manual_seed(1)
    real, fake = (torch.rand(4, 1, 28, 28, generator=gen) * 2 - 1 for _ in range(2))
    labels = torch.zeros(4, dtype=torch.long)
    w = torch.randn(28 * 28, generator=gen, requires_grad=True)
    t.loss.D_ddp = lambda x, y: x.flatten(1) @ w  # a D whose logits we know
    d = {k: (v.flatten(1) @ w).detach() for k, v in {"real": real, "fake": fake}.items()}
    out = t.loss.accumulate_d_main(real, fake, labels)
    expected_d = F.softplus(-(d["real"] - d["fake"].mean())).mean() + F.softplus(d["fake"] - d["real"].mean()).mean()
    assert out.loss.item() == pytest.approx(expected_d.item(), rel=1e-5)
    # G's loss mirrors D's: it moves with the real batch too, and every generated image gets a gradient
    fake_g = fake.clone().requires_grad_(True)
    loss_g = t.loss.accumulate_g_main(fake_g, labels, real=real)
    expected_g = F.softplus(-(d["fake"] - d["real"].mean())).mean() + F.softplus(d["real"] - d["fake"].mean()).mean()
    assert loss_g.item() == pytest.approx(expected_g.item(), rel=1e-5)
    assert t.loss.accumulate_g_main(fake, labels, real=-real).item() != pytest.approx(loss_g.item())
    assert (fake_g.grad.flatten(1).abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="real batch"):
        t.loss.accumulate_g_main(fake, labels)
    # and in the training loop, where D is the real network, for both relativistic objectives
    for loss in ("ra-bce", "ra-hinge"):
        q = tiny_params(tmp_path / loss, loss=loss, d_arch=d_arch)
        assert Trainer(q, small_data, tmp_path / f"g_{loss}", track=False).run().status == "FINISHED"


def test_nan_once_is_recovered_with_lower_learning_rate(tmp_path, monkeypatch, small_data):
    monkeypatch.chdir(tmp_path)
    inject_nan(monkeypatch.setattr, at_step=3, times=1)
    p = tiny_params(tmp_path, recipe="baseline", steps=6, checkpoint_every=2)
    trainer = Trainer(p, small_data, tmp_path / "g", track=False)
    result = trainer.run()
    assert result.status == "FINISHED" and result.step == 6
    assert trainer.restarts == 1 and trainer.lr_scale == 0.5
    assert all(torch.isfinite(v).all() for v in trainer.G.state_dict().values() if v.is_floating_point())
    assert result.metrics["restarts"] == 1


def test_augment_is_vectorised_differentiable_and_off_at_p0():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, requires_grad=True)
    aug = DiffAugment(parse_policy("color,translation,cutout"), torch.device("cpu"), p=1.0)
    y = aug(x, gen)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    off = DiffAugment(parse_policy("color,translation,cutout"), torch.device("cpu"), p=0.0)
    assert torch.allclose(off(x, gen), x, atol=1e-6)
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("flip")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_translation_shifts_whole_pixels_with_edges_repeated_in_any_dtype(dtype):
    n, size = 16, 128
    ramp = torch.arange(size, dtype=torch.float32)
    # channel 0 holds each pixel's column, channel 1 its row (whole numbers: exact in bf16 too)
    x = torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size)]).expand(n, 2, size, size)
    y = translation(x.to(dtype).contiguous(memory_format=torch.channels_last), torch.ones(()),
                    torch.Generator().manual_seed(0)).float()
    assert torch.isfinite(y).all()
    for image in y:
        shift_x, shift_y = int(image[0, 0, size // 2]) - size // 2, int(image[1, size // 2, 0]) - size // 2
        assert max(abs(shift_x), abs(shift_y)) <= size // 8
        assert torch.equal(image[0], (ramp + shift_x).clamp(0, size - 1).expand(size, size))
        assert torch.equal(image[1], (ramp + shift_y).clamp(0, size - 1)[:, None].expand(size, size))


def test_adaptive_p_rises_when_d_is_overconfident():
    aug = DiffAugment(("translation",), torch.device("cpu"), ada_target=0.6, ada_interval=1, ada_speed_images=100)
    for step in range(5):
        aug.observe(torch.ones(10), step, batch_images=10)  # D says "real" to every real image: overfitting
    assert float(aug.p) == pytest.approx(0.5)
    state = aug.state_dict()
    again = DiffAugment(("translation",), torch.device("cpu"), ada_target=0.6)
    again.load_state_dict(state)
    assert float(again.p) == pytest.approx(0.5)


def test_checkpoints_atomic_keep_last_and_fall_back(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    (tmp_path / ".ckpt-00000004.pt.abc.tmp").write_bytes(b"half a file")  # what a SIGKILL mid-write leaves
    checkpoint_path(tmp_path, 5).write_bytes(b"garbage")  # a damaged newest file
    path, state = load_latest(tmp_path)
    assert path == checkpoint_path(tmp_path, 3) and state["step"] == 3


def test_bad_params_are_rejected_with_the_key():
    with pytest.raises(ParamsError, match="^loss: use one of bce, hinge"):
        tiny_params(Path("."), loss="wasserstein")


@pytest.mark.parametrize("knobs", [
    {"arch": "dcgan_cbn", "d_arch": "dcgan_sn", "loss": "hinge", "grad_clip": 1.0},
    {"arch": "resnet", "d_arch": "resnet", "loss": "hinge", "r1_gamma": 1.0, "r1_every": 1, "beta1": 0.0},
    {"arch": "dcgan", "d_arch": "dcgan", "loss": "ls"},
])
def test_optional_architectures_and_losses_train(tmp_path, monkeypatch, small_data, knobs):
    monkeypatch.chdir(tmp_path)
    p = tiny_params(tmp_path, steps=2, **knobs)
    result = Trainer(p, small_data, tmp_path / "gen", track=False).run()
    assert result.status == "FINISHED" and np.isfinite(result.metrics["loss_d"])
    G, cfg = load_generator(tmp_path / "gen")
    assert cfg.arch == knobs["arch"]
    assert generate_uint8(G, [3], seed=0, latent_dim=cfg.latent_dim).shape == (1, 1, 28, 28)


def test_compiled_networks_train_and_export_plain_weights(tmp_path, monkeypatch, small_data):
    """`compile: true` goes through torch.compile (traced by dynamo; the aot_eager backend needs no C++
    compiler, so this runs on any CI box) and the weights it saves are the plain modules' (no _orig_mod)."""
    import functools

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    trainer = Trainer(tiny_params(tmp_path, steps=2, compile=True), small_data, tmp_path / "gen", track=False)
    assert trainer.G_ddp is not trainer.G  # the compiled wrapper trains
    assert trainer.run().status == "FINISHED"
    G, cfg = load_generator(tmp_path / "gen")
    assert generate_uint8(G, [0, 1], seed=0, latent_dim=cfg.latent_dim).shape == (2, 1, 28, 28)
    assert not any("_orig_mod" in k for k in load_latest(tmp_path / "ckpt")[1]["G"])


def test_resume_survives_a_comment_edit_but_not_a_code_change(tmp_path, monkeypatch, small_data, capsys):
    """The resume fingerprint covers the model code (every module training imports: device.py too, which the
    old 9-file list missed), not its comments or docstrings."""
    import shutil

    from productgan import lineage

    shutil.copytree(Path(lineage.__file__).parent, tmp_path / "src" / "productgan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lineage, "_PACKAGE_ROOT", tmp_path / "src")  # the version is read from this copy
    monkeypatch.chdir(tmp_path)
    assert Trainer(tiny_params(tmp_path, steps=2), small_data, tmp_path / "g", track=False).run().step == 2
    device = tmp_path / "src" / "productgan" / "device.py"
    text = device.read_text()
    device.write_text("# a reviewer's note\n" + text.replace('"""', '"""Reworded. ', 1))
    again = Trainer(tiny_params(tmp_path, steps=4), small_data, tmp_path / "g", resume=True, track=False)
    assert again.run().step == 4 and "at step 2" in capsys.readouterr().err
    device.write_text(text + "\nCHANGED = True\n")
    other = Trainer(tiny_params(tmp_path, steps=2), small_data, tmp_path / "g", resume=True, track=False)
    assert other.run().step == 2 and "other settings" in capsys.readouterr().err


def test_precision_auto_is_measured_once_per_machine_and_a_resume_keeps_its_choice(tmp_path, monkeypatch,
                                                                                   small_data, capsys):
    """``precision: auto`` on a CPU with native bf16 times G+D in fp32 and bf16 and keeps the faster; the answer
    is cached per machine, networks and batch (same seed, same machine: same precision, same weights), and a
    resumed run keeps the precision its checkpoint was trained in even if the machine now answers otherwise."""
    import productgan.gan.precision_probe as probe
    import productgan.gan.trainer as trainer_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))  # this test's own machine-answer cache
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)  # the probe's path on any CPU
    measured = []
    real_probe = probe.probe_cpu_precision
    monkeypatch.setattr(probe, "probe_cpu_precision", lambda *a, **k: measured.append(1) or real_probe(*a, **k))
    first = Trainer(tiny_params(tmp_path / "a", precision="auto"), small_data, tmp_path / "ga", track=False)
    assert first.precision_name in ("fp32", "bf16") and set(first.precision_probe) == {"fp32", "bf16"}
    assert first.run().status == "FINISHED"
    assert "precision auto, measured: G+D pass" in capsys.readouterr().err
    [entry] = (tmp_path / "cache" / "train_precision").glob("*.json")
    assert read_json(entry)["precision"] == first.precision_name and len(measured) == 1
    again = Trainer(tiny_params(tmp_path / "b", precision="auto"), small_data, tmp_path / "gb", track=False)
    assert again.precision_name == first.precision_name and len(measured) == 1  # read, not measured again
    assert again.run().status == "FINISHED"
    assert "measured earlier on this machine" in capsys.readouterr().err

    # the cached answer flips after a checkpoint was written in the other precision: a resume keeps the old one
    for name, after in (("bf16", "fp32"), ("fp32", "bf16")):
        doc = read_json(entry)
        entry.write_text(json.dumps({**doc, "precision": name}))
        run = Trainer(tiny_params(tmp_path / name, precision="auto"), small_data, tmp_path / f"g{name}", track=False)
        assert run.precision_name == name and run.run().step == 2
        entry.write_text(json.dumps({**doc, "precision": after}))
        resumed = Trainer(tiny_params(tmp_path / name, precision="auto", steps=3), small_data, tmp_path / f"g{name}",
                          resume=True, track=False)
        assert resumed.run().step == 3 and resumed.precision_name == name
        assert resumed.loss.amp_dtype == {"fp32": None, "bf16": torch.bfloat16}[name]
