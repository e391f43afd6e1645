"""The GAN training loop: one discriminator and one generator update per step, never losing work.

Speed: the train split sits in memory (on the GPU when it fits) and batches are gathered by index; all
per-step statistics stay on the device and the host reads them only every ``sync_every`` steps; images
and weights are channels_last; on CUDA the networks run under bf16 autocast and optionally torch.compile.
Data parallel: under ``torchrun`` both networks are wrapped in DDP and each rank takes its slice of the
global batch.

Safety: a checkpoint (G, D, EMA, optimisers, grad scaler, step, RNG and augmentation state, loss history,
MLflow run id) is written atomically every ``checkpoint_every`` steps and at step 0; ``--resume``
continues from the newest one and the same MLflow run. SIGTERM/SIGINT write a checkpoint and stop.
A NaN/inf loss or an exploding gradient restores the last checkpoint with lower learning rates, at most
``max_restarts`` times; then the run fails (MLflow status FAILED, run.json status FAILED, no weights).

Randomness: every draw of step ``s`` (latents, augmentation) comes from a generator seeded by
(seed, s, rank, restarts), and batches are a function of (seed, s), so a resumed run continues exactly
as an uninterrupted one would (bit-for-bit on CPU).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import io
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from productgan.data.arrays import load_manifest, load_split
from productgan.gan import distributed
from productgan.gan.augment import DiffAugment, parse_policy
from productgan.gan.checkpoint import PREVIOUS, load_latest, remove_temp_files, save_checkpoint, set_aside_checkpoints
from productgan.gan.config import GeneratorConfig, start_size
from productgan.gan.dataset import ResidentData
from productgan.gan.ema import EMA, recalibrate_batchnorm
from productgan.gan.export import CONFIG, WEIGHTS, save_generator
from productgan.gan.losses import check_loss, d_fake_loss, d_real_loss, g_loss, r1_penalty
from productgan.gan.networks import build_discriminator, build_generator
from productgan.gan.recipes import TrainParams
from productgan.gan.sample import category_grid, save_png
from productgan.gan.tracking import Tracker
from productgan.io import atomic_open, atomic_write_json
from productgan.lineage import dataset_version, git_commit, model_params_hash, params_hash
from productgan.params import load_params

CHECKPOINT_FORMAT = "productgan-train-checkpoint/1"
RUN_FILE = "run.json"
GRID_FILE = "grid.png"
# Test hook (documented in README ## Train): make the D loss NaN at this step, to exercise the guard.
INJECT_NAN_ENV = "PRODUCTGAN_INJECT_NAN_AT_STEP"
INJECT_NAN_TIMES_ENV = "PRODUCTGAN_INJECT_NAN_TIMES"  # how many times (default: every time the step runs)
HISTORY_KEYS = ("step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "images_per_s")


class Divergence(RuntimeError):
    """A NaN/inf loss or exploding gradient was seen; the caller restores the last checkpoint."""


class TrainingFailed(RuntimeError):
    """Training cannot go on (divergence guard exhausted); the message says why and what to do."""


class Interrupted(Exception):
    """A stop signal arrived; a checkpoint has been written."""


@dataclass
class TrainResult:
    status: str  # FINISHED | FAILED | INTERRUPTED
    step: int
    run_id: str | None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0


def code_version() -> str:
    """Hash of the training code (productgan/gan/*.py): a checkpoint only resumes under the same code."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _grad_norm(params: list[nn.Parameter], clip: float) -> torch.Tensor:
    """Total gradient norm (a device tensor: no host sync); clips to ``clip`` when > 0."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, foreach=True)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic (AVX512-BF16 or AMX): there bf16 autocast nearly doubles speed."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision in use: bf16/fp16 on CUDA; bf16 on CPUs with native bf16; else None (fp32)."""
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if device.type == "cpu" and precision == "bf16" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


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
    ) -> None:
        params.validate()
        self.p, self.r = params, params.recipe_params()
        check_loss(self.r.loss)
        self.data_dir, self.out_dir, self.resume = Path(data_dir), Path(out_dir), resume
        self.ckpt_dir = Path(params.checkpoint_dir)
        self.ctx = distributed.setup(params.device)
        self.device = self.ctx.device
        self._cuda = self.device.type == "cuda"
        self._set_threads()

        manifest = load_manifest(self.data_dir)
        images, labels = load_split(self.data_dir, "train", mmap=False)
        self.categories = [str(c) for c in manifest["categories"]]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.categories)):
            raise ValueError(f"{self.data_dir}: train labels outside 0..{len(self.categories) - 1}; re-run preprocess")
        channels, resolution = int(images.shape[1]), int(images.shape[2])
        start_size(resolution)  # rejects unsupported resolutions with a clear message
        self.dataset_version = dataset_version() or manifest.get("dataset_hash")
        self.cfg = GeneratorConfig(
            arch=self.r.arch, resolution=resolution, channels=channels, latent_dim=params.latent_dim,
            base_channels=self.r.g_channels, categories=self.categories,
        )
        self.num_train = len(labels)

        torch.manual_seed(params.seed)  # same initial weights on every rank (DDP also broadcasts them)
        mf = torch.channels_last if params.channels_last else torch.contiguous_format
        self.g_net = build_generator(self.cfg).to(self.device, memory_format=mf)
        self.d_net = build_discriminator(self.cfg, self.r.d_channels, self.r.d_arch or None).to(
            self.device, memory_format=mf)
        self.ema = EMA(self.g_net, self.r.ema_kimg, self.r.ema_rampup) if self.r.ema_kimg > 0 else None
        betas = (self.r.beta1, self.r.beta2)
        fused = True if self._cuda else None
        self.opt_g = torch.optim.Adam(self.g_net.parameters(), lr=self.r.lr_g, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.d_net.parameters(), lr=self.r.lr_d, betas=betas, fused=fused)
        self.amp_dtype = autocast_dtype(params.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        policy = self.r.augment
        if policy == "auto":
            policy = params.auto_augment_policy if self.num_train < params.augment_auto_below else "none"
        self.augment = DiffAugment(parse_policy(policy), self.device, self.r.augment_p, self.r.ada_target)
        self.data = ResidentData(
            images, labels, self.device, params.batch_size, params.seed,
            self.ctx.rank, self.ctx.world, params.channels_last,
        )
        # BatchNorm in D must see real and fake batches separately (DCGAN); otherwise one joint pass is faster
        self.d_separate = _has_batchnorm(self.d_net)
        self.G: nn.Module = torch.compile(self.g_net) if params.compile else self.g_net
        self.d_call: nn.Module = torch.compile(self.d_net) if params.compile else self.d_net
        self.D: nn.Module = self.d_call
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self._cuda else None
            self.G, self.D = DDP(self.G, device_ids=ids), DDP(self.d_call, device_ids=ids)

        self.fingerprint = params_hash({
            **params.fingerprint_fields(), "dataset_version": self.dataset_version, "resolution": resolution,
            "channels": channels, "categories": self.categories, "world": self.ctx.world, "code": code_version(),
        })
        # lineage: the settings of the params file in use that change the model, as the retraining check hashes them
        self.params_hash = model_params_hash(load_params())
        self.gen = torch.Generator(self.device)
        self.tracker = Tracker(enabled=track and self.ctx.main)
        self.step = 0
        self.restarts = 0
        self.lr_scale = 1.0
        self.train_seconds = 0.0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.stopped_early: str | None = None
        self.stop_signal: int | None = None
        self._last_ckpt_step = -1
        self._nan_injected = 0
        self._seconds_base, self._session_t0 = 0.0, time.perf_counter()
        self.pbar: Any = None
        self._reset_accumulators()

    # ------------------------------------------------------------------------------------------ setup

    def _set_threads(self) -> None:
        if self.p.num_threads > 0:
            torch.set_num_threads(self.p.num_threads)
        elif not self._cuda and self.ctx.local_world > 1:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            torch.set_num_threads(max(1, cores // self.ctx.local_world))
        if self._cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _reset_accumulators(self) -> None:
        self._stat_sum = torch.zeros(6, device=self.device)
        self._stat_n = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _no_sync(self, module: nn.Module) -> contextlib.AbstractContextManager:
        return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()

    def progress(self, step: int) -> float:
        """How far the run is, 0..1: by steps, or by time when a ``max_minutes`` budget ends sooner."""
        r = self.r
        t = (step - r.lr_warmup_steps) / max(1, self.p.steps - r.lr_warmup_steps)
        if self.p.max_minutes:
            t = max(t, self._seconds() / (60.0 * self.p.max_minutes))
        return min(1.0, max(0.0, t))

    def lr_factor(self, step: int) -> float:
        """Schedule x restart scale: warm-up, then constant / linear / cosine decay to lr_final_factor
        from ``lr_decay_start`` to the end of the run (see ``progress``)."""
        r = self.r
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

    # ------------------------------------------------------------------------------------- one step

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x, self.gen) if self.augment.enabled else x

    def _inject_nan(self, step: int) -> bool:
        at = os.environ.get(INJECT_NAN_ENV)
        if at is None or int(at) != step:
            return False
        times = os.environ.get(INJECT_NAN_TIMES_ENV)
        if times is not None and self._nan_injected >= int(times):
            return False
        self._nan_injected += 1
        return True

    def train_step(self, step: int) -> None:
        p, r = self.p, self.r
        self.gen.manual_seed(_step_seed(p.seed, step, self.ctx.rank, self.restarts))
        x, y = self.data.batch(step)
        n = len(y)
        z = torch.randn(n, p.latent_dim, device=self.device, generator=self.gen)
        factor = self.lr_factor(step)
        for group in self.opt_g.param_groups:
            group["lr"] = r.lr_g * factor
        for group in self.opt_d.param_groups:
            group["lr"] = r.lr_d * factor
        r1_now = r.r1_gamma > 0 and step % r.r1_every == 0
        r1_weight = r.r1_gamma / 2 * r.r1_every

        with self._autocast():
            fake = self.G(z, y)  # kept with its graph: the G update below reuses it

        # --- discriminator: real up, fake down
        self.d_net.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        if r1_now:
            # lazy R1 in its own pass on the plain network (double backward is not supported by
            # torch.compile); its gradients accumulate locally and join the DDP all-reduce below
            real_aug = self._aug(x).detach().requires_grad_(True)
            with self._autocast():
                r1_logits = self.d_net(real_aug, y)
            self.scaler.scale(r1_penalty(r1_logits, real_aug) * r1_weight).backward()
        nan = torch.tensor(float("nan"), device=self.device) if self._inject_nan(step) else None
        if self.d_separate:
            with self._no_sync(self.D):
                with self._autocast():
                    real_logits = self.D(self._aug(x), y)
                loss_real = d_real_loss(r.loss, real_logits)
                self.scaler.scale(loss_real).backward()
            with self._autocast():
                fake_logits = self.D(self._aug(fake.detach()), y)
            loss_fake = d_fake_loss(r.loss, fake_logits)
            if nan is not None:
                loss_fake = loss_fake * nan
            self.scaler.scale(loss_fake).backward()
            loss_d = loss_real.detach() + loss_fake.detach()
        else:
            with self._autocast():
                logits = self.D(self._aug(torch.cat([x, fake.detach()])), torch.cat([y, y]))
            real_logits, fake_logits = logits[:n], logits[n:]
            loss_d = d_real_loss(r.loss, real_logits) + d_fake_loss(r.loss, fake_logits)
            if nan is not None:
                loss_d = loss_d * nan
            self.scaler.scale(loss_d).backward()
        self.scaler.unscale_(self.opt_d)
        gnorm_d = _grad_norm(list(self.d_net.parameters()), r.grad_clip)
        self.scaler.step(self.opt_d)

        # --- generator: fool the updated D (D's weights frozen, DDP bypassed for D)
        self.d_net.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            g_logits = self.d_call(self._aug(fake), y)
        loss_g = g_loss(r.loss, g_logits)
        self.scaler.scale(loss_g).backward()
        self.scaler.unscale_(self.opt_g)
        gnorm_g = _grad_norm(list(self.g_net.parameters()), r.grad_clip)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        if self.ema is not None:
            batch_images = self.data.global_batch
            self.ema.update(self.g_net, (step + 1) * batch_images, batch_images)
        self.augment.observe(real_logits.detach(), step, self.data.global_batch, self._all_sum)

        stats = torch.stack([
            loss_d.detach().float(), loss_g.detach().float(), real_logits.detach().float().mean(),
            fake_logits.detach().float().mean(), gnorm_d.float(), gnorm_g.float(),
        ])
        self._stat_sum += stats
        self._stat_n += 1
        self._bad |= ~torch.isfinite(stats).all() | (stats[4:] > p.max_grad_norm).any()

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.ctx.distributed:
            torch.distributed.all_reduce(t)
        return t

    # ------------------------------------------------------------------------------------ the loop

    def _sync(self) -> tuple[bool, bool, bool]:
        """The host check: (diverged, stop signal, time budget spent), agreed by all ranks."""
        time_up = self.p.max_minutes is not None and self._seconds() >= self.p.max_minutes * 60
        flags = torch.stack([
            self._bad.float(),
            torch.tensor(float(self.stop_signal is not None), device=self.device),
            torch.tensor(float(time_up), device=self.device),
        ])
        bad, stop, up = (v > 0 for v in distributed.all_max(flags, self.ctx).tolist())
        return bad, stop, up

    def _seconds(self) -> float:
        return self._seconds_base + (time.perf_counter() - self._session_t0)

    def _loop(self) -> None:
        p = self.p
        self._mark_t, self._mark_step = time.perf_counter(), self.step
        while self.step < p.steps:
            self.train_step(self.step)
            self.step += 1
            s = self.step
            events = (s % p.log_every == 0, s % p.sample_every == 0, s % p.checkpoint_every == 0)
            if not (s % p.sync_every == 0 or s == p.steps or self.stop_signal is not None or any(events)):
                continue
            diverged, stop, time_up = self._sync()
            if diverged:
                raise Divergence(f"NaN/inf loss or gradient norm above {p.max_grad_norm:g} by step {s}")
            if self.pbar is not None:
                self.pbar.update(s - self.pbar.n)
            if events[0] or s == p.steps or time_up:
                self._log(s)
            if events[1]:
                self._sample(s)
            if events[2] or stop or time_up or s == p.steps:
                self._checkpoint()
            if stop:
                raise Interrupted()
            if time_up:
                self.stopped_early = f"max_minutes={p.max_minutes:g} reached at step {s}"
                break

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
        if self.ctx.main:
            metrics = {k: v for k, v in row.items() if k != "step"}
            metrics["lr_scale"] = self.lr_scale
            metrics["lr_factor"] = self.lr_factor(step - 1)
            if self.augment.enabled:
                metrics["augment_p"] = float(self.augment.p)
            self.tracker.log_metrics(metrics, step)
            text = f"loss_d {row['loss_d']:.3f} loss_g {row['loss_g']:.3f} {ips:,.0f} img/s"
            if self.pbar is not None and not self.pbar.disable:
                self.pbar.set_postfix_str(text)
            else:
                print(f"train: step {step}/{self.p.steps} {text}", flush=True)
        self._mark_t, self._mark_step = time.perf_counter(), step

    def _sample_model(self) -> nn.Module:
        """The generator to sample and export: G, or a copy of the EMA with its own BatchNorm statistics
        (a copy, so the average itself and what a resume continues from are untouched)."""
        if self.ema is None:
            return self.g_net
        return recalibrate_batchnorm(copy.deepcopy(self.ema.model), self.p.latent_dim, len(self.categories),
                                     seed=self.p.grid_seed)

    def _grid(self, model: nn.Module | None = None) -> Any:
        model = model if model is not None else self._sample_model()
        was_training = model.training
        model.eval()
        try:
            return category_grid(model, len(self.categories), self.p.grid_columns, self.p.grid_seed,
                                 self.p.latent_dim)
        finally:
            model.train(was_training)

    def _sample(self, step: int) -> None:
        if self.ctx.main:
            grid = self._grid()
            self.tracker.log_image(grid, "samples", step)
            save_png(grid, self.out_dir / GRID_FILE)
        self._mark_t = time.perf_counter()  # keep sampling time out of images/s

    # ------------------------------------------------------------------------------ checkpoints

    def _modules(self) -> list[nn.Module]:
        return [self.g_net, self.d_net] + ([self.ema.model] if self.ema is not None else [])

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
            "run_id": self.tracker.run_id,
            "G": self.g_net.state_dict(),
            "D": self.d_net.state_dict(),
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
            save_checkpoint(self.ckpt_dir, self.step, self._state(), keep=self.p.keep_checkpoints)
        self._last_ckpt_step = self.step
        self._mark_t = time.perf_counter()

    def _restore(self, state: dict[str, Any]) -> None:
        self.g_net.load_state_dict(state["G"])
        self.d_net.load_state_dict(state["D"])
        if self.ema is not None:
            self.ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.augment.load_state_dict(state["augment"])
        torch.set_rng_state(state["rng"]["torch_cpu"])
        if "torch_cuda" in state["rng"] and self._cuda:
            torch.cuda.set_rng_state_all(state["rng"]["torch_cuda"])
        self.step, self.restarts, self.lr_scale = int(state["step"]), int(state["restarts"]), float(state["lr_scale"])
        self.history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}
        self._last_ckpt_step = self.step
        self._reset_accumulators()

    def _start(self) -> None:
        p = self.p
        if self.ctx.main:
            remove_temp_files(self.ckpt_dir)
        loaded = load_latest(self.ckpt_dir) if self.resume else None
        if self.resume and loaded is None:
            self._say(f"no checkpoint in {self.ckpt_dir}; starting a new run")
        if loaded is not None and loaded[1].get("fingerprint") != self.fingerprint:
            self._say(f"{loaded[0]} was made with other settings, data or code (recipe, networks, batch, seed, "
                      "dataset or productgan/gan changed); starting a new run")
            loaded = None
        self._barrier()
        if self.ctx.main:
            self._clean_outputs()
        self._seconds_base, self._session_t0 = 0.0, time.perf_counter()
        budget = f" or {p.max_minutes:g} minutes, whichever comes first" if p.max_minutes else ""
        precision = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32"
        self._say(f"recipe {p.recipe}: up to {p.steps} steps{budget}; {self.num_train} images at "
                  f"{self.cfg.resolution}x{self.cfg.resolution}x{self.cfg.channels}, batch {p.batch_size} x "
                  f"{self.ctx.world} process(es) on {self.device} ({precision})")
        tags = {"recipe": p.recipe, "dataset_version": self.dataset_version, "git_commit": git_commit(),
                "params_hash": self.params_hash, "productgan.step": "train"}
        if loaded is None:
            if self.ctx.main:
                moved = set_aside_checkpoints(self.ckpt_dir)
                if moved:
                    self._say(f"moved {moved} checkpoint(s) of an earlier run to {self.ckpt_dir / PREVIOUS} "
                              "(kept until the next new run)")
            self._barrier()
            self.tracker.start(p.experiment, None, run_name=f"train-{p.recipe}", tags={
                k: str(v) for k, v in tags.items() if v is not None})
            if self.tracker.run_id:
                self.tracker.log_params({**flat_params(p), "dataset_version": self.dataset_version,
                                         "num_train_images": self.num_train, "world_size": self.ctx.world,
                                         "device": str(self.device), "resolution": self.cfg.resolution,
                                         "channels": self.cfg.channels, "augment_policy": ",".join(
                                             self.augment.policy) or "none"})
            self._checkpoint()  # step 0: a state to restore to, and the run id for --resume
        else:
            path, state = loaded
            try:
                self._restore(state)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise TrainingFailed(f"{path} cannot be restored ({exc}); run without --resume to start anew "
                                     f"(its checkpoints move to {self.ckpt_dir / PREVIOUS})") from exc
            self._seconds_base = float(state.get("train_seconds", 0.0))
            self.tracker.start(p.experiment, state.get("run_id"), run_name=f"train-{p.recipe}",
                               tags={k: str(v) for k, v in tags.items() if v is not None})
            self.tracker.set_tags({"resumed_at_step": self.step})
            self._say(f"resumed from {path} at step {self.step}")

    def _restart(self, reason: Divergence) -> None:
        """Divergence guard: restore the newest checkpoint with lower learning rates, or give up."""
        self.restarts += 1
        if self.restarts > self.p.max_restarts:
            raise TrainingFailed(
                f"training diverged ({reason}) and {self.p.max_restarts} restore(s) of the last checkpoint with "
                f"learning rates x{self.p.restart_lr_factor:g} each did not help. Fix: lower "
                f"train.{self.p.recipe}.lr_g/lr_d, set train.{self.p.recipe}.grad_clip, or check the data; "
                f"checkpoints are in {self.ckpt_dir}"
            )
        loaded = load_latest(self.ckpt_dir)
        if loaded is None:
            raise TrainingFailed(f"training diverged ({reason}) and {self.ckpt_dir} holds no checkpoint to restore")
        restarts, lr_scale = self.restarts, self.lr_scale * self.p.restart_lr_factor
        self._restore(loaded[1])
        self.restarts, self.lr_scale = restarts, lr_scale
        if self.pbar is not None:
            self.pbar.n = self.step
            self.pbar.refresh()
        self._say(f"{reason}: restored {loaded[0]} (step {self.step}) with learning rates x{lr_scale:g} "
                  f"(restore {restarts}/{self.p.max_restarts})")
        if self.ctx.main:
            self.tracker.log_metrics({"restarts": restarts, "lr_scale": lr_scale}, self.step)

    # -------------------------------------------------------------------------------- run / finish

    def run(self) -> TrainResult:
        """Train to ``steps`` (or the time budget); export on success. Never raises for a failed run."""
        import tqdm

        handlers = self._install_signal_handlers()
        self.pbar = None
        try:
            self._start()
            self.pbar = tqdm.tqdm(total=self.p.steps, initial=self.step, desc=f"train {self.p.recipe}",
                                  unit="step", disable=None if self.ctx.main else True, dynamic_ncols=True)
            while True:
                try:
                    self._loop()
                    break
                except Divergence as exc:
                    self._restart(exc)
            if self._last_ckpt_step != self.step:
                self._checkpoint()
            return self._finish()
        except TrainingFailed as exc:
            return self._fail(str(exc))
        except Interrupted:
            name = signal.Signals(self.stop_signal).name if self.stop_signal else "signal"
            message = (f"stopped by {name} at step {self.step}; checkpoint written to {self.ckpt_dir}; "
                       "run again with --resume to continue")
            self.tracker.end("KILLED")
            self._say(message)
            code = 128 + (self.stop_signal or signal.SIGTERM)
            return TrainResult("INTERRUPTED", self.step, self.tracker.run_id, message, exit_code=code)
        finally:
            if self.pbar is not None:
                self.pbar.close()
            for sig, old in handlers.items():
                signal.signal(sig, old)
            distributed.teardown(self.ctx)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if sys.platform == "win32" or not _in_main_thread():
            return {}

        def on_signal(signum: int, _frame: Any) -> None:
            self.stop_signal = signum  # acted on at the next step boundary (a checkpoint, then exit)

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def final_metrics(self) -> dict[str, Any]:
        h = self.history
        ips = h["images_per_s"][1:] or h["images_per_s"]  # the first interval holds warm-up
        last = {k: (h[k][-1] if h[k] else None) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
        return {
            "recipe": self.p.recipe,
            "step": self.step,
            **last,
            "images_per_s": sum(ips) / len(ips) if ips else None,
            "train_minutes": round(self._seconds() / 60, 3),
            "restarts": self.restarts,
            "world_size": self.ctx.world,
        }

    def _finish(self) -> TrainResult:
        metrics = self.final_metrics()
        if self.ctx.main:
            model = self._sample_model()
            self.cfg.meta = {
                "recipe": self.p.recipe, "step": self.step, "dataset_version": self.dataset_version,
                "params_hash": self.params_hash, "git_commit": git_commit(), "run_id": self.tracker.run_id,
                "ema": self.ema is not None, "stopped_early": self.stopped_early,
            }
            save_generator(model, self.cfg, self.out_dir)
            grid = self._grid(model)
            save_png(grid, self.out_dir / GRID_FILE)
            self._write_metrics(metrics)
            summary = {"final_step": self.step, "train_minutes": metrics["train_minutes"],
                       "images_per_s_mean": metrics["images_per_s"] or 0.0, "restarts": self.restarts}
            self.tracker.log_metrics(summary, self.step)
            self.tracker.log_image(grid, "samples", self.step)
            self.tracker.log_artifacts(str(self.out_dir), "generator")
            self.tracker.end("FINISHED")
            self._write_run_file("FINISHED")  # last: downstream steps trust a FINISHED run.json
            self._say(f"done: step {self.step}, generator in {self.out_dir}" + (
                f" ({self.stopped_early})" if self.stopped_early else ""))
        return TrainResult("FINISHED", self.step, self.tracker.run_id, "", metrics)

    def _fail(self, message: str) -> TrainResult:
        if self.ctx.main:
            self.tracker.set_tags({"failure": message[:5000]})
            self.tracker.end("FAILED")
            self._clean_outputs()
            self._write_run_file("FAILED", message)
            print(f"train: FAILED: {message}", file=sys.stderr, flush=True)
        return TrainResult("FAILED", self.step, self.tracker.run_id, message, self.final_metrics(), exit_code=1)

    # ------------------------------------------------------------------------------------ outputs

    def _clean_outputs(self) -> None:
        """Remove a previous run's generator from the output folder (a failed run must not leave one)."""
        for name in (WEIGHTS, CONFIG, RUN_FILE, GRID_FILE):
            (self.out_dir / name).unlink(missing_ok=True)

    def _write_run_file(self, status: str, message: str | None = None) -> None:
        doc = {"run_id": self.tracker.run_id, "tracking_uri": self.tracker.tracking_uri,
               "experiment_id": self.tracker.experiment_id, "status": status}
        if message:
            doc["message"] = message
        atomic_write_json(self.out_dir / RUN_FILE, doc)

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.p.metrics_file, metrics)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HISTORY_KEYS)
        for row in zip(*(self.history[k] for k in HISTORY_KEYS), strict=True):
            writer.writerow([int(row[0]), *(f"{v:.6g}" for v in row[1:])])
        with atomic_open(self.p.plots_file, "wb") as fh:
            fh.write(buf.getvalue().encode("utf-8"))

    def _say(self, message: str) -> None:
        if self.ctx.main:
            if self.pbar is not None and not self.pbar.disable:
                self.pbar.write(f"train: {message}", file=sys.stderr)
            else:
                print(f"train: {message}", file=sys.stderr, flush=True)

    def _barrier(self) -> None:
        if self.ctx.distributed:
            torch.distributed.barrier()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def dataclass_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def flat_params(params: TrainParams) -> dict[str, Any]:
    """The run's knobs with the chosen recipe's knobs flattened in (``recipe.lr_g`` ...)."""
    doc = dataclass_dict(params)
    chosen = doc.pop(params.recipe)
    doc.pop("baseline", None)
    doc.pop("default", None)
    return {**doc, **{f"recipe.{k}": v for k, v in chosen.items()}}


def train(
    params: TrainParams, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], resume: bool = False
) -> TrainResult:
    return Trainer(params, data_dir, out_dir, resume=resume).run()
