"""What a run started from, recorded at launch in its provenance and shown on its page.

`started_from` is the source the spec names, in full: for ImageNet the file and its hash prefix and
torchvision's accuracy; for MedicalNet the file, where it is published and the network; for an earlier run, that run (its project, dataset, partition, architecture and
classes) with its own `started_from` nested inside, so the chain goes back to ImageNet or random weights.
`lineage` is the same chain flattened, newest first: what pages and scripts read. Both are copies, not
references: a run deleted later, or made private, still shows where its descendants came from.
"""
from __future__ import annotations

from backend.core.errors import ServiceError
from backend.zoo.services import imported_provenance
from workers.engine.zoo.registry import model_entry

from .models import TrainingRun

LINEAGE_CAP = 20  # steps kept in a chain: transfer chains are a few steps long; a cap keeps a loop of copies bounded


def source_entry(model_settings: dict) -> dict:
    """A start that is not an earlier run: random, the ImageNet file (named, with its hash prefix), an imported model."""
    weights = model_settings.get("weights", "random")
    if weights == "imagenet":
        pretrained = model_entry(model_settings["architecture"]).weights_named("imagenet")
        return {"weights": "imagenet", "title": pretrained.title, "filename": pretrained.filename,
                "sha256_prefix": pretrained.sha256_prefix, "imagenet_top1": pretrained.accuracy}
    if weights == "medicalnet":
        entry = model_entry(model_settings["architecture"])
        pretrained = entry.weights_named("medicalnet")
        return {"weights": "medicalnet", "title": pretrained.title, "filename": pretrained.filename, "url": pretrained.url,
                "network": network_name(entry.title)}
    if weights == "imported":
        found = imported_provenance(model_settings.get("imported_model"))
        return {"weights": "imported", "imported_model": found.pop("id"), **found}
    return {"weights": weights}


def network_name(title: str) -> str:
    """A 3D network's title as MedicalNet names its networks: "ResNet-18 (3D)" -> "ResNet-18"."""
    return title.removesuffix(" (3D)")


def run_entry(run: TrainingRun) -> dict:
    """An earlier run as a step of a chain: enough to name it where it can no longer be read."""
    partition, dataset = run.partition, run.partition.dataset
    kept = run.results.get("kept", {})
    return {"weights": "run", "run": run.pk, "name": run.name, "project": {"id": run.project_id, "name": run.project.name},
            "dataset": {"id": dataset.pk, "name": dataset.name}, "partition": {"id": partition.pk, "name": partition.name},
            "architecture": run.architecture, "classes": run.results.get("classes") or dataset.labels,
            "channels": dataset.channels, "kept_epoch": kept.get("epoch"), "test_accuracy": run.test_accuracy}


def lineage_of(run: TrainingRun) -> list[dict]:
    """The run's chain as recorded at its launch; for runs launched before chains were recorded, their spec's source."""
    recorded = run.provenance.get("lineage")
    if recorded is not None:
        return recorded
    return [source_entry(run.spec.get("model", {}))]


def lineage_for(model_settings: dict) -> list[dict]:
    """The chain a run with these model settings starts: its source, then (for a run) that run's own chain."""
    if model_settings.get("weights") != "run":
        return [source_entry(model_settings)]
    earlier = TrainingRun.objects.select_related("project", "partition__dataset").filter(pk=model_settings["start_run"]).first()
    if earlier is None:  # deleted between the launch's check and now
        raise ServiceError(f"Run {model_settings['start_run']} was deleted just now; choose another run to start from.",
                           field="model.start_run")
    chain = [run_entry(earlier), *lineage_of(earlier)]
    if len(chain) > LINEAGE_CAP:
        chain = [*chain[:LINEAGE_CAP - 1], {"weights": "truncated", "steps": len(chain) - LINEAGE_CAP + 1}]
    return chain


def nested(chain: list[dict]) -> dict:
    """The chain as `started_from` holds it: each step with the one before it inside."""
    first, *rest = chain
    return {**first, "started_from": nested(rest)} if rest else dict(first)


def lineage_provenance(model_settings: dict) -> dict:
    """The provenance's `started_from` (nested) and `lineage` (flat, newest first) for a run about to launch."""
    chain = lineage_for(model_settings)
    return {"started_from": nested(chain), "lineage": chain}


def describe_step(step: dict) -> tuple[str, str]:
    """One step in words, as the run page shows it: its name (a link, for runs the reader may open) and the rest."""
    weights = step.get("weights")
    if weights == "run":
        where = ", ".join(f"{what} {step[what]['name']}" for what in ("dataset", "partition") if step.get(what))
        return f"run #{step['run']} '{step['name']}'", f"({where})" if where else ""
    if weights == "imagenet":
        return "ImageNet", f"(torchvision, {step['filename']})" if step.get("filename") else "(torchvision)"
    if weights == "medicalnet":
        network = f"{step['network']} " if step.get("network") else ""
        return f"MedicalNet's {network}weights", f"(Tencent, {step['filename']})" if step.get("filename") else "(Tencent)"
    if weights == "imported":
        detail = f"({step['kind']} file {step['file_name']}, {step['mode'].replace('_', ' ')})" if step.get("file_name") else ""
        return f"imported model '{step['name']}'" if step.get("name") else f"imported model #{step.get('imported_model')}", detail
    if weights == "truncated":
        return f"{step['steps']} earlier step(s)", f"(chains are recorded up to {LINEAGE_CAP} steps)"
    return "random weights", ""


def shown_lineage(run: TrainingRun, readable_ids: set[int]) -> list[dict]:
    """The chain for the run page: each step's name and details, with the run to link where the reader may open it."""
    shown = []
    for step in lineage_of(run):
        label, detail = describe_step(step)
        shown.append({"label": label, "detail": detail, "run": step.get("run") if step.get("run") in readable_ids else None})
    return shown


def runs_in(chain: list[dict]) -> list[int]:
    return [step["run"] for step in chain if step.get("weights") == "run"]
