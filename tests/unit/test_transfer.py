"""Transfer learning in the trainer (M3): frozen phases leave frozen weights and BatchNorm statistics exactly as
they were (or, on request, let BatchNorm keep learning), "the first n blocks" means those blocks, discriminative
rates are the head's rate scaled geometrically down to 1/ratio, an earlier model is fitted to new channels and
classes keeping the rest, and the log says what each phase trains. Small random images and few steps: these
check the mechanics, bench/transfer_evidence.py whether transfer helps."""
import numpy as np
import pytest
import torch
from torch import nn

from workers.engine.data import CachedImages
from workers.engine.observer import SilentObserver
from workers.engine.training.callbacks import Callback, default_callbacks, phase_line
from workers.engine.training.run import train
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData
from workers.engine.zoo.networks import build_network
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.start import ModelStart, from_earlier_model
from workers.engine.zoo.transfer import block_prefixes, freeze, frozen_prefixes, in_block, rate_scales

BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def tiny_data(folder, channels: int = 3, size: int = 32, images: int = 24, classes: int = 2) -> TrainingData:
    """Random images with a class-dependent brightness (so the loss has something to follow): 16 to train, 8 to validate."""
    rng = np.random.default_rng(0)
    targets = np.arange(images) % classes
    pixels = rng.integers(0, 160, (images, channels, size, size)) + (targets * 60)[:, None, None, None]
    np.save(folder / "tiny.npy", pixels.astype(np.uint8))
    train_rows, validation_rows = list(range(16)), list(range(16, images))
    subset = lambda rows: CachedImages(folder / "tiny.npy", rows, targets[rows].tolist())  # noqa: E731
    return TrainingData(subset(train_rows), subset(validation_rows), channels, [f"class{i}" for i in range(classes)])


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("rgb"))


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("grey"), channels=1)


def spec_of(architecture: str, phases: list[dict], **settings):
    # AdamW with a large weight decay: were it applied to a frozen weight (a zero gradient instead of none), it would show.
    return resolve_spec({"model": {"architecture": architecture, **settings.pop("model", {})}, "phases": phases,
                         "batch_size": 8, "optimizer": {"name": "adamw", "weight_decay": 0.5}, **settings})


class BatchnormModes(Callback):
    """Records, at every training step, the BatchNorm layers in training mode."""

    def __init__(self):
        self.training: list[set[str]] = []

    def on_batch_start(self, trainer):
        self.training.append({name for name, module in trainer.model.named_modules()
                              if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training})


def fitted(spec, data, *extra: Callback) -> tuple[Trainer, dict, dict]:
    """The trainer after fit, with the model's state before and after."""
    trainer = Trainer(spec, data, callbacks=[*default_callbacks(spec), *extra])
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer.fit()
    return trainer, before, trainer.model.state_dict()


def block_of(key: str, blocks: list[tuple[str, ...]]) -> int:
    """The block a state-dict key belongs to (keys no block names are the head's, as parameter_groups has it)."""
    return next((i for i, block in enumerate(blocks) if in_block(key, block)), len(blocks) - 1)


