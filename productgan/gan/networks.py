"""Class-conditional generator and discriminator networks.

``dcgan``: the classic DCGAN (Radford et al. 2015) with the class fed as an embedding concatenated to z
(generator) and as a projection term (discriminator), BatchNorm in G, LeakyReLU in D.
"""

from __future__ import annotations

import torch
from torch import nn

from productgan.gan.config import GeneratorConfig, start_size


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s0, n_up = start_size(cfg.resolution)
        ch = [cfg.base_channels * min(2 ** (n_up - i), 8) for i in range(n_up + 1)]
        self.s0, self.c0 = s0, ch[0]
        self.embed = nn.Embedding(max(cfg.num_classes, 1), cfg.latent_dim)
        self.fc = nn.Sequential(
            nn.Linear(2 * cfg.latent_dim, ch[0] * s0 * s0, bias=False),
            nn.BatchNorm1d(ch[0] * s0 * s0),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for i in range(n_up - 1):
            blocks += [
                nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.ConvTranspose2d(ch[n_up - 1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(labels)], dim=1))
        return self.net(h.view(-1, self.c0, self.s0, self.s0))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        s0, n_down = start_size(cfg.resolution)
        ch = [cfg.base_channels * min(2**i, 8) for i in range(n_down)]
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i, c in enumerate(ch):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers += [nn.BatchNorm2d(c)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        feat = c_in * s0 * s0
        self.out = nn.Linear(feat, 1)
        self.embed = nn.Embedding(max(cfg.num_classes, 1), feat)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


GENERATORS: dict[str, type[nn.Module]] = {"dcgan": DCGANGenerator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"dcgan": DCGANDiscriminator}


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    if cfg.arch not in GENERATORS:
        raise ValueError(f"unknown generator arch {cfg.arch!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[cfg.arch](cfg)


def build_discriminator(cfg: GeneratorConfig) -> nn.Module:
    if cfg.arch not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator arch {cfg.arch!r}; known: {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[cfg.arch](cfg)
