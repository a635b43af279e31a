"""The web tier stays light: serving pages and API reads never imports torch, MONAI and the like.

Each of them costs every web server worker hundreds of MB (torch alone about 500 MB; bench/web_memory.py
measures a worker). Only the workers' jobs and the few requests that run operations (the pipeline
preview) import them. The check runs in a process of its own, so this test process's imports do not
count: it loads webapp.asgi as uvicorn does, resolves every URL pattern's view, imports every module
of backend/ and frontend/ (management commands run in processes of their own: runworker imports torch),
then GETs every page and every API read with real rows, and reports which heavy libraries it holds and
the import chain that brought each in.

Run by hand: python -m tests.integration.test_web_imports   (it uses SQLite in a temporary folder)
"""
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "torchvision", "monai", "onnx", "onnxruntime", "scipy", "pandas")


def test_serving_pages_and_api_reads_imports_no_heavy_library(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    environment.update({"DJANGO_SETTINGS_MODULE": "webapp.test_settings", "TOOLKIT_VAR_DIR": str(tmp_path / "var"),
                        "TOOLKIT_STORAGE_DIR": str(tmp_path / "storage")})
    done = subprocess.run([sys.executable, "-m", "tests.integration.test_web_imports"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["requests"] > 30 and not report["server_errors"], report
    chains = "\n".join(f"{name}: {' -> '.join(chain)}" for name, chain in report["loaded"].items())
    assert not report["loaded"], f"The web tier imported heavy libraries; import them where the work is done:\n{chains}"


class ImportWitness:
    """A meta path finder that finds nothing: it notes which of our modules were importing when a
    forbidden library was first asked for."""

    def __init__(self):
        self.chains: dict[str, list[str]] = {}

    def find_spec(self, name, path=None, target=None):
        if name in FORBIDDEN and name not in self.chains:
            ours = [frame for frame in traceback.extract_stack()[:-1] if frame.filename.startswith(str(ROOT)) and "/.venv/" not in frame.filename]
            self.chains[name] = [f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno}" for frame in ours] or ["(a library)"]
        return None


def import_every_module() -> None:
    """Every module of backend/ and frontend/ but management commands, and every view of every URL pattern."""
    import importlib
    import pkgutil

    from django.urls import URLResolver, get_resolver

    for package in ("backend", "frontend", "webapp"):
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if ".management" not in module.name and module.name != "webapp.test_settings":
                importlib.import_module(module.name)
    patterns = list(get_resolver().url_patterns)
    while patterns:
        pattern = patterns.pop()
        if isinstance(pattern, URLResolver):
            patterns.extend(pattern.url_patterns)
        else:
            assert callable(pattern.callback)


def make_rows() -> tuple[object, dict]:
    """A user with a project holding a ready dataset, a partition, pipelines, a table of measures, a run, its evaluation, an explanation, a group and a rate search."""
    import numpy
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from backend.datasets.services import create_partition
    from backend.experiments.models import Comparison, GroupMember, RunGroup
    from backend.pipelines.services import create_pipeline, start_aggregation
    from backend.projects.models import Project
    from backend.runs.models import Evaluation, Explanation, SamplePrediction, SegmentationCase
    from backend.runs.services import launch_run, start_rate_search
    from backend.zoo.models import ImportedModel
    from tests.factories import ready_dataset, volumes_with_masks
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("reader", password="reader-password-1")
    project = Project.objects.create(owner=user, name="Light")
    dataset = ready_dataset(project)
    partition = create_partition(user, dataset, "", 70, 15, 15, 42)
    augmentation = create_pipeline(user, project, "Augment", "augmentation", [{"op": "flip"}, {"op": "gaussian_blur"}])
    measuring = create_pipeline(user, project, "Measure", "aggregation", [{"op": "window"}], ["mean", "mask_volume", "histogram"])
    aggregation = start_aggregation(user, measuring, volumes_with_masks(project))
    run = launch_run(project, partition, {"model": {"architecture": "resnet18"}, "epochs": 1, "batch_size": 8,
                                          "data": {"augmentation": augmentation.pk}}, user)
    # An evaluation with one prediction, made directly: the run has not trained, and its pages and API read the rows.
    evaluation = Evaluation.objects.create(run=run, subset="test", status=Evaluation.Status.DONE)
    SamplePrediction.objects.create(evaluation=evaluation, sample=dataset.samples.first(), truth="0", predicted="0",
                                    probabilities=[0.9, 0.1], truth_probability=0.9, confidence=0.9, correct=True)
    # A segmentation case of it with its predicted map (the cases list, the map's plane and file read them).
    project.storage_dir.mkdir(parents=True, exist_ok=True)
    numpy.save(project.storage_dir / "case.npy", numpy.zeros((64, 64), numpy.uint8))
    SegmentationCase.objects.create(evaluation=evaluation, sample=dataset.samples.first(), dice={"lesion": 1.0}, iou={"lesion": 1.0},
                                    hd95={"lesion": 0.0}, nsd={"lesion": 1.0}, predicted_volume={"lesion": 0.0},
                                    reference_volume={"lesion": 0.0}, empty={"lesion": "both"}, mean_dice=1.0, tolerance_mm=1.0,
                                    mask="case.npy")
    explanation = Explanation.objects.create(run=run, sample=dataset.samples.first(), status=Explanation.Status.QUEUED)
    group = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SEEDS, name="Seeds", seeds=1)
    GroupMember.objects.create(group=group, run=run, seed=0)
    # A sweep: the same route, its own page (frontend/templates/frontend/sweep.html).
    sweep = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SWEEP, name="Rates", spec=run.spec,
                                    search={"sampler": "grid", "trials": 2, "parallel": 1, "pruner": "none",
                                            "dimensions": [{"setting": "optimizer.learning_rate", "values": [0.01, 0.001]}],
                                            "objective": "validation.accuracy", "direction": "maximize", "epochs": 3, "seed": 0,
                                            "architecture": "small_cnn"})
    GroupMember.objects.create(group=sweep, run=run, seed=0, trial=0, values={"optimizer.learning_rate": 0.01})
    comparison = Comparison.objects.create(project=project, name="Run and group", metric="loss")
    comparison.runs.set([run])
    comparison.groups.set([group])
    search = start_rate_search(user, partition, {"model": {"architecture": "resnet18"}, "batch_size": 8})
    imported = ImportedModel.objects.create(project=project, name="Imported", kind="onnx", mode="prediction_only", status="ready",
                                            opset=17, inputs=[{"name": "image", "type": "float32", "shape": ["batch", 1, 64, 64]}],
                                            reason="It cannot be fine-tuned.", channels=1, metadata={"classes": "[]"})
    # An uploaded file explained by the imported model, as the worker leaves it (the page draws the file's own plane).
    uploaded = Explanation.objects.create(imported_model=imported, status=Explanation.Status.DONE, upload={
        "name": "slice.png", "format": "PNG", "modality": "PNG", "kind": "image", "shape": [64, 64], "channels": 1, "depth": 1,
        "height": 64, "width": 64, "spacing": [], "meta": {}, "array": "uploaded.npy", "original": "", "fits": "as it is"},
        results={"classes": ["0", "1"], "probabilities": [0.4, 0.6], "predicted": "1", "heat_map_shape": None, "note": "no map"})
    project.storage_dir.mkdir(parents=True, exist_ok=True)
    numpy.save(project.storage_dir / "uploaded.npy", numpy.zeros((64, 64), numpy.uint8))
    ids = {"uploaded_explanation": uploaded.pk,
           "project": project.pk, "dataset": dataset.pk, "sample": dataset.samples.first().pk, "partition": partition.pk,
           "pipeline": augmentation.pk, "aggregation": aggregation.pk, "run": run.pk, "evaluation": evaluation.pk,
           "explanation": explanation.pk, "group": group.pk, "sweep": sweep.pk, "comparison": comparison.pk, "ratesearch": search.pk,
           "importedmodel": imported.pk}
    return user, ids


def readable_urls(ids: dict) -> list[str]:
    """Every page, and every GET of the API: router routes with ids, and the plain views (schema, docs ...)."""
    from django.urls import URLPattern, reverse

    from frontend.urls import urlpatterns as pages
    from webapp.urls import api_urls, router

    page_ids = {f"{kind}_id": value for kind, value in ids.items()}
    urls = [reverse(p.name, kwargs={k: page_ids[k] for k in p.pattern.converters}) for p in pages if p.name != "logout"]
    for pattern in router.urls:
        groups = pattern.pattern.regex.groupindex
        if "get" in getattr(pattern.callback, "actions", {}) and "format" not in groups:
            basename = pattern.name.split("-")[0]  # names are "<basename>-<action>"
            # a route of one sample's part of a row (a segmentation case's mask) takes the sample's id too
            kwargs = {**({"pk": ids[basename]} if "pk" in groups else {}), **({"sample": ids["sample"]} if "sample" in groups else {})}
            urls.append(reverse(pattern.name, kwargs=kwargs))
    plain = [p for p in api_urls if isinstance(p, URLPattern) and p.name and not p.pattern.converters]
    # A network's layer summary: the engine answers it in a child process, so torch stays out of this one.
    summary = reverse("architecture-summary", kwargs={"name": "resnet18"}) + f"?dataset={ids['dataset']}&frozen_blocks=2"
    sweep = [reverse("group", kwargs={"group_id": ids["sweep"]}), f"/api/groups/{ids['sweep']}/"]  # a group's other page
    # An uploaded file's explanation: its own picture (the routes above read the sample's explanation).
    uploaded = [f"/api/explanations/{ids['uploaded_explanation']}/", f"/api/explanations/{ids['uploaded_explanation']}/image/"]
    return urls + [reverse(p.name) for p in plain if hasattr(getattr(p.callback, "view_class", None), "get")] + [summary, *sweep, *uploaded]


def main() -> None:
    witness = ImportWitness()
    sys.meta_path.insert(0, witness)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.test_settings")
    os.environ.setdefault("TOOLKIT_VAR_DIR", tempfile.mkdtemp(prefix="toolkit-web-imports-"))
    import webapp.asgi  # noqa: F401  (as uvicorn loads it)

    import_every_module()
    from django.test import Client

    user, ids = make_rows()
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    urls = readable_urls(ids)
    server_errors = {url: status for url in urls if (status := client.get(url).status_code) >= 500}
    loaded = {name: witness.chains.get(name, ["(unknown)"]) for name in FORBIDDEN if name in sys.modules}
    print(json.dumps({"requests": len(urls), "server_errors": server_errors, "loaded": loaded}))


if __name__ == "__main__":
    main()
