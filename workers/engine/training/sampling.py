"""The order in which a run sees its training images: a function of (seed, epoch, process), so a
run resumed from a checkpoint in the middle of an epoch sees exactly the batches it had left."""
from __future__ import annotations

import copy
import math
import os
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import CachedImages
from ..pipelines.batched import batched_form
from ..splits import shards


class EpochSampler(Sampler[int]):
    """One process's images of an epoch, shuffled afresh each epoch from the seed.

    With several processes (S3) each takes its shard: the shards of an epoch are disjoint, cover
    the set and spread every label evenly (`splits.shards`); a shorter shard repeats one of its
    images, so every process runs the same number of batches (each batch ends in a collective
    step all must join). With sample weights, images are drawn by weight instead of shuffled.
    `set_epoch(epoch, skip)` leaves out the first `skip` images: those a resumed run had trained on.
    """

    def __init__(self, labels: list, seed: int, rank: int = 0, world: int = 1, weights: list[float] | None = None):
        self.labels, self.seed, self.rank, self.world = list(labels), seed, rank, world
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def shard(self) -> list[int]:
        everything = list(range(len(self.labels)))
        if self.world == 1:
            return everything
        return shards(everything, self.labels, self.world, self.seed + self.epoch)[self.rank]

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.world)

    def order(self) -> list[int]:
        shard = self.shard()
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 64 + self.rank)
        if self.weights is not None:
            picks = torch.multinomial(self.weights[shard], len(self), replacement=True, generator=generator).tolist()
        else:
            picks = torch.randperm(len(shard), generator=generator).tolist()
            picks = picks + picks[: len(self) - len(picks)]
        return [shard[k] for k in picks]

    def __iter__(self):
        # Each position goes with its epoch: a dataset's per-sample draws (augmentation, patches) depend on it, and
        # loader processes hold copies of the dataset that a `set_epoch` in this process would never reach.
        return iter([(position, self.epoch) for position in self.order()[self.skip:]])


def loader_workers(device: torch.device, processes: int) -> int:
    """Reading processes per training process: on a GPU machine the cores are free to read; on a CPU they train."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // processes - 1))


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler, device: torch.device, processes: int = 1) -> DataLoader:
    workers = loader_workers(device, processes)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, pin_memory=device.type == "cuda",
                      num_workers=workers, persistent_workers=workers > 0)


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of everything random in one batch (augmentation, dropout): fixed by the batch's place in the run."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + batch) * 64 + rank & 0x7FFFFFFF


def on_batches(train_set: Dataset) -> tuple[Dataset, Callable | None]:
    """The training set as the loader should read it, and the augmentation to apply to whole batches.

    When every step has a batched form (4x faster than per image on a CPU, and done on the GPU when training
    is) or there is no augmentation, the loader reads raw pixels, scaled on the device; else the set as it is."""
    if not isinstance(train_set, CachedImages):
        return train_set, None
    augment = batched_form(train_set.augment)
    if train_set.augment is not None and augment is None:
        return train_set, None  # per-image augmentation in the loader
    plain = copy.copy(train_set)
    plain.augment, plain.raw = None, True
    return plain, augment
