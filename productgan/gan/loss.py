"""The GAN update of one step: one object runs G and D and accumulates each phase's gradients.

As in stylegan2-ada's ``training/loss.py``, ``GANLoss`` owns everything around the two networks
(augmentation, autocast, DDP's no-sync, gradient scaling), so the training loop only orders the phases and
steps the optimisers. The phases, in the order a step runs them:

  D regulariser  lazy R1 on real images (every ``r1_every`` steps, weighted up to keep its strength). It runs
                 on the plain D (torch.compile does not do double backward) and first: its gradients
                 accumulate locally and join D main's DDP all-reduce.
  D main         D's loss on real images (pushed up) and on generated ones (pushed down); for an objective
                 with a gradient penalty (WGAN-GP) the penalty first, on the plain D like R1. With balanced
                 consistency regularisation (bCR, Zhao et al. 2021) D's logits on shifted copies of both
                 batches are also pulled to its logits on the originals.
  G main         G's loss through D, with D frozen and outside DDP (D has nothing to reduce here).

The loop may run the two D phases several times per step (``n_critic``, WGAN-GP's 5 critic updates per
generator update): ``Trainer.train_step`` is the one place that orders them.

The objective is picked once, by name, from ``LOSSES``:
``bce``: the non-saturating loss of Goodfellow et al. 2014 (D: BCE real=1 / fake=0; G: -log D(G(z))).
``hinge``: the hinge loss of SNGAN / SAGAN / BigGAN (D: relu(1 - real) + relu(1 + fake); G: -fake).
``ls``: the least-squares loss of LSGAN (Mao et al. 2017, 0-1-1 coding as in Lucic et al. 2018; D: (real - 1)^2 / 2
  + fake^2 / 2; G: (fake - 1)^2 / 2).
``wgan-gp``: the Wasserstein loss with gradient penalty of Gulrajani et al. 2017 (D: fake - real +
  lambda (||grad D(x_hat)|| - 1)^2 on random interpolates x_hat of real and generated images; G: -fake).
  The penalty is per image, so the critic must not mix images through BatchNorm: refused there.
``ra-bce`` / ``ra-hinge``: the relativistic average GAN (Jolicoeur-Martineau 2019) of ``bce`` / ``hinge``: D
  judges whether a real image looks more real than the average generated one (real - mean(fake)) and a
  generated one less real than the average real one (fake - mean(real)); G gets the mirror image of D's
  loss, so its gradients come from real images' logits too. G main therefore also runs D on the real batch.
Losses are batch means over float32 logits, 0-d tensors (no host synchronisation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from productgan.device import autocast
from productgan.gan.augment import DiffAugment, translation
from productgan.gan.distributed import local

LossFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A GAN loss as three functions of float32 discriminator logits."""

    d_real: LossFn  # D on real images: wants high logits
    d_fake: LossFn  # D on generated images: wants low logits
    g: LossFn  # G through D: wants D's logits on its images high
    gradient_penalty: bool = False  # WGAN-GP: D main adds lambda x the penalty on interpolates
    # relativistic: D and G score logits less the other batch's mean (relativistic_pair); G's loss is D's mirrored
    # (d_real on generated images, d_fake on real ones), so ``g`` goes unused
    relativistic: bool = False


