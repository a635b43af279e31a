"""The engine's starting weights: pretrained files found by name and checked by the hash in it (test-made files,
never a download), and an earlier model carried over with its head replaced for new classes and its first layer
adapted to new channels, passed through the trainer, the data-parallel processes and the rate finder."""
import hashlib
from pathlib import Path

import pytest
import torch

from workers.engine.demo import demo_subsets
from workers.engine.observer import SilentObserver
from workers.engine.training.finder import find_learning_rate
from workers.engine.training.run import train
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData
from workers.engine.zoo.networks import build_network
from workers.engine.zoo.registry import MODELS, WeightsEntry, imagenet
from workers.engine.zoo.start import ModelStart, starting_model
from workers.engine.zoo.weights import WeightsUnavailable, checked_weights, find_weights, read_pretrained


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    train_set, validation, _, classes = demo_subsets(tmp_path_factory.mktemp("demo"), per_class=40)
    return TrainingData(train_set, validation, 1, classes)


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """An empty weights folder, and torchvision's cache elsewhere and empty."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder


def saved_with_its_own_hash(state: dict, folder: Path, name: str) -> WeightsEntry:
    """A state dict saved as torch.hub names files (<name>-<sha256 prefix>.pth), and a weights entry for it."""
    draft = folder / "draft.pth"
    torch.save(state, draft)
    prefix = hashlib.sha256(draft.read_bytes()).hexdigest()[:8]
    draft.rename(folder / f"{name}-{prefix}.pth")
    return imagenet(f"{name}-{prefix}.pth", 0.0)


def test_a_test_made_file_named_by_its_own_hash_loads_with_the_first_layer_adapted_and_a_new_head(offline):
    torch.manual_seed(1)
    published = build_network("mobilenet_v3_small", 3, 1000).network.state_dict()  # as torchvision's file holds it
    entry = saved_with_its_own_hash(published, offline, "mobilenet_v3_small")
    state = read_pretrained(MODELS["mobilenet_v3_small"], entry, offline)
    model = build_network("mobilenet_v3_small", 1, 3, state, entry)
    loaded = model.state_dict()
    first = "network.features.0.0.weight"
    assert torch.allclose(loaded[first], published["features.0.0.weight"].sum(dim=1, keepdim=True)), "grey = R + G + B filters summed"
    assert loaded["network.classifier.3.weight"].shape == (3, 1024), "a new head for 3 classes"
    carried = [key for key in published if not key.startswith(("features.0.0.", "classifier.3."))]
    assert all(torch.equal(loaded[f"network.{key}"], published[key]) for key in carried)
    assert model.mean.flatten().tolist() == pytest.approx([sum(entry.mean) / 3]), "ImageNet's statistics, averaged for one channel"


def test_a_file_with_the_real_name_but_other_content_is_refused_as_not_the_imagenet_file(offline):
    entry = MODELS["resnet18"].weights_named("imagenet")
    (offline / entry.filename).write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailable, match=r"is not the ImageNet \(torchvision\) weights file: its SHA-256 does not begin "
                                                 r"with f37072fd .* Download it again from https://download.pytorch.org"):
        checked_weights(entry, offline)
    with pytest.raises(WeightsUnavailable, match="is not the ImageNet"):
        starting_model({"architecture": "resnet18", "weights": "imagenet"}, 1, 2, ModelStart(str(offline)))


def test_a_missing_file_says_which_file_to_put_where(offline):
    entry = MODELS["mobilenet_v2"].weights_named("imagenet")
    with pytest.raises(WeightsUnavailable) as missing:
        find_weights(entry, offline)
    message = str(missing.value)
    assert entry.filename in message and str(offline) in message and entry.url in message
    assert str(offline.parent / "torch" / "hub" / "checkpoints") in message, "torchvision's cache is searched too"


def earlier_model(architecture="small_cnn", channels=1, classes=2, seed=3):
    torch.manual_seed(seed)
    model = build_network(architecture, channels, classes)
    for name, buffer in model.named_buffers():  # statistics a trained model would have, not the fresh 0 and 1
        if name.endswith(("running_mean", "running_var")):
            buffer.uniform_(0.5, 1.5)
    return model


def test_an_earlier_model_starts_a_run_of_other_classes_and_channels(tmp_path):
    earlier = earlier_model(channels=1, classes=2)
    path = tmp_path / "weights.pt"
    torch.save(earlier.state_dict(), path)
    model = starting_model({"architecture": "small_cnn", "weights": "run", "start_run": 7}, 3, 4, ModelStart(state_path=str(path)))
    before, after = earlier.state_dict(), model.state_dict()
    first = "network.block1.0.weight"
    assert after[first].shape == (16, 3, 3, 3)
    assert torch.allclose(after[first], before[first].repeat(1, 3, 1, 1) / 3), "the grey filters spread over 3 channels"
    assert after["network.head.weight"].shape == (4, 64), "a new head for 4 classes"
    assert not torch.equal(after["network.head.bias"][:2], before["network.head.bias"])
    body = [key for key in before if key.startswith("network.") and not key.startswith(("network.head.", first))]
    assert body and all(torch.equal(after[key], before[key]) for key in body), "everything else carried over, statistics included"
    assert after["mean"].flatten().tolist() == [0.5] * 3


def test_without_the_earlier_models_file_the_start_says_so():
    with pytest.raises(ValueError, match="found no weights"):
        starting_model({"architecture": "small_cnn", "weights": "run", "start_run": 7}, 1, 2, ModelStart())


def start_from_earlier(tmp_path, classes=2):
    earlier = earlier_model(classes=classes)
    path = tmp_path / "earlier.pt"
    torch.save(earlier.state_dict(), path)
    return earlier.state_dict(), ModelStart(state_path=str(path))


HEAD_ONLY = {"model": {"architecture": "small_cnn", "weights": "run", "start_run": 1}, "phases": [{"epochs": 1, "train": "head"}],
             "batch_size": 16, "monitor": "train.loss"}


def assert_body_is(model_state: dict, earlier: dict) -> None:
    body = [key for key in earlier if key.startswith("network.") and not key.startswith("network.head.")]
    assert all(torch.equal(model_state[key], earlier[key]) for key in body), "the frozen body is the earlier model's"


def test_train_passes_the_start_to_the_trainer(demo, tmp_path):
    earlier, start = start_from_earlier(tmp_path, classes=5)
    outcome = train(resolve_spec(HEAD_ONLY), demo, SilentObserver(), start=start)
    assert_body_is(outcome.model.state_dict(), earlier)
    assert outcome.model.state_dict()["network.head.weight"].shape == (2, 64)


def test_every_data_parallel_process_starts_from_the_earlier_model(demo, tmp_path):
    earlier, start = start_from_earlier(tmp_path)
    spec = resolve_spec({**HEAD_ONLY, "resources": {"processes": 2}})
    outcome = train(spec, demo, SilentObserver(), start=start)  # a process without the start would fail to build its model
    assert_body_is(outcome.model.state_dict(), earlier)


def test_the_rate_finder_sweeps_from_the_model_the_run_would_start_from(demo, tmp_path, monkeypatch):
    earlier, start = start_from_earlier(tmp_path)
    built = []
    original = Trainer.__init__

    def noting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append({key: value.clone() for key, value in self.model.state_dict().items()})

    monkeypatch.setattr(Trainer, "__init__", noting)
    found = find_learning_rate(resolve_spec(HEAD_ONLY), demo, steps=3, start=start)
    assert len(found["rates"]) == 3
    assert_body_is(built[0], earlier)
