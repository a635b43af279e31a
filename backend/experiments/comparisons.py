"""Comparisons (issue 22, R3; docs/results.md "Compare"): runs and groups of one project read side by side.

What a comparison shows, computed when it is read (so it follows runs still training and groups still pooling):
- the curves of one chosen metric per epoch, each run's (every subset that recorded it) and each group's mean;
- the test metrics: a run's value with its 95% bootstrap interval, a group's mean ± SD across its members beside its
  pooled evaluation's interval; the figure each bar of the page's bar charts draws (`shown`). A classifier's headline
  metrics and a segmentation's mean Dice and IoU: a row per metric some item has, empty cells for the others;
- the ROC curves of each run's newest finished test evaluation (a group's pooled one); a segmentation has none;
- per metric, the items whose classes (a segmentation's labels) make them not comparable, each with the reason
  (`refused`): each item is measured against the items of its own task;
- paired tests between two of its runs on the test samples both were measured on (DeLong for AUC, McNemar for
  accuracy; Wilcoxon's signed-rank test on two segmentations' per-case mean Dice: workers/engine/paired.py, NumPy only).

A selection with nothing in common (another project's run, no metric shared) is refused whole, with its field."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from django.db import transaction

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.projects.access import projects_for, require_owner
from backend.runs.models import Evaluation, MetricPoint, SamplePrediction, SegmentationCase, TrainingRun
from workers.engine.paired import delong, mcnemar, wilcoxon

from .models import Comparison, RunGroup
from .services import epoch_bands, test_spread

MOST_ITEMS = 30  # runs and groups in one comparison: more lines than a chart can tell apart
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auc", "average_precision", "brier", "ece")
SEGMENTATION_HEADLINE = ("mean_dice", "mean_iou")  # workers/engine/tasks/segmentation/results.py's "metrics"
TASK_METRICS = {"classification": HEADLINE, "segmentation": SEGMENTATION_HEADLINE}
# For two classes these are of the positive class (the second): comparable only where both name the same one second.
POSITIVE_CLASS_METRICS = {"auc", "average_precision", "brier"}
PREFERRED_CURVES = ("accuracy", "loss")


def comparisons_for(user):
    """Comparisons in the user's projects (a public run does not make a comparison of it readable)."""
    if not user.is_authenticated:
        return Comparison.objects.none()
    return Comparison.objects.filter(project__in=projects_for(user))


# ------------------------------------------------------------------ choosing what to compare


def parse_ids(raw, field: str) -> list[int]:
    """A list of ids from JSON ([1, 2]) or a query string ("1,2"); anything else is a 400 naming the field."""
    if raw in (None, ""):
        return []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool) or
                                                    isinstance(v, str) and v.isdigit() for v in raw):
        raise ServiceError(f"'{field}' is a list of ids (numbers), e.g. [3, 5] or ?{field}=3,5.", field=field)
    ids = list(dict.fromkeys(int(v) for v in raw))
    if any(v > 2**63 - 1 for v in ids):
        raise ServiceError(f"'{field}' names an id larger than any there can be.", field=field)
    return ids


def selection(user, run_ids: list[int], group_ids: list[int], project_id: int | None = None):
    """(project, runs, groups) the user may read, all of one project; refusals name their field."""
    visible = projects_for(user)
    runs = list(TrainingRun.objects.filter(pk__in=run_ids, project__in=visible).select_related("project"))
    groups = list(RunGroup.objects.filter(pk__in=group_ids, project__in=visible).select_related("project"))
    for ids, found, field, what in ((run_ids, runs, "runs", "run"), (group_ids, groups, "groups", "group")):
        missing = sorted(set(ids) - {item.pk for item in found})
        if missing:
            raise ServiceError(f"No {what} with id {', '.join(map(str, missing))} exists in your projects.", field=field)
    if len(runs) + len(groups) < 2:
        raise ServiceError("Choose at least two runs or groups to compare.", field="runs")
    if len(runs) + len(groups) > MOST_ITEMS:
        raise ServiceError(f"Compare at most {MOST_ITEMS} runs and groups at once; {len(runs) + len(groups)} were chosen.",
                           field="runs")
    projects = {item.project_id: item.project for item in [*runs, *groups]}
    if len(projects) > 1:
        names = ", ".join(f"'{p.name}'" for p in projects.values())
        raise ServiceError(f"Runs and groups of different projects ({names}) cannot be compared: a comparison is shared "
                           "with one project's members. Choose runs of one project.",
                           field="groups" if len({r.project_id for r in runs}) <= 1 and groups else "runs")
    project = next(iter(projects.values()))
    if project_id is not None and project.pk != project_id:
        raise ServiceError(f"These runs are of the project '{project.name}', not of project {project_id}.", field="project")
    order = {pk: k for k, pk in enumerate(run_ids)}
    group_order = {pk: k for k, pk in enumerate(group_ids)}
    return project, sorted(runs, key=lambda r: order[r.pk]), sorted(groups, key=lambda g: group_order[g.pk])


