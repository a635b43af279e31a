"""A dataset's fingerprint and the plan a run starts from, after nnU-Net's rules (Isensee et al., Nature
Methods 2021): what the volumes are like (spacings, shapes, intensities over the foreground), and from that
the target spacing, the intensity normalisation by modality, the patch and the batch size.

The fingerprint is computed once by the job that makes a dataset (`fingerprint_of`) and stored with it; the
plan is a pure function of it and of the training device (`plan_for`), so the dataset page shows it before
training, the run form starts from it, a user may change any value, and the run records the plan it used.
Every value comes with the reason it was chosen, in words a clinician can read.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .display import modality_values

VOXELS_PER_IMAGE = 10_000      # foreground voxels drawn from each volume for the intensity statistics (nnU-Net's number)
MOST_SAMPLES_MEASURED = 200     # samples whose intensities are measured (evenly spread); shapes and spacings of all
ANISOTROPY = 3.0               # a coarse axis this many times the finest makes a dataset "strongly anisotropic"
DIVISOR = 8                    # patch sides are multiples of this: the 3D networks halve the grid three times or more
FEWEST_SIDE = 8                # the least a patch side may be (check_plan): a model learns nothing from fewer voxels
SMALLEST_SIDE = 16
NORMALISATIONS = ("ct", "dataset", "zscore", "none")
ONE_SCALE = 0.10  # samples whose foreground 99.5th percentiles vary less than this (std / mean) share one intensity scale
CLIPPED = ("ct", "dataset")  # normalisations that clip to the dataset's percentiles and take one mean and std
# Voxels of one patch the device can train on at once with batches of two (a 3D ResNet-18's activations in
# float32 take about 2 kB a voxel for a batch of two): a budget measured, not derived; CPUs get a small one
# because each step there takes seconds.
PATCH_BUDGET_CPU = 64 ** 3
BYTES_PER_PATCH_VOXEL = 2_000
FEWEST_IN_BATCH, MOST_IN_BATCH = 2, 16
# 2D images with real intensities: whole images up to 256x256 pixels on a CPU (a ResNet-18 step of 16 takes about a
# second there), 512x512 on a GPU (as nnU-Net's 2D plans rarely go past); a batch holds 16 images of the budget's
# size, up to 32 smaller ones.
IMAGE_BUDGET_CPU, IMAGE_BUDGET_GPU = 256 ** 2, 512 ** 2
IMAGES_IN_BUDGET, MOST_IMAGES_IN_BATCH = 16, 32


@dataclass(frozen=True)
class VolumeFacts:
    """What the fingerprint needs of one stored sample: its array read on demand, spacing (slice, row, column; an
    image's row, column) in mm, display meta (rescale slope and intercept), and its mask's array when it has one.
    `dims` 2: a 2D image with real intensities (a CT slice, a 16-bit radiograph), planned as volumes are."""
    load: Callable[[], np.ndarray]
    spacing: tuple[float, ...]
    meta: dict
    modality: str = ""
    load_mask: Callable[[], np.ndarray] | None = None
    dims: int = 3


def intensities(pixels: np.ndarray, meta: dict) -> np.ndarray:
    """What a model learns from: modality values (HU for CT; rescale slope and intercept applied), negated for
    MONOCHROME1 images (whose low values are the bright ones) so that dense is high in every image, as the display's
    window shows them."""
    values = modality_values(pixels, meta)
    return -values if meta.get("photometric") == "MONOCHROME1" else values


def channels_of(array: np.ndarray, dims: int = 3) -> np.ndarray:
    """A stored sample channels first, (C, D, H, W) for a volume, (C, H, W) for an image (`dims` 2): one channel
    when the array has only the spatial axes; a last axis of 3 is colour."""
    if array.ndim == dims:
        return array[None]
    if array.ndim == dims + 1 and array.shape[-1] == 3:
        return np.moveaxis(array, -1, 0)
    return array


def foreground_sample(values: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Up to VOXELS_PER_IMAGE voxels of the foreground of one channel: inside the mask when there is one (nnU-Net's
    foreground), else above the middle of the volume's 1st and 99th percentiles: what is not the air or padding
    around the patient (in a CT, -1000 HU against tissue near 0: the body from about -450 HU up, fat included)."""
    finite = np.isfinite(values)
    if not finite.all():  # a float image's NaN or infinite pixels are no intensity
        values, mask = values[finite], (mask[finite] if mask is not None and mask.shape == finite.shape else None)
        if not values.size:
            return np.zeros(0)
    if mask is not None and mask.shape == values.shape and (mask > 0).any():
        chosen = values[mask > 0]
    else:
        low, high = np.percentile(values[::max(1, values.shape[0] // 16)], (1, 99))
        chosen = values[values > (low + high) / 2] if high > low else values.ravel()
        if not chosen.size:
            chosen = values.ravel()
    if chosen.size > VOXELS_PER_IMAGE:
        chosen = rng.choice(chosen, VOXELS_PER_IMAGE, replace=False)
    return chosen.astype(np.float64)


def fingerprint_of(volumes: Iterable[VolumeFacts], seed: int = 0) -> dict:
    """{count, spacings, shapes, modalities, channels: [{mean, std, percentile_00_5, percentile_99_5}...]} over the
    volumes (modality values: Hounsfield units for CT), or {} when there are none."""
    rng = np.random.default_rng(seed)
    volumes = list(volumes)
    measured = set(np.linspace(0, len(volumes) - 1, min(len(volumes), MOST_SAMPLES_MEASURED)).round().astype(int).tolist())
    spacings, shapes, modalities, pooled, everything, lowest, uppers = [], [], set(), {}, {}, {}, {}
    for number, volume in enumerate(volumes):
        array = channels_of(np.asarray(volume.load()) if number in measured else volume.load(), volume.dims)
        spacings.append(spacing_of(volume.spacing, volume.dims))
        shapes.append([int(s) for s in array.shape[1:]])
        if volume.modality:
            modalities.add(volume.modality)
        if number not in measured:
            continue  # its shape and spacing are read from the memory map's header alone
        mask = np.asarray(volume.load_mask()) if volume.load_mask else None
        for channel, values in enumerate(array):
            values = intensities(values, volume.meta)
            chosen = foreground_sample(values, mask, rng)
            if not chosen.size:
                continue
            pooled.setdefault(channel, []).append(chosen)
            everything.setdefault(channel, []).append(spread_sample(values, rng))
            uppers.setdefault(channel, []).append(float(np.percentile(chosen, 99.5)))
            lowest[channel] = min(lowest.get(channel, math.inf), float(chosen.min()), float(np.nanmin(values)))
    if not shapes:
        return {}
    channels = []
    for channel in sorted(pooled):
        channels.append({**statistics_of(np.concatenate(pooled[channel])), "lowest": lowest[channel],
                         "upper_spread": spread(uppers[channel]), "all": statistics_of(np.concatenate(everything[channel]))})
    return {"count": len(shapes), "spacings": spacings, "shapes": shapes, "modalities": sorted(modalities),
            "channels": channels}


def statistics_of(values: np.ndarray) -> dict:
    low, high = np.percentile(values, (0.5, 99.5))
    return {"mean": float(values.mean()), "std": float(values.std()), "percentile_00_5": float(low), "percentile_99_5": float(high)}


def spread_sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to VOXELS_PER_IMAGE of all the finite values of a sample, background included."""
    flat = values[np.isfinite(values)].ravel()
    return (rng.choice(flat, VOXELS_PER_IMAGE, replace=False) if flat.size > VOXELS_PER_IMAGE else flat).astype(np.float64)


def spread(values: list[float]) -> float | None:
    """How much the samples' upper intensities differ: their standard deviation over their mean magnitude (None when
    that mean is 0: blank images)."""
    middle = abs(float(np.mean(values)))
    return round(float(np.std(values)) / middle, 4) if middle > 0 else None


def spacing_of(spacing, dims: int) -> list[float]:
    """The last `dims` spacings in mm; 1 mm each where the file gives none (a PNG)."""
    values = [float(v) for v in spacing][-dims:]
    return values if len(values) == dims and all(v > 0 for v in values) else [1.0] * dims


def target_spacing(spacings: list[list[float]]) -> tuple[list[float], str]:
    """The median spacing per axis; for strongly anisotropic data, the coarse axis takes the 10th percentile of its
    spacings instead (nnU-Net: resampling everything to a median that coarse would blur the finer scans)."""
    table = np.asarray(spacings, dtype=float)
    median = np.median(table, axis=0)
    coarse = int(np.argmax(median))
    if median[coarse] > ANISOTROPY * median.min():
        chosen = median.copy()
        chosen[coarse] = np.percentile(table[:, coarse], 10)
        return rounded(chosen), (f"the median spacing, but {axes_of(len(chosen))[coarse]} spacing {chosen[coarse]:.3g} mm: the 10th percentile "
                                 f"of that axis, as the data are strongly anisotropic ({median[coarse]:.3g} mm against "
                                 f"{median.min():.3g} mm)")
    return rounded(median), "the median spacing of the samples along each axis"


AXES = ("slice", "row", "column")


def axes_of(dims: int) -> tuple[str, ...]:
    return AXES[-dims:]


def rounded(values) -> list[float]:
    return [float(round(v, 4)) for v in values]


def resampled_shape(shape: list[int], spacing: list[float], target: list[float]) -> list[int]:
    return [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target)]


def patch_and_batch(median_shape: list[int], smallest_shape: list[int], budget_voxels: int,
                    most_in_batch: int = MOST_IN_BATCH, batch_of: int = FEWEST_IN_BATCH) -> tuple[list[int], int, str]:
    """The patch: the median shape at the target spacing, no side past the smallest sample's (a patch must fit in
    every one), each a multiple of DIVISOR, its largest side halved until it fits the budget; the batch: as many
    patches as the budget holds for `batch_of` of them, from 2 to `most_in_batch`."""
    # A side of the smallest sample under FEWEST_SIDE (6 slices) still gets FEWEST_SIDE: the sample is padded to it.
    start = [max(FEWEST_SIDE, min(SMALLEST_SIDE, small), (min(side, small) // DIVISOR) * DIVISOR)
             for side, small in zip(median_shape, smallest_shape)]
    patch = list(start)
    while math.prod(patch) > budget_voxels and max(patch) > SMALLEST_SIDE:
        largest = patch.index(max(patch))
        patch[largest] = max(SMALLEST_SIDE, (patch[largest] // 2 // DIVISOR) * DIVISOR)
    batch = max(FEWEST_IN_BATCH, min(most_in_batch, batch_of * budget_voxels // math.prod(patch)))
    things = "volume" if len(patch) == 3 else "image"
    why = (f"the median {things} at the target spacing ({'x'.join(map(str, median_shape))}), within the smallest "
           f"({'x'.join(map(str, smallest_shape))}), in multiples of {DIVISOR}")
    if patch != start:
        why += f", its largest sides halved to fit the device's memory ({budget_voxels:,} voxels a patch)"
    return patch, int(batch), why + f"; larger {things}s are read by a sliding window"


def budget_for(device_memory_bytes: int | None, dims: int = 3) -> int:
    """Voxels (pixels) a patch may hold: a small CPU budget, or the GPU's memory shared among two patches; an
    image's patch is a whole image up to IMAGE_BUDGET's side (a classifier should see all of it)."""
    if dims == 2:
        return IMAGE_BUDGET_GPU if device_memory_bytes else IMAGE_BUDGET_CPU
    if not device_memory_bytes:
        return PATCH_BUDGET_CPU
    return max(PATCH_BUDGET_CPU, int(device_memory_bytes * 0.5 / BYTES_PER_PATCH_VOXEL / FEWEST_IN_BATCH))


def whole_images_fit(spacing: list[float], median_shape: list[int], budget: int) -> tuple[list[float], str]:
    """2D images: the target spacing coarsened (by one factor on both axes) until the median image fits the budget,
    so that a classifier sees whole images rather than crops of them."""
    pixels = math.prod(median_shape)
    if pixels <= budget:
        return spacing, ""
    factor = math.sqrt(pixels / budget)
    return rounded([s * factor for s in spacing]), (f", coarsened {factor:.2g} times so that a whole median image "
                                                     f"({'x'.join(map(str, median_shape))} pixels) fits the device's "
                                                     f"memory ({budget:,} pixels)")


def plan_for(fingerprint: dict, device_memory_bytes: int | None = None) -> dict:
    """The plan of a fingerprinted dataset: {dims, target_spacing, normalisation, clip, mean, std, patch_size,
    batch_size, reasons: {value: why}}; {} without a fingerprint. Volumes and 2D images with real intensities alike."""
    if not fingerprint:
        return {}
    dims = len(fingerprint["spacings"][0])
    budget = budget_for(device_memory_bytes, dims)
    spacing, spacing_why = target_spacing(fingerprint["spacings"])
    if dims == 2:
        coarser, coarser_why = whole_images_fit(spacing, median_at(fingerprint, spacing), budget)
        spacing, spacing_why = coarser, spacing_why + coarser_why
    shapes = [resampled_shape(shape, s, spacing) for shape, s in zip(fingerprint["shapes"], fingerprint["spacings"])]
    median_shape = median_at(fingerprint, spacing)
    smallest_shape = [int(v) for v in np.min(np.asarray(shapes), axis=0)]
    if dims == 3:
        patch, batch, patch_why = patch_and_batch(median_shape, smallest_shape, budget)
    else:
        # A whole image: the median one; smaller images are padded, larger ones read by a sliding window (one small
        # image must not shrink every other's patch).
        patch, batch, patch_why = patch_and_batch(median_shape, median_shape, budget, MOST_IMAGES_IN_BATCH, IMAGES_IN_BUDGET)
        patch_why = patch_why.replace(f", within the smallest ({'x'.join(map(str, median_shape))})", "") + "; smaller ones padded"
    ct, ct_why = is_ct(fingerprint)
    one_scale = not ct and shares_one_scale(fingerprint)
    plan = {"dims": dims, "target_spacing": spacing, "normalisation": "ct" if ct else "dataset" if one_scale else "zscore",
            "patch_size": patch,
            "batch_size": batch, "median_shape": median_shape, "smallest_shape": smallest_shape}
    reasons = {"target_spacing": spacing_why, "patch_size": patch_why,
               "batch_size": f"as many {'x'.join(map(str, patch))} patches as the memory holds, between {FEWEST_IN_BATCH} and "
                             f"{MOST_IN_BATCH if dims == 3 else MOST_IMAGES_IN_BATCH}"}
    things = "volume" if dims == 3 else "image"
    if ct or one_scale:
        # CT: over the foreground (the body, not the air); one scale: over every voxel, background included (a
        # radiograph's air and soft tissue are not "foreground" by brightness, and must not be clipped away).
        channel = fingerprint["channels"][0] if ct else fingerprint["channels"][0]["all"]
        plan.update({"clip": [round(channel["percentile_00_5"], 2), round(channel["percentile_99_5"], 2)],
                     "mean": round(channel["mean"], 4), "std": round(max(channel["std"], 1e-6), 4)})
    named = ", ".join(m for m in fingerprint["modalities"] if m in DICOM_MODALITIES) or "Not CT"
    if one_scale:
        reasons["normalisation"] = (f"{named}, but the {things}s share one intensity scale (the standard deviation of their "
                                    f"foreground's 99.5th percentiles is {fingerprint['channels'][0]['upper_spread']:.0%} of "
                                    f"their mean, under {ONE_SCALE:.0%}): clipped to the 0.5 and 99.5 percentiles of all their "
                                    f"values ({plan['clip'][0]:g} "
                                    f"to {plan['clip'][1]:g}), then one z-score for the whole dataset (mean {plan['mean']:g}, "
                                    f"std {plan['std']:g}), which keeps the differences in brightness between them (a z-score "
                                    f"per {things} would take them away)")
    elif ct:
        reasons["normalisation"] = (f"{ct_why}: Hounsfield units clipped to the foreground's 0.5 and 99.5 percentiles "
                                    f"({plan['clip'][0]:g} to {plan['clip'][1]:g} HU), then one z-score for the whole dataset "
                                    f"(mean {plan['mean']:g}, std {plan['std']:g} HU): HU mean the same tissue in every scan")
    else:
        reasons["normalisation"] = (f"{named}: each {things} z-scored on its own (MR and other intensities have no fixed "
                                    "scale between scans)")
    plan["reasons"] = reasons
    return plan


MOST_PADDING = 2.0  # a patch side rounded up for a network may reach twice the smallest sample's side: half a patch real


def fitted_to_network(plan: dict, divisor: int, smallest_side: int, network: str) -> tuple[dict, str]:
    """The plan with its patch's sides rounded up to what a network takes (multiples of `divisor`, at least
    `smallest_side`: a U-Net halves its input three times), so that thin volumes (10 slices of an anisotropic CT) still
    train: samples smaller than the patch are padded to it (store.cut), predictions slide the window over them and
    crop back. Returns (plan, "") with the reason extended, or (the plan as it was, why not) where a rounded side would
    pass the smallest sample's (`smallest_shape`) by more than MOST_PADDING times: most of each patch would be padding."""
    patch = plan["patch_size"]
    rounded_patch = [max(math.ceil(side / divisor) * divisor, math.ceil(smallest_side / divisor) * divisor) for side in patch]
    if rounded_patch == patch:
        return plan, ""
    axes = axes_of(len(patch))
    smallest = plan.get("smallest_shape") or rounded_patch
    for axis, (side, small) in enumerate(zip(rounded_patch, smallest)):
        if side > MOST_PADDING * small:
            return plan, (f"{network} needs patch sides in multiples of {divisor} (at least {smallest_side}); the {axes[axis]} "
                          f"side would become {side}, more than {MOST_PADDING:g} times the smallest sample's {small} (mostly "
                          "padding): choose a network that takes any size (DynUNet), or a finer target spacing along that "
                          "axis, or leave out the smallest samples")
    reasons = {**plan.get("reasons", {})}
    reasons["patch_size"] = (reasons.get("patch_size", "") + f"; rounded up from {'x'.join(map(str, patch))} to multiples "
                             f"of {divisor} for {network}, smaller samples padded").lstrip("; ")
    return {**plan, "patch_size": rounded_patch, "reasons": reasons}, ""


def median_at(fingerprint: dict, spacing: list[float]) -> list[int]:
    shapes = [resampled_shape(shape, s, spacing) for shape, s in zip(fingerprint["shapes"], fingerprint["spacings"])]
    return [int(v) for v in np.median(np.asarray(shapes), axis=0)]


DICOM_MODALITIES = {"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT", "SC", "SM"}
AIR_HU = (-1100.0, -900.0)  # the lowest values of a CT scan in Hounsfield units: the air around the patient


def shares_one_scale(fingerprint: dict) -> bool:
    """Whether the samples' intensities are on one scale (crops of one scan, one scanner's calibrated values): then
    their differences in brightness are part of what a model may learn. Single-channel data only (the plan keeps one
    mean and std); older fingerprints did not measure it."""
    channels = fingerprint["channels"]
    spread_ = channels[0].get("upper_spread") if len(channels) == 1 else None
    if fingerprint["count"] < 2 or spread_ is None or spread_ >= ONE_SCALE or "all" not in channels[0]:
        return False
    every = channels[0]["all"]
    return every["percentile_99_5"] > every["percentile_00_5"] and every["std"] > 0  # blank images have nothing to clip


def is_ct(fingerprint: dict) -> tuple[bool, str]:
    """Whether the volumes are CT in Hounsfield units, and how that is known: the files say so, or (NIfTI files name
    no modality) one channel whose lowest values sit at air's -1000 HU."""
    named = [m for m in fingerprint["modalities"] if m in DICOM_MODALITIES]  # NIfTI samples say only their format
    if named:
        return named == ["CT"], "CT"
    channels = fingerprint["channels"]
    if len(channels) == 1 and AIR_HU[0] <= channels[0].get("lowest", 0.0) <= AIR_HU[1]:
        return True, "CT (the files name no modality; their lowest values, air at about -1000, are Hounsfield units)"
    return False, ""


def check_plan(plan: dict) -> dict[str, str]:
    """{field: what is wrong} of a plan a user edited ({} when it is fine)."""
    errors = {}
    dims = plan.get("dims", 3)
    if dims not in (2, 3):
        return {"dims": "A plan is for 2D images (2) or volumes (3)."}
    count, axes = ("three", "slice, row, column") if dims == 3 else ("two", "row, column")
    spacing = plan.get("target_spacing")
    widest = 50 if dims == 3 else 1000  # an image without a spacing counts 1 mm a pixel: a large one coarsens far
    if not (isinstance(spacing, list) and len(spacing) == dims and all(isinstance(v, int | float) and 0 < v <= widest for v in spacing)):
        errors["target_spacing"] = f"The target spacing is {count} numbers of millimetres ({axes}), each above 0 and at most {widest}."
    patch = plan.get("patch_size")
    largest = 512 if dims == 3 else 2048
    if not (isinstance(patch, list) and len(patch) == dims and all(isinstance(v, int) and FEWEST_SIDE <= v <= largest for v in patch)):
        errors["patch_size"] = (f"The patch size is {count} whole numbers of {'voxels' if dims == 3 else 'pixels'} ({axes}), "
                                f"each from {FEWEST_SIDE} to {largest}.")
    if plan.get("normalisation") not in NORMALISATIONS:
        errors["normalisation"] = f"The normalisation is one of {', '.join(NORMALISATIONS)}."
    if plan.get("normalisation") in CLIPPED:
        clip, std = plan.get("clip"), plan.get("std")
        if not (isinstance(clip, list) and len(clip) == 2 and all(isinstance(v, int | float) for v in clip) and clip[0] < clip[1]):
            errors["clip"] = "This normalisation clips to [low, high] (Hounsfield units for CT), low below high."
        if not (isinstance(std, int | float) and std > 0) or not isinstance(plan.get("mean"), int | float):
            errors["std"] = "This normalisation needs the dataset's mean and a standard deviation above 0."
    return errors


def normalised(values: np.ndarray, plan: dict, volume_statistics: tuple[float, float] | None = None) -> np.ndarray:
    """Modality values (float32) normalised as the plan says; z-scoring takes the (mean, std) of the whole volume the
    values come from (a patch's own would differ from patch to patch)."""
    if plan["normalisation"] in CLIPPED:
        low, high = plan["clip"]
        return (np.clip(values, low, high) - np.float32(plan["mean"])) / np.float32(plan["std"])
    if plan["normalisation"] == "zscore":
        mean, std = volume_statistics
        return (values - np.float32(mean)) / np.float32(std)
    return values
