"""The trainer on the demo data: defaults, the kept epoch, stop and exact resume, checkpoints,
phases and frozen BatchNorm, schedules, early stopping, data-parallel shards, ONNX parity."""
import math

import numpy as np
import pytest
import torch

from workers.engine.demo import demo_subsets as demo_data
from workers.engine.export import export_onnx, max_abs_difference, onnx_predict
from workers.engine.observer import SilentObserver
from workers.engine.training import checkpoints
from workers.engine.training.evaluation import measured
from workers.engine.training.run import train
from workers.engine.training.sampling import EpochSampler
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    train_set, validation, test, classes = demo_data(tmp_path_factory.mktemp("demo"))
    return TrainingData(train_set, validation, 1, classes), test


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    data, _ = demo
    observer = SilentObserver()
    folder = tmp_path_factory.mktemp("checkpoints")
    outcome = train(resolve_spec({}), data, observer, folder)
    return outcome, observer, folder


def series(observer: SilentObserver, subsets=("train", "validation")) -> dict:
    return {(epoch, subset, name): value for epoch, subset, name, value in observer.metrics if subset in subsets}


def test_the_default_spec_beats_90_percent_on_the_demo_test_set(demo, trained):
    data, test = demo
    outcome, observer, _ = trained
    spec = resolve_spec({})
    model = outcome.kept_model()
    assert measured(model, test, spec, data.classes, data.class_counts)["accuracy"] > 0.9
    assert outcome.ended == "finished" and outcome.state.epoch == spec.epochs
    names = {(subset, name) for _, subset, name, _ in observer.metrics}
    assert names == {("train", "loss"), ("train", "accuracy"), ("validation", "loss"), ("validation", "accuracy"),
                     ("system", "learning_rate"), ("system", "images_per_second"), ("system", "memory_mb"),
                     ("system", "epoch_seconds")}


def test_the_kept_model_is_the_epoch_with_the_lowest_validation_loss(trained):
    outcome, observer, folder = trained
    losses = {epoch: value for (epoch, subset, name), value in series(observer).items() if (subset, name) == ("validation", "loss")}
    best_epoch = min(losses, key=losses.get)
    assert outcome.state.best_epoch == best_epoch and outcome.state.best_value == losses[best_epoch]
    saved = torch.load(checkpoints.best_path(folder), weights_only=True)
    assert saved["epoch"] == best_epoch
    kept = outcome.kept_model().state_dict()
    assert all(torch.equal(kept[key], saved["model"][key]) for key in kept)


