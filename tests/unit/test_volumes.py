"""Volumes: the fingerprint and plan (nnU-Net's rules, worked by hand), the training store (real intensities,
memory-mapped, resampled once), patches, HU reaching the augmentation, and whole-volume prediction by windows."""
import numpy as np
import pytest
import torch

from workers.engine.pipelines import Pipeline
from workers.engine.planning import VolumeFacts, check_plan, fingerprint_of, normalised, plan_for, target_spacing
from workers.engine.store import StoredVolume, VolumeRecords, build_store, patch_of, resample, store_folder
from workers.engine.tasks import task_for
from workers.engine.tasks.windows import starts, window_average

CT = {"rescale_slope": 1.0, "rescale_intercept": -1024.0}


def volume_facts(array, spacing, modality="CT", meta=CT, mask=None):
    return VolumeFacts(lambda: array, spacing, meta, modality, (lambda: mask) if mask is not None else None)


def test_the_fingerprint_takes_intensities_over_the_foreground_in_hounsfield_units():
    air = np.zeros((4, 4, 4), dtype=np.int16)  # stored 0: -1024 HU, the surrounding air, left out
    air[1:3, 1:3, 1:3] = [[[1024, 1064], [1044, 1084]], [[1024, 1064], [1044, 1084]]]  # 0, 40, 20, 60 HU, twice
    fingerprint = fingerprint_of([volume_facts(air, (2.0, 0.5, 0.5))])
    channel = fingerprint["channels"][0]
    assert channel["mean"] == pytest.approx(30.0) and channel["std"] == pytest.approx(np.std([0, 40, 20, 60]))
    assert fingerprint["shapes"] == [[4, 4, 4]] and fingerprint["spacings"] == [[2.0, 0.5, 0.5]]
    assert fingerprint["modalities"] == ["CT"]
    # With a mask, the foreground is the mask: only the two voxels of 60 HU.
    mask = np.zeros_like(air)
    mask[1:3, 2, 2] = 1
    assert fingerprint_of([volume_facts(air, (1, 1, 1), mask=mask)])["channels"][0]["mean"] == pytest.approx(60.0)


def test_the_target_spacing_is_the_median_or_the_10th_percentile_on_a_strongly_anisotropic_axis():
    spacing, why = target_spacing([[1.0, 0.5, 0.5], [1.0, 0.7, 0.7], [2.0, 0.6, 0.6]])
    assert spacing == [1.0, 0.6, 0.6] and why.startswith("the median")
    # Slices of 5 mm against 0.5 mm pixels (10x): the slice axis takes its 10th percentile, not its median.
    thick = [[5.0, 0.5, 0.5]] * 8 + [[1.0, 0.5, 0.5]] * 2
    spacing, why = target_spacing(thick)
    assert spacing == [pytest.approx(np.percentile([5.0] * 8 + [1.0] * 2, 10)), 0.5, 0.5] and "anisotropic" in why


def test_the_plan_normalises_ct_once_for_the_dataset_and_mr_per_volume_and_fits_the_patch():
    rng = np.random.default_rng(0)
    volumes = [volume_facts(rng.integers(900, 1200, (40, 96, 80)).astype(np.int16), (2.0, 1.0, 1.0)) for _ in range(3)]
    plan = plan_for(fingerprint_of(volumes))
    assert plan["normalisation"] == "ct" and plan["target_spacing"] == [2.0, 1.0, 1.0]
    assert plan["clip"][0] < plan["mean"] < plan["clip"][1] and plan["std"] > 0
    # The median shape 40x96x80 is over the CPU's budget (64^3 voxels a patch, two patches a batch): its largest side is
    # halved until it fits, and 3 such patches fit in the memory of two.
    assert plan["patch_size"] == [40, 48, 80] and np.prod(plan["patch_size"]) <= 64 ** 3
    assert plan["batch_size"] == 3 and set(plan["reasons"]) == {"target_spacing", "normalisation", "patch_size", "batch_size"}
    assert not check_plan(plan)
    mr = plan_for(fingerprint_of([volume_facts(np.ones((20, 20, 20), np.uint16), (1, 1, 1), "MR", {})]))
    assert mr["normalisation"] == "zscore" and "clip" not in mr and mr["patch_size"] == [16, 16, 16]
    # A GPU's memory allows the whole median volume.
    assert plan_for(fingerprint_of(volumes), device_memory_bytes=16 * 2**30)["patch_size"] == [40, 96, 80]
    assert check_plan({**plan, "patch_size": [4, 8]}) == {"patch_size": "The patch size is three whole numbers of voxels "
                                                         "(slice, row, column), each from 8 to 512."}


