"""Differentiable augmentation for data-efficient GANs (DiffAugment, Zhao et al. 2020).

The same random transforms are applied to real and generated images before the discriminator sees them,
and gradients flow through them to the generator, so D cannot memorise a few thousand photos without the
augmentations leaking into the generated images. Everything is vectorised over the batch (no per-image
Python) and draws from the ``torch.Generator`` it is given, so a run is reproducible and resumable.

Where translation and cutout uncover pixels they fill them (``fill``): ``grey`` is DiffAugment's choice (translation
repeats the edge rows, cutout paints mid-grey, 0 in [-1, 1]); ``border`` fills both with each image's own border
colour, its background: white on a catalogue shot, so D never learns that black or grey boxes and smeared edges
belong to products, and G never draws them (lightweight-gan's black cutouts leak into its outputs, its issue #107).

Each transform is applied to each image with probability ``p``. ``p`` is fixed, or adapted as in
StyleGAN2-ADA (Karras et al. 2020): raised while the discriminator is over-confident on real images
(E[sign D(real)] above ``target``), lowered otherwise. ``p`` lives on the device: no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

POLICIES = ("color", "translation", "cutout")
FILLS = ("grey", "border")


def parse_policy(text: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); ``""`` / ``"none"`` -> ()."""
    names = tuple(t.strip() for t in text.split(",") if t.strip() and t.strip() != "none")
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; use a comma list of {', '.join(POLICIES)}")
    return names


def _uniform(n: int, gen: torch.Generator, device: torch.device, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=gen, device=device) * (high - low) + low


def _apply_mask(n: int, p: torch.Tensor, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(N,1,1,1) float mask, 1 where this transform is applied to that image."""
    return (torch.rand(n, 1, 1, 1, generator=gen, device=device) < p).float()


def color(x: torch.Tensor, p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 4:  # a cut-out: brightness, saturation and contrast of its colours; its outline stays
        return torch.cat([color(x[:, :3], p, gen), x[:, 3:]], dim=1)
    n, dev = x.shape[0], x.device
    on = _apply_mask(n, p, gen, dev)
    x = x + on * (_uniform(n, gen, dev, -0.5, 0.5))  # brightness
    if x.shape[1] > 1:  # saturation: no-op on grey images
        mean = x.mean(dim=1, keepdim=True)
        x = mean + (x - mean) * (1 + on * (_uniform(n, gen, dev, 0.0, 2.0) - 1))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1 + on * (_uniform(n, gen, dev, 0.5, 1.5) - 1))  # contrast


def border_colour(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, 1): the mean of each image's outermost ring of pixels, per channel (its background colour)."""
    x = x.float()  # a mean of hundreds of pixels: not in bf16
    ring = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)  # each pixel once
    return ring.mean(dim=2)[:, :, None, None]


def translation(x: torch.Tensor, p: torch.Tensor, gen: torch.Generator, ratio: float = 0.125,
                fill: str = "grey") -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size (whole pixels); the uncovered rows and columns repeat the
    edge (``fill`` grey) or take the image's border colour (``border``).

    Whole-pixel shifts need no interpolation: two gathers of clamped row and column indices give them exactly,
    in any dtype (``grid_sample`` in bf16 on channels_last CPU tensors returned non-finite values) and at
    half its cost."""
    n, c, h, w = x.shape
    dev = x.device
    on = _apply_mask(n, p, gen, dev).view(n).long()
    sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
    shift_x = torch.randint(-sx, sx + 1, (n,), generator=gen, device=dev) * on
    shift_y = torch.randint(-sy, sy + 1, (n,), generator=gen, device=dev) * on
    background = border_colour(x) if fill == "border" else None
    rows = torch.arange(h, device=dev) + shift_y[:, None]  # output row i reads row i + shift
    cols = torch.arange(w, device=dev) + shift_x[:, None]
    shifted = x.gather(2, rows.clamp(0, h - 1).view(n, 1, h, 1).expand(n, c, h, w))
    shifted = shifted.gather(3, cols.clamp(0, w - 1).view(n, 1, 1, w).expand(n, c, h, w))
    if background is None:
        return shifted
    inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
    return torch.where(inside, shifted, background.to(shifted.dtype))


def cutout(x: torch.Tensor, p: torch.Tensor, gen: torch.Generator, ratio: float = 0.5,
           fill: str = "grey") -> torch.Tensor:
    """Blank a square of ``ratio`` x the image size at a random place: set to 0, mid-grey in [-1, 1] (``fill``
    grey), or to the image's border colour (``border``)."""
    n, _, h, w = x.shape
    dev = x.device
    on = _apply_mask(n, p, gen, dev).view(n, 1, 1)
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen, device=dev)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen, device=dev)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)  # (N, H, W)
    if fill == "border":
        blank = (inside & (on > 0)).unsqueeze(1)
        return torch.where(blank, border_colour(x).to(x.dtype), x)
    keep = 1.0 - inside.to(x.dtype) * on
    return x * keep.unsqueeze(1)


_OPS = {"color": color, "translation": translation, "cutout": cutout}
_FILLED = ("translation", "cutout")


class DiffAugment:
    """Callable augmenter with state (``p`` and the adaptive-p statistics) that checkpoints can hold."""

    def __init__(
        self,
        policy: tuple[str, ...],
        device: torch.device,
        p: float = 1.0,
        ada_target: float = 0.0,
        ada_interval: int = 4,
        ada_speed_images: int = 100_000,
        fill: str = "grey",
    ) -> None:
        if fill not in FILLS:
            raise ValueError(f"augmentation fill {fill!r} is unknown; use one of {', '.join(FILLS)}")
        self.policy, self.fill = policy, fill
        self.ada_target = float(ada_target)
        self.ada_interval = int(ada_interval)
        self.ada_speed_images = int(ada_speed_images)
        self.p = torch.tensor(float(p) if not self.adaptive else 0.0, device=device)
        self._sign_sum = torch.zeros((), device=device)
        self._count = torch.zeros((), device=device)

    @property
    def enabled(self) -> bool:
        return bool(self.policy)

    @property
    def adaptive(self) -> bool:
        return self.enabled and self.ada_target > 0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for name in self.policy:
            x = _OPS[name](x, self.p, gen, fill=self.fill) if name in _FILLED else _OPS[name](x, self.p, gen)
        return x

    @torch.no_grad()
    def observe(
        self, real_logits: torch.Tensor, step: int, batch_images: int,
        all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Feed D's logits on real images; every ``ada_interval`` steps adjust ``p`` (adaptive mode only).
        ``all_sum`` sums the statistics over data-parallel ranks so every rank keeps the same ``p``."""
        if not self.adaptive:
            return
        self._sign_sum += torch.sign(real_logits.float()).sum()
        self._count += real_logits.numel()
        if (step + 1) % self.ada_interval == 0:
            stats = torch.stack([self._sign_sum, self._count])
            if all_sum is not None:
                stats = all_sum(stats)
            rt = stats[0] / stats[1].clamp(min=1)
            delta = torch.sign(rt - self.ada_target) * (batch_images * self.ada_interval / self.ada_speed_images)
            self.p.copy_((self.p + delta).clamp(0.0, 1.0))
            self._sign_sum.zero_()
            self._count.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"p": self.p.detach().cpu(), "sign_sum": self._sign_sum.cpu(), "count": self._count.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.p.copy_(state["p"])
        self._sign_sum.copy_(state["sign_sum"])
        self._count.copy_(state["count"])
