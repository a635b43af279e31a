"""The trainer: a model, its optimizer, loss, precision and explicit state, stepped through the
spec's epochs while callbacks (callbacks.py) do everything else.

Everything random in a batch draws from a seed fixed by the batch's place in the run (seed, epoch,
batch, process), and the image order from (seed, epoch): so the state a checkpoint must hold to
resume exactly is what `TrainerState` and the model, optimizer and scaler hold, and a run killed
and resumed records the same metrics as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..data import on_device
from ..observer import JobObserver, SilentObserver
from ..tasks import METRICS, Task, task_for
from ..zoo.start import ModelStart, starting_model
from ..zoo.transfer import block_prefixes, freeze, frozen_prefixes, parameter_groups, rate_scales
from . import checkpoints
from .callbacks import Callback, default_callbacks
from .evaluation import evaluate
from .losses import LossContext
from .sampling import EpochSampler, batch_seed, make_loader, on_batches
from .schedules import Plateau
from .spec import Phase, TrainingSpec

ENDINGS = ("finished", "stopped", "early_stopping")


@dataclass
class TrainingData:
    train: Dataset            # sample records {"image", and the task's target key}; `targets` lists the class indices
    validation: Dataset
    in_channels: int
    classes: list[str]
    sample_weights: list[float] | None = None  # weighted sampling: each training image's chance
    dims: int = 2             # spatial dimensions of the samples: 2 (images) or 3 (volumes)
    # Data from a plan (volumes, 2D images with real intensities): the patch size trained on, which predictions of
    # whole samples slide; such samples come normalised by the plan.
    window: tuple[int, ...] | None = None

    @property
    def class_counts(self) -> tuple[int, ...]:
        counts = torch.bincount(torch.as_tensor(self.train.targets), minlength=len(self.classes))
        return tuple(counts.tolist())


@dataclass
class TrainerState:
    epoch: int = 0                   # epochs completed
    batch: int = 0                   # batches done in the epoch under way
    step: int = 0                    # optimizer steps in all
    best_value: float | None = None  # of the monitored metric, and the epoch it came from
    best_epoch: int = 0
    patience_best: float | None = None  # early stopping's reference, and epochs since it improved
    bad_epochs: int = 0
    plateau: Plateau = field(default_factory=Plateau)
    ended: str = ""                  # one of ENDINGS once the run is over

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainerState:
        return cls(**{**values, "plateau": Plateau(**values["plateau"])})


@dataclass
class TrainingOutcome:
    model: nn.Module                # as the last step left it, in eval mode, on the CPU
    best_weights: dict | None       # the state dict of the best epoch (None: no epoch was measured)
    state: TrainerState

    @property
    def ended(self) -> str:
        return self.state.ended

    def kept_model(self) -> nn.Module:
        """The model to keep: the best epoch's weights when there is one, else the last."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return self.model.eval()


def resolve_device(name: str, rank: int = 0) -> torch.device:
    if name == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("this worker has no usable GPU")
        if rank >= torch.cuda.device_count():
            raise RuntimeError(f"this worker has {torch.cuda.device_count()} GPU(s); the run asks for one per process")
        return torch.device("cuda", rank)
    return torch.device("cpu")


class MixedPrecision:
    """Autocast and (for float16) loss scaling, or plain float32 when off; gradient clipping on the true gradients."""

    def __init__(self, device: torch.device, enabled: bool, clip_norm: float = 0.0):
        self.device_type = device.type
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.enabled, self.clip_norm = enabled, clip_norm
        # float16 gradients underflow without scaling; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.type, enabled=enabled and self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters) -> None:
        self.scaler.scale(loss).backward()
        if self.clip_norm:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters, self.clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()


def uses_mixed_precision(spec: TrainingSpec, device: torch.device) -> bool:
    return spec["precision"] == "mixed" or (spec["precision"] == "auto" and device.type == "cuda")


