"""Resident memory of a web worker after it has served every page and API list once; prints JSON.

Target (issue: "each web worker holds about 1 GB"): under 250 MB. Clinics run the toolkit on modest
servers, and every web server worker is a whole copy of whatever the request path imported.

A throw-away toolkit is set up (its own TOOLKIT_VAR_DIR and TOOLKIT_STORAGE_DIR, a test database on
SQLite, or on DATABASE_URL's server when it is set; REDIS_URL is used when set) with real content: a
2D dataset whose samples have pixels, a CT-like segmentation dataset of volumes with masks, a partition,
an augmentation pipeline, a table of measures made by the real aggregation job, and a finished run
with its metric points. Then the web server starts as production starts it (uvicorn on webapp.asgi,
debug off; one worker process, where serve runs two), the bench logs in, requests every page of
frontend/urls.py, every API list (each router list and each argument-free GET under /api/, the schema
and Swagger UI included) and what the pages' scripts fetch (details, the sample grid, thumbnails,
viewer planes, tags, metrics, rows), and reads the worker's VmRSS (uvicorn with one worker serves
in its own process).

The same requests are then served by a worker that imports torch, torchvision, MONAI, pandas and
openpyxl before the application, as the web tier did before it was made light: `ratio` is the lean
figure over that one, measured in the same run (`--no-eager` skips it). `heavy_modules_loaded` comes
from a separate process that imports webapp.asgi and drives the same requests through Django's test
client, then lists which heavy libraries are in its sys.modules (the server has no endpoint that tells).

The pipeline preview (POST /api/pipelines/preview/) is not among the requests: it runs the operations,
so it imports MONAI and torch, in the few web workers that serve one.

The test database is the bench's own (bench_web_memory_<name> on a server; never the test suite's). A request
answered 400 or above, or a failed modules check, is reported and makes the exit status 1: the bench no longer
measures what it says.

Usage: python bench/web_memory.py [--no-eager]   (BENCH_SMOKE=1 changes nothing: the full size takes seconds)
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import own_test_database, report  # noqa: E402

TARGET_MB = 250
HEAVY = ("torch", "torchvision", "monai", "onnx", "onnxruntime", "scipy", "pandas", "nibabel", "pydicom", "matplotlib")
# What a web worker imported before it was made light: the eager server imports these first.
EAGER_IMPORTS = ("torch", "torchvision", "monai.transforms", "pandas", "openpyxl")
EAGER_BOOT = f"""
import importlib
import sys

for name in {EAGER_IMPORTS!r}:  # before uvicorn loads webapp.asgi
    importlib.import_module(name)
from uvicorn.main import main

sys.exit(main())
"""
USER, PASSWORD = "bench", "bench-password-1"


def throwaway_environment(folder: Path) -> None:
    """Settings for this process and the servers it starts: production's, in folders of their own."""
    os.environ.update({"TOOLKIT_VAR_DIR": str(folder / "var"), "TOOLKIT_STORAGE_DIR": str(folder / "storage"),
                       "TOOLKIT_QUEUE_PREFIX": f"bench{os.getpid()}-", "DJANGO_SETTINGS_MODULE": "webapp.settings"})
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(40))
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")  # plain HTTP on 127.0.0.1


def database_url() -> str:
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    return f"postgres://{auth}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"


