"""What a segmentation model's predicted label maps on a test subset say, case by case and per label (issue 23): Dice and
IoU, the 95th percentile Hausdorff distance (HD95) and the normalised surface distance (NSD) with each case's own
voxel spacing, and the predicted and reference volumes; then each label's mean over the cases with a 95% interval from
a bootstrap that resamples patients (a patient's cases go together), and the mean foreground Dice.

Distances come from MONAI (`compute_hausdorff_distance`, `compute_surface_dice`); Dice and IoU from the voxel counts.
Empty references are scored as Metrics Reloaded advises (Maier-Hein et al., Nature Methods 2024), never dropped:
- a label in neither the reference nor the prediction (a correctly empty prediction): Dice 1, IoU 1, HD95 0 mm, NSD 1;
- a label in only one of them (a missed structure, or a false alarm): Dice 0, IoU 0, NSD 0, and HD95 the worst a
  distance can be on that case's grid: the diagonal of its field of view in mm (`worst_distance`). MONAI gives NaN or
  infinity there, which a mean would skip or be swamped by.
Each case records which of these it was (`empty`), so the tables can say so.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..classification.results import LEVEL, RESAMPLES, bootstrap_weights, intervals, jsonable
from .metrics import dice_of, iou_of

NSD_TOLERANCE_MM = 1.0   # the boundary agreement NSD allows, in mm (at least one voxel along the finest axis)
MEASURES = ("dice", "iou", "hd95", "nsd")
HIGHER_IS_BETTER = {"dice": True, "iou": True, "hd95": False, "nsd": True}


@dataclass(frozen=True)
class CaseScores:
    """One case's scores per foreground label (label name -> value), its mean foreground Dice, and how each label's
    emptiness was scored: "both" (absent from reference and prediction), "missed" (only in the reference),
    "false_alarm" (only in the prediction) or "" (in both)."""
    dice: dict[str, float]
    iou: dict[str, float]
    hd95: dict[str, float]
    nsd: dict[str, float]
    predicted_volume: dict[str, float]
    reference_volume: dict[str, float]
    empty: dict[str, str]
    mean_dice: float
    tolerance_mm: float

    def as_dict(self) -> dict:
        return jsonable(asdict(self))


def voxel_size(spacing: Sequence[float], dims: int) -> tuple[float, ...]:
    """The spacing of a case's `dims` axes in mm; 1 mm along an axis whose spacing is unknown (a PNG's pixels)."""
    given = [float(s) for s in (spacing or [])][-dims:]
    given = [1.0] * (dims - len(given)) + given
    return tuple(s if s > 0 and math.isfinite(s) else 1.0 for s in given)


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The largest distance two voxels of a grid can be apart: its diagonal in mm (what HD95 scores a structure that is
    only in the reference or only in the prediction)."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def surface_distances(predicted: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...], tolerance: float) -> tuple[float, float]:
    """(HD95 in mm, NSD at `tolerance` mm) of two non-empty binary masks, by MONAI (which crops to the box around both
    masks itself: about 1 s for a 40 x 120 x 150 voxel structure in a 100 x 256 x 256 scan on one CPU core)."""
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    ours, theirs = (torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None] for m in (predicted, reference))
    with warnings.catch_warnings():  # MONAI 1.5+ warns of an argument its own edge finder passes
        warnings.simplefilter("ignore", FutureWarning)
        hd95 = compute_hausdorff_distance(ours, theirs, include_background=True, percentile=95, spacing=list(spacing))
        nsd = compute_surface_dice(ours, theirs, [tolerance], include_background=True, spacing=list(spacing))
    return float(hd95.item()), float(nsd.item())


def case_scores(predicted: np.ndarray, reference: np.ndarray, spacing: Sequence[float], classes: Sequence[str],
                tolerance_mm: float = NSD_TOLERANCE_MM) -> CaseScores:
    """The scores of one case: `predicted` and `reference` label maps of class indices (0 the background, `classes`
    naming each index) on the case's own grid, `spacing` its voxel spacing in mm (row, column for an image)."""
    if predicted.shape != reference.shape:
        raise ValueError(f"the prediction's grid {predicted.shape} differs from the reference's {reference.shape}")
    sides = voxel_size(spacing, reference.ndim)
    voxel = float(np.prod(sides)) / (1000.0 if reference.ndim == 3 else 1.0)  # mm³ -> ml; an image's area stays mm²
    tolerance = max(tolerance_mm, min(sides))
    worst = worst_distance(reference.shape, sides)
    scores = {name: {} for name in (*MEASURES, "predicted_volume", "reference_volume", "empty")}
    for index, label in enumerate(classes):
        if index == 0:
            continue
        ours, theirs = predicted == index, reference == index
        both, made, held = int((ours & theirs).sum()), int(ours.sum()), int(theirs.sum())
        empty = "both" if not made and not held else "missed" if not made else "false_alarm" if not held else ""
        if empty:  # Metrics Reloaded: a correctly empty prediction is perfect; one side empty is the worst case
            hd95, nsd = (0.0, 1.0) if empty == "both" else (worst, 0.0)
        else:
            hd95, nsd = surface_distances(ours, theirs, sides, tolerance)
        scores["dice"][label] = float(dice_of(both, made, held))
        scores["iou"][label] = float(iou_of(both, made, held))
        scores["hd95"][label], scores["nsd"][label], scores["empty"][label] = hd95, nsd, empty
        scores["predicted_volume"][label], scores["reference_volume"][label] = made * voxel, held * voxel
    dice = list(scores["dice"].values())
    return CaseScores(**scores, mean_dice=float(np.mean(dice)) if dice else math.nan, tolerance_mm=tolerance)


