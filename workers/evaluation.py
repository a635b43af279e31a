"""The evaluation job: a run's kept model on a subset of its partition, each sample's prediction stored and the results
computed by the run's task: a classifier's (workers/engine/tasks/classification/results.py) or a segmentation's
(workers/engine/tasks/segmentation/results.py), chosen by the spec's task in EVALUATIONS. A worker lost mid-evaluation
queues it again (the default): an evaluation is a pass over one subset and starts over. Its progress is the samples
predicted, written after each batch (a segmentation: after each case); a stop asked is seen between batches (cases) and
ends it as stopped, with no prediction stored."""
from __future__ import annotations

import shutil

import numpy as np
import torch
from django.db import transaction
from django.db.models import F

from backend.datasets.models import Sample
from backend.runs.models import Evaluation, SamplePrediction, SegmentationCase, TrainingRun
from workers.engine.data import CachedImages
from workers.engine.observer import JobStopped
from workers.engine.store import VolumeRecords
from workers.engine.tasks import task_for
from workers.engine.tasks.classification.results import Predictions, classification_results
from workers.engine.tasks.segmentation.grid import predicted_labels
from workers.engine.tasks.segmentation.results import case_scores, segmentation_results
from workers.engine.training.evaluation import measured
from workers.engine.training.spec import resolve_spec
from workers.engine.zoo.start import ModelStart, starting_model

from .groups import pool_groups_of
from .jobs import JobRunner, register
from .starting_weights import model_start
from .training import stored_paths, training_data

Status = Evaluation.Status


class EvaluationJob(JobRunner):
    model = Evaluation
    task = "workers.tasks.evaluate_run"
    noun = "evaluation"
    queue = "train-cpu"  # only a default: each is sent to its own queue (queue_of)

    def work(self, evaluation: Evaluation, reporter) -> None:
        evaluation = Evaluation.objects.select_related("run__partition__dataset__project").get(pk=evaluation.pk)
        way = EVALUATIONS[evaluation.run.spec.get("task", "classification")]
        results, words = way.measure(evaluation, reporter)
        self.finish(evaluation, Status.DONE, words, results=results, progress_done=F("progress_total"))
        if way.pools_groups:
            pool_groups_of(evaluation)  # a member of groups of runs (backend/experiments): their pooled evaluation

    def discard(self, evaluation: Evaluation, status: str) -> None:
        if status == Status.STOPPED:  # a stopped evaluation keeps no rows (the stop is seen before any is written)
            evaluation.predictions.all().delete()
            evaluation.cases.all().delete()
            shutil.rmtree(evaluation.storage_dir, ignore_errors=True)

    def failure_message(self, exc: Exception) -> str:
        return f"The evaluation failed ({type(exc).__name__}: {exc}); the worker log has the details."


class ClassificationEvaluation:
    """Each sample's class probabilities (SamplePrediction rows), metrics with patient-level bootstrap intervals, and
    for two classes operating points chosen on the validation subset."""
    pools_groups = True  # groups of classifiers pool their members' predictions (workers/groups.py)

    def measure(self, evaluation: Evaluation, reporter) -> tuple[dict, str]:
        run = evaluation.run
        data, test_set = training_data(run, reporter)
        spec = resolve_spec(run.spec)
        model = kept_model(run, data)
        subset = external_subset(evaluation, data.classes, reporter) if evaluation.dataset_id else \
            {"test": test_set, "validation": data.validation}[evaluation.subset]
        # Operating points are chosen on the run's validation subset and reported on the subset measured (never chosen
        # on the samples they are reported on): for the test subset and for another dataset.
        chooses_on = data.validation if evaluation.subset != "validation" and len(data.validation) else None
        total = len(subset) + (len(chooses_on) if chooses_on is not None else 0)
        measured_subset = predictions_of(model, subset, spec, data, SamplesPredicted(reporter, 0, total, "the subset measured"))
        validation = predictions_of(model, chooses_on, spec, data, SamplesPredicted(
            reporter, len(subset), total, "the validation subset, for the operating points")) \
            if chooses_on is not None else None
        results = classification_results(measured_subset, validation, seed=run.spec["seed"])
        with transaction.atomic():
            evaluation.predictions.all().delete()  # a job run twice (a lost worker) stores its rows once
            SamplePrediction.objects.bulk_create(prediction_rows(evaluation, measured_subset, subset.keys))
        return results, done_words(results)


