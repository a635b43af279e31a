"""docs/training.md, written from the spec's schema: the same one that builds the run form and checks the API."""
from __future__ import annotations

import json

from ..pipelines.reference import parameter_line
from .spec import spec_schema

TABLE_HEAD = ["| parameter | kind | allowed | default | meaning |", "| --- | --- | --- | --- | --- |"]


def params_table(params: list[dict], prefix: str = "") -> list[str]:
    if not params:
        return ["No parameters.", ""]
    rows = [parameter_line({**p, "name": prefix + p["name"]}) for p in params]
    return [*TABLE_HEAD, *rows, ""]


def choices_section(title: str, key: str, entries: list[dict]) -> list[str]:
    lines = [f"## {title} (`{key}`)", "", f"Chosen by `{key}.name`; its parameters sit beside the name.", ""]
    for entry in entries:
        lines += [f"### {entry['title']} (`{entry['name']}`)", "", entry["help"], ""]
        lines += params_table(entry["params"], f"{key}.")
    return lines


def reference_markdown() -> str:
    schema = spec_schema()
    sections = schema["sections"]
    lines = ["# Training settings", "",
             "Generated from the training spec's schema (`workers/engine/training/`) by `make schema`; do not edit by hand.",
             "The same schema builds the run form, checks `POST /api/runs/` (each refusal names its field, e.g.",
             "`optimizer.momentum`) and is served at `GET /api/training/`. Any setting left out takes the chosen",
             "architecture's default (below); a run stores the resolved spec whole.", "",
             "```json", json.dumps({"partition": 3, "model": {"architecture": "resnet18"}, "epochs": 30,
                                    "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                                    "schedule": {"name": "one_cycle"}, "metrics": ["accuracy", "auc"],
                                    "monitor": "validation.auc", "early_stopping": {"enabled": True, "patience": 8},
                                    "resources": {"device": "gpu"}}, indent=2), "```", "",
             "## The run", ""]
    lines += params_table(schema["top_level"])
    lines += [f"## {sections['model']['title']} (`model`)", ""] + params_table(sections["model"]["params"], "model.")
    lines += ["`model.start_run` is the id of the earlier run to start from (with `weights: run`): a run you can read (your",
              "projects' or a public one) that kept a model, of the same architecture (`GET /api/runs/starting-points/`",
              "lists them); its classes and channels may differ. `model.imported_model` is the id of an imported model (with",
              "`weights: imported`). `imagenet` and `medicalnet` (MedicalNet's 3D ResNets) need their file on the server",
              "(`GET /api/training/` says per architecture whether it is there). A network that cannot take the",
              "dataset's images is refused unless `model.input_size` resizes them inside it. Where weights come from, and",
              "the lineage a run records: docs/models.md.", ""]
    lines += choices_section("Optimizers", "optimizer", schema["optimizers"])
    lines += choices_section("Losses", "loss", schema["losses"])
    lines += choices_section("Learning-rate schedules", "schedule", schema["schedules"])
    lines += ["## Metrics (`metrics`) and the monitored metric (`monitor`)", "",
              "The loss is always measured, on the training batches and the validation subset, after every epoch. `metrics`",
              "adds these; `monitor` (`validation.loss` by default, or `train.<metric>` / `validation.<metric>` of one",
              "measured) picks the epoch whose model is kept, and drives early stopping and reduce-on-plateau.", "",
              "| metric | title | better | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{m['name']}` | {m['title']} | {'higher' if m['higher_is_better'] else 'lower'} | {m['help']}"
              f"{' Validation and test only.' if m['needs_scores'] else ''} |" for m in schema["metrics"]]
    lines += ["", "## Phases (`phases`)", "",
              "A list of phases run one after the other (empty: one phase, the whole run). The schedule restarts in each",
              "phase, at the phase's rate; `epochs` is then their sum. The run form's \"Fine-tune (fastai)\" fills in fastai's",
              "`fine_tune`: ImageNet weights, `[{epochs: 1, train: head, learning_rate: 2e-3}, {epochs: E - 1, train: all,",
              "learning_rate: 1e-3, layer_rate_ratio: 100}]` and a one-cycle schedule (rise 0.3, start at 0.2 of the peak).", ""]
    lines += params_table(schema["phase"], "phases.N.")
    for key in ("early_stopping", "checkpoints", "resources", "data"):
        lines += [f"## {sections[key]['title']} (`{key}`)", ""] + params_table(sections[key]["params"], f"{key}.")
    lines += ["`data.augmentation` is the id of one of the project's augmentation pipelines (its latest version is used and",
              "frozen); `data.class_factors` is `{class: times per epoch}` for balancing `factors`. `data.plan` is the",
              "dataset's plan (patch, spacing, normalisation); for a segmentation network whose input sides must be multiples",
              "of a number (a U-Net's 8), the plan's patch is rounded up to them (a 10x32x32 patch of thin volumes becomes",
              "16x32x32, each sample padded to it), refused only where a side would pass twice the smallest sample's.", ""]
    lines += [f"## {sections['inference']['title']} (`inference`)", ""] + params_table(sections["inference"]["params"], "inference.")
    lines += ["`inference.mirror_axes` (with `mirror` on) lists the spatial axes to mirror along, 0 the first (a volume's",
              "slices, an image's rows), e.g. `[1, 2]`; left out: all of them.", "",
              "## Segmentation", "",
              "A run on a dataset of masks is a segmentation run unless `task` says otherwise: the network of the plan's",
              "dimensions from the task (`unet_2d`, `unet_3d`), Dice + cross-entropy, mean foreground Dice monitored on the",
              "validation subset, Dice per label charted (`class_dice.<label>`). Its outputs are the dataset's label values",
              "in order, the background (0) first, named by the dataset's label names (docs/datasets.md, \"Label names\");",
              "values need not be consecutive (0, 1, 4). It trains from the store, masks beside the images, 2D images too;",
              "samples without a mask are left out. It may start from an earlier run of the same network: the same labels",
              "carry every weight, other labels draw the output layers anew (DynUNet, shaped by its plan, only from a run",
              "of the same patch and spacing).", "",
              "Deep supervision: a network whose zoo entry says `deep_supervision` (DynUNet, nnU-Net's) gives, in training, its",
              "coarser decoder stages' outputs too; the loss is their weighted sum, each against the mask downsampled",
              "(nearest) to its size, weights halving per level from the finest and normalised to 1 (nnU-Net's scheme).",
              "Predictions, metrics and the exported model use the full-resolution output alone.", "",
              "Postprocessing: after training, the validation subset's whole samples are predicted with and without keeping",
              "only the largest connected component of each foreground label; it is kept for a label only when it raises",
              "that label's mean validation Dice (nnU-Net's rule); the choice and both Dice values are recorded with the run",
              "(`workers/engine/tasks/segmentation/postprocessing.py`).", "",
              "## Defaults by architecture", "",
              "Checked against tuned runs of the same architecture by `bench/default_settings.py`.", "",
              "| architecture | optimizer | learning rate | schedule | epochs | batch |", "| --- | --- | --- | --- | --- | --- |"]
    for architecture in schema["architectures"]:
        spec = architecture["defaults"]
        schedule = spec["schedule"]["name"] + (f", {spec['schedule']['warmup_epochs']}-epoch warm-up" if spec["schedule"]["warmup_epochs"] else "")
        lines.append(f"| `{architecture['name']}` | {spec['optimizer']['name']} | {spec['optimizer']['learning_rate']:g} | {schedule} | "
                     f"{spec['epochs']} | {spec['batch_size']} |")
    return "\n".join(lines) + "\n"
