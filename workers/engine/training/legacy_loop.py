"""Train and evaluate a classifier, reporting through a JobObserver.

With `processes` > 1 the run is data-parallel (S3): one process per GPU (or per
CPU process), each training on its shard of the training subset, gradients
averaged after every batch (DistributedDataParallel), so all processes hold the
same model. Process 0 is the caller's: it reports progress and metrics, reads
the stop flag and tells the others.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from .architectures import build_model
from .data import CachedImages, on_device
from .observer import JobObserver, SilentObserver
from .pipelines.batched import batched_form
from .processes import die_with_parent
from .splits import shards


@dataclass(frozen=True)
class TrainingConfig:
    architecture: str = "small_cnn"
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    device: str = "cpu"
    seed: int = 0
    processes: int = 1  # data-parallel training processes: one per GPU, or CPU processes
    # Forward passes in 16-bit floats (float16 with loss scaling on a GPU, bfloat16 on a CPU):
    # about twice the speed on GPUs with tensor cores, at no cost in accuracy for these models.
    mixed_precision: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingOutcome:
    model: nn.Module
    epochs_completed: int
    stopped: bool


def resolve_device(name: str, rank: int = 0) -> torch.device:
    if name == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("this worker has no usable GPU")
        if rank >= torch.cuda.device_count():
            raise RuntimeError(f"this worker has {torch.cuda.device_count()} GPU(s); the run asks for one per process")
        return torch.device("cuda", rank)
    return torch.device("cpu")


class ShardSampler(Sampler[int]):
    """One process's shard of the training set (S3), dealt afresh each epoch.

    The shards of an epoch are disjoint, cover the set and spread every label evenly
    (`splits.shards`); a shorter shard repeats one of its samples, so every process runs
    the same number of batches (each batch ends in a collective step that all must join).
    With sample weights, the shard's samples are drawn by weight instead of shuffled.
    """

    def __init__(self, labels: list, rank: int, world: int, seed: int, weights: list[float] | None = None):
        self.labels, self.rank, self.world, self.seed = list(labels), rank, world, seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self) -> list[int]:
        return shards(list(range(len(self.labels))), self.labels, self.world, self.seed + self.epoch)[self.rank]

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.world)

    def __iter__(self):
        shard = self.shard()
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 64 + self.rank)
        if self.weights is not None:
            picks = torch.multinomial(self.weights[shard], len(self), replacement=True, generator=generator).tolist()
        else:
            order = torch.randperm(len(shard), generator=generator).tolist()
            picks = order + order[: len(self) - len(order)]
        return iter([shard[k] for k in picks])


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                sample_weights: list[float] | None = None, sampler: Sampler | None = None, processes: int = 1) -> DataLoader:
    """Batches in a seeded order; with sample weights, drawn by weight (with replacement) instead; or a given sampler."""
    generator = torch.Generator().manual_seed(seed)
    if sampler is None and sample_weights is not None:
        sampler = WeightedRandomSampler(sample_weights, num_samples=len(sample_weights), replacement=True, generator=generator)
    workers = loader_workers(device, processes)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, generator=generator,
        pin_memory=device.type == "cuda", num_workers=workers, persistent_workers=workers > 0,
    )


def loader_workers(device: torch.device, processes: int) -> int:
    """Reading processes per training process: on a GPU machine the cores are free to read; on a CPU they train."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // processes - 1))


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    return hash((seed, epoch, batch, rank)) & 0x7FFFFFFF


def train_classifier(
    config: TrainingConfig,
    train_set: Dataset,
    validation_set: Dataset,
    in_channels: int,
    num_classes: int,
    observer: JobObserver,
    sample_weights: list[float] | None = None,
) -> TrainingOutcome:
    """Train with Adam and cross-entropy; stops after the current batch when asked."""
    if config.processes > 1:
        return train_in_parallel(config, train_set, validation_set, in_channels, num_classes, observer, sample_weights)
    return train_process(config, train_set, validation_set, in_channels, num_classes, observer, sample_weights)