def batchnorm_names(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize("architecture", ["resnet18", "mobilenet_v2"])
def test_a_head_only_phase_leaves_every_frozen_weight_and_batchnorm_statistic_exactly_as_it_was(rgb, architecture):
    modes = BatchnormModes()
    trainer, before, after = fitted(spec_of(architecture, [{"epochs": 2, "train": "head"}]), rgb, modes)
    blocks = block_prefixes(trainer.model, architecture)
    head = len(blocks) - 1
    frozen_keys = [key for key in before if key.startswith("network.") and block_of(key, blocks) != head]
    assert any(key.endswith("running_var") for key in frozen_keys) and any(key.endswith("num_batches_tracked") for key in frozen_keys)
    changed = [key for key in frozen_keys if not torch.equal(before[key], after[key])]
    assert not changed, f"frozen but changed: {changed[:5]}"
    head_keys = [key for key in before if key.startswith("network.") and block_of(key, blocks) == head]
    assert head_keys and all(not torch.equal(before[key], after[key]) for key in head_keys), "the head trains"
    # Frozen parameters get no gradient, so AdamW skips them: no step, no state, no weight decay.
    frozen_parameters = [p for name, p in trainer.model.named_parameters() if block_of(name, blocks) != head]
    assert all(p.grad is None and not p.requires_grad for p in frozen_parameters)
    assert all(not trainer.optimizer.state[p] for p in frozen_parameters)
    # In eval mode at every step of both epochs: train() at each epoch's start and the validation pass undo nothing.
    assert len(modes.training) == 4 and all(training == set() for training in modes.training)


def test_train_frozen_batchnorm_lets_batchnorm_learn_inside_frozen_blocks_while_the_convolutions_stay(rgb):
    architecture = "resnet18"
    modes = BatchnormModes()
    spec = spec_of(architecture, [{"epochs": 1, "train": "head"}], model={"train_frozen_batchnorm": True})
    trainer, before, after = fitted(spec, rgb, modes)
    norms = batchnorm_names(trainer.model)
    assert modes.training == [norms, norms], "every BatchNorm layer in training mode"
    for key in before:
        layer = key.rpartition(".")[0]
        if layer in norms:
            assert not torch.equal(before[key], after[key]), f"BatchNorm learns: {key}"
        elif key.startswith("network.") and not key.startswith("network.fc."):
            assert torch.equal(before[key], after[key]), f"frozen: {key}"


@pytest.mark.parametrize("architecture,count", [("resnet18", 2), ("mobilenet_v2", 5), ("small_cnn", 3)])
def test_freezing_the_first_n_blocks_freezes_exactly_those_blocks(rgb, architecture, count):
    trainer, before, after = fitted(spec_of(architecture, [{"epochs": 1, "frozen_blocks": count}]), rgb)
    blocks = block_prefixes(trainer.model, architecture)
    assert len(blocks) == len(MODELS[architecture].blocks)
    for name, parameter in trainer.model.named_parameters():
        frozen = block_of(name, blocks) < count
        assert parameter.requires_grad is not frozen, name
        assert torch.equal(before[name], after[name]) is frozen, f"{name} should {'stay' if frozen else 'train'}"
    for name in batchnorm_names(trainer.model):
        if block_of(name, blocks) < count:
            assert all(torch.equal(before[f"{name}.{b}"], after[f"{name}.{b}"]) for b in BATCHNORM_BUFFERS), name


def test_frozen_prefixes_and_freeze_name_the_blocks_the_registry_lists():
    model = build_network("resnet18", 3, 2)
    assert frozen_prefixes(model, "resnet18", "head", 0) == [("network.conv1", "network.bn1"), ("network.layer1",),
                                                             ("network.layer2",), ("network.layer3",), ("network.layer4",)]
    assert frozen_prefixes(model, "resnet18", "all", 2) == [("network.conv1", "network.bn1"), ("network.layer1",)]
    assert frozen_prefixes(model, "resnet18", "all", 0) == []
    model.train()
    freeze(model, frozen_prefixes(model, "resnet18", "all", 1))
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["network.conv1.weight", "network.bn1.weight",
                                                                               "network.bn1.bias"]
    assert not model.network.bn1.training and model.network.layer1[0].bn1.training
    freeze(model, [])
    assert all(p.requires_grad for p in model.parameters()), "a later phase unfreezes"


def test_discriminative_rates_run_geometrically_from_a_hundredth_for_the_first_block_to_the_full_rate_for_the_head(rgb):
    spec = spec_of("resnet18", [{"epochs": 1, "learning_rate": 1e-2, "layer_rate_ratio": 100}], schedule={"name": "constant"})
    observer = SilentObserver()
    trainer = Trainer(spec, rgb, observer)
    trainer.fit()
    rates = [group["lr"] for group in trainer.optimizer.param_groups]
    assert [group["block"] for group in trainer.optimizer.param_groups] == list(range(6))
    assert rates == pytest.approx([1e-2 * 100 ** -(k / 5) for k in (5, 4, 3, 2, 1, 0)])
    assert rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(1e-2)
    assert {round(later / earlier, 9) for earlier, later in zip(rates, rates[1:])} == {round(100 ** 0.2, 9)}, "evenly on a log scale"
    recorded = [value for _, subset, name, value in observer.metrics if (subset, name) == ("system", "learning_rate")]
    assert recorded == pytest.approx([1e-2]), "the rate shown is the head's, the phase's own"


def test_rate_scales():
    assert rate_scales(1, 100) == [1.0]
    assert rate_scales(3, 100) == pytest.approx([0.01, 0.1, 1.0])
    assert rate_scales(4, 1) == [1.0] * 4


def test_an_earlier_model_gets_a_new_head_and_a_fitted_first_layer_and_keeps_everything_else():
    torch.manual_seed(1)
    source = build_network("resnet18", 3, 5)
    for module in source.modules():  # statistics a trained model would have, so "kept" means something
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    state = source.state_dict()
    model = from_earlier_model("resnet18", state, in_channels=1, num_classes=2)
    fitted_state = model.state_dict()
    assert fitted_state["network.fc.weight"].shape == (2, 512), "the head replaced for two classes"
    assert torch.equal(fitted_state["network.conv1.weight"], state["network.conv1.weight"].sum(dim=1, keepdim=True))
    kept = [key for key in state if not key.startswith(("network.fc.", "network.conv1.", "mean", "std"))]
    assert kept and all(torch.equal(fitted_state[key], state[key]) for key in kept)
    same = from_earlier_model("resnet18", state, in_channels=3, num_classes=5).state_dict()
    assert all(torch.equal(same[key], value) for key, value in state.items()), "same channels and classes: all of it kept"
    older = {key.removeprefix("network."): value for key, value in state.items() if key.startswith("network.")}
    assert torch.equal(from_earlier_model("resnet18", older, 1, 2).state_dict()["network.layer4.1.bn2.running_var"],
                       state["network.layer4.1.bn2.running_var"]), "weights saved before models carried their input handling"


def test_an_earlier_head_is_kept_for_the_same_classes_reordered_for_another_order_and_new_for_other_classes():
    source = build_network("small_cnn", 1, 3)
    state, head = source.state_dict(), source.network.head
    digits = ["0", "1", "2"]

    def head_of(classes, its_classes=digits):
        return from_earlier_model("small_cnn", state, 1, len(classes), its_classes=its_classes, classes=classes).network.head

    assert torch.equal(head_of(digits).weight, head.weight)
    reordered = head_of(["2", "0", "1"])
    assert torch.equal(reordered.weight, head.weight[[2, 0, 1]]) and torch.equal(reordered.bias, head.bias[[2, 0, 1]])
    other = head_of(["5", "6", "7"])
    assert other.weight.shape == head.weight.shape and not torch.equal(other.weight, head.weight), "as many classes, other ones"
    assert torch.equal(head_of(["5", "6", "7"], its_classes=None).weight, head.weight), "names unknown: only the count tells"


def test_a_run_from_an_earlier_model_matches_its_head_to_the_run_classes(grey, tmp_path):
    source = build_network("small_cnn", 1, 2)
    torch.save(source.state_dict(), tmp_path / "earlier.pt")
    spec = spec_of("small_cnn", [{"epochs": 1}], model={"weights": "run", "start_run": 7})
    swapped = ModelStart(state_path=str(tmp_path / "earlier.pt"), classes=("class1", "class0"))
    model = Trainer(spec, grey, start=swapped).model
    assert torch.equal(model.network.head.weight, source.network.head.weight[[1, 0]])
    assert torch.equal(model.network.block2[0].weight, source.network.block2[0].weight)


def test_a_small_cnn_trained_on_one_task_starts_another_with_its_convolutions():
    source = build_network("small_cnn", 1, 5)
    model = from_earlier_model("small_cnn", source.state_dict(), in_channels=3, num_classes=5 + 2)
    assert model.network.head.out_features == 7
    assert torch.equal(model.network.block1[0].weight, source.network.block1[0].weight.repeat(1, 3, 1, 1) / 3)
    assert torch.equal(model.network.block3[0].weight, source.network.block3[0].weight)


def test_the_phase_switch_says_what_each_phase_trains_and_at_what_rates(grey):
    spec = spec_of("small_cnn", [{"epochs": 1, "train": "head", "learning_rate": 2e-3},
                                 {"epochs": 2, "learning_rate": 1e-3, "layer_rate_ratio": 100}])
    observer = SilentObserver()
    train(spec, grey, observer)
    phases = [line for line in observer.lines if line.startswith("Phase")]
    assert phases == [
        "Phase 1 of 2: 1 epoch training the head only (the rest frozen, BatchNorm statistics too) at a learning rate of 0.002.",
        "Phase 2 of 2: 2 epochs training the whole network at a learning rate of 0.001 for the head, down to 1e-05 for the first block.",
    ]
    assert observer.lines.index(phases[1]) == 2, "after epoch 1's line, before epoch 2's"


def test_the_phase_line_names_frozen_blocks_and_the_first_trained_blocks_rate():
    spec = spec_of("resnet18", [{"epochs": 3, "frozen_blocks": 2, "learning_rate": 1e-3, "layer_rate_ratio": 100},
                                {"epochs": 1, "frozen_blocks": 1}], model={"train_frozen_batchnorm": True})
    first, second = spec.phases
    assert phase_line(first, 1, 2, 6, True) == (
        "Phase 1 of 2: 3 epochs training all but the first 2 blocks (frozen, BatchNorm layers still learning) at a learning "
        "rate of 0.001 for the head, down to 6.30957e-05 for block 3 (the first trained).")
    assert phase_line(second, 2, 2, 6) == ("Phase 2 of 2: 1 epoch training all but the first block (frozen, BatchNorm "
                                           "statistics too) at a learning rate of 0.001.")


def test_a_single_phase_that_freezes_is_logged_and_a_plain_run_is_not(grey):
    frozen, plain = SilentObserver(), SilentObserver()
    train(spec_of("small_cnn", [{"epochs": 1, "frozen_blocks": 1}]), grey, frozen)
    train(resolve_spec({"epochs": 1, "batch_size": 8}), grey, plain)
    assert [line for line in frozen.lines if line.startswith("Phase")] == [
        "Phase 1 of 1: 1 epoch training all but the first block (frozen, BatchNorm statistics too) at a learning rate of 0.003."]
    assert not [line for line in plain.lines if line.startswith("Phase")]


def test_two_processes_train_with_frozen_blocks_and_a_head_only_phase(grey):
    # DistributedDataParallel waits for every parameter's gradient unless told some may have none: without that,
    # the second step of a head-only phase fails ("Expected to have finished reduction in the prior iteration").
    spec = spec_of("small_cnn", [{"epochs": 1, "train": "head"}, {"epochs": 1, "frozen_blocks": 2}],
                   resources={"processes": 2}, batch_size=4)
    before = Trainer(resolve_spec({**spec.to_dict(), "resources": {"processes": 1}}), grey).model.state_dict()
    outcome = train(spec, grey)
    after = outcome.model.state_dict()
    assert outcome.ended == "finished"
    for key in before:
        if key.startswith(("network.block1.", "network.block2.")):
            assert torch.equal(before[key], after[key]), f"frozen in both phases, weight decay included: {key}"
        elif key.startswith(("network.block3.", "network.head.")) and not key.endswith("num_batches_tracked"):
            assert not torch.equal(before[key], after[key]), f"trained in phase 2: {key}"


def test_the_validation_pass_puts_each_layer_back_in_its_own_mode(rgb):
    spec = spec_of("mobilenet_v2", [{"epochs": 1, "frozen_blocks": 3}])
    trainer = Trainer(spec, rgb)
    trainer.network.train()
    trainer.set_trainable(spec.phases[0])
    modes = {name: module.training for name, module in trainer.model.named_modules()}
    trainer.validate()
    assert {name: module.training for name, module in trainer.model.named_modules()} == modes
    assert not modes["network.features.2.conv.0.1"] and modes["network.features.3.conv.0.1"], "frozen block 3, trained block 4"


def test_a_checkpoint_carries_each_groups_block_and_share_of_the_rate(grey):
    spec = spec_of("small_cnn", [{"epochs": 1, "train": "head"}, {"epochs": 1, "frozen_blocks": 1, "layer_rate_ratio": 100}])
    trainer = Trainer(spec, grey)
    trainer.fit()
    checkpoint = trainer.checkpoint()
    groups = [{key: value for key, value in group.items() if key != "params"} for group in trainer.optimizer.param_groups]
    assert [group["lr_scale"] for group in groups] == pytest.approx([0.01, 100 ** (-2 / 3), 100 ** (-1 / 3), 1.0])
    resumed = Trainer(spec, grey)
    resumed.restore(checkpoint)
    assert [{key: value for key, value in group.items() if key != "params"} for group in resumed.optimizer.param_groups] == groups