def make_content() -> dict:
    """Rows and files for every page, made through the services (and the real aggregation job)."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from backend.datasets.services import create_partition
    from backend.experiments.models import Comparison, GroupMember, RunGroup
    from backend.pipelines.services import create_pipeline, start_aggregation
    from backend.projects.models import Project
    from backend.runs.models import Explanation, MetricPoint, TrainingRun
    from backend.runs.services import launch_run
    from backend.zoo.models import ImportedModel
    from tests.factories import ready_dataset, volumes_with_masks
    from workers.aggregate import AGGREGATION

    user = get_user_model().objects.create_user(USER, password=PASSWORD)
    project = Project.objects.create(owner=user, name="Bench", description="Web memory benchmark")
    dataset = ready_dataset(project, per_class=12, name="Lesions")
    volumes = volumes_with_masks(project)
    partition = create_partition(user, dataset, "", 70, 15, 15, 42)
    augmentation = create_pipeline(user, project, "Augment", "augmentation", [{"op": "flip"}, {"op": "rotate"}])
    measuring = create_pipeline(user, project, "Measure", "aggregation", [{"op": "rescale_to_hu"}],
                                ["mean", "p95", "mask_volume", "histogram"])
    aggregation = start_aggregation(user, measuring, volumes)
    AGGREGATION.run(aggregation.pk, "bench")
    run = launch_run(project, partition, {"epochs": 3, "batch_size": 8, "data": {"augmentation": augmentation.pk}}, user)
    MetricPoint.objects.bulk_create([MetricPoint(run=run, epoch=epoch, subset=subset, name=name, value=value)
                                     for epoch in range(1, 4) for subset in ("train", "validation")
                                     for name, value in (("loss", 1.0 / epoch), ("accuracy", 0.5 + 0.1 * epoch))])
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED, epochs_completed=3,
                                                 results={"test": {"accuracy": 0.8, "loss": 0.4}}, progress_done=3, progress_total=3, started_at=timezone.now(),
                                                 finished_at=timezone.now())
    # A group of the run (its own page), and a saved comparison of the run and the group.
    group = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SEEDS, name="Seeds", seeds=2,
                                    spec=run.spec, created_by=user)
    GroupMember.objects.create(group=group, run=run, seed=0)
    # A sweep: the same route, its own page (frontend/templates/frontend/sweep.html).
    sweep = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SWEEP, name="Rates", spec=run.spec,
                                    search={"sampler": "grid", "trials": 2, "parallel": 1, "pruner": "none",
                                            "dimensions": [{"setting": "optimizer.learning_rate", "values": [0.01, 0.001]}],
                                            "objective": "validation.accuracy", "direction": "maximize", "epochs": 3, "seed": 0,
                                            "architecture": "small_cnn"})
    GroupMember.objects.create(group=sweep, run=run, seed=0, trial=0, values={"optimizer.learning_rate": 0.01})
    comparison = Comparison.objects.create(project=project, name="Run and group", metric="accuracy", created_by=user)
    comparison.runs.add(run)
    comparison.groups.add(group)
    # An imported model as the worker leaves one (the file's checks and the import job are bench/model_import.py's).
    imported = ImportedModel.objects.create(project=project, name="Imported", kind="onnx", mode="prediction_only", status="ready",
                                            opset=17, inputs=[{"name": "image", "type": "float32", "shape": ["batch", 1, 64, 64]}],
                                            reason="It cannot be fine-tuned.", channels=1, metadata={"classes": "[]"}, created_by=user)
    # An uploaded file explained by the imported model, as the worker leaves it (the page draws the file's own plane).
    uploaded = Explanation.objects.create(imported_model=imported, status=Explanation.Status.DONE, upload={
        "name": "slice.png", "format": "PNG", "modality": "PNG", "kind": "image", "shape": [64, 64], "channels": 1, "depth": 1,
        "height": 64, "width": 64, "spacing": [], "meta": {}, "array": "uploaded.npy", "original": "", "fits": "as it is"},
        results={"classes": ["0", "1"], "probabilities": [0.4, 0.6], "predicted": "1", "heat_map_shape": None, "note": "no map"})
    project.storage_dir.mkdir(parents=True, exist_ok=True)
    np.save(project.storage_dir / "uploaded.npy", np.zeros((64, 64), np.uint8))
    return {"uploaded_explanation": uploaded.pk,
            "project": project.pk, "dataset": dataset.pk, "importedmodel": imported.pk, "volumes": volumes.pk, "partition": partition.pk,
            "pipeline": augmentation.pk, "aggregation": aggregation.pk, "run": run.pk, "group": group.pk, "sweep": sweep.pk, "comparison": comparison.pk,
            "sample": dataset.samples.order_by("pk").first().pk, "volume": volumes.samples.exclude(mask="").order_by("pk").first().pk,
            "samples": list(dataset.samples.values_list("pk", flat=True)) + list(volumes.samples.values_list("pk", flat=True))}


def page_urls(ids: dict) -> list[str]:
    """Every pattern of frontend/urls.py with real ids (logout, a POST, is sent last)."""
    from django.urls import reverse

    from frontend.urls import urlpatterns

    values = {"project_id": ids["project"], "pipeline_id": ids["pipeline"], "dataset_id": ids["dataset"], "sample_id": ids["sample"],
              "partition_id": ids["partition"], "run_id": ids["run"], "aggregation_id": ids["aggregation"],
              "importedmodel_id": ids["importedmodel"], "group_id": ids["group"], "comparison_id": ids["comparison"]}
    return [reverse(p.name, kwargs={k: values[k] for k in p.pattern.converters}) for p in urlpatterns if p.name not in ("login", "logout")]


def api_list_urls() -> list[str]:
    """Each router list, and each GET under /api/ that takes no argument (schema and docs included)."""
    from django.urls import URLPattern, reverse

    from webapp.urls import api_urls, router

    lists = [reverse(f"{basename}-list") for _, viewset, basename in router.registry if hasattr(viewset, "list")]
    plain = [p for p in api_urls if isinstance(p, URLPattern) and p.name and not p.pattern.converters]
    return lists + [reverse(p.name) for p in plain if hasattr(getattr(p.callback, "view_class", None), "get")]


def page_data_urls(ids: dict) -> list[str]:
    """What the pages' scripts fetch after the HTML: details, the grid, thumbnails, viewer planes, tags, metrics, rows."""
    project, dataset, sample, volume = ids["project"], ids["dataset"], ids["sample"], ids["volume"]
    return [
        f"/api/projects/{project}/", f"/api/projects/{project}/members/", f"/api/projects/{project}/audit/",
        f"/api/datasets/?project={project}", f"/api/datasets/{dataset}/", f"/api/datasets/{dataset}/samples/?limit=48",
        f"/api/datasets/{dataset}/report/", f"/api/partitions/{ids['partition']}/",
        f"/api/datasets/{dataset}/samples/?limit=48&partition={ids['partition']}&subset=validation",
        *[f"/api/samples/{pk}/thumbnail/" for pk in ids["samples"]],
        f"/api/samples/{sample}/", f"/api/samples/{sample}/slice/", f"/api/samples/{sample}/tags/",
        f"/api/samples/{volume}/", f"/api/samples/{volume}/slice/?axis=coronal&mask=1", f"/api/samples/{volume}/slice/?axis=sagittal",
        f"/api/pipelines/{ids['pipeline']}/", f"/api/runs/{ids['run']}/", f"/api/runs/{ids['run']}/metrics/",
        f"/api/aggregations/{ids['aggregation']}/", f"/api/aggregations/{ids['aggregation']}/rows/",
        f"/api/aggregations/{ids['aggregation']}/export/?file=xlsx", f"/api/imported-models/{ids['importedmodel']}/",
        f"/api/explanations/{ids['uploaded_explanation']}/", f"/api/explanations/{ids['uploaded_explanation']}/image/",
        f"/api/evaluations/?run={ids['run']}", f"/api/groups/{ids['group']}/", f"/api/comparisons/{ids['comparison']}/",
        f"/groups/{ids['sweep']}/", f"/api/groups/{ids['sweep']}/",
    ]