def create_comparison(user, run_ids, group_ids, metric: str = "", name: str = "", project_id: int | None = None) -> Comparison:
    """Save a comparison (the project's owners, as every other thing saved in a project). Refused, with its field, when
    the selection has nothing in common."""
    project, runs, groups = selection(user, run_ids, group_ids, project_id)
    require_owner(user, project)
    view = comparison_view(runs, groups, metric, strict=True)
    names = [run.name for run in sorted(runs, key=lambda r: r.pk)] + [group.name for group in sorted(groups, key=lambda g: g.pk)]
    title = (name or "").strip()[:200] or f"{' vs '.join(names[:3])}{' …' if len(names) > 3 else ''}"[:200]
    with transaction.atomic():
        comparison = Comparison.objects.create(project=project, name=title, metric=view["metric"], created_by=user)
        comparison.runs.set(runs)
        comparison.groups.set(groups)
        record(user, project, Action.CREATE, comparison, object_type="comparison")
    return comparison


def ordered_items(comparison: Comparison) -> tuple[list[TrainingRun], list[RunGroup]]:
    return list(comparison.runs.order_by("pk")), list(comparison.groups.order_by("pk"))


# ------------------------------------------------------------------ what a comparison shows


def newest_test_evaluations(run_ids: list[int]) -> dict[int, Evaluation]:
    """Each run's newest done evaluation of its own test subset."""
    newest = {}
    for evaluation in (Evaluation.objects.filter(run_id__in=run_ids, subset="test", dataset__isnull=True, status=Evaluation.Status.DONE)
                       .order_by("run_id", "-created_at", "-pk")):
        newest.setdefault(evaluation.run_id, evaluation)
    return newest


def classes_of_run(run: TrainingRun, evaluation: Evaluation | None) -> list[str]:
    if evaluation is not None and evaluation.results.get("classes"):
        return list(evaluation.results["classes"])
    return list(run.provenance.get("dataset", {}).get("classes") or [])


def task_of(run: TrainingRun | None, results: dict) -> str:
    """classification or segmentation: what the evaluation says it measured, else what the run was set to learn."""
    return results.get("task") or (run.spec.get("task") if run is not None else None) or "classification"


def item_key(kind: str, pk: int) -> str:
    return f"{kind}-{pk}"


