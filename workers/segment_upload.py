"""What the explanation job yields for a model whose output is a map (a segmentation run's: `Task.spatial_output`): the
image (an uploaded file, or a dataset's sample) read as the run's test samples were, predicted whole (the task's
sliding window at the plan's spacing), brought back to the image's own grid (labels_on_grid), and kept as a label map
of the dataset's label values, with its files (tasks/segmentation/mask_files.py: NIfTI for a volume, PNG for a 2D
image, DICOM SEG for a DICOM input) and each class's size (voxels, ml with the spacing known). One explanation
lifecycle (claim, progress, stop, a lost worker's retry) for both kinds of model: only what a pass yields differs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from backend.datasets.models import Sample
from backend.runs.explanations import image_of
from backend.runs.models import Explanation, TrainingRun
from backend.runs.segmentations import LABEL_MAP, MASK_FILES, class_colours, mask_dir
from workers.engine.observer import JobStopped
from workers.engine.tasks import task_for
from workers.engine.tasks.segmentation.grid import predicted_labels
from workers.engine.tasks.segmentation.mask_files import (
    compact,
    dicom_seg_bytes,
    label_png,
    label_preview_png,
    label_sizes,
    nifti_bytes,
)
from workers.engine.training.spec import resolve_spec

STEPS = 4  # reading the model, reading the image, predicting, writing the mask's files


def segment(explanation: Explanation, reporter, model_input, upload_input, kept_model, model_facts) -> tuple[dict, str]:
    """The explanation's results and its words once done; the label map and files written to its mask folder. The
    readers of the model and image are the explanation job's own (passed in: one way to read each)."""
    run = explanation.run
    spec = resolve_spec(run.spec)
    plan = run.spec["data"].get("plan") or {}
    reporter.progress(0, STEPS, "reading the model")
    model = kept_model(run, model_facts(run))
    classes = list(model_facts(run).classes)
    check_stop(reporter)
    reporter.progress(1, STEPS, "reading the image as the model's test samples were read")
    image = model_input(run, explanation.sample, reporter) if explanation.sample_id else upload_input(explanation, reporter)
    shown = image_of(explanation)  # after upload_input: a preprocessed upload shows (and is segmented on) its prepared grid
    check_stop(reporter)
    reporter.progress(2, STEPS, "predicting every voxel (sliding window)" if image.dim() == 4 else "predicting every pixel")
    dims = plan.get("dims", image.dim() - 1)
    task = task_for(spec["task"], classes, dims, spec.loss.probabilities, plan.get("patch_size"), spec.mirror_axes(dims))
    grid = own_grid(shown)
    values = label_values(run, len(classes))
    labels = compact(np.asarray(values)[predicted_labels(task, model, image, grid, run.results.get("postprocessing"))])
    check_stop(reporter)
    reporter.progress(3, STEPS, "writing the mask's files")
    folder = mask_dir(explanation)
    shutil.rmtree(folder, ignore_errors=True)  # a job run twice (a lost worker) keeps one set of files
    folder.mkdir(parents=True, exist_ok=True)
    save_array(labels.reshape((1, *grid) if len(grid) == 2 else grid), folder / LABEL_MAP)
    files, seg_note = write_files(labels, shown, values, classes, run, folder, (explanation.upload or {}).get("nifti_codes"))
    sizes = [{"label": name, **size} for name, size in zip(classes, label_sizes(labels, values, shown.spacing or []))]
    results = {"task": spec["task"], "classes": classes, "label_values": values, "colours": class_colours(len(classes)),
               "sizes": sizes, "label_map_shape": [1, *grid] if len(grid) == 2 else list(grid), "files": files,
               "seg_note": seg_note, "input_shape": list(image.shape), "ground_truth_sample": ground_truth(explanation),
               "heat_map_shape": None, "note": ""}
    return results, done_words(sizes, len(grid))


def check_stop(reporter) -> None:
    if reporter.should_stop():
        raise JobStopped("stopped by the user")


def own_grid(image) -> tuple[int, ...]:
    """The image's own grid: (D, H, W) of a volume, (H, W) of a 2D image."""
    return (image.depth, image.height, image.width) if image.kind == Sample.Kind.VOLUME else (image.height, image.width)


def label_values(run: TrainingRun, count: int) -> list[int]:
    """The label value each output stands for (the dataset's, background 0 first), as its masks hold them; a dataset
    whose labels changed since the run learnt: the outputs' numbers."""
    values = [value for value, _ in run.partition.dataset.segmentation_labels]
    return values if len(values) == count else list(range(count))


def write_files(labels: np.ndarray, image, values: list[int], classes: list[str], run: TrainingRun, folder: Path,
                codes: dict | None = None) -> tuple[dict, str | None]:
    """The mask's files by kind ({kind: file name}), and why there is no DICOM SEG (None: there is one, or the input
    is not DICOM at all). `codes`: a NIfTI upload's qform and sform codes, which its mask keeps."""
    files = {}
    sources = dicom_sources(image)
    if labels.ndim == 3:
        write(folder / MASK_FILES["nifti"][0], nifti_bytes(labels, image.meta or {}, image.spacing or [], sources, codes))
        files["nifti"] = MASK_FILES["nifti"][0]
    else:
        write(folder / MASK_FILES["png"][0], label_png(labels))
        write(folder / MASK_FILES["preview"][0], label_preview_png(labels, values=values))
        files.update(png=MASK_FILES["png"][0], preview=MASK_FILES["preview"][0])
    seg_note = None
    if sources:
        foreground = [(value, name) for value, name in zip(values, classes) if value != 0]
        try:
            write(folder / MASK_FILES["seg"][0], dicom_seg_bytes(labels, sources, foreground, algorithm=f"run {run.pk}",
                                                                 version=str(run.pk), description=f"{run.name} segmentation"))
            files["seg"] = MASK_FILES["seg"][0]
        except (ValueError, AttributeError, TypeError) as exc:  # highdicom's word on a header it cannot reference
            seg_note = f"the DICOM header could not be referenced by a DICOM SEG ({exc})."
    return files, seg_note


def dicom_sources(image) -> list:
    """The input's DICOM header as the upload (or the sample's ingest) kept it, de-identified, without pixel data: what
    a DICOM SEG references. [] for any other input."""
    original = getattr(image, "original", "") or ""
    path = Path(image.project_dir) / original if original else None
    if path is None or not original.endswith(".dcm") or not path.is_file():
        return []
    import pydicom

    return [pydicom.dcmread(path, force=True)]


def ground_truth(explanation: Explanation) -> int | None:
    """The sample of the run's dataset the image is, with its own mask: the explained sample, or a sample of the same
    file (its SHA-256) as the upload; None without one."""
    if explanation.sample_id:
        return explanation.sample_id if explanation.sample.mask else None
    sha256 = (explanation.upload or {}).get("sha256")
    same = Sample.objects.filter(dataset=explanation.run.partition.dataset, sha256=sha256).exclude(mask="").first()
    return same.pk if sha256 and same else None


def done_words(sizes: list[dict], dims: int) -> str:
    unit = "ml" if dims == 3 else "mm2"
    found = [size for size in sizes[1:] if size["voxels"]]
    if not found:
        return "Segmented: the model found none of its classes here (every voxel background)."
    amounts = [f"{size['label']} {size[unit]:.3g} {'ml' if dims == 3 else 'mm²'}" if unit in size
               else f"{size['label']} {size['voxels']:,} {'voxels' if dims == 3 else 'pixels'}" for size in found]
    return f"Segmented: {', '.join(amounts)}."


def write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_array(array: np.ndarray, path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(partial, path)
