"""Class-conditional generators and discriminators, chosen by name (``arch`` for G, ``d_arch`` for D).

``dcgan`` (recipes ``baseline`` and ``default``): the classic DCGAN (Radford et al.
2015). G: z and a class embedding concatenated -> linear -> transposed convolutions with BatchNorm and
ReLU -> tanh. D: strided convolutions with BatchNorm and LeakyReLU; the class enters as a projection
term (Miyato & Koyama 2018). Weights drawn from N(0, 0.02).

``dcgan_deep`` (a knob): the DCGAN generator carried to full resolution, the image drawn by a 3x3 convolution.
``dcgan_cbn`` (a knob): the DCGAN generator with class-conditional BatchNorm.
``dcgan_sm`` (a knob): the DCGAN generator with self-modulated BatchNorm (gain and bias from z and the class).
``dcgan_sn`` (discriminator): the DCGAN discriminator with spectral norm instead of BatchNorm.
``dcgan_ln`` (discriminator): the DCGAN discriminator with layer norm instead of BatchNorm (a WGAN-GP critic).
``dcgan_mbstd`` (discriminator): the DCGAN discriminator with a minibatch standard deviation map (ProGAN).

``mlp`` (recipes ``article`` and ``article_wgan_gp``): the fully connected GAN of the article the product
grew from; see ``MLPGenerator`` for how it differs from the article's listing.

``resnet``: SNGAN/BigGAN-style residual networks (Miyato et al. 2018; Brock et al. 2019). G: residual
up-blocks with class-conditional BatchNorm. D: residual down-blocks, spectral norm on every layer, no
normalisation, global sum pooling and a projection head.

Every generator follows the contract ``G(z (N, latent_dim), labels (N,) long) -> (N, C, H, W)`` in [-1, 1], and
takes ``embedding=`` (N, latent_dim) in place of its class embedding (``ConditionalGenerator``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from productgan.gan.config import GeneratorConfig, start_map

# --------------------------------------------------------------------------------------------- widths


def generator_widths(cfg: GeneratorConfig) -> tuple[tuple[int, int], int, list[int]]:
    """((height, width) of the first feature map, number of 2x upsamplings, channels from the first map to the
    last): every generator halves its channels per upsampling from at most 8x ``base_channels``."""
    h0, w0, n_up = start_map(cfg.resolution, cfg.aspect)
    return (h0, w0), n_up, [cfg.base_channels * min(2 ** (n_up - i), 8) for i in range(n_up + 1)]


def discriminator_widths(cfg: GeneratorConfig, base: int) -> tuple[int, list[int]]:
    """(pixels of the last feature map, channels of each downsampling stage): doubling up to 8x ``base``."""
    h0, w0, n_down = start_map(cfg.resolution, cfg.aspect)
    return h0 * w0, [base * min(2**i, 8) for i in range(n_down)]


# --------------------------------------------------------------------------------------------- dcgan


class ConditionalGenerator(nn.Module):
    """What every generator shares: its config and widths, the class embedding fed in beside z (``embed``),
    and the first feature map made from both by ``fc``.

    ``forward(z, labels, embedding=None)``: ``embedding`` (N, latent_dim), when given, is fed in instead of
    ``embed(labels)`` (``mixed_embedding``: interpolation between classes); ``labels`` still choose everything
    else that is class-conditional (CBN gains). A request's choices travel as arguments, never as state set on
    the shared module, so one generator serves many threads at once."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.map0, self.n_up, self.widths = generator_widths(cfg)  # map0: (height, width) of the first map
        self.c0 = self.widths[0]
        self.n_cls = max(cfg.num_classes, 1)
        self.embed = nn.Embedding(self.n_cls, cfg.latent_dim)

    def class_embedding(self, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """``embed(labels)``, or the caller's ``embedding`` in its place."""
        return self.embed(labels) if embedding is None else embedding

    def mixed_embedding(self, labels: torch.Tensor, other: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(1 - w) * embed(labels) + w * embed(other), ``weights`` (N, 1): a class between two classes."""
        return (1 - weights) * self.embed(labels) + weights * self.embed(other)

    def first_map(
        self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = self.fc(torch.cat([z, self.class_embedding(labels, embedding)], dim=1))
        return features.view(-1, self.c0, *self.map0)


def dcgan_fc(cfg: GeneratorConfig, channels: int, map0: tuple[int, int]) -> nn.Sequential:
    """The DCGAN generators' first layer: z and class embedding -> linear -> BatchNorm -> ReLU (the first map)."""
    size = channels * map0[0] * map0[1]
    return nn.Sequential(
        nn.Linear(2 * cfg.latent_dim, size, bias=False),
        nn.BatchNorm1d(size),
        nn.ReLU(inplace=True),
    )


class DCGANGenerator(ConditionalGenerator):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        n_up, ch = self.n_up, self.widths
        self.fc = dcgan_fc(cfg, ch[0], self.map0)
        blocks: list[nn.Module] = []
        for i in range(n_up - 1):
            blocks += [
                nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.ConvTranspose2d(ch[n_up - 1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.first_map(z, labels, embedding))


class DeepDCGANGenerator(ConditionalGenerator):
    """The DCGAN generator carried to full resolution: every upsampling ends in BatchNorm and ReLU (the last at
    ``base_channels`` channels), and a 3x3 convolution makes the image. ``dcgan`` instead draws the image with
    its last transposed convolution straight from the half-resolution map."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        n_up, ch = self.n_up, self.widths
        self.fc = dcgan_fc(cfg, ch[0], self.map0)
        blocks: list[nn.Module] = []
        for i in range(n_up):
            blocks += [
                nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.Conv2d(ch[n_up], cfg.channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.first_map(z, labels, embedding))


class DCGANDiscriminator(nn.Module):
    mbstd_group = 0  # > 0: a minibatch standard deviation map over groups of this many images joins the last map

    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__()
        pixels0, ch = discriminator_widths(cfg, base_channels or cfg.base_channels)
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i, c in enumerate(ch):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers += [nn.BatchNorm2d(c)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        if self.mbstd_group:
            layers += [MinibatchStd(self.mbstd_group)]
            c_in += 1
        self.features = nn.Sequential(*layers, FlattenNHWC())
        feat = c_in * pixels0
        self.out = nn.Linear(feat, 1)
        self.embed = nn.Embedding(max(cfg.num_classes, 1), feat)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


class FlattenNHWC(nn.Module):
    """Flattens an (N, C, H, W) map in H, W, C order. For the channels_last maps D computes that is a view,
    and the gradient flows back in channels_last. ``nn.Flatten``'s C, H, W order copies there, and the
    contiguous gradient it hands back sends the LeakyReLU and BatchNorm backward passes before it down
    PyTorch's mixed-layout path, 20-60x slower on CPUs (benchmarks/RESULTS.md, part 9)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def dcgan_init_(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv/linear/embedding weights ~ N(0, 0.02), BN gains ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------ dcgan_cbn (G) and dcgan_sn (D)


class CBNDCGANGenerator(ConditionalGenerator):
    """The DCGAN generator with class-conditional BatchNorm (the class sets each BN's gain and bias, as in
    BigGAN and SNGAN-projection generators) on top of the class embedding fed with z."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        n_up, ch, n_cls, (h0, w0) = self.n_up, self.widths, self.n_cls, self.map0
        self.fc = nn.Linear(2 * cfg.latent_dim, ch[0] * h0 * w0, bias=False)
        self.bn0 = ConditionalBatchNorm2d(ch[0], n_cls)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False) for i in range(n_up - 1))
        self.bns = nn.ModuleList(ConditionalBatchNorm2d(ch[i + 1], n_cls) for i in range(n_up - 1))
        self.out = nn.ConvTranspose2d(ch[n_up - 1], cfg.channels, 4, 2, 1)
        dcgan_init_(self)
        for m in self.modules():  # dcgan_init_ drew the CBN gains/biases: reset them to identity
            if isinstance(m, ConditionalBatchNorm2d):
                nn.init.ones_(m.gain.weight)
                nn.init.zeros_(m.bias.weight)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn0(self.first_map(z, labels, embedding), labels))
        for up, bn in zip(self.ups, self.bns, strict=True):
            h = F.relu(bn(up(h), labels))
        return torch.tanh(self.out(h))


class SelfModulatedBatchNorm(nn.Module):
    """BatchNorm without its own affine whose gain and bias come from the generator's input (self-modulation,
    Chen et al. 2019): gain ``1 + g(c)`` and bias ``b(c)`` from a one-hidden-layer MLP of ``c`` = z and class
    embedding. The MLP's last layer starts at zero, so at step 0 this is plain BatchNorm."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, cond_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.bn = bn
        self.mlp = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * bn.num_features))
        self.start_plain()

    def start_plain(self) -> None:
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain, bias = self.mlp(cond).view(len(x), 2, -1, *([1] * (x.dim() - 2))).unbind(1)
        return self.bn(x) * (1 + gain) + bias


class SelfModulatedDCGANGenerator(ConditionalGenerator):
    """The DCGAN generator with self-modulated BatchNorm: z and the class set every BatchNorm's gain and bias,
    the first map's included."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        n_up, ch, cond, (h0, w0) = self.n_up, self.widths, 2 * cfg.latent_dim, self.map0
        self.fc = nn.Linear(cond, ch[0] * h0 * w0, bias=False)
        self.bn0 = SelfModulatedBatchNorm(nn.BatchNorm1d(ch[0] * h0 * w0, affine=False), cond)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False) for i in range(n_up - 1))
        self.bns = nn.ModuleList(SelfModulatedBatchNorm(nn.BatchNorm2d(ch[i + 1], affine=False), cond)
                                 for i in range(n_up - 1))
        self.out = nn.ConvTranspose2d(ch[n_up - 1], cfg.channels, 4, 2, 1)
        dcgan_init_(self)
        for m in self.modules():  # dcgan_init_ drew the modulation MLPs: start them as plain BatchNorm
            if isinstance(m, SelfModulatedBatchNorm):
                m.start_plain()

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        cond = torch.cat([z, self.class_embedding(labels, embedding)], dim=1)
        h = F.relu(self.bn0(self.fc(cond), cond)).view(-1, self.c0, *self.map0)
        for up, bn in zip(self.ups, self.bns, strict=True):
            h = F.relu(bn(up(h), cond))
        return torch.tanh(self.out(h))


class SNDCGANDiscriminator(nn.Module):
    """The DCGAN discriminator with spectral norm on every layer instead of BatchNorm (Miyato et al. 2018),
    and a projection head (Miyato & Koyama 2018)."""

    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__()
        pixels0, ch = discriminator_widths(cfg, base_channels or cfg.base_channels)
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for c in ch:
            layers += [spectral_norm(nn.Conv2d(c_in, c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers, FlattenNHWC())
        feat = c_in * pixels0
        self.out = spectral_norm(nn.Linear(feat, 1))
        self.embed = spectral_norm(nn.Embedding(max(cfg.num_classes, 1), feat))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


class LNDCGANDiscriminator(DCGANDiscriminator):
    """The DCGAN discriminator with layer norm instead of BatchNorm: each image is normalised over its own
    channels and pixels (GroupNorm with one group, per-channel gain and bias, as the layer norm of Gulrajani
    et al.'s critics), so no image's score depends on the others in its batch and the gradient penalty of
    WGAN-GP stays a per-image penalty."""

    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__(cfg, base_channels)
        layers = [nn.GroupNorm(1, m.num_features) if isinstance(m, nn.BatchNorm2d) else m for m in self.features]
        self.features = nn.Sequential(*layers)


class MinibatchStd(nn.Module):
    """Appends one feature map: the standard deviation of each feature over a group of up to ``group`` images,
    averaged over channels and pixels (ProGAN/StyleGAN's minibatch standard deviation), so D can tell a batch
    with too little variety from a real one. Groups are consecutive images; the group is the largest size
    <= ``group`` that divides the batch."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = next(k for k in range(min(self.group, n), 0, -1) if n % k == 0)
        y = x.float().reshape(n // g, g, c * h * w)
        y = y - y.mean(dim=1, keepdim=True)  # by hand: torch.var over this dim took ~20x longer on CPU
        std = (y.square().mean(dim=1) + 1e-8).sqrt().mean(dim=1)  # (n // g,)
        return torch.cat([x, std.to(x.dtype).repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


class MbstdDCGANDiscriminator(DCGANDiscriminator):
    """The DCGAN discriminator with a minibatch standard deviation map appended to its last feature map."""

    mbstd_group = 4  # ProGAN's and StyleGAN's group size


# ---------------------------------------------------------------------------------------------- mlp

# The article's widths at the recipes' width 64: G's hidden layers are 2, 4, 8 and 16 x g_channels
# (128, 256, 512, 1024), D's 8, 4 and 2 x d_channels (512, 256, 128).
MLP_G_WIDTHS = (2, 4, 8, 16)
MLP_D_WIDTHS = (8, 4, 2)


class MLPGenerator(ConditionalGenerator):
    """The article's generator: dense 128 -> 256 -> 512 -> 1024 with LeakyReLU 0.2, then a dense layer to
    the image and tanh.

    How it differs from the article's listing, and why: the listing feeds z alone, reshapes the 1024 values
    of its last hidden layer to 28x28 (784 values: it cannot run) and has no output activation. Here z is
    concatenated with a class embedding (every recipe here is class-conditional, so the same requests and
    metrics apply), a dense layer maps 1024 to channels x resolution x resolution (any resolution the data
    has), and tanh bounds the output to [-1, 1], the range of the training images (the DCGAN convention;
    without it G spends its first steps learning the range and its samples must be clipped). Weights are
    Glorot-uniform, the Keras default the listing relies on."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        widths = [cfg.base_channels * k for k in MLP_G_WIDTHS]
        layers: list[nn.Module] = []
        c_in = 2 * cfg.latent_dim
        for width in widths:
            layers += [nn.Linear(c_in, width), nn.LeakyReLU(0.2, inplace=True)]
            c_in = width
        self.fc = layers[0]  # the first layer of z and class: where SeFa directions are read (serve/latent.py)
        self.hidden = nn.Sequential(*layers[1:])
        self.out = nn.Linear(c_in, cfg.channels * cfg.frame[0] * cfg.frame[1])
        glorot_init_(self)

    def first_map(
        self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.fc(torch.cat([z, self.class_embedding(labels, embedding)], dim=1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        h = self.out(self.hidden(self.first_map(z, labels, embedding)))
        return torch.tanh(h).view(-1, self.cfg.channels, *self.cfg.frame)


class MLPDiscriminator(nn.Module):
    """The article's discriminator: the image flattened, dense 512 -> 256 -> 128 with LeakyReLU 0.2, one
    logit; the class enters as a projection term on the last hidden layer like in every other D here
    (the listing is unconditional). No normalisation: it can be a WGAN-GP critic as it is."""

    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__()
        widths = [(base_channels or cfg.base_channels) * k for k in MLP_D_WIDTHS]
        layers: list[nn.Module] = [nn.Flatten()]
        c_in = cfg.channels * cfg.frame[0] * cfg.frame[1]
        for width in widths:
            layers += [nn.Linear(c_in, width), nn.LeakyReLU(0.2, inplace=True)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c_in, 1)
        self.embed = nn.Embedding(max(cfg.num_classes, 1), c_in)
        glorot_init_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


def glorot_init_(module: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform dense weights, zero biases; embeddings ~ N(0, 0.02) (small: the class
    term starts as a nudge, not as noise that drowns z or D's score)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


# -------------------------------------------------------------------------------------------- resnet


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias come from the class (BigGAN / SNGAN-projection generators)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-block: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up-conv1."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, labels)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), labels)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResNetGenerator(ConditionalGenerator):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__(cfg)
        n_up, ch, n_cls, (h0, w0) = self.n_up, self.widths, self.n_cls, self.map0
        self.fc = nn.Linear(2 * cfg.latent_dim, ch[0] * h0 * w0)
        self.blocks = nn.ModuleList(GBlock(ch[i], ch[i + 1], n_cls) for i in range(n_up))
        self.bn_out = nn.BatchNorm2d(ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], cfg.channels, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first_map(z, labels, embedding)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))


class DBlock(nn.Module):
    """Residual down-block with spectral norm; ``first`` skips the leading ReLU (it sees the image)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.skip is not None:
            # the first block pools before its 1x1 conv (cheaper, as in SNGAN's OptimizedBlock)
            s = self.skip(F.avg_pool2d(s, 2)) if (self.first and self.down) else self.skip(s)
            if self.down and not self.first:
                s = F.avg_pool2d(s, 2)
        return h + s


class ResNetDiscriminator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, base_channels: int | None = None) -> None:
        super().__init__()
        pixels0, ch = discriminator_widths(cfg, base_channels or cfg.base_channels)
        blocks = [DBlock(cfg.channels, ch[0], down=True, first=True)]
        blocks += [DBlock(ch[i - 1], ch[i], down=True, first=False) for i in range(1, len(ch))]
        blocks += [DBlock(ch[-1], ch[-1], down=False, first=False)]
        self.blocks = nn.Sequential(*blocks)
        self.out = spectral_norm(nn.Linear(ch[-1], 1))
        self.embed = spectral_norm(nn.Embedding(max(cfg.num_classes, 1), ch[-1]))
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
                nn.init.xavier_uniform_(weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


# ------------------------------------------------------------------------------------------ registry

GENERATORS: dict[str, type[nn.Module]] = {
    "dcgan": DCGANGenerator, "dcgan_deep": DeepDCGANGenerator, "dcgan_cbn": CBNDCGANGenerator,
    "dcgan_sm": SelfModulatedDCGANGenerator,
    "resnet": ResNetGenerator, "mlp": MLPGenerator,
    "sndcgan": CBNDCGANGenerator,  # its first name: generator.json files written before the rename still load
}
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "dcgan": DCGANDiscriminator, "dcgan_sn": SNDCGANDiscriminator, "dcgan_ln": LNDCGANDiscriminator,
    "dcgan_mbstd": MbstdDCGANDiscriminator,
    "resnet": ResNetDiscriminator, "mlp": MLPDiscriminator,
}


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    if cfg.arch not in GENERATORS:
        raise ValueError(f"unknown generator arch {cfg.arch!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[cfg.arch](cfg)


def build_discriminator(cfg: GeneratorConfig, base_channels: int | None = None, arch: str | None = None) -> nn.Module:
    """A discriminator for ``cfg``'s images and categories: ``arch`` (default: the generator's arch, or
    ``dcgan`` for a generator-only arch); ``base_channels`` defaults to G's width."""
    arch = arch or (cfg.arch if cfg.arch in DISCRIMINATORS else "dcgan")
    if arch not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator arch {arch!r}; known: {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[arch](cfg, base_channels)
