"""Training on the demo data, stopping, data-parallel shards, and ONNX parity with PyTorch."""
import math

import numpy as np
import pytest
import torch

from workers.engine.demo import demo_subsets as demo_data
from workers.engine.export import export_onnx, max_abs_difference, onnx_predict
from workers.engine.observer import SilentObserver
from workers.engine.training import ShardSampler, TrainingConfig, evaluate, train_classifier


@pytest.fixture(scope="module")
def demo_subsets(tmp_path_factory):
    return demo_data(tmp_path_factory.mktemp("demo"))[:3]


@pytest.fixture(scope="module")
def trained(demo_subsets):
    train, validation, _ = demo_subsets
    observer = SilentObserver()
    outcome = train_classifier(TrainingConfig(), train, validation, 1, 2, observer)
    return outcome, observer


def test_demo_run_with_default_settings_beats_90_percent_on_the_test_set(demo_subsets, trained):
    outcome, observer = trained
    _, accuracy = evaluate(outcome.model, demo_subsets[2], 64)
    assert accuracy > 0.9
    assert outcome.epochs_completed == TrainingConfig().epochs and not outcome.stopped
    names = {(subset, name) for _, subset, name, _ in observer.metrics}
    assert names == {("train", "loss"), ("train", "accuracy"), ("validation", "loss"), ("validation", "accuracy")}


def test_onnx_export_matches_pytorch_on_the_test_images(tmp_path, demo_subsets, trained):
    model = trained[0].model
    test = demo_subsets[2]
    images = torch.stack([test[i][0] for i in range(len(test))])
    path = export_onnx(model, images[:2], tmp_path / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "the export must be one self-contained file"
    assert max_abs_difference(model, path, images) < 1e-4
    # The batch axis is dynamic: one image at a time works too.
    assert onnx_predict(path, images[:1].numpy()).shape == (1, 2)


def test_stop_ends_training_after_the_current_batch(demo_subsets):
    class StopAfterThreeBatches(SilentObserver):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def progress(self, done, total, message=""):
            super().progress(done, total, message)
            self.batches = done

        def should_stop(self):
            return self.batches >= 3

    observer = StopAfterThreeBatches()
    outcome = train_classifier(TrainingConfig(epochs=5), demo_subsets[0], demo_subsets[1], 1, 2, observer)
    assert outcome.stopped and outcome.epochs_completed == 0
    assert observer.batches == 3
    # The partial epoch's metrics are kept.
    assert {(e, s, n) for e, s, n, _ in observer.metrics} >= {(1, "train", "loss"), (1, "validation", "accuracy")}


def test_gpu_request_without_cuda_fails_clearly(demo_subsets):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no usable GPU"):
        train_classifier(TrainingConfig(device="gpu", epochs=1), demo_subsets[0], demo_subsets[1], 1, 2, SilentObserver())


def test_training_is_reproducible_from_the_seed(demo_subsets):
    config = TrainingConfig(epochs=1, seed=3)
    first, second = SilentObserver(), SilentObserver()
    train_classifier(config, demo_subsets[0], demo_subsets[1], 1, 2, first)
    train_classifier(config, demo_subsets[0], demo_subsets[1], 1, 2, second)
    assert np.allclose([m[3] for m in first.metrics], [m[3] for m in second.metrics])


def test_the_shards_of_an_epoch_are_disjoint_cover_the_set_and_give_every_process_as_many_batches():
    labels = ["a"] * 7 + ["b"] * 3
    samplers = [ShardSampler(labels, rank, 3, seed=5) for rank in range(3)]
    for epoch in (1, 2):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        shards = [sampler.shard() for sampler in samplers]
        assert sorted(i for shard in shards for i in shard) == list(range(10)), "disjoint and covering"
        assert sorted(len(shard) for shard in shards) == [3, 3, 4], "balanced within one sample"
        assert all(sum(labels[i] == "b" for i in shard) == 1 for shard in shards), "each label spread evenly"
        for sampler, shard in zip(samplers, shards):
            drawn = list(sampler)
            assert len(drawn) == len(sampler) == 4 and set(drawn) == set(shard), "a short shard repeats one of its own"
    samplers[0].set_epoch(1)
    first = samplers[0].shard()
    samplers[0].set_epoch(2)
    assert samplers[0].shard() != first, "dealt afresh each epoch"
    weighted = ShardSampler(labels, 1, 3, seed=5, weights=[0.0] * 7 + [1.0] * 3)
    assert {labels[i] for i in weighted} == {"b"}, "weights draw within the shard"


def test_two_processes_train_one_model_on_their_shards(demo_subsets):
    train, validation, test = demo_subsets
    single, parallel = SilentObserver(), SilentObserver()
    train_classifier(TrainingConfig(epochs=1, batch_size=16), train, validation, 1, 2, single)
    # Gradients are averaged over both processes' batches: like one process with batches twice as large.
    outcome = train_classifier(TrainingConfig(epochs=8, batch_size=16, processes=2), train, validation, 1, 2, parallel)
    batches_alone = single.last_progress[1]
    assert parallel.last_progress == (8 * math.ceil(batches_alone / 2),) * 2, "each process runs half the batches of an epoch"
    assert {(e, s) for e, s, _, _ in parallel.metrics} == {(e, s) for e in range(1, 9) for s in ("train", "validation")}
    assert not outcome.stopped and evaluate(outcome.model, test, 64)[1] > 0.8


def test_a_stop_reaches_every_process(demo_subsets):
    class StopAfterTwoBatches(SilentObserver):
        def should_stop(self):
            return self.last_progress[0] >= 2

    observer = StopAfterTwoBatches()
    outcome = train_classifier(TrainingConfig(epochs=5, processes=2), demo_subsets[0], demo_subsets[1], 1, 2, observer)
    assert outcome.stopped and outcome.epochs_completed == 0 and observer.last_progress[0] == 2


def test_mixed_precision_trains_as_well(demo_subsets):
    # On this CPU the path runs in bfloat16; on a GPU the same code runs float16 with loss scaling.
    train, validation, test = demo_subsets
    outcome = train_classifier(TrainingConfig(mixed_precision=True), train, validation, 1, 2, SilentObserver())
    assert evaluate(outcome.model, test, 64)[1] > 0.9