class Visitor:
    """A browser, as far as the pages need one: cookies by hand, since the session cookie is Secure
    (debug off) and the bench speaks plain HTTP to 127.0.0.1."""

    def __init__(self, base: str):
        import requests

        self.http, self.base, self.cookies, self.failures = requests, base, {}, {}

    def request(self, method: str, path: str, **kwargs):
        response = self.http.request(method, self.base + path, cookies=self.cookies, allow_redirects=False, timeout=300, **kwargs)
        self.cookies.update(response.cookies.get_dict())
        if response.status_code >= 400:
            self.failures[f"{method} {path}"] = response.status_code
        return response

    def log_in(self) -> None:
        page = self.request("GET", "/accounts/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        answer = self.request("POST", "/accounts/login/", data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": token})
        if answer.status_code != 302:
            raise RuntimeError(f"logging in failed: {answer.status_code}")

    def log_out(self) -> None:
        self.request("POST", "/accounts/logout/", data={"csrfmiddlewaretoken": self.cookies.get("csrftoken", "")})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(environment: dict, folder: Path, eager: bool) -> tuple[subprocess.Popen, str]:
    from backend.core.management.commands.serve import web_server_command

    port = free_port()
    command = web_server_command("127.0.0.1", str(port))
    command[command.index("--workers") + 1] = "1"  # serves in this process: the one whose memory is read
    if eager:
        command[:3] = [sys.executable, "-c", EAGER_BOOT]  # instead of `python -m uvicorn`
    log = folder / f"uvicorn{'-eager' if eager else ''}.log"
    with open(log, "w") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, base
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("uvicorn did not start in 180 s")


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return round(int(line.split()[1]) / 1024, 1)