def train_process(config, train_set, validation_set, in_channels, num_classes, observer, sample_weights=None,
                  rank: int = 0, world: int = 1) -> TrainingOutcome:
    """The training loop of one process; with world > 1, on this process's shard, in step with the others."""
    device = resolve_device(config.device, rank)
    model = build_model(config.architecture, in_channels, num_classes, seed=config.seed).to(device)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    optimiser = torch.optim.Adam(trained.parameters(), lr=config.learning_rate)
    precision = MixedPrecision(device, config.mixed_precision)
    loss_fn = nn.CrossEntropyLoss()
    train_set, augment = on_batches(train_set)
    sampler = ShardSampler(train_set.targets.tolist(), rank, world, config.seed, sample_weights) if world > 1 else None
    train_loader = make_loader(train_set, config.batch_size, True, config.seed, device, sample_weights, sampler, world)
    batches = len(train_loader)
    total_steps = config.epochs * batches
    for epoch in range(1, config.epochs + 1):
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # new augmentation draws every epoch, reproducibly
        if sampler is not None:
            sampler.set_epoch(epoch)
        trained.train()
        totals = torch.zeros(3, dtype=torch.double)  # loss sum, correct, seen
        for batch, (images, targets) in enumerate(train_loader):
            images, targets = on_device(images, device), targets.to(device, non_blocking=True)
            if augment is not None:
                images = augment(images, batch_seed(config.seed, epoch, batch, rank))
            optimiser.zero_grad(set_to_none=True)
            with precision.autocast():
                logits = trained(images)
                loss = loss_fn(logits, targets)
            precision.step(loss, optimiser)
            totals += torch.tensor([loss.item() * len(targets), (logits.argmax(1) == targets).sum().item(), len(targets)], dtype=torch.double)
            step = (epoch - 1) * batches + batch + 1
            observer.progress(step, total_steps, f"epoch {epoch} of {config.epochs}, batch {batch + 1} of {batches}")
            if agreed_stop(observer.should_stop(), world, device):
                finish_epoch(observer, epoch, totals, model, validation_set, config, device, rank, world)
                return TrainingOutcome(model.eval(), epoch - 1, stopped=True)
        finish_epoch(observer, epoch, totals, model, validation_set, config, device, rank, world)
    return TrainingOutcome(model.eval(), config.epochs, stopped=False)


class MixedPrecision:
    """Autocast and (for float16) loss scaling, or plain float32 when off."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device_type = device.type
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.enabled = enabled
        # float16 gradients underflow without scaling; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.type, enabled=enabled and self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(optimiser)
        self.scaler.update()


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


def agreed_stop(asked: bool, world: int, device: torch.device) -> bool:
    """Process 0 reads the stop flag; every process learns it in the same batch."""
    if world == 1:
        return asked
    flag = torch.tensor([1.0 if asked else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def finish_epoch(observer, epoch, totals, model, validation_set, config, device, rank, world) -> None:
    if world > 1:
        summed = totals.to(device)
        dist.all_reduce(summed)  # training metrics over every shard, not process 0's alone
        totals = summed.cpu()
    if rank == 0:
        loss_sum, correct, seen = totals.tolist()
        report_epoch(observer, epoch, loss_sum, int(correct), int(seen), model, validation_set, config, device)
    if world > 1:
        dist.barrier()  # the others wait while process 0 validates


def train_in_parallel(config, train_set, validation_set, in_channels, num_classes, observer, sample_weights) -> TrainingOutcome:
    """Processes 1..N-1 are started here (spawned: CUDA and OpenMP do not survive a fork); this one is process 0."""
    world = config.processes
    if config.device == "gpu" and torch.cuda.device_count() < world:
        raise RuntimeError(f"this worker has {torch.cuda.device_count()} GPU(s); the run asks for {world} processes, one per GPU")
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="rendezvous-") as folder:
        rendezvous = f"file://{folder}/group"
        others = [context.Process(target=train_rank, daemon=True, name=f"training-rank-{rank}",
                                  args=(rank, world, rendezvous, config, train_set, in_channels, num_classes, sample_weights))
                  for rank in range(1, world)]
        for process in others:
            process.start()
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, threads // world))  # the processes share this machine's cores
            join_group(config, rendezvous, 0, world)
            outcome = train_process(config, train_set, validation_set, in_channels, num_classes, observer, sample_weights, 0, world)
        finally:
            torch.set_num_threads(threads)
            if dist.is_initialized():
                dist.destroy_process_group()
            for process in others:
                process.join(timeout=60)
                if process.is_alive():
                    process.kill()
    failed = [p.exitcode for p in others if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of the {world - 1} other training processes failed (exit codes {failed})")
    return outcome


def join_group(config: TrainingConfig, rendezvous: str, rank: int, world: int) -> None:
    backend = "nccl" if config.device == "gpu" else "gloo"
    if config.device == "gpu":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=rendezvous, rank=rank, world_size=world)


def train_rank(rank, world, rendezvous, config, train_set, in_channels, num_classes, sample_weights) -> None:
    """Process `rank` > 0: trains its shards in step with process 0 and reports nothing itself."""
    die_with_parent()
    torch.set_num_threads(max(1, torch.get_num_threads() // world))
    join_group(config, rendezvous, rank, world)
    try:
        train_process(config, train_set, [], in_channels, num_classes, SilentObserver(), sample_weights, rank, world)
    finally:
        dist.destroy_process_group()


def report_epoch(observer, epoch, loss_sum, correct, seen, model, validation_set, config, device) -> None:
    """Metrics of an epoch (a partial one too: its batches were trained on and count)."""
    if seen:
        observer.metric(epoch, "train", "loss", loss_sum / seen)
        observer.metric(epoch, "train", "accuracy", correct / seen)
    if len(validation_set):
        val_loss, val_accuracy = evaluate(model, validation_set, config.batch_size, device)
        observer.metric(epoch, "validation", "loss", val_loss)
        observer.metric(epoch, "validation", "accuracy", val_accuracy)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on a dataset."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for images, targets in DataLoader(dataset, batch_size=batch_size):
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    model.train(was_training)
    if not seen:
        return math.nan, math.nan
    return loss_sum / seen, correct / seen