class Trainer:
    def __init__(self, spec: TrainingSpec, data: TrainingData, observer: JobObserver | None = None,
                 checkpoint_folder=None, callbacks: list[Callback] | None = None, rank: int = 0, world: int = 1,
                 start: ModelStart | None = None):
        self.spec, self.data, self.rank, self.world = spec, data, rank, world
        self.observer = observer or SilentObserver()
        self.device = resolve_device(spec["resources"]["device"], rank)
        self.task: Task = task_for(spec["task"], data.classes, data.dims, spec.loss.probabilities, data.window)
        self.num_classes = self.task.outputs
        self.architecture = spec["model"]["architecture"]
        self.model = starting_model(spec["model"], data.in_channels, self.num_classes, start or ModelStart(),
                                    seed=spec["seed"], classes=data.classes, plan=spec["data"].get("plan")).to(self.device)
        if data.window is not None:  # a plan's data (volumes, 2D images with real intensities) come normalised
            self.model.take_normalised_input()
        elif spec["model"].get("weights") == "run" and data.dims == 2 and self.model.takes_normalised_input:
            self.model.take_plain_images()  # an earlier run's model of plan-normalised images, now on [0, 1] pixels
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)  # what tensor cores read fastest
        self.network = self.parallel_network() if world > 1 else self.model
        # One group per block of the network: phases freeze blocks and give each its share of the rate.
        self.optimizer = spec.optimizer.build(parameter_groups(self.model, self.architecture))
        self.block_count = len(block_prefixes(self.model, self.architecture))
        self.loss_fn = spec.loss.build(LossContext(self.num_classes, data.class_counts)).to(self.device)
        self.precision = MixedPrecision(self.device, uses_mixed_precision(spec, self.device), spec["gradient_clipping"])
        self.train_set, self.augment = on_batches(data.train)
        self.sampler = EpochSampler(torch.as_tensor(data.train.targets).tolist(), spec["seed"], rank, world, data.sample_weights)
        self.loader = make_loader(self.train_set, spec["batch_size"], self.sampler, self.device, world)
        self.steps_per_epoch = len(self.loader)
        self.train_metrics = [m for m in spec["metrics"] if not METRICS[m].needs_scores]
        self.tally = self.task.tally(self.device)
        self.state = TrainerState()
        self.epoch_started, self.epoch_images = time.perf_counter(), 0
        self.trainable: Phase | None = None
        callbacks = default_callbacks(spec, checkpoint_folder if rank == 0 else None) if callbacks is None else callbacks
        self.callbacks = [c for c in callbacks if rank == 0 or c.every_process]
        self.check_monitor()

    def parallel_network(self) -> nn.Module:
        """The model wrapped for data-parallel steps. DistributedDataParallel waits for a gradient of every parameter
        it was built with; a phase that freezes some gives them none, so the wrapper is told to look for unused
        ones (a walk of the autograd graph per step: only when some phase freezes). Unused on every process, a
        frozen parameter's gradient stays None, so the optimizer skips it (weight decay included)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=self.spec.freezes)

    def check_monitor(self) -> None:
        subset, name, _ = self.spec.monitored
        if subset == "validation" and not len(self.data.validation):
            raise ValueError(f"the run monitors the validation {name} but the validation subset is empty")

    # -- the loop ---------------------------------------------------------------------------------------------

    def fit(self) -> TrainingOutcome:
        self.emit("on_fit_start")
        while self.state.epoch < self.spec.epochs and not self.state.ended:
            if not self.train_epoch():
                self.state.ended = "stopped"
                self.emit("on_stop")
                break
            metrics = self.measure_epoch()
            self.emit("on_epoch_end", metrics)
            self.share_decisions()
        if not self.state.ended:
            self.state.ended = "finished"
        self.emit("on_fit_end")
        keeper = next((c for c in self.callbacks if hasattr(c, "weights")), None)
        return TrainingOutcome(self.model.cpu().eval(), keeper.weights if keeper else None, self.state)

    def train_epoch(self) -> bool:
        """Train the rest of the epoch under way; False when asked to stop (after the current batch)."""
        epoch = self.state.epoch + 1
        self.network.train()
        self.emit("on_epoch_start")
        self.sampler.set_epoch(epoch, self.state.batch * self.spec["batch_size"])
        self.epoch_started, self.epoch_images = time.perf_counter(), 0
        for batch in self.loader:
            self.train_step(batch, epoch)
            if self.agreed(self.observer.should_stop()):
                return False
        return True

    def train_step(self, batch: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        """One optimizer step on a batch of sample records; returns the batch's loss (detached, on the device:
        reading it waits for the GPU)."""
        seed = batch_seed(self.spec["seed"], epoch, self.state.batch, self.rank)
        torch.manual_seed(seed)  # dropout and the like: fixed by the batch's place in the run
        self.emit("on_batch_start")
        images = on_device(batch["image"], self.device)
        targets = batch[self.task.target_key].to(self.device, non_blocking=True)
        if self.augment is not None:
            images = self.augment(images, seed)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            outputs = self.network(images)
            loss = self.loss_fn(outputs, targets)
        # A deeply supervised network (zoo entry `deep_supervision`) trains on a list of outputs, the finest first: the
        # loss scores them all, the epoch's metrics the finest (the one prediction gives).
        logits = outputs[0] if isinstance(outputs, list | tuple) else outputs
        self.precision.step(loss, self.optimizer, self.model.parameters())
        self.tally.add(loss, logits, targets)
        self.epoch_images += len(targets)
        self.state.batch += 1
        self.state.step += 1
        self.emit("on_batch_end")
        return loss.detach()

    def measure_epoch(self) -> dict[str, float]:
        """The epoch's metrics (process 0 measures; the others get {}), and the state moved to its end."""
        seconds = time.perf_counter() - self.epoch_started
        self.reduce_tally()
        metrics: dict[str, float] = {}
        if self.rank == 0:
            metrics.update({f"train.{k}": v for k, v in self.tally.summary(self.train_metrics).items()})
            metrics.update({f"validation.{k}": v for k, v in self.validate().items()})
            metrics.update(self.system_metrics(seconds))
        self.state.epoch += 1
        self.state.batch = 0
        self.tally = self.task.tally(self.device)
        return metrics

    def validate(self) -> dict[str, float]:
        return evaluate(self.model, self.data.validation, self.loss_fn, self.task, self.spec["metrics"],
                        self.spec["batch_size"], self.device, self.precision.autocast)

    def system_metrics(self, seconds: float) -> dict[str, float]:
        if self.device.type == "cuda":
            memory = torch.cuda.max_memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak resident size, kB on Linux
        # The head's rate (the last group): the phase's rate, where the other blocks may learn at a share of it.
        return {"system.learning_rate": self.optimizer.param_groups[-1]["lr"],
                "system.images_per_second": self.epoch_images * self.world / max(seconds, 1e-9),
                "system.memory_mb": memory, "system.epoch_seconds": seconds}

    # -- what callbacks and the worker use ----------------------------------------------------------------------

    def emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def set_learning_rate(self, rate: float) -> None:
        """Every parameter group's rate for the next step (a group may scale it by its `lr_scale`)."""
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)

    def log(self, message: str) -> None:
        if self.rank == 0:
            self.observer.log(message)

    def set_trainable(self, phase: Phase) -> None:
        """What a phase trains (the whole network, its head, all but its first n blocks) and each block's share
        of the rate. Frozen parts get no gradient and their BatchNorm layers stay in eval mode, so their running
        statistics do not move (unless the spec keeps BatchNorm trainable); called at every epoch's start, after
        train() put every layer back in training mode."""
        frozen = frozen_prefixes(self.model, self.architecture, phase.train, phase.frozen_blocks)
        freeze(self.model, frozen, self.spec["model"]["train_frozen_batchnorm"])
        if phase != self.trainable:
            scales = rate_scales(self.block_count, phase.layer_rate_ratio)
            for group in self.optimizer.param_groups:
                group["lr_scale"] = scales[group["block"]]
            self.trainable = phase

    def checkpoint(self) -> dict:
        """Everything a resumed run needs, as tensors and plain values (loadable with weights_only=True)."""
        return {"format": checkpoints.FORMAT, "spec": self.spec.to_dict(), "state": self.state.as_dict(),
                "tally": self.tally.state(), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.precision.scaler.state_dict()}

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.precision.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainerState.from_dict(checkpoint["state"])
        self.state.ended = ""
        self.tally.load(checkpoint["tally"])

    # -- processes in step ----------------------------------------------------------------------------------------

    def agreed(self, asked: bool) -> bool:
        """Process 0 reads the stop flag; every process learns it in the same batch."""
        if self.world == 1:
            return asked
        flag = torch.tensor([1.0 if asked else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def reduce_tally(self) -> None:
        if self.world > 1:
            seen = torch.tensor([float(self.tally.seen)], device=self.device, dtype=torch.float64)
            for tensor in (*self.tally.sums(), seen):
                dist.all_reduce(tensor)  # the epoch's training metrics over every shard
            self.tally.seen = int(seen.item())

    def share_decisions(self) -> None:
        """Process 0 decided on early stopping and the plateau's cut: the others take its word."""
        if self.world == 1:
            return
        decided = torch.tensor([1.0 if self.state.ended else 0.0, self.state.plateau.factor], device=self.device,
                               dtype=torch.float64)
        dist.broadcast(decided, src=0)
        if decided[0].item() and not self.state.ended:
            self.state.ended = "early_stopping"
        self.state.plateau.factor = float(decided[1].item())


def resumed_trainer(trainer: Trainer, folder) -> Trainer:
    """The trainer put back where the checkpoint in `folder` left it (as it is when there is none)."""
    if checkpoints.has_checkpoint(folder):
        trainer.restore(checkpoints.load(checkpoints.state_path(folder)))
    return trainer