def comparison_view(runs: list[TrainingRun], groups: list[RunGroup], metric: str = "", strict: bool = False) -> dict:
    """Everything the comparison page shows (see the module's docstring). `strict` (saving, previewing) refuses a
    selection with no metric in common and an unknown metric; a saved comparison is shown whatever it has become."""
    run_ids = [run.pk for run in runs]
    members = {group.pk: list(group.members.values_list("run_id", flat=True)) for group in groups}
    member_ids = sorted({pk for ids in members.values() for pk in ids})
    evaluations = newest_test_evaluations(run_ids)
    group_evaluations = {group.pk: group.member_evaluations() for group in groups}

    # Which metric names each item recorded per epoch (one query), then the chosen one's points (another).
    recorded: dict[int, set[str]] = defaultdict(set)
    for run_id, name in MetricPoint.objects.filter(run_id__in=run_ids + member_ids).values_list("run_id", "name").distinct():
        recorded[run_id].add(name)
    items, curve_names, test_names = [], [], []
    for run in runs:
        evaluation = evaluations.get(run.pk)
        results = evaluation.results if evaluation else {}
        items.append({"key": item_key("run", run.pk), "kind": "run", "id": run.pk, "name": run.name, "status": run.status,
                      "partition": run.partition_id, "evaluation": evaluation.pk if evaluation else None,
                      "task": task_of(run, results), "classes": classes_of_run(run, evaluation), "samples": results.get("samples"),
                      "level": results.get("level", 0.95)})
        curve_names.append(recorded.get(run.pk, set()))
        test_names.append({n for n, v in results.get("metrics", {}).items() if v.get("value") is not None})
    for group in groups:
        pooled = (group.pooled or {}).get("results") or {}
        first = group_evaluations[group.pk][0].results if group_evaluations[group.pk] else {}
        across = test_spread(group_evaluations[group.pk])
        items.append({"key": item_key("group", group.pk), "kind": "group", "id": group.pk, "name": group.name,
                      "group_kind": group.kind, "subset": group.evaluated_subset, "partition": group.partition_id,
                      "members": len(members[group.pk]), "evaluated": len(group_evaluations[group.pk]),
                      "task": task_of(None, first),  # before a member is evaluated it has no figure to be of a task
                      "classes": list(pooled.get("classes") or first.get("classes") or []),
                      "samples": pooled.get("samples"), "level": pooled.get("level", 0.95)})
        curve_names.append(set().union(*(recorded.get(pk, set()) for pk in members[group.pk])))
        test_names.append({n for n, v in across.items() if v["n"]} | {n for n, v in pooled.get("metrics", {}).items()
                                                                   if v.get("value") is not None})
        items[-1]["_across"], items[-1]["_pooled"] = across, pooled

    shared_curves = set.intersection(*curve_names) if curve_names else set()
    shared_tests = set.intersection(*test_names) if test_names else set()
    if strict and not shared_curves and not shared_tests:
        raise ServiceError("These runs have nothing in common to compare: no metric was recorded per epoch by all of them, and "
                           "none has a test figure that all of them have (runs still queued have measured nothing yet).",
                           field="runs", code="nothing_in_common")
    available = sorted(set().union(*curve_names)) if curve_names else []
    metric = (metric or "").strip()
    if not metric:
        metric = next((m for m in PREFERRED_CURVES if m in shared_curves), None) or (sorted(shared_curves) or available or ["loss"])[0]
    elif strict and metric not in available:
        raise ServiceError(f"No run here recorded the metric '{metric}' per epoch; "
                           f"{'they recorded ' + ', '.join(available) if available else 'none has recorded anything yet'}.",
                           field="metric")

    curves = metric_curves(runs, groups, members, metric)
    table = test_table(items, evaluations, runs)
    roc = roc_curves(items, evaluations, runs, groups)
    for item in items:
        item.pop("_across", None)
        item.pop("_pooled", None)
    return {"metric": metric, "metrics": available, "shared_metrics": sorted(shared_curves), "items": items,
            "curves": curves, "test": table, "roc": roc, "pairable": [item["id"] for item in items if item["kind"] == "run"
                                                                      and item["evaluation"] is not None]}