class SegmentationEvaluation:
    """Each case predicted whole (the task's sliding window at the plan's spacing), its label map brought back to the
    sample's own grid and scored there with the sample's own spacing against its own mask (Dice, IoU, HD95, NSD,
    volumes: SegmentationCase rows), the map kept for the overlay; then each label's means with patient-level intervals."""
    pools_groups = False  # a group's pooled results are a classifier's: segmentation groups are not pooled yet

    def measure(self, evaluation: Evaluation, reporter) -> tuple[dict, str]:
        run = evaluation.run
        if evaluation.dataset_id:
            raise ValueError("a segmentation run is evaluated on its own partition's subsets, not on another dataset")
        data, test_set = training_data(run, reporter)
        spec = resolve_spec(run.spec)
        model = kept_model(run, data)
        subset = {"test": test_set, "validation": data.validation}[evaluation.subset]
        task = task_for(spec["task"], data.classes, data.dims, spec.loss.probabilities, data.window, spec.mirror_axes(data.dims))
        values = np.array([value for value, _ in run.partition.dataset.segmentation_labels], dtype=np.int64)
        samples = Sample.objects.in_bulk(subset.keys)
        folder = evaluation.storage_dir / "masks"
        shutil.rmtree(folder, ignore_errors=True)  # a job run twice (a lost worker) keeps one map per case
        folder.mkdir(parents=True, exist_ok=True)
        cases, rows = [], []
        for position, key in enumerate(subset.keys):
            if reporter.should_stop():
                raise JobStopped
            sample = samples[key]
            predicted = predicted_labels(task, model, subset[position]["image"], grid_of(sample), run.results.get("postprocessing"))
            scores = case_scores(predicted, reference_classes(sample, values), sample.spacing, data.classes)
            path = folder / f"{sample.pk}.npy"
            np.save(path, label_map(predicted, values))
            cases.append(scores)
            rows.append(case_row(evaluation, sample, scores, path.relative_to(run.project.storage_dir)))
            reporter.progress(position + 1, len(subset), f"Predicting and scoring the {evaluation.subset} cases")
        results = segmentation_results(cases, [row.patient for row in rows], data.classes, data.dims, seed=run.spec["seed"])
        with transaction.atomic():
            evaluation.cases.all().delete()
            SegmentationCase.objects.bulk_create(rows)
        return results, segmentation_words(results)


EVALUATIONS = {"classification": ClassificationEvaluation(), "segmentation": SegmentationEvaluation()}


def grid_of(sample: Sample) -> tuple[int, ...]:
    """A sample's own grid: (depth, height, width) of a volume, (height, width) of an image."""
    return (sample.depth, sample.height, sample.width) if sample.kind == Sample.Kind.VOLUME else (sample.height, sample.width)


def reference_classes(sample: Sample, values: np.ndarray) -> np.ndarray:
    """The sample's own mask as class indices (a label value's place in the dataset's labels, background 0), on its grid.
    A value the dataset does not list is refused: ingest records every value the masks hold."""
    mask = np.asarray(np.load(sample.project_dir / sample.mask, allow_pickle=False))
    grid = grid_of(sample)
    if mask.size != int(np.prod(grid)):
        raise ValueError(f"sample {sample.pk}'s mask has shape {mask.shape}, not its image's {grid}")
    mask = mask.reshape(grid).astype(np.int64)
    unknown = np.setdiff1d(np.unique(mask), values)
    if len(unknown):
        raise ValueError(f"sample {sample.pk}'s mask holds label values {unknown.tolist()} that its dataset does not list")
    return np.searchsorted(values, mask)


