"""The ``train`` settings: one dataclass (``TrainParams``, its defaults are the shipped ``default`` recipe) and
the recipes as a table of overrides on it, as stylegan2-ada's ``cfg_specs``.

A recipe is one row of ``RECIPES``: the knobs it sets differently from the dataclass. params.yaml's
``train.recipe`` (or ``--recipe``) chooses the row; what params.yaml states wins over the row, and a
command-line option over both (``productgan.params.resolve``; ``productgan params show --recipe R`` prints
the result and where each value came from).

To add a recipe: a row in RECIPES (the knobs it changes, ``**`` another row to start from it). To add a knob:
a field of TrainParams with its default and a comment, and its check in ``__post_init__`` when a value
can be wrong; every recipe has it, params.yaml may set it, `productgan params write` puts it in
params.effective.yaml (the file DVC tracks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from productgan.params import require

SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")

# The classic DCGAN (Radford et al. 2015): non-saturating BCE, Adam(2e-4, 0.5, 0.999), full width, no EMA,
# no augmentation.
_DCGAN: dict[str, Any] = dict(g_channels=64, d_channels=64, lr_g=2e-4, lr_d=2e-4, lr_schedule="constant",
                              lr_decay_start=0.0, ema_kimg=0.0, augment="none")
# The article's own GAN: fully connected G (128 -> 256 -> 512 -> 1024, LeakyReLU 0.2, a dense layer to the
# image, tanh) and D (512 -> 256 -> 128, LeakyReLU 0.2, one logit), BCE and Adam as the classic DCGAN;
# class-conditional like every recipe (productgan/gan/networks.py MLP*: how it differs from the listing).
_ARTICLE: dict[str, Any] = {**_DCGAN, "arch": "mlp", "d_arch": "mlp"}

RECIPES: dict[str, dict[str, Any]] = {
    "baseline": _DCGAN,
    # Chosen by benchmark (benchmarks/RESULTS.md "Quality at equal training time", "Quality per CPU-minute"):
    # the dataclass's defaults below.
    "default": {},
    "article": _ARTICLE,
    # The article's networks with its first stability remedy, a Wasserstein GAN, as Gulrajani et al. 2017 train
    # it: gradient penalty 10, 5 critic updates per G update, Adam(1e-4, 0, 0.9); its critic has no BatchNorm.
    "article_wgan_gp": {**_ARTICLE, "loss": "wgan-gp", "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.0, "beta2": 0.9,
                        "n_critic": 5},
}


@dataclass
class TrainParams:
    """The run's knobs (budget, batch, device, checkpoints, logging) and the recipe's (networks, loss,
    optimiser, schedule, EMA, augmentation, regularisers). The defaults are the ``default`` recipe, chosen by
    benchmark: the DCGAN networks (the most learning per CPU second of every architecture measured) at half
    the classic width (3x the steps per CPU-second, which buys more than the width at equal time on both seeds
    measured), twice the classic learning rate held for 75% of the run then annealed linearly to zero, an EMA
    of G exported (BatchNorm statistics recomputed for the averaged weights), DiffAugment on small datasets.
    Spectral norm, hinge loss, class-conditional BN and the SN-ResNets stay knobs: none of them won at equal
    time here (benchmarks/RESULTS.md)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = RECIPES
    PRESET_KEY: ClassVar[str] = "recipe"
    # Knobs that only place, pace or record the run: a new value neither changes the trained generator (the
    # retrain check's params hash leaves them out, productgan.lineage) nor stops a resume.
    NOT_MODEL: ClassVar[frozenset[str]] = frozenset({
        "device", "num_threads", "checkpoint_dir", "checkpoint_every", "keep_checkpoints", "sync_every",
        "log_every", "sample_every", "grid_columns", "grid_seed", "experiment", "metrics_file", "plots_file"})
    # Knobs a resumed run may change: its length (a linear/cosine schedule stretches to the new end), how it
    # runs (the recorded precision is kept) and the divergence guard.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({
        "steps", "max_minutes", "precision", "compile", "channels_last", "max_restarts", "restart_lr_factor",
        "max_grad_norm"})

    recipe: str = "default"  # a row of RECIPES: baseline | default | article | article_wgan_gp; --recipe overrides
    # --- the run
    steps: int = 69000  # optimisation steps (each n_critic D updates and one G update); --steps overrides. 4x what
    #                     2 CPU cores train in 10 minutes (benchmarks/RESULTS.md parts 9-10): a GPU run stops here
    max_minutes: float | None = 10.0  # also a time budget (null = none): turned into a step count once, at the
    #                     start, from a measured warm-up; on 2 CPU cores it ends `make run` after ~10 minutes
    batch_size: int = 64  # images per step and per process (DDP: x number of processes)
    latent_dim: int = 128
    seed: int = 0
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    num_threads: int = 0  # CPU threads per process; 0 = the cores shared among local processes
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 autocast. auto: bf16 on CUDA; on a CPU with native bf16
    #                          the faster of fp32 and bf16, measured at start (seconds); else fp32
    compile: bool = False  # torch.compile the networks (pays off on GPUs for long runs)
    channels_last: bool = True  # NHWC layout for images and convolutions
    checkpoint_dir: str = "checkpoints/train"
    checkpoint_every: int = 500  # steps; also at step 0, at the end and on SIGTERM
    keep_checkpoints: int = 2
    sync_every: int = 10  # steps between host checks (NaN guard, stop signals)
    log_every: int = 50  # steps between loss / images-per-second logs (MLflow, progress, plots)
    sample_every: int = 500  # steps between sample grids logged to MLflow
    grid_columns: int = 10  # samples per category in the grid (one row per category)
    grid_seed: int = 2024
    max_restarts: int = 3  # divergence guard: restores of the last checkpoint before the run fails
    restart_lr_factor: float = 0.5  # learning rates are multiplied by this at each restore
    max_grad_norm: float = 1e4  # a gradient norm above this counts as divergence, like a NaN loss
    augment_auto_below: int = 10000  # augment "auto" turns DiffAugment on below this many train images
    auto_augment_policy: str = "translation,cutout"
    experiment: str = "productgan"  # MLflow experiment
    metrics_file: str = "metrics/train.json"
    plots_file: str = "plots/train_loss.csv"
    # --- the recipe (a row of RECIPES overrides some of these)
    arch: str = "dcgan"  # generator: dcgan | dcgan_deep | dcgan_cbn (class-conditional BatchNorm) | dcgan_sm
    #                      (self-modulated BatchNorm) | resnet | mlp
    d_arch: str = "dcgan"  # discriminator: dcgan (BatchNorm) | dcgan_sn (spectral norm) | dcgan_ln (layer norm) |
    #                        dcgan_mbstd (+ minibatch standard deviation map) | resnet | mlp
    g_channels: int = 32  # generator width (channels of its last block; mlp: hidden layers 2, 4, 8, 16 x this)
    d_channels: int = 32  # discriminator width (channels of its first block; mlp: hidden layers 8, 4, 2 x this)
    loss: str = "bce"  # bce (non-saturating) | hinge | ls (least squares, LSGAN) | wgan-gp (Wasserstein + gradient
    #                    penalty; needs a critic without BatchNorm: d_arch dcgan_ln, dcgan_sn, resnet or mlp) |
    #                    ra-bce / ra-hinge (relativistic average: each batch judged against the other one's mean)
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_schedule: str = "linear"  # constant | linear | cosine: to lr_final_factor x lr at the last step
    lr_final_factor: float = 0.0
    lr_decay_start: float = 0.75  # share of the run at which the decay starts (0.75: hold, then anneal)
    lr_warmup_steps: int = 0
    grad_clip: float = 0.0  # clip each network's gradient norm to this; 0 = off
    ema_kimg: float = 10.0  # EMA of G's weights (exported instead of G): half-life in 1000s of images; 0 = off
    ema_rampup: float = 0.05  # early on the half-life is at most this x the images seen; 0 = no ramp-up
    augment: str = "auto"  # DiffAugment: none | auto | comma list of color,translation,cutout
    augment_p: float = 1.0  # probability of each transform per image (unused when adaptive: ADA starts p at 0)
    augment_fill: str = "auto"  # what translation and cutout uncover: grey (DiffAugment: edge rows repeated, mid-grey
    #                             boxes) | border (each image's border colour: the white of a catalogue shot) | auto:
    #                             border on colour data (3 or 4 channels), grey on grey data such as Fashion-MNIST
    ada_target: float = 0.0  # > 0: adapt p so that E[sign D(real)] stays near this (StyleGAN2-ADA uses 0.6)
    r1_gamma: float = 0.0  # R1 penalty weight on real images; 0 = off
    r1_every: int = 16  # lazy R1: every this many D updates (scaled up to keep its strength)
    n_critic: int = 1  # D updates per G update (a step); WGAN-GP uses 5
    gp_lambda: float = 10.0  # weight of WGAN-GP's gradient penalty (only with loss wgan-gp)
    g_topk: float = 1.0  # top-k training: G learns from this share of its images D rates best by the end; 1 = off
    cr_lambda: float = 0.0  # balanced consistency regularisation (Zhao et al. 2021): D's logits on shifted real and
    #                         generated images pulled to those on the originals, this weight each (paper: 10); 0 = off

    def __post_init__(self) -> None:
        from productgan.gan.augment import FILLS, parse_policy
        from productgan.gan.loss import LOSSES
        from productgan.gan.networks import DISCRIMINATORS, GENERATORS

        require(self.recipe in RECIPES, "recipe", f"use one of {', '.join(RECIPES)}, got {self.recipe!r}")
        require(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        require(self.max_minutes is None or self.max_minutes > 0, "max_minutes",
                f"must be > 0 or null (no time budget), got {self.max_minutes}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.precision in PRECISIONS, "precision", f"use one of {', '.join(PRECISIONS)}")
        for key in ("checkpoint_every", "sync_every", "log_every", "sample_every", "keep_checkpoints"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(0 < self.restart_lr_factor <= 1, "restart_lr_factor", "must be in (0, 1]")
        require(self.arch in GENERATORS, "arch", f"use one of {', '.join(sorted(GENERATORS))}, got {self.arch!r}")
        require(self.d_arch in DISCRIMINATORS, "d_arch",
                f"use one of {', '.join(sorted(DISCRIMINATORS))}, got {self.d_arch!r}")
        require(self.loss in LOSSES, "loss", f"use one of {', '.join(LOSSES)}, got {self.loss!r}")
        for key, policy in (("augment", self.augment.replace("auto", "none")),
                            ("auto_augment_policy", self.auto_augment_policy)):
            try:
                parse_policy(policy)
            except ValueError as exc:
                require(False, key, str(exc))
        require(self.lr_schedule in SCHEDULES, "lr_schedule", f"use one of {', '.join(SCHEDULES)}")
        require(0 <= self.lr_decay_start < 1, "lr_decay_start", "must be in [0, 1)")
        for key in ("ema_kimg", "ema_rampup", "gp_lambda", "cr_lambda", "r1_gamma", "grad_clip"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        require(0 <= self.augment_p <= 1, "augment_p", "must be in [0, 1]")
        require(self.augment_fill in ("auto", *FILLS), "augment_fill",
                f"use auto or one of {', '.join(FILLS)}, got {self.augment_fill!r}")
        require(self.r1_every >= 1, "r1_every", "must be >= 1")
        require(self.n_critic >= 1, "n_critic", "must be >= 1")
        require(0 < self.g_topk <= 1, "g_topk", "must be in (0, 1]")

    @classmethod
    def of_recipe(cls, recipe: str, **settings: Any) -> TrainParams:
        """Recipe ``recipe``'s row over the defaults, then ``settings`` (as params.yaml would state them)."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
        return cls(**{**RECIPES[recipe], **settings, "recipe": recipe})

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to be resumed by it (see NOT_MODEL and RESUMABLE)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_MODEL | self.RESUMABLE}
