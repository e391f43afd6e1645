"""The training images held in memory (on the GPU when they fit) and served as batches by indexing.

Images stay uint8 (a quarter of the float size) and are converted per batch. Which images make batch
``step`` is a pure function of (seed, step): each epoch is a permutation drawn from (seed, epoch), so a
resumed or restarted run sees exactly the batches it would have seen, with no loader state to save.
With ``world`` data-parallel ranks each rank takes its own slice of the global batch.
"""

from __future__ import annotations

import numpy as np
import torch

# keep the dataset on the GPU only while it takes less than this share of the free memory
_GPU_SHARE = 0.25


def _wants_device(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes < _GPU_SHARE * free


class ResidentData:
    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        device: torch.device,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        channels_last: bool = True,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images N×C×H×W, got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise ValueError("the train split is empty: nothing to train on")
        images_t = torch.from_numpy(np.ascontiguousarray(images))
        labels_t = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
        self.device = device
        store = device if _wants_device(images_t.nbytes, device) else torch.device("cpu")
        if store.type == "cpu" and device.type == "cuda":
            images_t, labels_t = images_t.pin_memory(), labels_t.pin_memory()
        self.images = images_t.to(store)
        self.labels = labels_t.to(store)
        self.n = len(images_t)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.global_batch = batch_size * world
        self.steps_per_epoch = max(1, self.n // self.global_batch)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            repeats = -(-self.global_batch // self.n)  # a dataset smaller than one batch is repeated
            perm = torch.cat([torch.randperm(self.n, generator=gen) for _ in range(repeats)])
            self._perm, self._epoch = perm.to(self.images.device), epoch
        return self._perm

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float in [-1, 1], labels long) for this rank at ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        start = k * self.global_batch + self.rank * self.batch_size
        idx = self._permutation(epoch)[start : start + self.batch_size]
        x, y = self.images[idx], self.labels[idx]
        if x.device != self.device:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x = x.to(torch.float32).div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=self.memory_format), y