def label_map(classes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Class indices as the dataset's label values (as its masks hold them), in the smallest unsigned type that fits."""
    return values[classes].astype(np.uint8 if values.max() < 256 else np.uint16)


def case_row(evaluation: Evaluation, sample: Sample, scores, mask) -> SegmentationCase:
    facts = scores.as_dict()
    return SegmentationCase(evaluation=evaluation, sample=sample, patient=sample.patient, mask=str(mask),
                            **{name: facts[name] for name in ("dice", "iou", "hd95", "nsd", "predicted_volume",
                                                              "reference_volume", "empty", "mean_dice", "tolerance_mm")})


def segmentation_words(results: dict) -> str:
    no_patients = results.get("samples_without_patient", 0) >= results["samples"]
    who = " (no patient IDs)" if no_patients else f" of {results['patients']} patients"
    return (f"Measured {results['samples']} cases{who}: mean foreground Dice {interval_words(results['metrics']['mean_dice'])} "
            f"(95% interval from a bootstrap over {'cases' if no_patients else 'patients'}).")


EVALUATION = register(EvaluationJob())


def external_subset(evaluation: Evaluation, classes: list[str], observer=None) -> CachedImages | VolumeRecords:
    """Another dataset's samples whose class is mapped onto the run's, read as the run's test subset is: 8-bit images
    from the dataset's training cache, or real intensities through the run's plan (its spacing and normalisation,
    measured on the run's own data) from the dataset's store."""
    run, dataset, mapping = evaluation.run, evaluation.dataset, evaluation.class_mapping
    samples = [sample for sample in dataset.samples.order_by("pk") if mapping.get(sample.label)]
    targets, keys = [classes.index(mapping[sample.label]) for sample in samples], [sample.pk for sample in samples]
    plan = run.spec["data"].get("plan")
    if not plan:
        return CachedImages(dataset.cache_path, [sample.cache_index for sample in samples], targets, seed=run.spec["seed"],
                            keys=keys)
    paths = stored_paths(dataset, samples, plan, observer)
    return VolumeRecords(paths, targets, [sample.meta for sample in samples], plan, patches=False, seed=run.spec["seed"],
                         keys=keys)


def kept_model(run: TrainingRun, data) -> torch.nn.Module:
    """The run's kept model: its network built as the run built it (an imported one from its file), then the kept
    weights loaded (the input's mean and std with them)."""
    settings = run.spec["model"]
    imported = settings.get("weights") == "imported"
    model = starting_model({**settings, "weights": "imported" if imported else "random"}, data.in_channels, len(data.classes),
                           model_start(run) if imported else ModelStart(), seed=run.spec["seed"], classes=data.classes,
                           plan=run.spec["data"].get("plan"))  # a network shaped by the plan (DynUNet) is built as trained
    model.load_state_dict(torch.load(run.weights_path, map_location="cpu", weights_only=True))
    return model.eval()


class SamplesPredicted:
    """The job's observer as one pass of the evaluation sees it: its samples predicted counted after the `before`
    of the pass ahead of it, of the `total` of both (the page shows "n of N samples"), the pass named in `words`."""

    def __init__(self, reporter, before: int, total: int, words: str):
        self.reporter, self.before, self.total, self.words = reporter, before, total, words

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.reporter.progress(self.before + done, self.total, f"Predicting {self.words}")

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


def predictions_of(model, subset, spec, data, observer=None) -> Predictions:
    """Each sample's class probabilities on a subset, with its patient (the bootstrap resamples patients); with an
    `observer`, the progress after each batch and the stop flag between batches (JobStopped)."""
    rows: list[dict] = []
    measured(model, subset, spec, data.classes, data.class_counts, data.dims, data.window, metric_names=[], predictions=rows,
             observer=observer)
    patients = dict(Sample.objects.filter(pk__in=subset.keys).values_list("pk", "patient"))
    return Predictions.of([row["probabilities"] for row in rows], [row["target"] for row in rows],
                          [patients.get(key, "") for key in subset.keys], data.classes)


def prediction_rows(evaluation: Evaluation, predictions: Predictions, keys: list) -> list[SamplePrediction]:
    classes = predictions.classes
    return [SamplePrediction(evaluation=evaluation, sample_id=key, patient=patient, truth=classes[truth],
                             predicted=classes[int(row.argmax())], probabilities=[round(float(p), 6) for p in row],
                             truth_probability=float(row[truth]), confidence=float(row.max()), correct=int(row.argmax()) == truth)
            for key, patient, truth, row in zip(keys, predictions.patients, predictions.truth, predictions.probabilities)]


def done_words(results: dict) -> str:
    accuracy, auc = results["metrics"]["accuracy"], results["metrics"]["auc"]
    # Without patient ids each image is its own unit: the bootstrap drew images, and the words say so.
    no_patients = results.get("samples_without_patient", 0) >= results["samples"]
    who = " (no patient IDs)" if no_patients else f" of {results['patients']} patients"
    words = f"Measured {results['samples']} samples{who}: accuracy {interval_words(accuracy)}"
    if auc["value"] is not None:
        words += f", AUC {interval_words(auc)}"
    return words + f" (95% intervals from a bootstrap over {'images' if no_patients else 'patients'})."


def interval_words(metric: dict) -> str:
    if metric["low"] is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} ({metric['low']:.3f} to {metric['high']:.3f})"
