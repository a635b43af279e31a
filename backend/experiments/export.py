"""A group's and a comparison's tables as files (docs/results.md, "Export"; issue 22, R4): the group's test metrics
across its members beside its pooled evaluation, its members one per row, and a comparison's results table one row per
item and metric. The same tables and writers as a run's (backend/runs/export.py, backend/core/table_files.py): a header
and rows, written as CSV, XLSX or JSON."""
from __future__ import annotations

from backend.core.table_files import safe_name, table_file
from backend.runs.export import FORMATS, check_choice, in_order

from .comparisons import comparison_view, ordered_items
from .models import Comparison, RunGroup
from .services import group_summary
from .sweeps import sweep_summary

GROUP_TABLES = ("metrics", "members", "trials")
COMPARISON_TABLES = ("metrics",)


def group_metrics_table(summary: dict):
    """One row per headline metric: mean, sample standard deviation (ddof=1) and n across the members' evaluations,
    then the pooled evaluation's value with its interval (empty where it has none)."""
    across = summary.get("test", {})
    pooled = ((summary.get("pooled") or {}).get("results") or {}).get("metrics") or {}
    yield ["metric", "mean", "std", "n", "pooled", "ci_low", "ci_high"]
    for name in in_order({*across, *pooled}):
        spread = across.get(name, {"mean": None, "std": None, "n": 0})
        figure = pooled.get(name) or {}
        yield [name, spread["mean"], spread["std"], spread["n"], figure.get("value"), figure.get("low"), figure.get("high")]


def group_members_table(group: RunGroup):
    """One row per member run, in the page's order (fold, seed): what it is, how far it trained, and each headline
    metric of its newest done evaluation on the group's subset (empty before it is evaluated)."""
    members = list(group.members.select_related("run"))
    evaluations = {evaluation.run_id: evaluation for evaluation in group.member_evaluations()}
    names = in_order({name for evaluation in evaluations.values() for name in evaluation.results.get("metrics", {})})
    yield ["run", "name", "fold", "seed", "status", "epochs_completed", "epochs", *names]
    for member in members:
        run, evaluation = member.run, evaluations.get(member.run_id)
        metrics = evaluation.results.get("metrics", {}) if evaluation else {}
        yield [run.pk, run.name, member.fold, member.seed, run.status, run.epochs_completed, run.epochs,
               *[(metrics.get(name) or {}).get("value") for name in names]]


def group_about(group: RunGroup, summary: dict):
    """What made the group's tables: the XLSX's About sheet."""
    pooled = summary.get("pooled") or {}
    results = pooled.get("results") or {}
    yield ["what", "value"]
    yield ["group", f"{group.name} (id {group.pk})"]
    yield ["kind", group.get_kind_display()]
    yield ["measured on", f"the {summary['subset']} subset of each member's partition"]
    yield ["members", summary["members"]]
    yield ["evaluated", summary["evaluated"]]
    yield ["spread", "mean and sample standard deviation (ddof = 1) across the members' evaluations"]
    yield ["pooled", (f"{round(results.get('level', 0.95) * 100)}% percentile interval of {results.get('resamples')} bootstrap "
                      f"resamples of patients, over the members' predictions pooled"
                      + ("" if pooled.get("current") else " (out of date: not every member evaluated is in it yet)"))
                     if results else "no pooled evaluation yet"]


def sweep_trials_table(summary: dict):
    """One row per sweep member, in trial order: its settings (a column per setting varied), how it ended for the
    sweep, and its objective (the kept epoch's for a complete member, the last measured for the others)."""
    settings = [dimension["setting"] for dimension in summary["search"]["dimensions"]]
    yield ["trial", "attempt", "run", "name", *settings, "status", "outcome", "pruned_after_epoch", "epochs_completed",
           summary["search"]["objective"]]
    for row in sorted(summary["rows"], key=lambda row: (row["trial"], row["attempt"])):
        yield [row["trial"] + 1, row["attempt"], row["run"], row["name"], *[row["values"].get(s) for s in settings],
               row["status"], row["outcome"] or "not ended", row["pruned_at"], row["epochs_completed"], row["objective"]]


