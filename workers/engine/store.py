"""The training store of volumes: each volume's values as stored (int16 for CT, uint16, float16 where a pipeline
made floats), resampled once to the plan's target spacing, one memory-mapped .npy per volume beside its mask.

Rebuildable: the store is derived from the dataset's arrays and the target spacing alone (its folder is named by
that spacing), so deleting it costs only the time to build it again. Memory-mapped: training reads one patch of a
volume at a time, so the memory a run holds does not grow with the dataset (bench/volume_data_path.py).
Intensities stay real: the rescale slope and intercept are applied as a patch is read, so an augmentation's
window acts on Hounsfield units, and the plan's normalisation comes last. The 8-bit window is for display only.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .observer import JobObserver, JobStopped, SilentObserver
from .planning import channels_of, intensities, normalised, resampled_shape, spacing_of

SAME_SPACING = 0.01  # a spacing within 1% of the target is not resampled


@dataclass(frozen=True)
class StoredVolume:
    """One volume of a dataset as the store needs it: its array's path, spacing (slice, row, column) in mm, and
    its content hash (the store's file name: samples shared by merged datasets are stored once). `dims` 2: a 2D
    image with real intensities, stored as (C, H, W) at the plan's pixel spacing."""
    array: str
    spacing: tuple[float, ...]
    sha256: str
    mask: str = ""
    dims: int = 3


def store_folder(root: Path, target_spacing: Sequence[float]) -> Path:
    key = hashlib.sha256(json.dumps([round(float(s), 4) for s in target_spacing]).encode()).hexdigest()[:12]
    return Path(root) / f"spacing-{key}"


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """Integers keep their type; floats become float16 (half the bytes; a pipeline's floats need no more)."""
    return dtype if np.issubdtype(dtype, np.integer) else np.dtype(np.float16)


def resample(array: np.ndarray, spacing: Sequence[float], target: Sequence[float], nearest: bool = False) -> np.ndarray:
    """A (C, D, H, W) array (or a (C, H, W) image) from `spacing` to `target` (trilinear, bilinear in 2D; nearest
    neighbour for masks, whose labels must not blend); in its own dtype, integers rounded."""
    shape = resampled_shape(list(array.shape[1:]), spacing, target)
    if list(array.shape[1:]) == shape:
        return array
    values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    mode = "nearest-exact" if nearest else ("trilinear" if len(shape) == 3 else "bilinear")
    out = F.interpolate(values, size=shape, mode=mode, **({} if nearest else {"align_corners": False}))[0].numpy()
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(array.dtype)


def needs_resampling(spacing: Sequence[float], target: Sequence[float]) -> bool:
    return any(abs(s - t) > SAME_SPACING * t for s, t in zip(spacing, target))


def build_store(volumes: Sequence[StoredVolume], root: Path, folder: Path, target_spacing: Sequence[float],
                observer: JobObserver | None = None) -> list[Path]:
    """Each volume at the target spacing in `folder` (built where missing; written atomically, so a stopped build
    resumes); returns the stored paths in order. Masks go beside their volume as <sha>.mask.npy."""
    observer = observer or SilentObserver()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for done, volume in enumerate(volumes):
        if observer.should_stop():
            raise JobStopped("stopped by the user")
        path = folder / f"{volume.sha256[:32]}.npy"
        if not path.exists():
            write_resampled(Path(root) / volume.array, volume.spacing, target_spacing, path, dims=volume.dims)
        if volume.mask and not mask_path(path).exists():
            write_resampled(Path(root) / volume.mask, volume.spacing, target_spacing, mask_path(path), nearest=True,
                            dims=volume.dims)
        paths.append(path)
        observer.progress(done + 1, len(volumes), f"volumes at the plan's spacing: {done + 1} of {len(volumes)}")
    return paths


def mask_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".npy", ".mask.npy"))


def write_resampled(source: Path, spacing: Sequence[float], target: Sequence[float], path: Path, nearest: bool = False,
                    dims: int = 3) -> None:
    array = channels_of(np.load(source, mmap_mode="r"), dims)
    spacing = spacing_of(spacing, dims)
    if needs_resampling(spacing, target):
        array = resample(np.asarray(array), spacing, target, nearest)
    array = np.asarray(array).astype(stored_dtype(array.dtype) if not nearest else array.dtype, copy=False)
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as handle:  # a handle: np.save would add .npy to the name
        np.save(handle, np.ascontiguousarray(array))
    os.replace(partial, path)


def volume_statistics(path: Path, meta: dict) -> tuple[float, float]:
    """The mean and std of a stored volume's modality values (what per-volume z-scoring divides by)."""
    stored = np.load(path, mmap_mode="r")
    values = intensities(stored[(slice(None),) + (slice(None, None, 2),) * (stored.ndim - 1)], meta)
    return float(values.mean()), float(max(values.std(), 1e-6))


FOREGROUND_SHARE = 1 / 3    # of training patches centred on a labelled voxel (nnU-Net's oversampling of the foreground)
FOREGROUND_POINTS = 2_000  # labelled voxels remembered per label and volume, to centre patches on