def test_checkpoints_load_with_weights_only_and_hold_the_whole_trainer_state(trained):
    _, _, folder = trained
    checkpoint = torch.load(checkpoints.state_path(folder), weights_only=True)
    assert set(checkpoint) == {"format", "spec", "state", "tally", "model", "optimizer", "scaler"}
    assert checkpoint["state"]["epoch"] == resolve_spec({}).epochs and checkpoint["optimizer"]["state"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temporary file is left behind"


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoints.save_atomically({"format": 1, "value": torch.ones(3)}, path)

    def broken_save(payload, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoints.save_atomically({"format": 1, "value": torch.zeros(3)}, path)
    assert torch.equal(checkpoints.load(path)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_onnx_export_matches_pytorch_on_the_test_images(tmp_path, demo, trained):
    model = trained[0].kept_model()
    test = demo[1]
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    path = export_onnx(model, images[:2], tmp_path / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "the export must be one self-contained file"
    assert max_abs_difference(model, path, images) < 1e-4
    assert onnx_predict(path, images[:1].numpy()).shape == (1, 2), "the batch axis is dynamic"


class StopAfter(SilentObserver):
    """Asks to stop once `batches` batches are done."""

    def __init__(self, batches: int):
        super().__init__()
        self.batches = batches

    def should_stop(self):
        return self.last_progress[0] >= self.batches


# Stopped in the middle of epoch 2: with phases, in a phase with a frozen block and discriminative rates, so the
# resumed run must find again what trains and each block's share of the rate.
PHASED = [{"epochs": 1, "train": "head"}, {"epochs": 2, "frozen_blocks": 1, "layer_rate_ratio": 10},
          {"epochs": 1, "learning_rate": 1e-3, "layer_rate_ratio": 100}]


@pytest.mark.parametrize("phases", [[], PHASED], ids=["one phase", "phases"])
def test_a_stopped_run_resumed_from_its_checkpoint_records_what_an_uninterrupted_run_does(demo, tmp_path, phases):
    data, _ = demo
    spec = resolve_spec({"epochs": 4, "metrics": ["accuracy", "auc"], "optimizer": {"name": "sgd"},
                         "schedule": {"name": "one_cycle"}, "phases": phases})
    whole = SilentObserver()
    train(spec, data, whole, tmp_path / "whole")
    steps_per_epoch = math.ceil(len(data.train) / spec["batch_size"])
    interrupted = StopAfter(steps_per_epoch + 5)  # in the middle of epoch 2
    stopped = train(spec, data, interrupted, tmp_path / "parted")
    assert stopped.ended == "stopped" and stopped.state.epoch == 1 and stopped.state.batch == 5
    assert interrupted.last_progress[0] == steps_per_epoch + 5, "ended after the current batch"
    resumed = SilentObserver()
    outcome = train(spec, data, resumed, tmp_path / "parted", resume=True)
    assert outcome.ended == "finished" and outcome.state.step == 4 * steps_per_epoch
    parted = {**series(interrupted), **series(resumed)}
    assert parted.keys() == series(whole).keys()
    assert max(abs(parted[key] - value) for key, value in series(whole).items()) <= 1e-6


def test_training_is_reproducible_from_the_seed(demo):
    data, _ = demo
    spec = resolve_spec({"epochs": 2, "seed": 3})
    first, second = SilentObserver(), SilentObserver()
    train(spec, data, first)
    train(spec, data, second)
    assert series(first) == series(second)


def test_the_learning_rate_follows_the_curve_drawn_before_launch(demo):
    data, _ = demo
    spec = resolve_spec({"epochs": 4, "schedule": {"name": "step", "step_epochs": 1, "gamma": 0.5, "warmup_epochs": 1}})
    observer = SilentObserver()
    train(spec, data, observer)
    steps_per_epoch = math.ceil(len(data.train) / spec["batch_size"])
    curve = spec.rate_curve(steps_per_epoch, points=10_000)
    last_of_each_epoch = [curve["learning_rates"][e * steps_per_epoch - 1] for e in range(1, 5)]
    recorded = [value for (_, _, name), value in sorted(series(observer, ("system",)).items()) if name == "learning_rate"]
    assert recorded == pytest.approx(last_of_each_epoch)
    assert last_of_each_epoch == pytest.approx([1e-3 * 3, 3e-3, 1.5e-3, 0.75e-3]), "warm-up, then halved each epoch"


def test_reduce_on_plateau_cuts_the_rate_when_the_metric_stalls(demo):
    data, _ = demo
    # A monitored training loss that cannot improve by min_delta... the plateau watches the raw metric: a rate of
    # 1e-9 keeps the loss flat, so after `patience` epochs without improvement the rate is cut.
    spec = resolve_spec({"epochs": 5, "optimizer": {"name": "sgd", "learning_rate": 1e-9},
                         "schedule": {"name": "reduce_on_plateau", "patience": 1, "reduction": 0.5}})
    observer = SilentObserver()
    train(spec, data, observer)
    rates = [value for (_, _, name), value in sorted(series(observer, ("system",)).items()) if name == "learning_rate"]
    assert rates[0] == pytest.approx(1e-9) and rates[-1] < rates[0]


def test_early_stopping_ends_the_run_after_the_patience_runs_out(demo):
    data, _ = demo
    spec = resolve_spec({"epochs": 10, "early_stopping": {"enabled": True, "patience": 2, "min_delta": 100.0}})
    observer = SilentObserver()
    outcome = train(spec, data, observer)
    assert outcome.ended == "early_stopping" and outcome.state.epoch == 3, "epoch 1 sets the reference, 2 and 3 fail it"
    assert any("Early stopping" in line for line in observer.lines)


def test_a_head_only_phase_freezes_the_rest_and_its_batchnorm_statistics(demo):
    data, _ = demo
    spec = resolve_spec({"phases": [{"epochs": 1, "train": "head"}, {"epochs": 1, "learning_rate": 1e-4}],
                         "model": {"architecture": "resnet18"}, "batch_size": 64})

    class Snapshot:
        every_process = True

        def __init__(self):
            self.states = []

        def __getattr__(self, hook):
            return lambda trainer, *args: None

        def on_epoch_end(self, trainer, metrics):
            self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    from workers.engine.training.callbacks import default_callbacks
    snapshot = Snapshot()
    trainer = Trainer(spec, data, callbacks=[*default_callbacks(spec), snapshot])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after_frozen, after_all = snapshot.states
    for key in before:
        if key.startswith("network.fc."):
            assert not torch.equal(before[key], after_frozen[key]), f"the head trains: {key}"
        elif key.endswith(("running_mean", "running_var", "weight", "bias")):
            assert torch.equal(before[key], after_frozen[key]), f"frozen in phase 1: {key}"
    assert not torch.equal(after_frozen["network.bn1.running_mean"], after_all["network.bn1.running_mean"]), "phase 2 trains everything"


def test_gradient_clipping_caps_each_update(demo):
    data, _ = demo
    spec = resolve_spec({"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "nesterov": False,
                                                    "weight_decay": 0.0},
                         "schedule": {"name": "constant"}, "gradient_clipping": 1e-6})
    trainer = Trainer(spec, data)
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    steps = trainer.state.step
    assert (after - before).norm() <= steps * 1e-6 * 1.01


def test_gpu_request_without_cuda_fails_clearly(demo):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no usable GPU"):
        train(resolve_spec({"epochs": 1, "resources": {"device": "gpu"}}), demo[0])


def test_the_shards_of_an_epoch_are_disjoint_cover_the_set_and_give_every_process_as_many_batches():
    labels = ["a"] * 7 + ["b"] * 3
    samplers = [EpochSampler(labels, seed=5, rank=rank, world=3) for rank in range(3)]
    for epoch in (1, 2):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        shards = [sampler.shard() for sampler in samplers]
        assert sorted(i for shard in shards for i in shard) == list(range(10)), "disjoint and covering"
        assert sorted(len(shard) for shard in shards) == [3, 3, 4], "balanced within one sample"
        assert all(sum(labels[i] == "b" for i in shard) == 1 for shard in shards), "each label spread evenly"
        for sampler, shard in zip(samplers, shards):
            drawn = [position for position, _ in sampler]
            assert len(drawn) == len(sampler) == 4 and set(drawn) == set(shard), "a short shard repeats one of its own"
            assert {drawn_epoch for _, drawn_epoch in sampler} == {epoch}, "each position goes with its epoch"
    samplers[0].set_epoch(1)
    first = samplers[0].shard()
    samplers[0].set_epoch(2)
    assert samplers[0].shard() != first, "dealt afresh each epoch"
    weighted = EpochSampler(labels, seed=5, rank=1, world=3, weights=[0.0] * 7 + [1.0] * 3)
    assert {labels[i] for i, _ in weighted} == {"b"}, "weights draw within the shard"


def test_a_resumed_epoch_skips_the_images_already_trained_on():
    sampler = EpochSampler(list(range(50)), seed=1)
    sampler.set_epoch(3)
    order = list(sampler)
    sampler.set_epoch(3, skip=20)
    assert list(sampler) == order[20:]


def test_two_processes_train_one_model_on_their_shards(demo):
    data, test = demo
    single, parallel = SilentObserver(), SilentObserver()
    train(resolve_spec({"epochs": 1, "batch_size": 16}), data, single)
    # Gradients are averaged over both processes' batches: like one process with batches twice as large.
    outcome = train(resolve_spec({"epochs": 8, "batch_size": 16, "resources": {"processes": 2}}), data, parallel)
    batches_alone = single.last_progress[1]
    assert parallel.last_progress == (8 * math.ceil(batches_alone / 2),) * 2, "each process runs half the batches of an epoch"
    assert {(e, s) for e, s, _, _ in parallel.metrics} == {(e, s) for e in range(1, 9) for s in ("train", "validation", "system")}
    spec = resolve_spec({})
    accuracy = measured(outcome.kept_model(), test, spec, data.classes)
    assert outcome.ended == "finished" and accuracy["accuracy"] > 0.8


def test_a_stop_reaches_every_process_and_two_processes_resume_from_the_checkpoint(demo, tmp_path):
    data, _ = demo
    spec = resolve_spec({"epochs": 2, "resources": {"processes": 2}})
    observer = StopAfter(2)
    outcome = train(spec, data, observer, tmp_path)
    assert outcome.ended == "stopped" and outcome.state.epoch == 0 and observer.last_progress[0] == 2
    resumed = SilentObserver()
    outcome = train(spec, data, resumed, tmp_path, resume=True)
    assert outcome.ended == "finished" and {e for e, *_ in resumed.metrics} == {1, 2}


def test_mixed_precision_trains_as_well(demo):
    # On this CPU the path runs in bfloat16; on a GPU the same code runs float16 with loss scaling.
    data, test = demo
    spec = resolve_spec({"precision": "mixed", "epochs": 10})
    outcome = train(spec, data)
    result = measured(outcome.kept_model(), test, spec, data.classes)
    assert result["accuracy"] > 0.9


def test_every_loss_trains_a_step_and_gives_a_finite_loss(demo):
    data, _ = demo
    for loss in ({"name": "cross_entropy", "label_smoothing": 0.1}, {"name": "weighted_cross_entropy"}, {"name": "focal"},
                 {"name": "bce"}, {"name": "mse"}):
        observer = SilentObserver()
        train(resolve_spec({"epochs": 1, "loss": loss, "schedule": {"name": "constant"}}), data, observer)
        values = series(observer)
        assert np.isfinite(list(values.values())).all(), loss


def test_a_long_epoch_is_checkpointed_while_it_runs_and_resumes_from_there(demo, tmp_path):
    from workers.engine.training.callbacks import Checkpointer, default_callbacks

    data, _ = demo
    spec = resolve_spec({"epochs": 2, "checkpoints": {"every_minutes": 1}})
    callbacks = default_callbacks(spec, tmp_path)
    checkpointer = next(c for c in callbacks if isinstance(c, Checkpointer))
    checkpointer.every_seconds = 1e-9  # "every N minutes", made every batch
    observer = StopAfter(3)
    trainer = Trainer(spec, data, observer, tmp_path, callbacks=callbacks)
    saved_batches = []
    original_save = checkpointer.save
    checkpointer.save = lambda t: (saved_batches.append(t.state.batch), original_save(t))
    trainer.fit()
    assert saved_batches[:3] == [1, 2, 3], "a checkpoint after every batch of the epoch, then the stop's"
    assert torch.load(checkpoints.state_path(tmp_path), weights_only=True)["state"]["batch"] == 3
    assert any(line.startswith("Checkpoint in epoch 1 after batch 1") for line in observer.lines)
