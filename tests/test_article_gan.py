"""The article's GAN (recipe `article`: fully connected G and D) and its Wasserstein remedy (loss `wgan-gp`,
recipe `article_wgan_gp`): networks at every size, n_critic D updates per step, the gradient penalty, the
refusal of BatchNorm critics, exact resume, and the recipes as rows over the classic DCGAN."""

from __future__ import annotations

import pytest
import torch
from train_helpers import prepared_at, small_prepared, tiny_params

from productgan.gan.checkpoint import load_latest
from productgan.gan.config import GeneratorConfig
from productgan.gan.export import load_generator
from productgan.gan.loss import LOSSES, gradient_penalty
from productgan.gan.networks import build_discriminator, build_generator
from productgan.gan.recipes import RECIPES, TrainParams
from productgan.gan.trainer import Trainer
from productgan.params import ParamsError


@pytest.fixture()
def small_data(tmp_path, fmnist_small):
    return small_prepared(tmp_path, fmnist_small)


def test_mlp_networks_have_the_articles_layers_at_width_64():
    cfg = GeneratorConfig(arch="mlp", resolution=28, channels=1, latent_dim=128, base_channels=64,
                          categories=list("abcdefghij"))
    G, D = build_generator(cfg), build_discriminator(cfg, 64, "mlp")
    g_dense = [m.out_features for m in G.modules() if isinstance(m, torch.nn.Linear)]
    d_dense = [m.out_features for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert g_dense == [128, 256, 512, 1024, 28 * 28]
    assert d_dense == [512, 256, 128, 1]
    leaky = [m.negative_slope for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.LeakyReLU)]
    assert leaky == [0.2] * 7


@pytest.mark.parametrize(("resolution", "channels"), [(28, 1), (32, 3), (64, 1), (128, 3)])
def test_mlp_and_layer_norm_critic_at_every_size(resolution, channels):
    cfg = GeneratorConfig(arch="mlp", resolution=resolution, channels=channels, latent_dim=8, base_channels=4,
                          categories=["a", "b", "c"])
    G = build_generator(cfg)
    labels = torch.tensor([0, 1, 2, 1])
    x = G(torch.randn(4, 8), labels)
    assert x.shape == (4, channels, resolution, resolution) and x.abs().max() <= 1
    for d_arch in ("mlp", "dcgan_ln"):
        D = build_discriminator(cfg, 4, d_arch)
        D(G(torch.randn(4, 8), labels), labels).sum().backward()
    assert all(p.grad is not None for p in G.parameters())


@pytest.mark.parametrize("recipe", ["article", "article_wgan_gp"])
def test_article_recipes_train_and_export(tmp_path, monkeypatch, fmnist_small, recipe):
    monkeypatch.chdir(tmp_path)
    x, y = fmnist_small["train"]
    data = prepared_at(tmp_path / "prepared", x[:32], y[:32], 32, 3)
    trainer = Trainer(tiny_params(tmp_path, recipe), data, tmp_path / "gen", track=False)
    result = trainer.run()
    assert result.status == "FINISHED" and result.step == 2
    G, cfg = load_generator(tmp_path / "gen")
    assert cfg.arch == "mlp" and cfg.meta["recipe"] == recipe
    assert G(torch.randn(2, cfg.latent_dim), torch.tensor([0, 9])).shape == (2, 3, 32, 32)
    # n_critic D updates per step, one G update: Adam's step counters say how many updates each network had
    n_critic = trainer.params.n_critic
    assert n_critic == (5 if recipe == "article_wgan_gp" else 1)
    d_steps = {int(s["step"]) for s in trainer.opt_d.state_dict()["state"].values()}
    g_steps = {int(s["step"]) for s in trainer.opt_g.state_dict()["state"].values()}
    assert d_steps == {2 * n_critic} and g_steps == {2}


def test_wgan_gp_is_the_published_recipe():
    r, article = TrainParams.of_recipe("article_wgan_gp"), TrainParams.of_recipe("article")
    assert (r.loss, r.gp_lambda, r.n_critic, r.lr_g, r.lr_d, r.beta1, r.beta2) == ("wgan-gp", 10.0, 5, 1e-4, 1e-4,
                                                                                     0.0, 0.9)
    assert (r.arch, r.d_arch) == (article.arch, article.d_arch) == ("mlp", "mlp")
    wgan = LOSSES["wgan-gp"]
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert float(wgan.d_real(real) + wgan.d_fake(fake)) == pytest.approx(-2.5)  # E[D(fake)] - E[D(real)]
    assert float(wgan.g(fake)) == pytest.approx(0.5) and wgan.gradient_penalty


def test_least_squares_loss_is_lsgans_0_1_1_coding():
    ls = LOSSES["ls"]
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert float(ls.d_real(real)) == pytest.approx(1.0)  # mean of (0, 4) / 2
    assert float(ls.d_fake(fake)) == pytest.approx(0.25)  # mean of (1, 0) / 2
    assert float(ls.g(fake)) == pytest.approx(1.25)  # mean of (4, 1) / 2
    assert not (ls.gradient_penalty or ls.relativistic)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2."""
    w = torch.full((1, 2, 2), 1.5)  # ||w|| = 3
    x = torch.randn(5, 1, 2, 2, requires_grad=True)
    logits = (x * w).flatten(1).sum(1)
    assert float(gradient_penalty(logits, x)) == pytest.approx(4.0)


def test_wgan_gp_with_a_batchnorm_critic_is_refused_with_the_fix(tmp_path, small_data):
    p = tiny_params(tmp_path, loss="wgan-gp")  # default recipe: DCGAN D with BatchNorm
    with pytest.raises(ParamsError, match=r"train.loss: 'wgan-gp' with d_arch 'dcgan'.*BatchNorm.*d_arch to dcgan_ln"):
        Trainer(p, small_data, tmp_path / "g", track=False)


def test_wgan_gp_trains_a_layer_norm_dcgan_critic(tmp_path, monkeypatch, small_data):
    monkeypatch.chdir(tmp_path)
    p = tiny_params(tmp_path, loss="wgan-gp", d_arch="dcgan_ln", n_critic=2)
    assert Trainer(p, small_data, tmp_path / "g", track=False).run().status == "FINISHED"


def test_resumed_wgan_gp_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, small_data):
    """n_critic batches per step are a function of the step: a resumed run continues bit for bit."""
    monkeypatch.chdir(tmp_path)
    straight = Trainer(tiny_params(tmp_path / "a", "article_wgan_gp", steps=4), small_data, tmp_path / "ga",
                       track=False)
    assert straight.run().step == 4
    first = Trainer(tiny_params(tmp_path / "b", "article_wgan_gp", steps=2), small_data, tmp_path / "gb",
                    track=False)
    assert first.run().step == 2
    resumed = Trainer(tiny_params(tmp_path / "b", "article_wgan_gp", steps=4), small_data, tmp_path / "gb",
                      resume=True, track=False)
    assert resumed.run().step == 4
    for name in ("G", "D"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # n_critic is part of what a checkpoint must share with the run that resumes it
    _, state = load_latest(tmp_path / "b" / "ckpt")
    other = Trainer(tiny_params(tmp_path / "b", "article_wgan_gp", steps=6, n_critic=4),
                    small_data, tmp_path / "gb", resume=True, track=False)
    assert other.fingerprint != state["fingerprint"]


def test_article_recipes_are_rows_over_the_classic_dcgan():
    """``article`` is the classic DCGAN recipe (``baseline``) with the article's dense networks."""
    assert RECIPES["article"] == {**RECIPES["baseline"], "arch": "mlp", "d_arch": "mlp"}