class VolumeRecords(Dataset):
    """Volumes (or 2D images with real intensities) of one subset as sample records {"image": (C, D, H, W) or
    (C, H, W) float32, "target": class index}, and with `masks` the label map under "mask" ((D, H, W) or (H, W)
    integers, 0 the background: the store's <sha>.mask.npy beside each volume).

    Training (`patches=True`) reads a random patch of the plan's size from each memory-mapped volume (padded
    with the volume's lowest value where the volume is smaller, its mask with the background), drawn from (run seed,
    epoch, position) like every augmentation; with masks, a share of the patches (`foreground_share`, a third as in
    nnU-Net) is centred on a voxel of a label drawn among those the volume holds, so a small structure is seen often
    enough to be learnt. Evaluation reads whole volumes (the task predicts them with a sliding window). Each patch's
    values are turned into modality values, augmented (on HU for CT; a spatial step moves the mask with the image),
    then normalised by the plan.
    """

    def __init__(self, paths: Sequence[Path], targets: Sequence[int], metas: Sequence[dict], plan: dict,
                 patches: bool = False, augment: Callable | None = None, seed: int = 0, keys: list | None = None,
                 masks: Sequence[Path] | None = None, foreground_share: float = FOREGROUND_SHARE,
                 label_values: Sequence[int] | None = None):
        self.paths = [str(p) for p in paths]
        self.keys = keys  # what the caller knows each volume by (the toolkit: its sample's id), in order
        self.targets = torch.as_tensor(list(targets), dtype=torch.long)
        self.metas, self.plan, self.patches, self.augment, self.seed = list(metas), plan, patches, augment, seed
        self.patch_size = tuple(plan["patch_size"])
        # Per-volume z-scoring divides by the whole volume's statistics, not a patch's: measured once here.
        self.statistics = [volume_statistics(Path(p), m) if plan["normalisation"] == "zscore" else None
                           for p, m in zip(self.paths, self.metas)]
        self.masks = None if masks is None else [str(p) for p in masks]
        if self.masks is not None and len(self.masks) != len(self.paths):
            raise ValueError("a mask for every volume, or none")
        self.foreground_share = foreground_share
        # A dataset's label values need not run 0, 1, 2 (0, 1, 4 once a label is dropped): the model's outputs do.
        self.label_lookup = label_lookup(label_values) if label_values is not None else None
        # Where each volume's labels are (a sample of their voxels), read once: only training centres patches on them.
        self.foreground = [foreground_points(Path(m), len(self.patch_size), seed) for m in self.masks] if self.masks and patches else None
        self.epoch = 0

    @property
    def whole_samples(self) -> bool:
        """Whole volumes differ in shape: an evaluation reads them one at a time."""
        return not self.patches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> dict:
        item, epoch = key if isinstance(key, tuple) else (key, self.epoch)  # the sampler's (position, epoch)
        volume = np.load(self.paths[item], mmap_mode="r")
        mask = labels_of(np.load(self.masks[item], mmap_mode="r"), len(self.patch_size)) if self.masks else None
        seed = hash((self.seed, epoch, int(item))) & 0x7FFFFFFF
        if self.patches:
            rng = np.random.default_rng(seed)
            starts = patch_starts(volume.shape[1:], self.patch_size, rng, self.centre(item, rng))
            region = cut(volume, starts, self.patch_size)
            labels = None if mask is None else cut(mask, starts, self.patch_size, fill=0)
        else:
            region, labels = np.asarray(volume), None if mask is None else np.asarray(mask)
        values = intensities(region, self.metas[item])
        if self.augment is not None and labels is not None:
            moved = self.augment.apply_record({"image": values, "mask": labels}, seed)
            values, labels = moved["image"], moved["mask"]
        elif self.augment is not None:
            values = self.augment(values, seed)
        values = normalised(np.asarray(values, dtype=np.float32), self.plan, self.statistics[item])
        record = {"image": torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)), "target": self.targets[item]}
        if labels is not None:
            labels = np.asarray(labels[0], dtype=np.int64)
            if self.label_lookup is not None:
                labels = self.label_lookup[np.clip(labels, 0, len(self.label_lookup) - 1)]
            record["mask"] = torch.from_numpy(np.ascontiguousarray(labels))
        return record

    def centre(self, item: int, rng: np.random.Generator) -> tuple[int, ...] | None:
        """A labelled voxel to centre the patch on, for a `foreground_share` of the draws (None: anywhere). The draw is
        made for every patch of masked samples, so the share does not change which patches follow; samples without
        masks draw as they always did."""
        if self.foreground is None:
            return None
        chosen = rng.random() < self.foreground_share
        if not self.foreground[item]:
            return None
        points = self.foreground[item]
        label = sorted(points)[int(rng.integers(len(points)))]
        voxel = points[label][int(rng.integers(len(points[label])))]
        return tuple(int(v) for v in voxel) if chosen else None

    def as_patches(self) -> VolumeRecords:
        """The same volumes read as one patch each, not augmented (the same patch every time): the exported graph's shape."""
        plain = copy.copy(self)
        plain.patches, plain.augment = True, None
        if plain.masks and plain.foreground is None:
            plain.foreground = [foreground_points(Path(m), len(plain.patch_size), plain.seed) for m in plain.masks]
        return plain


