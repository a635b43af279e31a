"""Training-ready data: samples read from the memory-mapped cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class CachedImages(Dataset):
    """Images of one subset, as float tensors in [0, 1], with integer class targets."""

    def __init__(self, cache_path: str | Path, indices: list[int], targets: list[int]):
        if len(indices) != len(targets):
            raise ValueError("indices and targets differ in length")
        self.cache_path = str(cache_path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self._cache = None

    @property
    def cache(self) -> np.ndarray:
        # Opened lazily so each DataLoader worker process maps the file itself.
        if self._cache is None:
            self._cache = np.load(self.cache_path, mmap_mode="r")
        return self._cache

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, item):
        pixels = torch.from_numpy(np.array(self.cache[self.indices[item]], dtype=np.float32))
        return pixels / 255.0, self.targets[item]

