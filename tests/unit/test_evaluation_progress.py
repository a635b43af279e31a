"""An evaluation's pass over a subset (workers/engine/training/evaluation.py) reports the samples predicted after each
batch and sees a stop between batches (issue 22: long work shows progress and can be stopped); the evaluation job's
observer (workers/evaluation.py SamplesPredicted) counts both of its passes as one "n of N samples"."""
import numpy as np
import pytest
import torch

from workers.engine.data import CachedImages
from workers.engine.observer import JobStopped
from workers.engine.training.evaluation import measured
from workers.engine.training.spec import resolve_spec
from workers.engine.zoo.networks import build_network


class Recorder:
    """A job's observer that asks to stop once `stop_after` progress reports have come (never, by default)."""

    def __init__(self, stop_after=None):
        self.reports, self.checks, self.stop_after = [], 0, stop_after

    def progress(self, done, total, message=""):
        self.reports.append((done, total, message))

    def should_stop(self):
        self.checks += 1
        return self.stop_after is not None and len(self.reports) >= self.stop_after


@pytest.fixture
def subset(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cache.npy", rng.integers(0, 256, size=(150, 1, 16, 16), dtype=np.uint8))
    return CachedImages(tmp_path / "cache.npy", list(range(150)), rng.integers(0, 2, size=150).tolist())


def run_pass(subset, observer=None):
    torch.manual_seed(0)
    model = build_network("small_cnn", 1, 2).train()
    rows = []
    spec = resolve_spec({"model": {"architecture": "small_cnn"}, "batch_size": 64})
    measured(model, subset, spec, ["a", "b"], (75, 75), metric_names=[], predictions=rows, observer=observer,
             progress_message="Predicting the test subset")
    return model, rows


def test_the_samples_predicted_are_reported_after_each_batch_and_change_nothing(subset):
    observer = Recorder()
    _, rows = run_pass(subset, observer)
    assert observer.reports == [(64, 150, "Predicting the test subset"), (128, 150, "Predicting the test subset"),
                                (150, 150, "Predicting the test subset")]
    assert observer.checks == 3, "the stop flag is read before each batch"
    _, unobserved = run_pass(subset)
    assert rows == unobserved and len(rows) == 150, "watching the pass leaves its predictions as they were"


def test_a_stop_asked_is_seen_before_the_next_batch_and_nothing_is_kept(subset):
    observer = Recorder(stop_after=1)
    model = build_network("small_cnn", 1, 2).train()
    rows = []
    spec = resolve_spec({"model": {"architecture": "small_cnn"}, "batch_size": 64})
    with pytest.raises(JobStopped):
        measured(model, subset, spec, ["a", "b"], (75, 75), metric_names=[], predictions=rows, observer=observer)
    assert [done for done, _, _ in observer.reports] == [64], "one batch predicted, then the stop"
    assert rows == [], "a stopped pass hands back no prediction"
    assert model.training, "the model's modes are put back even when stopped"


def test_the_evaluation_job_counts_both_passes_as_one_total():
    from workers.evaluation import SamplesPredicted

    reporter = Recorder()
    first, second = SamplesPredicted(reporter, 0, 150, "the subset measured"), SamplesPredicted(reporter, 100, 150, "the validation subset")
    first.progress(64, 100)
    first.progress(100, 100)
    second.progress(50, 50)
    assert reporter.reports == [(64, 150, "Predicting the subset measured"), (100, 150, "Predicting the subset measured"),
                                (150, 150, "Predicting the validation subset")]
    assert first.should_stop() is False and reporter.checks == 1
