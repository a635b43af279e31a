"""Label maps brought back from the plan's grid to a sample's own (tasks/segmentation/grid.py): a volume is resampled a
slab of slices at a time (so that the resampled probabilities of a whole CT never sit in memory at once), with the
values PyTorch's trilinear resampling of the whole gives."""
import pytest
import torch
import torch.nn.functional as F

from workers.engine.tasks.segmentation import grid


@pytest.mark.parametrize(("source", "target"), [((7, 9, 11), (13, 20, 5)), ((20, 16, 16), (9, 16, 16)),
                                                ((1, 4, 4), (3, 8, 8)), ((6, 6, 6), (17, 3, 9))])
def test_a_volume_resampled_slab_by_slab_matches_the_whole_resampled_at_once(monkeypatch, source, target):
    monkeypatch.setattr(grid, "SLAB_VOXELS", 2 * target[1] * target[2])  # two slices a slab: many slabs
    probabilities = torch.rand(3, *source, generator=torch.Generator().manual_seed(0)).softmax(0)
    whole = F.interpolate(probabilities[None], size=target, mode="trilinear", align_corners=False)[0]
    slabs = torch.cat([grid.resampled_slab(probabilities, target, first, min(first + 2, target[0]))
                       for first in range(0, target[0], 2)], dim=1)
    assert torch.allclose(slabs, whole, atol=1e-6)
    labels = grid.labels_on_grid(probabilities, target)
    assert labels.dtype == torch.int64 and torch.equal(labels, whole.argmax(0))


def test_labels_keep_their_place_on_a_finer_grid():
    """Hand-worked: two slices, class 1 only in the second; on four slices the first two stay 0 and the last two are 1
    (output slice 1 reads source position 0.25: 0.75 of the first slice)."""
    probabilities = torch.zeros(2, 2, 2, 2)
    probabilities[0, 0], probabilities[1, 1] = 1.0, 1.0
    labels = grid.labels_on_grid(probabilities, (4, 2, 2))
    assert labels[:, 0, 0].tolist() == [0, 0, 1, 1]
    assert torch.equal(grid.labels_on_grid(probabilities, (2, 2, 2)), probabilities.argmax(0))
