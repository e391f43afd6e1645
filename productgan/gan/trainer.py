"""The GAN training loop: ``n_critic`` discriminator updates (usually 1) and one generator update per step,
never losing work.

Three parts, as stylegan2-ada splits them: the networks (``networks.py``), the update of one step
(``loss.py``: ``GANLoss`` runs G and D and accumulates each phase's gradients) and this loop, with the run's
records (MLflow, ``run.json``, signals, output files) in ``run.py``. Each network has two names: ``G`` and
``D`` are the modules whose weights are trained, checkpointed and exported; ``G_ddp`` and ``D_ddp`` are what
the step calls (compiled when ``compile`` is on, wrapped in DDP under ``torchrun``; else the same modules).

Speed: the train split sits in memory (on the GPU when it fits) and batches are gathered by index; all
per-step statistics stay on the device and the host reads them only every ``sync_every`` steps; images
and weights are channels_last; on CUDA the networks run under bf16 autocast and optionally torch.compile.
Data parallel: under ``torchrun`` each rank takes its slice of the global batch.

Safety: a checkpoint (G, D, EMA, optimisers, grad scaler, step, RNG and augmentation state, loss history,
MLflow run id, the id of the journal of MLflow calls kept while the store was down) is written atomically
every ``checkpoint_every`` steps and at step 0; ``--resume`` continues from the newest one, the same MLflow
run and its journal when its fingerprint (settings, data and the code that shapes the model) matches.
SIGTERM/SIGINT write a checkpoint and stop. A NaN/inf loss or an exploding gradient restores the last
checkpoint with lower learning rates, at most ``max_restarts`` times; then the run fails (MLflow status
FAILED, run.json status FAILED, no weights).

Randomness: every draw of step ``s`` (latents, augmentation) comes from a generator seeded by
(seed, s, rank, restarts), and batches are a function of (seed, s), so a resumed run continues exactly
as an uninterrupted one would (bit-for-bit on CPU). The schedule is a function of the step and the run's step
count; a ``max_minutes`` budget becomes that count once, at the start (``budget.py``), and a resume keeps it.
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from productgan.cpu_precision import CANDIDATES as PROBED
from productgan.data.arrays import load_manifest, load_split
from productgan.device import autocast_dtype, cpu_has_native_bf16
from productgan.frame import aspect_of
from productgan.gan import distributed
from productgan.gan.augment import DiffAugment, parse_policy
from productgan.gan.budget import TimeBudget, warmup_steps
from productgan.gan.checkpoint import (
    PREVIOUS,
    load_checkpoint,
    load_latest,
    remove_temp_files,
    save_checkpoint,
    set_aside_checkpoints,
)
from productgan.gan.config import GeneratorConfig, start_map
from productgan.gan.dataset import ResidentData
from productgan.gan.ema import EMA, recalibrate_batchnorm
from productgan.gan.loss import LOSSES, GANLoss
from productgan.gan.networks import build_discriminator, build_generator
from productgan.gan.precision_probe import cpu_precision
from productgan.gan.recipes import TrainParams
from productgan.gan.run import HISTORY_KEYS, RunLifecycle, TrainResult
from productgan.gan.sample import category_grid
from productgan.lineage import Lineage, model_code_version, stable_hash
from productgan.params import ParamsError

CHECKPOINT_FORMAT = "productgan-train-checkpoint/1"


class Divergence(RuntimeError):
    """A NaN/inf loss or exploding gradient was seen; the caller restores the last checkpoint."""


class TrainingFailed(RuntimeError):
    """Training cannot go on (divergence guard exhausted); the message says why and what to do."""


class Interrupted(Exception):
    """A stop signal arrived; a checkpoint has been written."""


def _grad_norm(parameters: list[nn.Parameter], clip: float) -> torch.Tensor:
    """Total gradient norm (a device tensor: no host sync); clips to ``clip`` when > 0."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(parameters, clip, foreach=True)
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, foreach=True)


def _step_seed(seed: int, step: int, rank: int, restarts: int) -> int:
    return ((seed * 1_000_003 + step) * 8191 + rank * 131_071 + restarts * 524_287) % (2**62)


