"""The project page's table of training runs: the settings that tell the listed runs apart get a column each;
the ones every run shares are said once, under the table. Read from each run's spec (the whole settings the run
was launched with, docs/training.md); a plain function of the specs, so it is tested without a database."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


def _model(spec: dict) -> dict:
    return spec.get("model") or {}


def starting_weights(spec: dict) -> str:
    """Where a run's weights started from, in a few words: random, ImageNet, run #12, imported model #3."""
    model = _model(spec)
    weights = model.get("weights", "random")
    if weights == "run":
        return f"run #{model.get('start_run')}"
    if weights == "imported":
        return f"imported model #{model.get('imported_model')}"
    return {"random": "random", "imagenet": "ImageNet", "medicalnet": "MedicalNet"}.get(weights, str(weights))


@dataclass(frozen=True)
class RunSetting:
    """One setting a run's spec holds, as the table shows it."""

    key: str
    title: str
    read: Callable[[dict], object]  # spec -> value (None where the spec does not say)
    numeric: bool = False

    def value(self, spec: dict):
        return self.read(spec or {})

    def text(self, value) -> str:
        if value is None or value == "":
            return "–"
        if isinstance(value, float):
            return f"{value:g}"  # 0.003, 0.0001, 1e-05: as a learning rate is written
        return str(value)


SETTINGS: tuple[RunSetting, ...] = (
    RunSetting("network", "Network", lambda spec: _model(spec).get("architecture")),
    RunSetting("weights", "Starting weights", starting_weights),
    RunSetting("learning_rate", "Learning rate", lambda spec: (spec.get("optimizer") or {}).get("learning_rate"), numeric=True),
    RunSetting("batch_size", "Batch size", lambda spec: spec.get("batch_size"), numeric=True),
    RunSetting("epochs", "Epochs", lambda spec: spec.get("epochs"), numeric=True),
)


def differing_settings(specs: Iterable[dict], settings: Sequence[RunSetting] = SETTINGS) -> list[RunSetting]:
    """The settings whose values are not the same in all of these specs, in the order of `settings`
    (none for one run, or for none). A spec that does not say counts as a value of its own."""
    specs = list(specs)
    return [setting for setting in settings if len({repr(setting.value(spec)) for spec in specs}) > 1]


def accuracy_text(accuracy: float | None) -> str:
    """0.981 -> '98.1%': one decimal, so runs a point apart do not read the same."""
    return "–" if accuracy is None else f"{accuracy * 100:.1f}%"


def run_table(runs: Sequence) -> dict:
    """What the template draws: `columns` (the differing settings), a row per run (the run, a cell per column with
    its text and the value it sorts by, its accuracy in words and as a number) and `shared` (each setting every
    listed run has the same, with its value in words)."""
    runs = list(runs)
    columns = differing_settings(run.spec for run in runs)
    rows = []
    for run in runs:
        cells = []
        for setting in columns:
            value = setting.value(run.spec)
            # The value to sort by as a string here, not the template's localized number (0,003 in some languages).
            cells.append({"text": setting.text(value), "sort": "" if value is None else str(value), "numeric": setting.numeric})
        accuracy = run.test_accuracy
        rows.append({"run": run, "cells": cells, "accuracy": "" if accuracy is None else str(accuracy), "accuracy_text": accuracy_text(accuracy)})
    shared = [] if not runs else [{"title": setting.title, "text": setting.text(setting.value(runs[0].spec))}
                                  for setting in SETTINGS if setting not in columns]
    return {"columns": columns, "rows": rows, "shared": shared}