def segmentation_results(cases: Sequence[CaseScores], patients: Sequence[str], classes: Sequence[str], dims: int,
                         resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """The results page's figures of an evaluation, JSON-ready: per foreground label the mean over cases of each measure
    (and of the volumes) with a 95% interval from a bootstrap over patients, how many cases had the label in neither,
    missed it or raised a false alarm; and the mean foreground Dice (each case's mean over its labels, then over cases)."""
    foreground = list(classes[1:])
    names = [p or f"sample {k}" for k, p in enumerate(patients)]
    spread_of = bootstrap_means(names, resamples, seed)
    per_class, empty = {}, {}
    for measure in (*MEASURES, "predicted_volume", "reference_volume"):
        per_class[measure] = [summary(label, [getattr(case, measure)[label] for case in cases], spread_of) for label in foreground]
    for label in foreground:
        kinds = [case.empty[label] for case in cases]
        empty[label] = {kind: kinds.count(kind) for kind in ("both", "missed", "false_alarm")}
    mean_dice = summary("", [case.mean_dice for case in cases], spread_of)
    mean_iou = summary("", [float(np.mean(list(case.iou.values()))) if case.iou else math.nan for case in cases], spread_of)
    tolerances = sorted({case.tolerance_mm for case in cases})
    return jsonable({
        "task": "segmentation", "classes": list(classes), "samples": len(cases), "patients": len(set(names)),
        "samples_without_patient": sum(1 for p in patients if not p), "resamples": resamples, "level": LEVEL,
        "stratified_by_class": False, "dims": dims, "volume_unit": "ml" if dims == 3 else "mm²",
        "nsd_tolerance_mm": {"default": NSD_TOLERANCE_MM, "used": tolerances},
        "metrics": {"mean_dice": strip(mean_dice), "mean_iou": strip(mean_iou)},
        "per_class": per_class, "empty": empty,
    })


def summary(label: str, values: Sequence[float], spread_of) -> dict:
    values = np.asarray(values, dtype=np.float64)
    low, high = spread_of(values)
    return {"class": label, "value": float(np.nanmean(values)) if np.isfinite(values).any() else math.nan, "low": low, "high": high}


def strip(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key != "class"}


def bootstrap_means(patients: Sequence[str], resamples: int, seed: int):
    """A function of per-case values giving the (low, high) 95% interval of their mean over `resamples` bootstraps
    that draw patients with replacement (every measure of one evaluation uses the same draws)."""
    if not resamples or not len(patients):
        return lambda values: (math.nan, math.nan)
    _, group = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    weights = bootstrap_weights(group, np.zeros(group.max() + 1, dtype=np.int64), resamples, np.random.default_rng(seed))

    def spread(values: np.ndarray) -> tuple[float, float]:
        defined = np.isfinite(values)
        drawn = weights[:, defined].astype(np.float64)
        totals = drawn.sum(1)
        means = np.divide(drawn @ values[defined], totals, out=np.full(len(totals), np.nan), where=totals > 0)
        return intervals({"mean": means})["mean"]

    return spread
