"""The ``train`` section of params.yaml as typed dataclasses, with the recipes as presets.

``TrainParams`` holds the run's knobs (steps, batch, checkpoints, logging, device); ``baseline``, ``default``,
``article`` and ``article_wgan_gp`` hold each recipe's knobs (networks, loss, optimiser, EMA, augmentation,
R1). ``baseline`` is the base recipe: the others state only what differs from it, here and in params.yaml,
and are read as the baseline recipe of the file with those differences (``productgan.params.with_bases``).
The defaults here equal params.yaml (a test keeps them in step), so the step also runs where no params.yaml
exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RECIPES = ("baseline", "default", "article", "article_wgan_gp")
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class RecipeParams:
    arch: str = "dcgan"  # generator: dcgan | dcgan_deep | dcgan_cbn | dcgan_sm | resnet | mlp
    d_arch: str = "dcgan"  # discriminator: dcgan (BatchNorm) | dcgan_sn | dcgan_ln | dcgan_mbstd | resnet | mlp
    g_channels: int = 64  # generator width (channels of its last block)
    d_channels: int = 64  # discriminator width (channels of its first block)
    loss: str = "bce"  # bce (non-saturating) | hinge | ls (least squares) | wgan-gp (critic without BatchNorm)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_schedule: str = "constant"  # constant | linear | cosine: decays to lr_final_factor × lr at the last step
    lr_final_factor: float = 0.0
    lr_decay_start: float = 0.0  # share of the run at which the decay starts (0.8 = hold, then anneal)
    lr_warmup_steps: int = 0
    grad_clip: float = 0.0  # clip each network's gradient norm to this; 0 = off
    ema_kimg: float = 0.0  # EMA of G's weights (exported instead of G): half-life in 1000s of images; 0 = off
    ema_rampup: float = 0.05  # early on the half-life is at most this x the images seen; 0 = no ramp-up
    augment: str = "none"  # DiffAugment: none | auto | comma list of color,translation,cutout
    augment_p: float = 1.0  # probability of each transform per image (start value when adaptive)
    ada_target: float = 0.0  # > 0: adapt p so that E[sign D(real)] stays near this (StyleGAN2-ADA uses 0.6)
    r1_gamma: float = 0.0  # R1 penalty weight on real images; 0 = off
    r1_every: int = 16  # lazy R1: every this many steps (scaled up to keep its strength)
    n_critic: int = 1  # D updates per G update (a step); WGAN-GP uses 5
    gp_lambda: float = 10.0  # weight of WGAN-GP's gradient penalty (only with loss wgan-gp)
    g_topk: float = 1.0  # top-k training: G learns from this share of its images D rates best by the end; 1 = off
    cr_lambda: float = 0.0  # balanced consistency regularisation: D's logits on shifted real and generated images
    #                         pulled to its logits on the originals, this weight each (bCR uses 10); 0 = off


@dataclass
class BaselineRecipe(RecipeParams):
    """The classic DCGAN recipe (Radford et al. 2015): non-saturating BCE, Adam(2e-4, 0.5, 0.999)."""


@dataclass
class DefaultRecipe(RecipeParams):
    """Chosen by benchmark (benchmarks/RESULTS.md, "Quality at equal training time"): the DCGAN networks
    (the most learning per CPU second of every architecture we measured) trained at twice the classic
    learning rate, held for 75% of the run and then annealed linearly to zero; an EMA of G's weights is
    exported (with BatchNorm statistics recomputed for the averaged weights); DiffAugment when the
    dataset is small; both networks half as wide (32): about 3x the steps per CPU-second, which buys more than
    the width at equal time on both seeds measured (RESULTS.md "Quality per CPU-minute"). Spectral norm, hinge
    loss, class-conditional BN and the SN-ResNets stay knobs: none of them won at equal time here (hinge's lower
    FID∞ at 2,000 a side did not hold at 10,000, RESULTS.md "part 8")."""

    g_channels: int = 32
    d_channels: int = 32
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    lr_schedule: str = "linear"
    lr_decay_start: float = 0.75
    ema_kimg: float = 10.0
    augment: str = "auto"


@dataclass
class ArticleRecipe(RecipeParams):
    """The article's own GAN: fully connected G (128 -> 256 -> 512 -> 1024, LeakyReLU 0.2, then a dense
    layer to the image, tanh) and D (512 -> 256 -> 128, LeakyReLU 0.2, one logit), trained with BCE and
    Adam as the baseline is; class-conditional like every recipe (productgan/gan/networks.py MLP*)."""

    arch: str = "mlp"
    d_arch: str = "mlp"


@dataclass
class ArticleWganGpRecipe(RecipeParams):
    """The article's networks with its first stability remedy, a Wasserstein GAN, as Gulrajani et al. 2017
    train it: WGAN-GP loss (gradient penalty 10), 5 critic updates per generator update, Adam(1e-4, 0, 0.9).
    The article's critic has no BatchNorm, so the penalty applies as published."""

    arch: str = "mlp"
    d_arch: str = "mlp"
    loss: str = "wgan-gp"
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    n_critic: int = 5


