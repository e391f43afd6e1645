"""The trained generator as files: ``generator.safetensors`` (weights) + ``generator.json`` (config).

This folder is the hand-off between train, evaluate, register and generate. Loading never unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from productgan.gan.config import GeneratorConfig
from productgan.gan.networks import build_generator
from productgan.io import atomic_open, atomic_write_json, read_json

WEIGHTS = "generator.safetensors"
CONFIG = "generator.json"


def save_generator(generator: torch.nn.Module, cfg: GeneratorConfig, out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    with atomic_open(out / WEIGHTS) as fh, open(tmp, "rb") as src:
        fh.write(src.read())
    tmp.unlink()
    atomic_write_json(out / CONFIG, cfg.to_dict())
    return out


def load_generator(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, GeneratorConfig]:
    """Rebuild the generator saved in folder ``path`` (eval mode, on ``device``)."""
    folder = Path(path)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FileNotFoundError(
            f"{folder}: not a generator folder (expected {WEIGHTS} and {CONFIG}); "
            "point at the output of `productgan train`"
        )
    cfg = GeneratorConfig.from_dict(read_json(folder / CONFIG))
    generator = build_generator(cfg)
    generator.load_state_dict(load_file(str(folder / WEIGHTS), device="cpu"))
    return generator.to(device).eval(), cfg
