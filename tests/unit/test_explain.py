"""Heat maps (workers/engine/explain.py): Grad-CAM against the map worked out by hand on a network whose gradients are
known, and on generated images with a lesion-like blob at a known place, a small model trained on the CPU looks at the
blob: the heat map's peak falls inside it, and a control that pairs each map with another image's blob misses."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from workers.engine.explain import corners, explain, peak_position, resized, target_layer_of
from workers.engine.observer import SilentObserver
from workers.engine.training.run import train
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import TrainingData

SIZE, RADIUS = 48, 5  # pixels: the image's side and the blob's radius
CLASSES = ["clear", "blob"]


class InMemory(Dataset):
    """Sample records as the trainer reads them ({"image", "target"}; the sampler's (position, epoch) keys)."""

    def __init__(self, images: np.ndarray, targets: list[int]):
        self.images, self.targets = torch.from_numpy(images), torch.as_tensor(targets)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        item = key[0] if isinstance(key, tuple) else key
        return {"image": self.images[item], "target": self.targets[item]}


def blob_images(count: int, seed: int, shape=(SIZE, SIZE)) -> tuple[np.ndarray, list[int], list[tuple[float, ...]]]:
    """Noisy grey images (or volumes), every second one with a brighter disc (ball) of RADIUS at a random place:
    (images (N, 1, *shape) in [0, 1], targets, each image's blob centre, drawn for the clear ones too)."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[tuple(slice(0, n) for n in shape)]
    images, targets, centres = [], [], []
    for k in range(count):
        image = rng.normal(0.35, 0.08, shape)
        centre = tuple(rng.uniform(RADIUS + 2, n - RADIUS - 3) for n in shape)
        has_blob = k % 2 == 1
        if has_blob:
            distance = np.sqrt(sum((axis - c) ** 2 for axis, c in zip(grid, centre)))
            image += 0.3 * np.clip(RADIUS + 0.5 - distance, 0, 1)  # a disc with a one-pixel soft edge
        images.append(np.clip(image, 0, 1)[None].astype(np.float32))
        targets.append(int(has_blob))
        centres.append(centre)
    return np.stack(images), targets, centres


def within_blob(peak, centre) -> bool:
    return float(np.sqrt(sum((p - c) ** 2 for p, c in zip(peak, centre)))) <= RADIUS


class GlobalPoolNet(nn.Module):
    """conv -> global average pool -> linear: d score_c / d A_k(i, j) = w_ck / (H W) everywhere, so Grad-CAM is
    ReLU(sum_k w_ck A_k) / (H W) (Selvaraju et al. 2017, section 3.1: it reduces to CAM)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(1, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, images):
        return self.head(self.features(images).mean((2, 3)))


def test_grad_cam_is_the_map_worked_out_by_hand_on_a_global_pooling_network():
    torch.manual_seed(0)
    model, image = GlobalPoolNet(), torch.rand(1, 8, 8)
    explained = explain(model, image, lambda logits: logits.softmax(1), "features", class_index=1)
    activations = model.features(image[None])[0].detach()
    by_hand = torch.relu((model.head.weight[1].detach()[:, None, None] * activations).sum(0))
    assert explained.heat_map.shape == (8, 8) and explained.windows == 1
    np.testing.assert_allclose(explained.heat_map, (by_hand / by_hand.max()).numpy(), atol=1e-5)
    assert explained.probabilities == pytest.approx(model(image[None]).softmax(1)[0].tolist())


class IntensityNet(nn.Module):
    """A 1x1x1 convolution of weight 1, global average pooling, and a head of weights (0, 1): class 1's score is the
    mean intensity, the gradient over the feature map is constant, so Grad-CAM of class 1 is the (positive) input
    itself, times a constant, in any window."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv3d(1, 1, 1, bias=False)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[0.0], [1.0]]))

    def forward(self, volumes):
        return self.head(self.features(volumes).mean((2, 3, 4)))


def test_a_volume_larger_than_the_patch_is_explained_window_by_window_and_stitched_onto_its_whole_grid():
    volume = torch.rand(1, 20, 28, 28) * 0.2
    volume[0, 14:17, 3:7, 20:25] = 1.0  # a bright box near one corner: in some windows, not in others
    explained = explain(IntensityNet(), volume, lambda logits: logits.softmax(1), "features", window=(16, 16, 16), class_index=1)
    assert explained.windows == 2 * 3 * 3 and explained.heat_map.shape == (20, 28, 28)
    # Every window's map is its input times the same constant: stitched and scaled to its peak, the volume itself.
    np.testing.assert_allclose(explained.heat_map, (volume[0] / volume.max()).numpy(), atol=1e-5)
    assert peak_position(explained.heat_map) in {(z, y, x) for z in range(14, 17) for y in range(3, 7) for x in range(20, 25)}


def test_a_model_without_a_convolution_gives_its_prediction_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    explained = explain(model, torch.rand(1, 4, 4), lambda logits: logits.softmax(1), target_layer_of(model, "imported"))
    assert explained.heat_map is None and "prediction alone" in explained.note and sum(explained.probabilities) == pytest.approx(1)


def test_windows_cover_a_volume_larger_than_the_patch_and_one_pass_where_it_fits():
    assert corners((20, 32, 32), (16, 16, 16)) == [(d, h, w) for d in (0, 4) for h in (0, 8, 16) for w in (0, 8, 16)]
    assert corners((16, 16), (16, 16)) == [(0, 0)] and corners((40, 40), None) == [(0, 0)]


def test_a_heat_map_is_resized_onto_the_samples_grid_keeping_where_its_peak_is():
    heat = np.zeros((8, 8), np.float32)
    heat[2, 5] = 1.0
    shown = resized(heat, (64, 64))
    assert shown.shape == (64, 64) and 0 <= shown.min() and shown.max() <= 1
    row, column = peak_position(shown)
    assert 16 <= row < 24 and 40 <= column < 48  # the cell (2, 5) of an 8x8 grid, in 8-pixel cells


@pytest.fixture(scope="module")
def blob_model():
    """small_cnn trained on 320 + 80 generated images: about 40 s on two CPU cores."""
    data = TrainingData(InMemory(*blob_images(320, seed=1)[:2]), InMemory(*blob_images(80, seed=2)[:2]), 1, CLASSES)
    spec = resolve_spec({"epochs": 6, "seed": 0})
    model = train(spec, data, SilentObserver()).kept_model()
    return model, spec


def test_the_heat_maps_peak_falls_on_the_blob_and_a_shuffled_control_misses(blob_model):
    model, spec = blob_model
    images, targets, centres = blob_images(60, seed=3)
    explained = [explain(model, torch.from_numpy(image), spec.loss.probabilities, target_layer_of(model, "small_cnn"))
                 for image in images]
    accuracy = np.mean([int(np.argmax(e.probabilities)) == t for e, t in zip(explained, targets)])
    assert accuracy >= 0.9, "the model must have learnt the blob before its heat maps can be judged"
    positives = [k for k, t in enumerate(targets) if t]
    # The blob class's map, as the viewer shows it for a positive (some may be predicted clear).
    peaks = {k: peak_position(explain(model, torch.from_numpy(images[k]), spec.loss.probabilities,
                                      target_layer_of(model, "small_cnn"), class_index=1).heat_map) for k in positives}
    on_blob = np.mean([within_blob(peaks[k], centres[k]) for k in positives])
    others = np.random.default_rng(0).permutation(positives)
    shuffled = np.mean([within_blob(peaks[k], centres[j]) for k, j in zip(positives, others) if k != j])
    assert on_blob >= 0.8, f"the peak fell on the blob in {on_blob:.0%} of the positives"
    assert shuffled < 0.3, f"the control (another image's blob) matched {shuffled:.0%}: the check cannot tell"
    assert all(explained[k].heat_map.shape == (SIZE, SIZE) for k in positives)