@dataclass
class TrainParams:
    recipe: str = "default"  # baseline | default | article | article_wgan_gp
    steps: int = 69000  # optimisation steps (each: n_critic D updates, one G update); max_minutes may end sooner
    max_minutes: float | None = 10.0  # also stop after this much training time (all resumes together)
    batch_size: int = 64  # images per step and per process
    latent_dim: int = 128
    seed: int = 0
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    num_threads: int = 0  # CPU threads per process; 0 = all cores shared among local processes
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 autocast; auto: bf16 on CUDA, the faster measured on CPUs
    compile: bool = False  # torch.compile the networks (pays off on GPUs for long runs)
    channels_last: bool = True  # NHWC memory layout for images and convolutions
    checkpoint_dir: str = "checkpoints/train"
    checkpoint_every: int = 500  # steps
    keep_checkpoints: int = 2
    sync_every: int = 10  # steps between host checks (NaN guard, stop signals, time budget)
    log_every: int = 50  # steps between loss/throughput logs (MLflow, progress bar, plots)
    sample_every: int = 500  # steps between sample grids logged to MLflow
    grid_columns: int = 10  # samples per category in the grid (one row per category)
    grid_seed: int = 2024
    max_restarts: int = 3  # divergence guard: restores of the last checkpoint before the run fails
    restart_lr_factor: float = 0.5  # learning rates are multiplied by this at each restore
    max_grad_norm: float = 1e4  # a gradient norm above this counts as divergence, like a NaN loss
    augment_auto_below: int = 10000  # augment "auto": DiffAugment when the train split is smaller
    auto_augment_policy: str = "translation,cutout"
    experiment: str = "productgan"  # MLflow experiment
    metrics_file: str = "metrics/train.json"
    plots_file: str = "plots/train_loss.csv"
    baseline: BaselineRecipe = field(default_factory=BaselineRecipe)
    default: DefaultRecipe = field(default_factory=DefaultRecipe, metadata={"base": "baseline"})
    article: ArticleRecipe = field(default_factory=ArticleRecipe, metadata={"base": "baseline"})
    article_wgan_gp: ArticleWganGpRecipe = field(default_factory=ArticleWganGpRecipe, metadata={"base": "baseline"})

    def recipe_params(self) -> RecipeParams:
        if self.recipe not in RECIPES:
            raise ValueError(f"params train.recipe={self.recipe!r} is unknown; use one of {RECIPES}")
        return getattr(self, self.recipe)

    def validate(self) -> None:
        """Reject values the trainer cannot use, naming the key and the fix."""
        from productgan.gan.loss import LOSSES

        r = self.recipe_params()
        where = f"params train.{self.recipe}"
        checks = [
            (self.steps >= 0, "train.steps must be >= 0"),
            (self.batch_size >= 1, "train.batch_size must be >= 1"),
            (self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}"),
            (min(self.checkpoint_every, self.sync_every, self.log_every, self.sample_every) >= 1,
             "train.checkpoint_every, sync_every, log_every and sample_every must be >= 1"),
            (self.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
            (0 < self.restart_lr_factor <= 1, "train.restart_lr_factor must be in (0, 1]"),
            (r.loss in LOSSES, f"{where}.loss must be one of {', '.join(LOSSES)}"),
            (r.lr_schedule in SCHEDULES, f"{where}.lr_schedule must be one of {SCHEDULES}"),
            (0 <= r.lr_decay_start < 1, f"{where}.lr_decay_start must be in [0, 1)"),
            (r.ema_kimg >= 0 and r.ema_rampup >= 0, f"{where}.ema_kimg and ema_rampup must be >= 0"),
            (0 <= r.augment_p <= 1, f"{where}.augment_p must be in [0, 1]"),
            (r.r1_every >= 1, f"{where}.r1_every must be >= 1"),
            (r.n_critic >= 1, f"{where}.n_critic must be >= 1"),
            (r.gp_lambda >= 0, f"{where}.gp_lambda must be >= 0"),
            (0 < r.g_topk <= 1, f"{where}.g_topk must be in (0, 1]"),
            (r.cr_lambda >= 0, f"{where}.cr_lambda must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message} (fix params.yaml)")

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to be resumed by it (not steps or logging cadence)."""
        return {
            "recipe": self.recipe,
            "recipe_params": dataclasses.asdict(self.recipe_params()),
            "batch_size": self.batch_size,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
            "augment_auto_below": self.augment_auto_below,
            "auto_augment_policy": self.auto_augment_policy,
        }


def merged_recipes(section: dict[str, Any]) -> dict[str, Any]:
    """A ``train`` section as training reads it: each recipe merged onto its base recipe."""
    from productgan.params import with_bases

    return with_bases(TrainParams, section)
