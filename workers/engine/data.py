"""Training-ready data: samples read from the memory-mapped cache, augmented on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .pipelines import Pipeline


class CachedImages(Dataset):
    """Images of one subset as sample records: {"image": float tensor in [0, 1], "target": class index}.

    With an augmentation pipeline, each image is augmented as it is read, with a seed drawn from
    (run seed, epoch, position): every epoch sees new variations, and a run can be repeated
    exactly. The training loop's sampler gives each position with its epoch ((position, epoch)); a plain
    position reads with the epoch `set_epoch` set.
    """

    def __init__(self, cache_path: str | Path, indices: list[int], targets: list[int],
                 augment: Pipeline | None = None, seed: int = 0, keys: list | None = None):
        if len(indices) != len(targets):
            raise ValueError("indices and targets differ in length")
        self.cache_path = str(cache_path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.augment = augment
        self.seed = seed
        self.keys = keys  # what the caller knows each image by (the toolkit: its sample's id), in order
        self.epoch = 0
        # Raw: the stored uint8 pixels, scaled where the model is (`on_device`): a quarter of the bytes
        # through loader processes, pinned memory and the PCIe bus. Only without per-image augmentation.
        self.raw = False
        self._cache = None

    @property
    def cache(self) -> np.ndarray:
        # Opened lazily so each DataLoader worker process maps the file itself.
        if self._cache is None:
            self._cache = np.load(self.cache_path, mmap_mode="r")
        return self._cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getstate__(self):
        # Sent to other processes (data loading, parallel training) without the mapped file: each maps it itself.
        return {**self.__dict__, "_cache": None}

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        item, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        if self.raw and self.augment is None:
            return {"image": torch.from_numpy(np.array(self.cache[self.indices[item]])), "target": self.targets[item]}
        pixels = np.asarray(self.cache[self.indices[item]], dtype=np.float32) / 255.0
        if self.augment is not None:
            seed = hash((self.seed, epoch, int(item))) & 0x7FFFFFFF
            pixels = self.augment(pixels, seed)
        return {"image": torch.from_numpy(np.ascontiguousarray(pixels)), "target": self.targets[item]}


def on_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the training device as floats in [0, 1], whether it was read raw (uint8) or scaled already."""
    images = images.to(device, non_blocking=True)
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images