def test_ct_normalisation_clips_then_takes_one_mean_and_std():
    plan = {"normalisation": "ct", "clip": [-100.0, 100.0], "mean": 10.0, "std": 20.0}
    values = np.array([-1000.0, 0.0, 50.0, 400.0], dtype=np.float32)
    assert normalised(values, plan).tolist() == pytest.approx([(-100 - 10) / 20, -0.5, 2.0, 4.5])


def test_the_store_keeps_int16_resamples_once_and_is_memory_mapped(tmp_path):
    volume = (np.arange(8 * 8 * 8).reshape(8, 8, 8) % 300 + 900).astype(np.int16)
    np.save(tmp_path / "a.npy", volume)
    folder = store_folder(tmp_path / "store", [2.0, 1.0, 1.0])
    [path] = build_store([StoredVolume("a.npy", (1.0, 1.0, 1.0), "ab" * 32)], tmp_path, folder, [2.0, 1.0, 1.0])
    stored = np.load(path, mmap_mode="r")
    assert isinstance(stored, np.memmap) and stored.dtype == np.int16 and stored.shape == (1, 4, 8, 8)
    assert path.stat().st_mtime == build_store([StoredVolume("a.npy", (1.0, 1.0, 1.0), "ab" * 32)], tmp_path, folder,
                                               [2.0, 1.0, 1.0])[0].stat().st_mtime, "built once"
    # Labels are resampled by nearest neighbour: no value between two labels appears.
    labels = np.zeros((1, 4, 4, 4), dtype=np.uint8)
    labels[0, :, :2] = 2
    assert set(np.unique(resample(labels, (1, 1, 1), (0.5, 0.5, 0.5), nearest=True))) == {0, 2}


def test_hounsfield_units_reach_the_augmentation_and_the_window_acts_on_them(tmp_path):
    hu = np.array([-1000, -160, 40, 240, 1000], dtype=np.float32)
    stored = np.tile((hu + 1024).astype(np.int16), (1, 4, 4, 1))  # (1, 4, 4, 5): stored values, HU + 1024
    path = tmp_path / "ct.npy"
    np.save(path, stored)
    window = Pipeline.from_steps([{"op": "window", "params": {"center": 40, "width": 400}}])
    records = VolumeRecords([path], [0], [CT], {"normalisation": "none", "patch_size": [4, 4, 5]}, augment=window)
    image = records[0]["image"]
    assert image.dtype == torch.float32 and image.shape == (1, 4, 4, 5)
    # (HU - (40 - 200)) / 400, clipped to [0, 1]: on 0-255 pixels the window would have made everything 1.
    assert image[0, 0, 0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_training_reads_random_patches_of_the_plan_and_each_epoch_draws_again(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(10 * 12 * 14, dtype=np.int16).reshape(1, 10, 12, 14))
    records = VolumeRecords([tmp_path / "v.npy"], [1], [{}], {"normalisation": "none", "patch_size": [4, 6, 8]},
                            patches=True, seed=3)
    first, again, later = records[(0, 1)], records[(0, 1)], records[(0, 2)]
    assert first["image"].shape == (1, 4, 6, 8) and int(first["target"]) == 1
    assert torch.equal(first["image"], again["image"]) and not torch.equal(first["image"], later["image"])
    # A volume smaller than the patch is padded with its lowest value.
    padded = patch_of(np.full((1, 2, 2, 2), 7, np.int16), (3, 3, 3), np.random.default_rng(0))
    assert padded.shape == (1, 3, 3, 3) and (padded == 7).all()
    assert records.as_patches()[0]["image"].shape == (1, 4, 6, 8)


def test_a_volume_larger_than_the_patch_is_predicted_by_averaging_windows():
    assert starts(10, 4) == [0, 2, 4, 6] and starts(4, 4) == [0] and starts(3, 4) == [0]

    class MeanOfWindow(torch.nn.Module):
        def forward(self, volumes):
            assert volumes.shape[2:] == (2, 2, 2)
            return volumes.mean(dim=(1, 2, 3, 4)).unsqueeze(1)

    volume = torch.arange(4 * 4 * 4, dtype=torch.float32).view(1, 1, 4, 4, 4)
    # Windows of 2 at starts 0, 1, 2 on each axis: 27 windows whose means average to the volume's mean.
    assert window_average(MeanOfWindow(), volume, (2, 2, 2)).item() == pytest.approx(volume.mean().item())
    task = task_for("classification", ["a", "b"], dims=3, window=(2, 2, 2))
    assert task.predict(MeanOfWindow(), volume).item() == pytest.approx(volume.mean().item())
