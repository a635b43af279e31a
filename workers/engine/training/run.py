"""Train a spec on data: in this process, or data-parallel over several (S3).

With `resources.processes` > 1 the run is one process per GPU (or per share of the CPU), each
training on its shard of the training subset, gradients averaged after every batch
(DistributedDataParallel), so all hold the same model. Process 0 is the caller's: it reports,
keeps the best epoch and writes checkpoints; the others resume from the same checkpoint.
"""
from __future__ import annotations

import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..observer import JobObserver, SilentObserver
from ..processes import die_with_parent
from .spec import TrainingSpec, resolve_spec
from .trainer import Trainer, TrainingData, TrainingOutcome, resumed_trainer


def train(spec: TrainingSpec, data: TrainingData, observer: JobObserver | None = None, checkpoint_folder=None,
          resume: bool = False) -> TrainingOutcome:
    """Train to the end of the spec (or a stop, or early stopping); with `resume`, from the checkpoint in the folder."""
    if spec["resources"]["processes"] > 1:
        return train_in_parallel(spec, data, observer, checkpoint_folder, resume)
    trainer = Trainer(spec, data, observer, checkpoint_folder)
    return (resumed_trainer(trainer, checkpoint_folder) if resume else trainer).fit()


def train_in_parallel(spec, data, observer, checkpoint_folder, resume) -> TrainingOutcome:
    """Processes 1..N-1 are started here (spawned: CUDA and OpenMP do not survive a fork); this one is process 0."""
    world = spec["resources"]["processes"]
    gpu = spec["resources"]["device"] == "gpu"
    if gpu and torch.cuda.device_count() < world:
        raise RuntimeError(f"this worker has {torch.cuda.device_count()} GPU(s); the run asks for {world} processes, one per GPU")
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="rendezvous-") as folder:
        rendezvous = f"file://{folder}/group"
        others = [context.Process(target=train_rank, daemon=True, name=f"training-rank-{rank}",
                                  args=(rank, world, rendezvous, spec.to_dict(), data, checkpoint_folder if resume else None))
                  for rank in range(1, world)]
        for process in others:
            process.start()
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, threads // world))  # the processes share this machine's cores
            join_group(gpu, rendezvous, 0, world)
            trainer = Trainer(spec, data, observer or SilentObserver(), checkpoint_folder, rank=0, world=world)
            outcome = (resumed_trainer(trainer, checkpoint_folder) if resume else trainer).fit()
            dist.barrier()  # every process done with its collectives before any tears the group down (gloo aborts otherwise)
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


def join_group(gpu: bool, rendezvous: str, rank: int, world: int) -> None:
    if gpu:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if gpu else "gloo", init_method=rendezvous, rank=rank, world_size=world)


def train_rank(rank, world, rendezvous, spec_data, data, resume_folder) -> None:
    """Process `rank` > 0: trains its shards in step with process 0 and reports nothing itself."""
    die_with_parent()
    torch.set_num_threads(max(1, torch.get_num_threads() // world))
    spec = resolve_spec(spec_data)
    join_group(spec["resources"]["device"] == "gpu", rendezvous, rank, world)
    try:
        trainer = Trainer(spec, data, SilentObserver(), rank=rank, world=world)
        (resumed_trainer(trainer, resume_folder) if resume_folder else trainer).fit()
        dist.barrier()
    finally:
        dist.destroy_process_group()
