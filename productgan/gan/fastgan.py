"""FastGAN-style networks for a shop's colour photos (Liu et al. 2021; lucidrains' lightweight-gan), sized for CPUs.

``fastgan`` generator: the first map from z and the class embedding (``fc``: linear, BatchNorm, GLU), then per
2x: nearest-neighbour upsampling, a 3x3 convolution, BatchNorm and GLU. No transposed convolutions: their
uneven overlap is where the checkerboard speckles of ``dcgan`` at 64 px come from. Skip-layer excitation (SLE):
each map from 8x8 on gates the channels of the map two doublings later (8 -> 32, 16 -> 64, 32 -> 128), so the
coarse layout steers the fine texture through a short path. A 3x3 convolution and tanh draw the image.

``fastgan`` discriminator: strided 4x4 convolutions with spectral norm and LeakyReLU (no BatchNorm: real and
generated images go through it in one pass, and its score of an image never depends on the rest of the
batch), a linear score plus a class projection term (Miyato & Koyama 2018) on the last map. Self-supervision
(FastGAN's remedy for a discriminator that memorises a few thousand photos): two small decoders must rebuild
real images from its features, the 8x8 map the whole image at half size, a random quarter of the 16x16 map
that quarter of the image at full size. ``forward(x, labels, quadrants)`` returns their L1 error beside the
logits; ``productgan.gan.loss.GANLoss`` adds it to D's loss on real images (``recon_weight``).

Both follow the project's contract (``productgan.gan.networks``): ``G(z, labels, embedding=None) -> (N, C, H, W)``
in [-1, 1] (a ``ConditionalGenerator``: ``embed`` the class embedding, ``fc`` the first layer, a Linear, so SeFa
directions read it); ``D(x, labels) -> (N,)`` logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from productgan.gan import networks
from productgan.gan.config import GeneratorConfig
from productgan.gan.networks import ConditionalGenerator, FlattenNHWC, dcgan_init_, discriminator_widths

SLE_FROM = 8  # the first map size that excites a later one (FastGAN: 8 -> 128 at 1024 px; here two doublings on)
SLE_GAP = 2  # doublings between the exciting map and the excited one


class SkipExcitation(nn.Module):
    """FastGAN's SLE: a small map pooled to 4x4, a 4x4 convolution to one vector per image, a 1x1 convolution and
    a sigmoid: channel gains in (0, 1) for a map ``SLE_GAP`` doublings larger."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_in, c_out, 4, 1, 0, bias=False), nn.SiLU(),
            nn.Conv2d(c_out, c_out, 1, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.net(small)


class GLU(nn.Module):
    """The gated linear unit over channels (first half x sigmoid(second half)), whose input gradient comes back in
    the input's channels_last layout. ``nn.GLU``'s comes back contiguous, and the BatchNorm backward before it then
    takes PyTorch's mixed-layout path on CPUs: a 32-channel up block at 64 px trained 1.4-1.8x slower
    (benchmarks/RESULTS.md "Colour product photos")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and not torch.compiler.is_compiling():
            x.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g)
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """2x nearest-neighbour upsampling, 3x3 convolution to twice ``c_out``, BatchNorm, GLU (FastGAN's UpBlock)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(2 * c_out), GLU(),
    )


class FastGANGenerator(ConditionalGenerator):
    """See the module docstring. Widths as every generator here: halving per doubling from 8x ``base_channels``."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        s0, n_up, ch = self.s0, self.n_up, self.widths
        self.fc = nn.Sequential(
            nn.Linear(2 * cfg.latent_dim, 2 * ch[0] * s0 * s0, bias=False),
            nn.BatchNorm1d(2 * ch[0] * s0 * s0), GLU(),
        )
        self.ups = nn.ModuleList(up_block(ch[i], ch[i + 1]) for i in range(n_up))
        sizes = [s0 * 2**i for i in range(n_up + 1)]
        # SLE pairs (index of the exciting map, index of the excited one) by map index: 8 -> 32, 16 -> 64 ...
        self.sle_pairs = [(i, i + SLE_GAP) for i in range(n_up + 1) if sizes[i] >= SLE_FROM and i + SLE_GAP <= n_up]
        self.sle = nn.ModuleList(SkipExcitation(ch[i], ch[j]) for i, j in self.sle_pairs)
        self.to_rgb = nn.Conv2d(ch[-1], cfg.channels, 3, 1, 1)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        maps = [self.first_map(z, labels, embedding)]
        for i, up in enumerate(self.ups, start=1):
            h = up(maps[-1])
            for (src, dst), sle in zip(self.sle_pairs, self.sle, strict=True):
                if dst == i:
                    h = sle(maps[src], h)
            maps.append(h)
        return torch.tanh(self.to_rgb(maps[-1]))


def decoder(c_in: int, channels: int, ups: int) -> nn.Sequential:
    """FastGAN's simple decoder: ``ups`` x (2x upsampling, 3x3 convolution, GLU), halving the channels, then a
    3x3 convolution to the image's channels and tanh. No BatchNorm: D stays free of batch statistics."""
    layers: list[nn.Module] = []
    c = c_in
    for _ in range(ups):
        c_out = max(c // 2, 8)
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, 2 * c_out, 3, 1, 1), GLU()]
        c = c_out
    layers += [nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def quarter(x: torch.Tensor, quadrants: torch.Tensor) -> torch.Tensor:
    """Each image's quarter ``quadrants[i]`` (0 top left, 1 top right, 2 bottom left, 3 bottom right), by two
    gathers: one image per row of ``x``, every quadrant chosen per image, no Python loop."""
    n, c, h, w = x.shape
    hh, hw = h // 2, w // 2
    rows = (quadrants // 2).view(n, 1) * hh + torch.arange(hh, device=x.device)
    cols = (quadrants % 2).view(n, 1) * hw + torch.arange(hw, device=x.device)
    x = x.gather(2, rows.view(n, 1, hh, 1).expand(n, c, hh, w))
    return x.gather(3, cols.view(n, 1, 1, hw).expand(n, c, hh, hw))


class FastGANDiscriminator(nn.Module):
    """See the module docstring. The decoders read the 8x8 and 16x16 maps (7x7 and 14x14 at 28 px). How its
    layers are normalised is the variant's: ``fastgan`` spectral norm; ``fastgan_bn`` spectral norm and BatchNorm
    after every strided convolution but the first (FastGAN's own D; real and generated images then go through it
    apart); ``fastgan_plain`` neither."""

    spectral = True
    batchnorm = False

    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__()
        s0, ch = discriminator_widths(cfg.resolution, base_channels or cfg.base_channels)
        self.sizes = [cfg.resolution // 2 ** (i + 1) for i in range(len(ch))]  # map size after each stage
        sn = spectral_norm if self.spectral else (lambda m: m)
        c_in = cfg.channels
        self.stages = nn.ModuleList()
        for i, c in enumerate(ch):
            norm = [nn.BatchNorm2d(c)] if self.batchnorm and i > 0 else []
            self.stages.append(nn.Sequential(sn(nn.Conv2d(c_in, c, 4, 2, 1, bias=not norm)), *norm, nn.LeakyReLU(0.2)))
            c_in = c
        self.flatten = FlattenNHWC()
        feat = c_in * s0 * s0
        self.out = sn(nn.Linear(feat, 1))
        self.embed = sn(nn.Embedding(max(cfg.num_classes, 1), feat))
        # the 8x8 map (at 28 px the last, 7x7) -> the image at half size; a quarter of the map twice as large -> that
        # quarter of the image at full size
        self.i8 = self.sizes.index(8) if 8 in self.sizes else len(self.sizes) - 1
        self.i16 = self.i8 - 1
        ups = (cfg.resolution // 2 // self.sizes[self.i8]).bit_length() - 1
        self.decode_whole = decoder(ch[self.i8], cfg.channels, ups)
        self.decode_part = decoder(ch[self.i16], cfg.channels, ups)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, quadrants: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (N,); with ``quadrants`` (M,) also the reconstruction L1 of the first M images (the real ones)."""
        maps = []
        h = x
        for stage in self.stages:
            h = stage(h)
            maps.append(h)
        flat = self.flatten(h)
        logits = self.out(flat).squeeze(1) + (self.embed(labels) * flat).sum(1)
        if quadrants is None:
            return logits
        m = len(quadrants)
        real = x[:m].float()
        whole = self.decode_whole(maps[self.i8][:m]).float()
        part = self.decode_part(quarter(maps[self.i16][:m], quadrants)).float()
        loss = (whole - F.avg_pool2d(real, 2)).abs().mean() + (part - quarter(real, quadrants)).abs().mean()
        return logits, loss


class BNFastGANDiscriminator(FastGANDiscriminator):
    batchnorm = True


class PlainFastGANDiscriminator(FastGANDiscriminator):
    spectral = False


networks.GENERATORS["fastgan"] = FastGANGenerator
networks.DISCRIMINATORS |= {"fastgan": FastGANDiscriminator, "fastgan_bn": BNFastGANDiscriminator,
                            "fastgan_plain": PlainFastGANDiscriminator}