class Trainer:
    def __init__(
        self,
        params: TrainParams,
        data_dir: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        resume: bool = False,
        track: bool = True,
        lineage: Lineage | None = None,
    ) -> None:
        """``lineage``: dataset version, params hash and git commit, from the command (``Lineage.current()``);
        without it the dataset version is the manifest's dataset hash and the rest is unknown."""
        self.params = params
        self.resume = resume
        self.ckpt_dir = Path(params.checkpoint_dir)
        self.ctx = distributed.setup(params.device)
        self.device = self.ctx.device
        distributed.set_threads(params.num_threads, self.ctx)

        data_dir = Path(data_dir)
        manifest = load_manifest(data_dir)
        images, labels = load_split(data_dir, "train", mmap=False)
        self.categories = [str(c) for c in manifest["categories"]]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.categories)):
            raise ValueError(f"{data_dir}: train labels outside 0..{len(self.categories) - 1}; re-run preprocess")
        channels, height, width = (int(v) for v in images.shape[1:])
        resolution, aspect = max(height, width), aspect_of(height, width)  # preprocess made the frame
        try:
            start_map(resolution, aspect)
        except ValueError as exc:
            raise ValueError(f"{data_dir}: {height}x{width} images: {exc}; re-run preprocess") from None
        self.num_train = len(labels)
        lineage = lineage or Lineage()
        # the model code's version: a checkpoint resumes only under the same (productgan.lineage.MODEL_CODE_ROOT)
        self.lineage = Lineage(lineage.dataset_version or manifest.get("dataset_hash"), lineage.params_hash,
                               lineage.git_commit, lineage.code_version or model_code_version())
        self.cfg = GeneratorConfig(
            arch=params.arch, resolution=resolution, aspect=aspect, channels=channels, latent_dim=params.latent_dim,
            base_channels=params.g_channels, categories=self.categories,
        )

        # the networks (module docstring: G/D train and export, G_ddp/D_ddp are what the step calls)
        torch.manual_seed(params.seed)  # same initial weights on every rank (DDP also broadcasts them)
        layout = torch.channels_last if params.channels_last else torch.contiguous_format
        self.G = build_generator(self.cfg).to(self.device, memory_format=layout)
        self.D = build_discriminator(self.cfg, params.d_channels, params.d_arch).to(
            self.device, memory_format=layout)
        self.G_ddp = distributed.wrap(self.G, params.compile, self.ctx)
        self.D_ddp = distributed.wrap(self.D, params.compile, self.ctx)
        r = params
        self.ema = EMA(self.G, r.ema_kimg, r.ema_rampup) if r.ema_kimg > 0 else None
        # fused Adam: one kernel for all tensors; on 2 CPU cores 10-23% more steps/s than the per-tensor loop
        fused = True if self.device.type in ("cuda", "cpu") else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=r.lr_g, betas=(r.beta1, r.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=r.lr_d, betas=(r.beta1, r.beta2), fused=fused)
        self.precision_probe: dict[str, float] = {}  # seconds per pass of each precision, when auto measured
        self.precision_cached = False
        self.amp_dtype = self._pick_precision()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        policy = r.augment
        if policy == "auto":
            policy = params.auto_augment_policy if self.num_train < params.augment_auto_below else "none"
        fill = r.augment_fill
        if fill == "auto":  # colour photos lie on a background (white): fill with it; grey data: DiffAugment's
            fill = "border" if channels >= 3 else "grey"
        self.augment = DiffAugment(parse_policy(policy), self.device, r.augment_p, r.ada_target, fill=fill)
        self.data = ResidentData(images, labels, self.device, params.batch_size, params.seed,
                                 self.ctx.rank, self.ctx.world, params.channels_last)
        self.gen = torch.Generator(self.device)
        try:
            self.loss = GANLoss(self.D, self.G_ddp, self.D_ddp, LOSSES[r.loss], self.augment, self.scaler, self.gen,
                                self.device, self.amp_dtype, r.gp_lambda, r.cr_lambda)
        except ValueError as exc:
            raise ParamsError(f"train.loss: {r.loss!r} with d_arch {r.d_arch!r} (recipe {params.recipe}): {exc}. "
                              "Fix: set train.d_arch to dcgan_ln (layer norm), dcgan_sn, resnet or mlp") from None

        self.fingerprint = stable_hash({
            **params.fingerprint_fields(), "dataset_version": self.lineage.dataset_version,
            "resolution": resolution, "aspect": aspect, "channels": channels, "categories": self.categories,
            "world": self.ctx.world,
            "code": self.lineage.code_version,
        })
        self.lifecycle = RunLifecycle(params, Path(out_dir), self.lineage, self.ctx.main, track)
        self.step = 0
        self.restarts = 0
        self.lr_scale = 1.0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.time_budget: TimeBudget | None = None  # max_minutes as a step count (budget.py), measured once
        self.total_steps = params.steps  # where the run ends: steps, or fewer when the time budget says so
        self._last_ckpt_step = -1
        self._seconds_base, self._session_t0 = 0.0, time.perf_counter()
        self._reset_accumulators()

    def _reset_accumulators(self) -> None:
        self._stat_sum = torch.zeros(6, device=self.device)
        self._stat_n = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)

    # ------------------------------------------------------------------------------------- schedule

    def _seconds(self) -> float:
        return self._seconds_base + (time.perf_counter() - self._session_t0)

    def progress(self, step: int) -> float:
        """How far the run is, 0..1, in steps of ``total_steps`` (a time budget is a step count: budget.py)."""
        t = (step - self.params.lr_warmup_steps) / max(1, self.total_steps - self.params.lr_warmup_steps)
        return min(1.0, max(0.0, t))

    def lr_factor(self, step: int) -> float:
        """Schedule x restart scale: warm-up, then constant / linear / cosine decay to lr_final_factor
        from ``lr_decay_start`` to the end of the run (see ``progress``)."""
        r = self.params
        if r.lr_warmup_steps > 0 and step < r.lr_warmup_steps:
            factor = (step + 1) / r.lr_warmup_steps
        elif r.lr_schedule == "constant":
            factor = 1.0
        else:
            # hold the rate until lr_decay_start of the run, then decay to the end
            t = max(0.0, self.progress(step) - r.lr_decay_start) / max(1e-8, 1.0 - r.lr_decay_start)
            end = r.lr_final_factor
            shape = (1.0 - t) if r.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
            factor = end + (1.0 - end) * shape
        return factor * self.lr_scale

    def g_keep(self, step: int) -> float:
        """Share of G's images whose loss counts: from 1 down to ``g_topk`` over the run (top-k training)."""
        return 1.0 - (1.0 - self.params.g_topk) * self.progress(step)

    # ------------------------------------------------------------------------------------- one step

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, network: nn.Module) -> torch.Tensor:
        """Unscale, measure (and clip) the gradient, step; returns the gradient norm."""
        self.scaler.unscale_(optimizer)
        norm = _grad_norm(list(network.parameters()), self.params.grad_clip)
        self.scaler.step(optimizer)
        return norm

    def train_step(self, step: int) -> None:
        """``n_critic`` D updates, each on its own real batch and latents, then one G update on the images of
        the last one. Batch ``step * n_critic + k`` and the step's seeded generator keep every draw a
        function of the step (resume and restarts stay exact); with ``n_critic`` 1 this is one D and one G
        update on one batch, as before there was ``n_critic``."""
        p = r = self.params
        self.gen.manual_seed(_step_seed(p.seed, step, self.ctx.rank, self.restarts))
        factor = self.lr_factor(step)
        for optimizer, lr in ((self.opt_g, r.lr_g), (self.opt_d, r.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
        for k in range(r.n_critic):
            last = k == r.n_critic - 1
            d_update = step * r.n_critic + k
            real, labels = self.data.batch(d_update)
            z = torch.randn(len(labels), p.latent_dim, device=self.device, generator=self.gen)
            fake = self.loss.generate(z, labels, keep_graph=last)
            self.opt_d.zero_grad(set_to_none=True)
            if r.r1_gamma > 0 and d_update % r.r1_every == 0:  # lazy R1: every r1_every D updates
                self.loss.accumulate_d_reg(real, labels, weight=r.r1_gamma / 2 * r.r1_every)
            d = self.loss.accumulate_d_main(real, fake, labels)
            grad_norm_d = self._optimizer_step(self.opt_d, self.D)
            if not last:
                self.scaler.update()  # the scaler unscales each optimiser once per update

        self.opt_g.zero_grad(set_to_none=True)
        loss_g = self.loss.accumulate_g_main(fake, labels, keep=self.g_keep(step), real=real)
        grad_norm_g = self._optimizer_step(self.opt_g, self.G)
        self.scaler.update()

        batch_images = self.data.global_batch
        if self.ema is not None:
            self.ema.update(self.G, (step + 1) * batch_images, batch_images)
        self.augment.observe(d.real_logits, step, batch_images, lambda t: distributed.all_sum(t, self.ctx))
        stats = torch.stack([d.loss.float(), loss_g.float(), d.real_logits.float().mean(),
                             d.fake_logits.float().mean(), grad_norm_d.float(), grad_norm_g.float()])
        self._stat_sum += stats
        self._stat_n += 1
        self._bad |= ~torch.isfinite(stats).all() | (stats[4:] > p.max_grad_norm).any()

    # ------------------------------------------------------------------------------------ the loop

    def _sync(self) -> tuple[bool, bool]:
        """The host check: (diverged, stop signal), agreed by all ranks."""
        flags = torch.stack([
            self._bad.float(),
            torch.tensor(float(self.lifecycle.stop_signal is not None), device=self.device),
        ])
        bad, stop = (v > 0 for v in distributed.all_max(flags, self.ctx).tolist())
        return bad, stop

    def _loop(self, pbar: Any) -> None:
        p = self.params
        self._mark_t, self._mark_step = time.perf_counter(), self.step
        end = self.total_steps
        while self.step < end:
            self.train_step(self.step)
            self.step += 1
            s = self.step
            log_now, sample_now, checkpoint_now = (s % p.log_every == 0, s % p.sample_every == 0,
                                                   s % p.checkpoint_every == 0)
            stop_asked = self.lifecycle.stop_signal is not None
            if not (s % p.sync_every == 0 or s == end or stop_asked or log_now or sample_now or checkpoint_now):
                continue
            diverged, stop = self._sync()
            if diverged:
                raise Divergence(f"NaN/inf loss or gradient norm above {p.max_grad_norm:g} by step {s}")
            pbar.update(s - pbar.n)
            if log_now or s == end:
                self._log(s)
            if sample_now:
                if self.ctx.main:
                    self.lifecycle.log_grid(self._grid(), s)
                self._mark_t = time.perf_counter()  # keep sampling time out of images/s
            if checkpoint_now or stop or s == end:
                self._checkpoint()
            if stop:
                raise Interrupted()

    def _log(self, step: int) -> None:
        now = time.perf_counter()
        if self._stat_n == 0:
            return
        mean = (self._stat_sum / self._stat_n).tolist()
        ips = (step - self._mark_step) * self.data.global_batch / max(now - self._mark_t, 1e-9)
        row = dict(zip(HISTORY_KEYS, [step, *mean, ips], strict=True))
        for k, v in row.items():
            self.history[k].append(float(v))
        self._stat_sum.zero_()
        self._stat_n = 0
        extra = {"lr_scale": self.lr_scale, "lr_factor": self.lr_factor(step - 1)}
        if self.augment.enabled:
            extra["augment_p"] = float(self.augment.p)
        self.lifecycle.log_interval(step, row, extra, self._seconds())
        self._mark_t, self._mark_step = time.perf_counter(), step

    def _sample_model(self) -> nn.Module:
        """The generator to sample and export: G, or a copy of the EMA with its own BatchNorm statistics
        (a copy, so the average itself and what a resume continues from are untouched)."""
        if self.ema is None:
            return self.G
        return recalibrate_batchnorm(copy.deepcopy(self.ema.model), self.params.latent_dim, len(self.categories),
                                     seed=self.params.grid_seed)

    def _grid(self, model: nn.Module | None = None) -> Any:
        model = model if model is not None else self._sample_model()
        was_training = model.training
        model.eval()
        try:
            return category_grid(model, len(self.categories), self.params.grid_columns, self.params.grid_seed,
                                 self.params.latent_dim)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------------------ checkpoints

    def _modules(self) -> list[nn.Module]:
        return [self.G, self.D] + ([self.ema.model] if self.ema is not None else [])

    def _pick_precision(self) -> torch.dtype | None:
        """``train.precision`` as autocast dtype. ``auto``: bf16 on CUDA; on a CPU with native bf16 the faster
        of fp32 and bf16 for these networks, measured (productgan/gan/precision_probe.py); else fp32. Several
        CPU processes skip the probe (each would measure its own answer) and use bf16 where native."""
        p = self.params
        if p.precision != "auto" or self.device.type != "cpu" or self.ctx.world > 1 or not cpu_has_native_bf16():
            return autocast_dtype(p.precision, self.device)
        networks = {"config": self.cfg.to_dict(), "d_arch": p.d_arch, "d_channels": p.d_channels}
        name, self.precision_probe, self.precision_cached = cpu_precision(
            self.G, self.D, p.latent_dim, len(self.categories), p.batch_size, networks)
        return PROBED[name]

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def _state(self) -> dict[str, Any]:
        rng = {"torch_cpu": torch.get_rng_state(), "step_generator": self.gen.get_state().cpu()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["torch_cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "restarts": self.restarts,
            "lr_scale": self.lr_scale,
            "train_seconds": self._seconds(),
            "time_budget": self.time_budget.to_dict() if self.time_budget else {},  # resumes keep its step count
            "precision": self.precision_name,  # what auto chose; a resume keeps it, so the run stays exact
            "run_id": self.lifecycle.run_id,
            "tracking_journal": self.lifecycle.tracker.journal_id,  # MLflow calls kept while the store was down
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "augment": self.augment.state_dict(),
            "rng": rng,
            "history": {k: list(v) for k, v in self.history.items()},
            "config": self.cfg.to_dict(),
        }

    def _checkpoint(self) -> None:
        # every rank joins (buffers are made identical first); rank 0 writes
        distributed.broadcast_buffers(self._modules(), self.ctx)
        if self.ctx.main:
            save_checkpoint(self.ckpt_dir, self.step, self._state(), keep=self.params.keep_checkpoints)
        self._last_ckpt_step = self.step
        self._mark_t = time.perf_counter()

    def _restore(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.ema is not None:
            self.ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.augment.load_state_dict(state["augment"])
        if self.params.precision == "auto" and state.get("precision") in PROBED:
            self.amp_dtype = self.loss.amp_dtype = PROBED[state["precision"]]
        torch.set_rng_state(state["rng"]["torch_cpu"])
        if "torch_cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["torch_cuda"])
        self.step, self.restarts, self.lr_scale = int(state["step"]), int(state["restarts"]), float(state["lr_scale"])
        self.history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}
        self._last_ckpt_step = self.step
        self._reset_accumulators()

    def _measure_time_budget(self) -> TimeBudget:
        """``max_minutes`` as a step count (budget.py): train a few steps from the current state, timing them and a
        sample grid, then restore that state exactly (from an in-memory checkpoint, as a resume does)."""
        p, t_start = self.params, time.perf_counter()
        snapshot = io.BytesIO()
        torch.save(self._state(), snapshot)
        checkpoint_s = time.perf_counter() - t_start
        first = self.step

        def timed(count: int, start: int) -> float:
            t0 = time.perf_counter()
            for i in range(count):
                self.train_step(start + i)
                if (i + 1) % p.sync_every == 0:
                    self._sync()
            self._sync()
            seconds = torch.tensor((time.perf_counter() - t0) / count, device=self.device)
            return float(distributed.all_max(seconds, self.ctx))  # the slowest rank sets the pace

        self.train_step(first)  # first call: allocations and one-time set-up, not a step's cost
        estimate = timed(3, first + 1)
        count = warmup_steps(estimate, p.max_minutes or 0.0)
        step_s = timed(count, first + 4)
        grid_s = 0.0
        if (p.max_minutes or 0.0) * 60 / step_s > p.sample_every:  # the run will draw grids: what one costs
            t0 = time.perf_counter()
            if self.ctx.main:
                self._grid()
            grid_s = float(distributed.all_max(torch.tensor(time.perf_counter() - t0, device=self.device), self.ctx))
        snapshot.seek(0)
        self._restore(load_checkpoint(snapshot))
        return TimeBudget.measured(p.max_minutes or 0.0, step_s, grid_s, checkpoint_s,
                                   time.perf_counter() - t_start, count + 4, p.sample_every, p.checkpoint_every)

    def _set_time_budget(self, recorded: dict[str, Any] | None) -> None:
        """The run's step count: ``steps``, or fewer as a ``max_minutes`` budget gives, measured once (a resume
        keeps the recorded count while max_minutes is the same)."""
        p = self.params
        self.time_budget = None
        if p.max_minutes:
            budget = TimeBudget.from_dict(recorded)
            if budget is not None:
                budget = budget.for_minutes(p.max_minutes, p.sample_every, p.checkpoint_every)
            self.time_budget = budget or self._measure_time_budget()
            self.lifecycle.say(self.time_budget.describe())
        self.total_steps = min(p.steps, self.time_budget.steps) if self.time_budget else p.steps
        self.lifecycle.total_steps = self.total_steps
        self.lifecycle.time_budget = self.time_budget.to_dict() if self.time_budget else None

    def _start(self) -> None:
        """Resume the newest matching checkpoint (and its MLflow run), or start a new run."""
        p, say = self.params, self.lifecycle.say
        if self.ctx.main:
            remove_temp_files(self.ckpt_dir)
        loaded = load_latest(self.ckpt_dir) if self.resume else None
        if self.resume and loaded is None:
            say(f"no checkpoint in {self.ckpt_dir}; starting a new run")
        if loaded is not None and loaded[1].get("fingerprint") != self.fingerprint:
            say(f"{loaded[0]} was made with other settings, data or code (recipe, networks, batch, seed, "
                "dataset or the model code changed: `productgan code-version` lists it); starting a new run")
            loaded = None
        distributed.barrier(self.ctx)
        if self.ctx.main:
            self.lifecycle.clean_outputs()
        self._seconds_base, self._session_t0 = 0.0, time.perf_counter()
        budget = f" or what {p.max_minutes:g} minutes allow (measured next)" if p.max_minutes else ""
        precision = self.precision_name
        if self.precision_probe:
            probe = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.precision_probe.items())
            how = "measured earlier on this machine" if self.precision_cached else "measured"
            precision = f"{precision}: precision auto, {how}: G+D pass {probe}"
        say(f"recipe {p.recipe}: up to {p.steps} steps{budget}; {self.num_train} images at "
            f"{self.cfg.frame[1]}x{self.cfg.frame[0]}x{self.cfg.channels}, batch {p.batch_size} x "
            f"{self.ctx.world} process(es) on {self.device} ({precision})")
        if loaded is None:
            if self.ctx.main:
                moved = set_aside_checkpoints(self.ckpt_dir)
                if moved:
                    say(f"moved {moved} checkpoint(s) of an earlier run to {self.ckpt_dir / PREVIOUS} "
                        "(kept until the next new run)")
            distributed.barrier(self.ctx)
            self._set_time_budget(None)
            self.lifecycle.start_tracking(None, {
                "num_train_images": self.num_train, "world_size": self.ctx.world, "device": str(self.device),
                "resolution": self.cfg.resolution, "aspect": self.cfg.aspect, "channels": self.cfg.channels,
                "augment_policy": ",".join(self.augment.policy) or "none", "augment_fill_used": self.augment.fill,
                "precision_used": self.precision_name,
                "total_steps": self.total_steps, **({"time_budget_step_ms": round(self.time_budget.step_s * 1000, 3)}
                                                    if self.time_budget else {})})
            self._checkpoint()  # step 0: a state to restore to, and the run id for --resume
        else:
            path, state = loaded
            try:
                self._restore(state)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise TrainingFailed(f"{path} cannot be restored ({exc}); run without --resume to start anew "
                                     f"(its checkpoints move to {self.ckpt_dir / PREVIOUS})") from exc
            self._seconds_base = float(state.get("train_seconds", 0.0))
            self._set_time_budget(state.get("time_budget"))
            self.lifecycle.start_tracking(state.get("run_id"), {}, state.get("tracking_journal"))
            self.lifecycle.tracker.set_tags({"resumed_at_step": self.step})
            say(f"resumed from {path} at step {self.step}")

    def _restart(self, reason: Divergence, pbar: Any) -> None:
        """Divergence guard: restore the newest checkpoint with lower learning rates, or give up."""
        p = self.params
        self.restarts += 1
        if self.restarts > p.max_restarts:
            raise TrainingFailed(
                f"training diverged ({reason}) and {p.max_restarts} restore(s) of the last checkpoint with "
                f"learning rates x{p.restart_lr_factor:g} each did not help. Fix: lower "
                f"train.{p.recipe}.lr_g/lr_d, set train.{p.recipe}.grad_clip, or check the data; "
                f"checkpoints are in {self.ckpt_dir}"
            )
        loaded = load_latest(self.ckpt_dir)
        if loaded is None:
            raise TrainingFailed(f"training diverged ({reason}) and {self.ckpt_dir} holds no checkpoint to restore")
        restarts, lr_scale = self.restarts, self.lr_scale * p.restart_lr_factor
        self._restore(loaded[1])
        self.restarts, self.lr_scale = restarts, lr_scale
        pbar.n = self.step
        pbar.refresh()
        self.lifecycle.say(f"{reason}: restored {loaded[0]} (step {self.step}) with learning rates x{lr_scale:g} "
                           f"(restore {restarts}/{p.max_restarts})")
        if self.ctx.main:
            self.lifecycle.tracker.log_metrics({"restarts": restarts, "lr_scale": lr_scale}, self.step)

    # -------------------------------------------------------------------------------- run / finish

    def run(self) -> TrainResult:
        """Train to ``steps`` (or the time budget); export on success. Never raises for a failed run."""
        try:
            with self.lifecycle.catching_signals():
                self._start()
                with self.lifecycle.progress_bar(self.step) as pbar:
                    while True:
                        try:
                            self._loop(pbar)
                            break
                        except Divergence as exc:
                            self._restart(exc, pbar)
                if self._last_ckpt_step != self.step:
                    self._checkpoint()
                return self._finish()
        except TrainingFailed as exc:
            self.lifecycle.fail(str(exc))
            return TrainResult("FAILED", self.step, self.lifecycle.run_id, str(exc), self.final_metrics(),
                               exit_code=1)
        except Interrupted:
            return self.lifecycle.interrupted(self.step, self.ckpt_dir)
        finally:
            distributed.teardown(self.ctx)

    def final_metrics(self) -> dict[str, Any]:
        h = self.history
        ips = h["images_per_s"][1:] or h["images_per_s"]  # the first interval holds warm-up
        last = {k: (h[k][-1] if h[k] else None) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
        return {
            "recipe": self.params.recipe,
            "step": self.step,
            **last,
            "images_per_s": sum(ips) / len(ips) if ips else None,
            "train_minutes": round(self._seconds() / 60, 3),
            "restarts": self.restarts,
            "world_size": self.ctx.world,
            "augment_p": float(self.augment.p) if self.augment.enabled else None,  # adaptive: where p ended
        }

    def _finish(self) -> TrainResult:
        metrics = self.final_metrics()
        if self.ctx.main:
            model = self._sample_model()
            self.cfg.meta = {
                "recipe": self.params.recipe, "step": self.step, "dataset_version": self.lineage.dataset_version,
                "params_hash": self.lineage.params_hash, "git_commit": self.lineage.git_commit,
                "code_version": self.lineage.code_version,
                "run_id": self.lifecycle.run_id, "ema": self.ema is not None,
                "time_budget": self.time_budget.to_dict() if self.time_budget else None,
            }
            self.lifecycle.finish(model, self.cfg, self._grid(model), metrics, self.history)
            self.lifecycle.say(f"done: step {self.step}, generator in {self.lifecycle.out_dir}" + (
                f" (the {self.params.max_minutes:g}-minute budget's steps)" if self.time_budget else ""))
        return TrainResult("FINISHED", self.step, self.lifecycle.run_id, "", metrics)


def train(
    params: TrainParams, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], resume: bool = False,
    lineage: Lineage | None = None,
) -> TrainResult:
    return Trainer(params, data_dir, out_dir, resume=resume, lineage=lineage).run()