def sweep_about(group: RunGroup, summary: dict):
    search = summary["search"]
    best = summary["best"]
    yield ["what", "value"]
    yield ["sweep", f"{group.name} (id {group.pk})"]
    yield ["sampler", summary["samplers"][search["sampler"]]]
    yield ["pruner", summary["pruners"][search["pruner"]]]
    yield ["trials", f"{summary['used']} of {search['trials']}, {search['parallel']} at once"]
    yield ["objective", f"{search['objective']} ({'higher' if search['direction'] == 'maximize' else 'lower'} is better), "
                        "at each run's kept epoch"]
    yield ["best", f"trial {best['trial'] + 1}: run {best['run']}, {best['objective']:.6g}" if best else "none complete yet"]


def group_file(group: RunGroup, table: str, file_format: str) -> tuple[bytes, str]:
    """(content, file name) of one of a group's tables; a 400 naming the allowed values (a sweep's table: trials)."""
    sweep = group.kind == RunGroup.Kind.SWEEP
    check_choice(table, ("trials",) if sweep else GROUP_TABLES[:2], "table")
    check_choice(file_format, FORMATS, "file")
    name = f"{safe_name(group.name, 'group')}-group{group.pk}-{table}.{file_format}"
    if sweep:
        summary = sweep_summary(group)
        return table_file(sweep_trials_table(summary), file_format, title="Trials", about=sweep_about(group, summary)), name
    summary = group_summary(group)
    rows = group_metrics_table(summary) if table == "metrics" else group_members_table(group)
    return table_file(rows, file_format, title=table.capitalize(), about=group_about(group, summary)), name


def comparison_metrics_table(view: dict):
    """One row per (item, metric) of the comparison page's results table, in its order (metric, then item): a run's
    value with its interval; a group's pooled value with its interval beside the mean, SD and n across its members; or
    the reason the figure is refused (the other cells empty)."""
    items = {item["key"]: item for item in view["items"]}
    yield ["metric", "kind", "id", "name", "value", "ci_low", "ci_high", "mean", "std", "n", "refused"]
    for row in view["test"]:
        for cell in row["cells"]:
            item = items[cell["item"]]
            head = [row["metric"], item["kind"], item["id"], item["name"]]
            if "refused" in cell:
                yield [*head, None, None, None, None, None, None, cell["refused"]]
            elif item["kind"] == "run":
                yield [*head, cell["value"], cell["low"], cell["high"], None, None, None, None]
            else:
                pooled = cell["pooled"]
                yield [*head, pooled["value"], pooled["low"], pooled["high"], cell["mean"], cell["std"], cell["n"], None]


def comparison_about(comparison: Comparison, view: dict):
    yield ["what", "value"]
    yield ["comparison", f"{comparison.name} (id {comparison.pk})"]
    for item in view["items"]:
        yield [item["kind"], f"{item['name']} (id {item['id']})"]
    yield ["value", "a run: its newest test evaluation's value with the 95% bootstrap interval (patients resampled); "
                    "a group: its pooled evaluation's value and interval"]
    yield ["mean, std, n", "a group's mean and sample standard deviation (ddof = 1) across its members' evaluations"]


def comparison_file(comparison: Comparison, table: str, file_format: str) -> tuple[bytes, str]:
    """(content, file name) of a comparison's results table; a 400 naming the allowed values."""
    check_choice(table, COMPARISON_TABLES, "table")
    check_choice(file_format, FORMATS, "file")
    runs, groups = ordered_items(comparison)
    view = comparison_view(runs, groups, comparison.metric)
    name = f"{safe_name(comparison.name, 'comparison')}-comparison{comparison.pk}-{table}.{file_format}"
    return table_file(comparison_metrics_table(view), file_format, title="Results", about=comparison_about(comparison, view)), name