def metric_curves(runs, groups, members, metric: str) -> list[dict]:
    """The chosen metric per epoch: each run's per subset, each group's mean ± SD across its members per subset."""
    points: dict[int, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    run_ids = [run.pk for run in runs] + [pk for ids in members.values() for pk in ids]
    for run_id, subset, epoch, value in (MetricPoint.objects.filter(run_id__in=run_ids, name=metric)
                                         .values_list("run_id", "subset", "epoch", "value")):
        points[run_id][subset][epoch] = value
    curves = []
    for run in runs:
        for subset, values in sorted(points[run.pk].items()):
            epochs = sorted(values)
            curves.append({"item": item_key("run", run.pk), "subset": subset, "epochs": epochs,
                           "values": [values[e] for e in epochs], "std": None})
    for group in groups:
        subsets = sorted({subset for pk in members[group.pk] for subset in points[pk]})
        for subset in subsets:
            bands = epoch_bands([points[pk][subset] for pk in members[group.pk] if subset in points[pk]])
            curves.append({"item": item_key("group", group.pk), "subset": subset, "epochs": [b["epoch"] for b in bands],
                           "values": [b["mean"] for b in bands], "std": [b["std"] for b in bands]})
    return curves


def reference_classes(items: list[dict]) -> dict[str, list[str]]:
    """Per task, the class list most of its items share (ties: the first item's), the one the others are compared
    against: a classifier is not refused for having other classes than a segmentation's labels."""
    references = {}
    for task in dict.fromkeys(item["task"] for item in items):
        counted = Counter(tuple(item["classes"]) for item in items if item["task"] == task and item["classes"])
        if counted:
            best = max(counted.values())
            references[task] = list(next(tuple(item["classes"]) for item in items
                                         if item["task"] == task and counted.get(tuple(item["classes"])) == best))
    return references


def class_refusal(metric: str, item: dict, references: dict[str, list[str]]) -> str | None:
    """Why an item's figure of a metric cannot be compared with the others' of its task (their classes or labels
    differ), or None."""
    classes, reference = item["classes"], references.get(item["task"], [])
    if not classes or not reference or classes == reference:
        return None
    title = metric.replace("_", " ")
    if set(classes) != set(reference):
        what = "labels" if item["task"] == "segmentation" else "classes"
        return (f"Not comparable: {title} of '{item['name']}' is over the {what} {', '.join(classes)}; the others' over "
                f"{', '.join(reference)}.")
    if metric in POSITIVE_CLASS_METRICS and len(classes) == 2:
        return (f"Not comparable: {title} of '{item['name']}' takes '{classes[1]}' as the positive class; the others take "
                f"'{reference[1]}'.")
    return None  # the same classes in another order: the metric does not depend on the order


def test_table(items: list[dict], evaluations: dict[int, Evaluation], runs: list[TrainingRun]) -> list[dict]:
    """A row per headline metric (a classifier's, then a segmentation's) any item has: each item's cell ({value, low,
    high} of a run; {mean, std, n, pooled} of a group; `shown`, the figure its bar draws; or `refused` with the reason).
    An item of another task has the row's cell empty (its figures None), never refused."""
    references = reference_classes(items)
    rows = []
    for metric in HEADLINE + SEGMENTATION_HEADLINE:
        cells, any_value = [], False
        for item in items:
            refused = class_refusal(metric, item, references) if metric in TASK_METRICS.get(item["task"], ()) else None
            if item["kind"] == "run":
                evaluation = evaluations.get(item["id"])
                figure = (evaluation.results.get("metrics", {}).get(metric) if evaluation else None) or {}
                cell = {"value": figure.get("value"), "low": figure.get("low"), "high": figure.get("high")}
                cell["shown"] = {"value": cell["value"], "low": cell["low"], "high": cell["high"], "bars": "interval"}
            else:
                across = item["_across"].get(metric, {"mean": None, "std": None, "n": 0})
                pooled = (item["_pooled"].get("metrics") or {}).get(metric) or {}
                cell = {**across, "pooled": {k: pooled.get(k) for k in ("value", "low", "high")}}
                if across["mean"] is not None:  # the bar: the mean across the members, ± one SD
                    std = across["std"] or 0.0
                    cell["shown"] = {"value": across["mean"], "low": across["mean"] - std, "high": across["mean"] + std, "bars": "sd"}
                else:
                    cell["shown"] = {**cell["pooled"], "bars": "interval"}
            if cell["shown"]["value"] is not None:
                any_value = True
            if refused:
                cell = {"refused": refused}
            cells.append({"item": item["key"], **cell})
        if any_value:
            rows.append({"metric": metric, "cells": cells})
    return rows


def roc_curves(items, evaluations, runs, groups) -> list[dict]:
    """Each item's ROC curves (a run's newest test evaluation; a group's pooled one): for two classes the positive
    class's; an item whose classes differ from the others' is refused with the reason, and so is a segmentation."""
    references = reference_classes(items)
    curves = []
    for item in items:
        if item["kind"] == "run":
            evaluation = evaluations.get(item["id"])
            results = evaluation.results if evaluation else {}
        else:
            results = item["_pooled"]
        refused = class_refusal("auc", item, references)
        entry = {"item": item["key"], "auc": ((results.get("metrics") or {}).get("auc") or {}).get("value")}
        if item["task"] == "segmentation":
            entry["refused"] = ("A segmentation has no ROC curve: its masks are compared by Dice and IoU (the table above) "
                                "and by Wilcoxon's test (below).")
        elif refused:
            entry["refused"] = refused.replace("auc", "the ROC curve", 1)
        elif not results.get("roc"):
            entry["refused"] = "No finished evaluation on the test subset yet." if item["kind"] == "run" else \
                "No pooled evaluation yet."
        else:
            entry["curves"] = [{"class": curve["class"], "x": curve["x"], "y": curve["y"]} for curve in results["roc"]]
        curves.append(entry)
    return curves


# ------------------------------------------------------------------ paired tests


def predictions_of(evaluation: Evaluation) -> dict[int, tuple]:
    """sample id -> (truth, predicted, probabilities) of an evaluation's predictions (those whose sample still exists)."""
    rows = SamplePrediction.objects.filter(evaluation=evaluation, sample__isnull=False).values_list(
        "sample_id", "truth", "predicted", "probabilities")
    return {sample: (truth, predicted, probabilities) for sample, truth, predicted, probabilities in rows}


def mean_dice_of(evaluation: Evaluation) -> dict[int, float]:
    """sample id -> the case's mean foreground Dice, of a segmentation's evaluation (cases whose sample still exists)."""
    rows = SegmentationCase.objects.filter(evaluation=evaluation, sample__isnull=False).values_list("sample_id", "mean_dice")
    return {sample: mean_dice for sample, mean_dice in rows if mean_dice == mean_dice}  # a NaN (no foreground label) pairs nothing


def paired_tests(comparison: Comparison, a_id: int | None, b_id: int | None) -> dict:
    """Two classifiers: DeLong's test of their AUCs and McNemar's test of their accuracies; two segmentations:
    Wilcoxon's signed-rank test of their per-case mean Dice. On the test samples both were evaluated on (joined by
    sample). A test that cannot be made says why (`refused`); two runs that share no test sample, or of different
    tasks, are refused whole (400)."""
    runs = {run.pk: run for run in comparison.runs.all()}
    for field, pk in (("a", a_id), ("b", b_id)):
        if pk is None:
            raise ServiceError(f"Choose the run '{field}' (?{field}=<run id>) among the comparison's runs.", field=field)
        if pk not in runs:
            raise ServiceError(f"Run {pk} is not one of this comparison's runs (a group has no predictions of its own "
                               "to pair: choose two runs).", field=field)
    if a_id == b_id:
        raise ServiceError("Choose two different runs: a run compared with itself differs in nothing.", field="b")
    evaluations = newest_test_evaluations([a_id, b_id])
    for field, pk in (("a", a_id), ("b", b_id)):
        if pk not in evaluations:
            raise ServiceError(f"The run '{runs[pk].name}' has no finished evaluation on its test subset yet.", field=field)
    a_run, b_run = runs[a_id], runs[b_id]
    a_eval, b_eval = evaluations[a_id], evaluations[b_id]
    a_task, b_task = task_of(a_run, a_eval.results), task_of(b_run, b_eval.results)
    if a_task != b_task:
        raise ServiceError(f"'{a_run.name}' is a {a_task} and '{b_run.name}' a {b_task}: no paired test compares the two. "
                           "Choose two runs of the same task.", field="b", code="different_tasks")
    pair = paired_segmentations if a_task == "segmentation" else paired_classifiers
    return pair(a_run, b_run, a_eval, b_eval)


def no_shared_samples(a_run: TrainingRun, b_run: TrainingRun) -> ServiceError:
    return ServiceError(f"'{a_run.name}' and '{b_run.name}' share no test sample (they were tested on different samples: "
                        "another dataset or another partition), so no paired test can be made.", field="b",
                        code="no_shared_samples")


def paired_answer(a_run, b_run, a_eval, b_eval, a_count: int, b_count: int, shared: int, classes: list[str]) -> dict:
    return {"a": {"id": a_run.pk, "name": a_run.name, "evaluation": a_eval.pk, "samples": a_count},
            "b": {"id": b_run.pk, "name": b_run.name, "evaluation": b_eval.pk, "samples": b_count},
            "samples": shared, "classes": classes, "task": task_of(a_run, a_eval.results)}


def paired_segmentations(a_run, b_run, a_eval, b_eval) -> dict:
    """Wilcoxon's signed-rank test on the per-case mean Dice of the cases both segmentations were evaluated on; AUC
    and accuracy are a classifier's, refused with the reason."""
    a_dice, b_dice = mean_dice_of(a_eval), mean_dice_of(b_eval)
    shared = sorted(set(a_dice) & set(b_dice))
    if not shared:
        raise no_shared_samples(a_run, b_run)
    a_labels, b_labels = classes_of_run(a_run, a_eval), classes_of_run(b_run, b_eval)
    answer = paired_answer(a_run, b_run, a_eval, b_eval, len(a_dice), len(b_dice), len(shared), a_labels)
    answer["auc"] = {"refused": "DeLong's test compares classifiers' AUCs: a segmentation has no ROC curve."}
    answer["accuracy"] = {"refused": "McNemar's test compares classifiers' right and wrong answers: a segmentation's cases "
                                     "are scored by Dice, compared by Wilcoxon's test."}
    if set(a_labels) != set(b_labels):
        answer["mean_dice"] = {"refused": f"The runs' labels differ ({', '.join(a_labels)} against {', '.join(b_labels)}): "
                                          "their mean Dice is not over the same structures."}
    else:
        answer["mean_dice"] = wilcoxon([a_dice[s] for s in shared], [b_dice[s] for s in shared])
    return answer


def paired_classifiers(a_run, b_run, a_eval, b_eval) -> dict:
    """DeLong's test of the two classifiers' AUCs and McNemar's test of their accuracies on their shared samples."""
    a_pred, b_pred = predictions_of(a_eval), predictions_of(b_eval)
    shared = sorted(set(a_pred) & set(b_pred))
    if not shared:
        raise no_shared_samples(a_run, b_run)
    a_classes, b_classes = classes_of_run(a_run, a_eval), classes_of_run(b_run, b_eval)
    answer = paired_answer(a_run, b_run, a_eval, b_eval, len(a_pred), len(b_pred), len(shared), a_classes)
    disagree = sum(a_pred[s][0] != b_pred[s][0] for s in shared)
    if set(a_classes) != set(b_classes) or disagree:
        why = (f"The runs' classes differ ({', '.join(a_classes)} against {', '.join(b_classes)})" if set(a_classes) != set(b_classes)
               else f"The runs give {disagree} shared sample(s) different true classes")
        answer["accuracy"] = answer["auc"] = {"refused": f"{why}: their figures are not of the same question."}
        return answer
    answer["accuracy"] = mcnemar([a_pred[s][0] == a_pred[s][1] for s in shared], [b_pred[s][0] == b_pred[s][1] for s in shared])
    if len(a_classes) != 2:
        answer["auc"] = {"refused": f"DeLong's test is for two classes; these runs have {len(a_classes)}."}
        return answer
    positive = a_classes[1]
    truth = np.array([a_pred[s][0] == positive for s in shared])
    a_scores = [a_pred[s][2][a_classes.index(positive)] for s in shared]
    b_scores = [b_pred[s][2][b_classes.index(positive)] for s in shared]
    try:
        answer["auc"] = {**delong(a_scores, b_scores, truth), "positive_class": positive}
    except ValueError as error:
        answer["auc"] = {"refused": f"{str(error).capitalize()}."}
    return answer
