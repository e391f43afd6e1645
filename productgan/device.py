"""Where tensors live and in which precision: the one device picker, and bf16/fp16 autocast where it pays."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str, local_rank: int = 0, setting: str = "device") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` (this process's GPU: ``cuda:<local_rank>``)
    or ``cuda:N``. ``setting`` names the params key in the error when CUDA is asked for but missing."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"params {setting}={name!r} but CUDA is not available; use auto or cpu")
    return device


def cpuinfo(field: str) -> str:
    """The first ``field`` of /proc/cpuinfo (``model name``, ``flags``), or "" where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            line = next((line for line in fh if line.split(":", 1)[0].strip() == field), "")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip() if ":" in line else ""


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic (AVX512-BF16 or AMX). bf16 autocast is then often, not always,
    faster than fp32: ``train.precision: auto`` measures (productgan/gan/precision_probe.py)."""
    flags = cpuinfo("flags").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision in use: bf16/fp16 on CUDA; bf16 on CPUs with native bf16; else None (fp32). ``auto``
    reads as bf16 here; the trainer measures instead on a CPU (productgan/gan/precision_probe.py)."""
    if precision == "auto":
        precision = "bf16"
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if device.type == "cpu" and precision == "bf16" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``dtype``, or nothing when ``dtype`` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