def label_lookup(values: Sequence[int]) -> np.ndarray:
    """value -> output index, for label values in the order of the model's outputs (the first the background); a value
    not among them (none should be: the dataset names every value its masks hold) reads as the background."""
    values = [int(v) for v in values]
    if min(values, default=0) < 0 or len(set(values)) != len(values):
        raise ValueError(f"label values must be distinct and not negative: {values}")
    lookup = np.zeros(max(values, default=0) + 2, dtype=np.int64)  # one past the largest: the clip's catch-all, 0
    lookup[values] = np.arange(len(values))
    return lookup


def labels_of(mask: np.ndarray, dims: int) -> np.ndarray:
    """A stored mask with one channel axis in front, (1, D, H, W) or (1, H, W), as the image's patch is cut."""
    return mask if mask.ndim == dims + 1 else mask[None]


def foreground_points(path: Path, dims: int, seed: int = 0) -> dict[int, np.ndarray]:
    """{label: (n, axes) voxel coordinates} of each label but the background in a stored mask, at most FOREGROUND_POINTS
    of each (drawn evenly at random)."""
    mask = np.asarray(labels_of(np.load(path, mmap_mode="r"), dims))[0]
    rng = np.random.default_rng(seed)
    points = {}
    for label in np.unique(mask):
        if label == 0:
            continue
        where = np.argwhere(mask == label)
        points[int(label)] = where if len(where) <= FOREGROUND_POINTS else where[rng.choice(len(where), FOREGROUND_POINTS, replace=False)]
    return points


def patch_starts(shape: Sequence[int], size: Sequence[int], rng: np.random.Generator,
                 centre: Sequence[int] | None = None) -> list[int]:
    """Where a patch of `size` begins along each axis of a sample of `shape`: at random, or around `centre` (kept inside
    the sample where the sample is larger than the patch)."""
    if centre is None:
        return [int(rng.integers(0, max(0, n - s) + 1)) for n, s in zip(shape, size)]
    return [min(max(0, c - s // 2), max(0, n - s)) for n, s, c in zip(shape, size, centre)]


def cut(volume: np.ndarray, starts: Sequence[int], size: Sequence[int], fill=None) -> np.ndarray:
    """The (C, *size) region of a (C, *sides) array from `starts`, read from the memory map; padded where the array is
    smaller than the patch, with `fill` (None: the region's lowest value per channel)."""
    region = np.asarray(volume[(slice(None), *(slice(a, a + s) for a, s in zip(starts, size)))])
    if region.shape[1:] == tuple(size):
        return region
    if fill is None:
        fill = region.reshape(region.shape[0], -1).min(axis=1) if region.size else 0
    padded = np.empty((region.shape[0], *size), dtype=region.dtype)
    padded[:] = np.asarray(fill).reshape((-1,) + (1,) * len(size))
    padded[(slice(None), *(slice(0, n) for n in region.shape[1:]))] = region
    return padded


def patch_of(volume: np.ndarray, size: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A random (C, *size) region of a (C, D, H, W) volume (or (C, H, W) image), read from the memory map; padded
    with the region's lowest value where the volume is smaller than the patch."""
    return cut(volume, patch_starts(volume.shape[1:], size, rng), size)


def volume_input_rule(plan: dict) -> str:
    """How a volume became the model's input, for the exported model's metadata."""
    spacing = " x ".join(f"{v:g}" for v in plan["target_spacing"])
    if plan["normalisation"] == "ct":
        rule = (f"Hounsfield units clipped to {plan['clip'][0]:g} to {plan['clip'][1]:g}, minus {plan['mean']:g}, divided by "
                f"{plan['std']:g}")
    elif plan["normalisation"] == "dataset":
        rule = (f"modality values clipped to {plan['clip'][0]:g} to {plan['clip'][1]:g}, minus {plan['mean']:g}, divided by "
                f"{plan['std']:g} (one z-score for the dataset)")
    elif plan["normalisation"] == "zscore":
        rule = "modality values minus the sample's mean, divided by its standard deviation"
    else:
        rule = "modality values as they are"
    if plan.get("dims", 3) == 2:
        return (f"Each image channels first (C, H, W), resampled to {spacing} mm pixels (bilinear), its modality values "
                f"(rescale slope and intercept applied) normalised: {rule}; read in patches of "
                f"{' x '.join(map(str, plan['patch_size']))} pixels, a larger image by a sliding window whose outputs are averaged.")
    return (f"Each volume channels first (C, D, H, W) in RAS order (slice, row, column), resampled to {spacing} mm "
            f"(trilinear), its modality values (rescale slope and intercept applied) normalised: {rule}; read in patches "
            f"of {' x '.join(map(str, plan['patch_size']))} voxels, a larger volume by a sliding window whose outputs are averaged.")