def relativistic_pair(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(real - mean(fake), fake - mean(real)): how much more real each image looks than the other side's average."""
    return real - fake.mean(), fake - real.mean()


LOSSES: dict[str, Objective] = {
    "bce": Objective(
        d_real=lambda logits: F.softplus(-logits).mean(),
        d_fake=lambda logits: F.softplus(logits).mean(),
        g=lambda logits: F.softplus(-logits).mean(),
    ),
    "hinge": Objective(
        d_real=lambda logits: F.relu(1.0 - logits).mean(),
        d_fake=lambda logits: F.relu(1.0 + logits).mean(),
        g=lambda logits: -logits.mean(),
    ),
    "ls": Objective(
        d_real=lambda logits: 0.5 * (logits - 1.0).square().mean(),
        d_fake=lambda logits: 0.5 * logits.square().mean(),
        g=lambda logits: 0.5 * (logits - 1.0).square().mean(),
    ),
    "wgan-gp": Objective(
        d_real=lambda logits: -logits.mean(),
        d_fake=lambda logits: logits.mean(),
        g=lambda logits: -logits.mean(),
        gradient_penalty=True,
    ),
}
LOSSES |= {f"ra-{name}": replace(LOSSES[name], relativistic=True) for name in ("bce", "hinge")}


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||d D(x) / dx||^2 on real images (Mescheder et al. 2018); ``real_images`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def gradient_penalty(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E (||d D(x) / dx|| - 1)^2 over ``images`` (Gulrajani et al. 2017); ``images`` must require grad."""
    (grad,) = torch.autograd.grad(logits.float().sum(), images, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).square().mean()


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@dataclass
class DiscriminatorOutput:
    """What D main leaves for the loop's statistics and for adaptive augmentation (all detached)."""

    loss: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor


class GANLoss:
    """Runs ``G_ddp``/``D_ddp`` (the networks as the step calls them: compiled and/or DDP-wrapped) and ``D``
    (the plain discriminator, for R1); draws augmentation randomness from ``gen``."""

    def __init__(
        self,
        D: nn.Module,
        G_ddp: nn.Module,
        D_ddp: nn.Module,
        objective: Objective,
        augment: DiffAugment,
        scaler: torch.amp.GradScaler,
        gen: torch.Generator,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        gp_lambda: float = 10.0,
        cr_lambda: float = 0.0,
    ) -> None:
        self.D, self.G_ddp, self.D_ddp = D, G_ddp, D_ddp
        self.objective, self.augment, self.scaler, self.gen = objective, augment, scaler, gen
        self.device, self.amp_dtype, self.gp_lambda, self.cr_lambda = device, amp_dtype, gp_lambda, cr_lambda
        self._always = torch.ones((), device=device)  # the consistency shift applies to every image
        # BatchNorm in D must see real and fake batches apart (DCGAN); otherwise one joint pass is faster
        self.d_separate = has_batchnorm(D)
        if objective.gradient_penalty and self.d_separate:
            raise ValueError("a gradient-penalty loss (wgan-gp) needs a critic without BatchNorm: BatchNorm mixes "
                             "the images of a batch, so the per-image penalty is wrong")

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def _aug(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images, self.gen) if self.augment.enabled else images

    def _consistency(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``cr_lambda`` x E (D(T(x)) - D(x))^2 for T a random shift of up to 1/8 of the image (CR-GAN, Zhang et
        al. 2020): D learns features that do not hinge on where exactly a product sits, so its gradients to G
        carry shape rather than pixel position. Gradients flow through both logits, as in the paper."""
        with self._autocast():
            shifted = self.D_ddp(translation(images, self._always, self.gen), labels)
        return self.cr_lambda * (shifted.float() - logits.float()).square().mean()

    def _backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def generate(self, z: torch.Tensor, labels: torch.Tensor, keep_graph: bool = True) -> torch.Tensor:
        """G's images for this step, with their graph kept: D main uses them detached, G main through it.
        ``keep_graph=False`` for images only D will see (the extra critic updates of ``n_critic``)."""
        with self._autocast(), torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
            return self.G_ddp(z, labels)

    def accumulate_d_reg(self, real: torch.Tensor, labels: torch.Tensor, weight: float) -> None:
        """D regulariser: ``weight`` x R1 on augmented real images."""
        self.D.requires_grad_(True)
        real_aug = self._aug(real).detach().requires_grad_(True)
        with self._autocast():
            logits = self.D(real_aug, labels)
        self._backward(r1_penalty(logits, real_aug) * weight)

    def accumulate_d_main(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | None = None
    ) -> DiscriminatorOutput:
        """D main on real and (detached) generated images; ``scale`` multiplies the loss (the NaN test hook)."""
        self.D.requires_grad_(True)
        fake = fake.detach()
        if self.objective.gradient_penalty and self.gp_lambda > 0:
            self._accumulate_gradient_penalty(real, fake, labels)
        if self.objective.relativistic:
            return self._accumulate_d_relativistic(real, fake, labels, scale)
        if self.d_separate:
            with self._no_sync(self.D_ddp):  # only the second backward all-reduces
                real_in = self._aug(real)
                with self._autocast():
                    real_logits = self.D_ddp(real_in, labels)
                loss_real = self.objective.d_real(real_logits.float())
                if self.cr_lambda > 0:
                    loss_real = loss_real + self._consistency(real_in, real_logits, labels)
                self._backward(loss_real)
            fake_in = self._aug(fake)
            with self._autocast():
                fake_logits = self.D_ddp(fake_in, labels)
            loss_fake = self.objective.d_fake(fake_logits.float())
            if self.cr_lambda > 0:
                loss_fake = loss_fake + self._consistency(fake_in, fake_logits, labels)
            if scale is not None:
                loss_fake = loss_fake * scale
            self._backward(loss_fake)
            loss = loss_real.detach() + loss_fake.detach()
        else:
            n = len(labels)
            both, both_labels = self._aug(torch.cat([real, fake])), torch.cat([labels, labels])
            with self._autocast():
                logits = self.D_ddp(both, both_labels)
            real_logits, fake_logits = logits[:n], logits[n:]
            loss = self.objective.d_real(real_logits.float()) + self.objective.d_fake(fake_logits.float())
            if self.cr_lambda > 0:
                loss = loss + 2 * self._consistency(both, logits, both_labels)  # a mean over both halves, each x lambda
            if scale is not None:
                loss = loss * scale
            self._backward(loss)
        return DiscriminatorOutput(loss.detach(), real_logits.detach(), fake_logits.detach())

    def _discriminate_apart(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, module: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(augmented real, augmented fake, D's logits on each): the two batches in one pass, or in two where D's
        BatchNorm must see them apart. One backward follows; a DDP D all-reduces in it (the first pass does not
        prepare the reducer)."""
        real_in, fake_in = self._aug(real), self._aug(fake)
        if not self.d_separate:
            n = len(labels)
            with self._autocast():
                logits = module(torch.cat([real_in, fake_in]), torch.cat([labels, labels])).float()
            return real_in, fake_in, logits[:n], logits[n:]
        with self._no_sync(module), self._autocast():
            real_logits = module(real_in, labels).float()
        with self._autocast():
            fake_logits = module(fake_in, labels).float()
        return real_in, fake_in, real_logits, fake_logits

    def _accumulate_d_relativistic(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | None
    ) -> DiscriminatorOutput:
        """D main of a relativistic objective: both batches' logits enter one loss, so one backward."""
        real_in, fake_in, real_logits, fake_logits = self._discriminate_apart(real, fake, labels, self.D_ddp)
        real_rel, fake_rel = relativistic_pair(real_logits, fake_logits)
        loss = self.objective.d_real(real_rel) + self.objective.d_fake(fake_rel)
        if self.cr_lambda > 0:
            loss = (loss + self._consistency(real_in, real_logits, labels)
                    + self._consistency(fake_in, fake_logits, labels))
        if scale is not None:
            loss = loss * scale
        self._backward(loss)
        return DiscriminatorOutput(loss.detach(), real_logits.detach(), fake_logits.detach())

    def _accumulate_gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> None:
        """WGAN-GP's penalty on (augmented) random interpolates of real and generated images, on the plain D
        (double backward) and before D main, so its gradients join D main's DDP all-reduce as R1's do."""
        eps = torch.rand(len(labels), 1, 1, 1, device=real.device, generator=self.gen)
        mixed = self._aug(torch.lerp(fake.to(real.dtype), real, eps)).detach().requires_grad_(True)
        with self._autocast():
            logits = self.D(mixed, labels)
        self._backward(gradient_penalty(logits, mixed) * self.gp_lambda)

    def accumulate_g_main(
        self, fake: torch.Tensor, labels: torch.Tensor, keep: float = 1.0, real: torch.Tensor | None = None
    ) -> torch.Tensor:
        """G main: generated images through a frozen D; returns the (detached) loss. ``keep`` < 1: only that
        share of the images, those D rates most real, carry G's loss (top-k training, Sinha et al. 2020: the
        worst samples' gradients point G away from where it already does well). A relativistic objective
        also needs D's logits on ``real`` (the step's real batch)."""
        self.D.requires_grad_(False)
        if self.objective.relativistic:
            if real is None:
                raise ValueError("a relativistic loss needs the real batch in G main")
            _, _, real_logits, logits = self._discriminate_apart(real, fake, labels, local(self.D_ddp))
        else:
            with self._autocast():
                logits = local(self.D_ddp)(self._aug(fake), labels).float()
        if keep < 1.0:
            logits = logits.topk(max(1, round(keep * len(logits)))).values
        if self.objective.relativistic:
            # the mirror of D's loss: generated images should look more real than the average real one
            real_rel, fake_rel = relativistic_pair(real_logits.detach(), logits)
            loss = self.objective.d_real(fake_rel) + self.objective.d_fake(real_rel)
        else:
            loss = self.objective.g(logits)
        self._backward(loss)
        return loss.detach()

    @staticmethod
    def _no_sync(module: nn.Module) -> contextlib.AbstractContextManager:
        return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()