def serve_everything(environment: dict, folder: Path, plan: dict, eager: bool) -> dict:
    server, base = start_server(environment, folder, eager)
    try:
        worker = server.pid
        visitor = Visitor(base)
        visitor.request("GET", "/accounts/login/")  # answers once the worker has loaded the application
        booted = resident_mb(worker)
        visitor.log_in()
        for path in plan["pages"] + plan["api_lists"] + plan["page_data"]:
            visitor.request("GET", path)
        visitor.log_out()
        return {"rss_mb": resident_mb(worker), "peak_mb": resident_mb(worker, "VmHWM"), "after_boot_mb": booted,
                "failed_requests": visitor.failures}
    finally:
        server.terminate()
        server.wait(timeout=60)


def modules_after_requests(plan_path: str) -> None:
    """In a process of its own: webapp.asgi, the same requests through Django's test client, then sys.modules."""
    from django.test import Client

    import webapp.asgi  # noqa: F401  (as uvicorn loads it)

    plan = json.loads(Path(plan_path).read_text())
    client = Client(HTTP_HOST="127.0.0.1")
    client.login(username=USER, password=PASSWORD)
    for path in plan["pages"] + plan["api_lists"] + plan["page_data"]:
        client.get(path)
    print(json.dumps([name for name in HEAVY if name in sys.modules]))


def main():
    folder = Path(tempfile.mkdtemp(prefix="toolkit-web-memory-"))
    throwaway_environment(folder)
    import django

    django.setup()
    from django.db import connection

    own_test_database(connection, "web_memory")
    test_database = connection.creation.create_test_db(verbosity=0, autoclobber=True)  # migrates
    try:
        ids = make_content()
        plan = {"pages": page_urls(ids), "api_lists": api_list_urls(), "page_data": page_data_urls(ids)}
        plan_path = folder / "plan.json"
        plan_path.write_text(json.dumps(plan))
        environment = {**os.environ, "DATABASE_URL": database_url()}
        lean = serve_everything(environment, folder, plan, eager=False)
        eager = serve_everything(environment, folder, plan, eager=True) if "--no-eager" not in sys.argv else None
        checked = subprocess.run([sys.executable, __file__, "--modules-after-requests", str(plan_path)], cwd=ROOT, env=environment,
                                 capture_output=True, text=True)
        loaded = json.loads(checked.stdout.strip().splitlines()[-1]) if checked.returncode == 0 else f"failed: {checked.stderr[-2000:]}"
    finally:
        connection.creation.destroy_test_db(test_database, verbosity=0)
        shutil.rmtree(folder, ignore_errors=True)
    result = {"rss_mb": lean["rss_mb"], "target_mb": TARGET_MB, "meets_target": lean["rss_mb"] < TARGET_MB,
              "peak_mb": lean["peak_mb"], "after_boot_mb": lean["after_boot_mb"], "pages": len(plan["pages"]) + 2,  # + login, logout
              "api_lists": len(plan["api_lists"]), "page_data_requests": len(plan["page_data"]), "heavy_modules_loaded": loaded,
              "failed_requests": lean["failed_requests"], "database": connection.vendor}
    if eager:
        result.update({"eager_rss_mb": eager["rss_mb"], "eager_imports": list(EAGER_IMPORTS),
                       "ratio": round(lean["rss_mb"] / eager["rss_mb"], 3)})
    report("web_memory", result)
    if lean["failed_requests"] or (eager and eager["failed_requests"]) or isinstance(loaded, str):
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--modules-after-requests"]:
        modules_after_requests(sys.argv[2])
    else:
        main()
