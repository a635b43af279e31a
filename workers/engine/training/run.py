"""Train a spec on data: in this process, or data-parallel over several (S3).

With `resources.processes` > 1 the run is one process per GPU (or per share of the CPU), each
training on its shard of the training subset, gradients averaged after every batch
(DistributedDataParallel), so all hold the same model. Process 0 is the caller's: it reports,
keeps the best epoch and writes checkpoints; the others resume from the same checkpoint.
"""
from __future__ import annotations

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..observer import JobObserver, SilentObserver
from ..processes import die_with_parent
from ..zoo.start import ModelStart
from .spec import TrainingSpec, resolve_spec
from .trainer import Trainer, TrainingData, TrainingOutcome, resumed_trainer


def train(spec: TrainingSpec, data: TrainingData, observer: JobObserver | None = None, checkpoint_folder=None,
          resume: bool = False, start: ModelStart | None = None) -> TrainingOutcome:
    """Train to the end of the spec (or a stop, or early stopping); with `resume`, from the checkpoint in the folder.
    `start` says where the files the spec's `model.weights` names are (the model is built from them, then trained)."""
    if spec["resources"]["processes"] > 1:
        return train_in_parallel(spec, data, observer, checkpoint_folder, resume, start)
    trainer = Trainer(spec, data, observer, checkpoint_folder, start=start)
    return (resumed_trainer(trainer, checkpoint_folder) if resume else trainer).fit()


def train_in_parallel(spec, data, observer, checkpoint_folder, resume, start=None) -> TrainingOutcome:
    """Processes 1..N-1 are started here (spawned: CUDA and OpenMP do not survive a fork); this one is process 0."""
    world = spec["resources"]["processes"]
    gpu = spec["resources"]["device"] == "gpu"
    if gpu and torch.cuda.device_count() < world:
        raise RuntimeError(f"this worker has {torch.cuda.device_count()} GPU(s); the run asks for {world} processes, one per GPU")
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="rendezvous-") as folder:
        rendezvous = f"file://{folder}/group"
        others = [context.Process(target=train_rank, daemon=True, name=f"training-rank-{rank}",
                                  args=(rank, world, rendezvous, spec.to_dict(), data, checkpoint_folder if resume else None, start))
                  for rank in range(1, world)]
        for process in others:
            process.start()
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, threads // world))  # the processes share this machine's cores
            join_group(gpu, rendezvous, 0, world)
            trainer = Trainer(spec, data, observer or SilentObserver(), checkpoint_folder, rank=0, world=world, start=start)
            outcome = (resumed_trainer(trainer, checkpoint_folder) if resume else trainer).fit()
            dist.barrier()  # every process done with its collectives before any leaves
            # The others leave first and this one tears the group down last: a gloo process whose peer closed the
            # connection while it was still tearing down aborted (SIGABRT, seen twice in CI after finished runs).
            wait_for(others)
        finally:
            torch.set_num_threads(threads)
            if dist.is_initialized():
                dist.destroy_process_group()  # after a failure, this is what releases the others from their collectives
            wait_for(others)
    failed = [p.exitcode for p in others if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of the {world - 1} other training processes failed (exit codes {failed})")
    return outcome


def wait_for(processes, seconds: float = 60) -> None:
    for process in processes:
        process.join(timeout=seconds)
        if process.is_alive():
            process.kill()
            process.join()


def join_group(gpu: bool, rendezvous: str, rank: int, world: int) -> None:
    if gpu:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if gpu else "gloo", init_method=rendezvous, rank=rank, world_size=world)


def train_rank(rank, world, rendezvous, spec_data, data, resume_folder, start=None) -> None:
    """Process `rank` > 0: trains its shards in step with process 0 and reports nothing itself. It builds its model
    from the same `start` with the same seed, so every process begins with the same weights."""
    die_with_parent()
    torch.set_num_threads(max(1, torch.get_num_threads() // world))
    spec = resolve_spec(spec_data)
    join_group(spec["resources"]["device"] == "gpu", rendezvous, rank, world)
    trainer = Trainer(spec, data, SilentObserver(), rank=rank, world=world, start=start)
    (resumed_trainer(trainer, resume_folder) if resume_folder else trainer).fit()
    dist.barrier()
    leave_at_once()


def leave_at_once() -> None:
    """End this process without tearing down the group, its store or anything else: process 0 does that once every
    other process is gone. Destructors racing a peer's teardown are what aborted; a failure above still exits
    non-zero through the exception, and process 0 reports it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
