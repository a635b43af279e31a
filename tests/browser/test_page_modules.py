"""Every page's script is an ES module of its own: each page loads it and the shared modules it
imports without an error in the console, and the one job watcher follows jobs in both the API's
current words and the shared job lifecycle's."""
import hashlib
import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset, training_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def record_problems(page) -> list[str]:
    """Console errors, uncaught exceptions, and requests that failed or answered an error."""
    problems = []
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
    page.on("response", lambda response: problems.append(f"{response.status}: {response.url}")
            if response.status >= 400 else None)
    return problems


def a_project_with_one_of_everything(user):
    from backend.datasets.services import create_partition
    from backend.pipelines.services import create_pipeline, start_aggregation
    from backend.projects.models import Project
    from backend.runs.models import MetricPoint, TrainingRun
    from workers.aggregate import AGGREGATION

    project = Project.objects.create(owner=user, name="Chest")
    dataset = ready_dataset(project, per_class=6, name="X-rays")
    # The factory's sha256 values agree in the 24 characters that name a thumbnail: left as they are,
    # every lesion's thumbnail is one file that concurrent first requests race to write.
    for sample in dataset.samples.all():
        sample.sha256 = hashlib.sha256(sample.array.encode()).hexdigest()
        sample.save(update_fields=["sha256"])
    partition = create_partition(user, dataset, "", 75, 25, 0, 7)  # six patients: 60/20/20 left test empty, now refused
    measuring = create_pipeline(user, project, "Brightness", "aggregation", [], ["mean"])
    table = start_aggregation(user, measuring, dataset)
    AGGREGATION.run(table.pk, "test")  # the worker's job, done here: the page shows a finished table
    run = TrainingRun.objects.create(project=project, partition=partition, name="first", spec=training_spec(epochs=2, batch_size=4), status="succeeded",
                                     results={"test": {"accuracy": 0.75, "loss": 0.5}, "kept": {"epoch": 2, "reason": "Epoch 2 of 2: the lowest validation loss (0.5)."}})
    MetricPoint.objects.bulk_create([MetricPoint(run=run, epoch=epoch, subset=subset, name=name, value=0.5)
                                     for epoch in (1, 2) for subset in ("train", "validation") for name in ("loss", "accuracy")])
    return {"project": project, "dataset": dataset, "partition": partition, "pipeline": measuring, "table": table, "run": run,
            "sample": dataset.samples.first()}


def test_every_page_runs_its_module_without_an_error(page, live_server, clinician):
    made = a_project_with_one_of_everything(clinician)
    project = made["project"].pk
    # Each page, and what it shows once its module has run (server-drawn on the two pages whose
    # modules only wait for a form to be sent).
    pages = {
        "/": ("#project-list", "Chest"),
        "/zoo/": ("#zoo-count", "of 25 networks"),  # 17 classifiers and 8 segmentation networks
        f"/projects/{project}/": ("#dataset-table", "X-rays"),
        f"/datasets/{made['dataset'].pk}/": ("#partition-table", "Train a model"),
        f"/samples/{made['sample'].pk}/": ("#sample-facts", "lesion · image"),
        f"/partitions/{made['partition'].pk}/": ("#leakage", "No patient in two subsets."),
        f"/projects/{project}/pipelines/new/": ("#operation-list", "Add"),
        f"/projects/{project}/pipelines/{made['pipeline'].pk}/": ("#preview-state", "seed 0"),
        f"/aggregations/{made['table'].pk}/": ("#aggregation-rows tbody", "#12"),
        f"/projects/{project}/runs/new/": ("#resources-hint", "online"),
        f"/projects/{project}/runs/new/?from={made['run'].pk}": ("#run-intro", "The settings of first"),
        f"/runs/{made['run'].pk}/": ("#test-accuracy", "75.0%"),
    }
    log_in(page, live_server.url)
    page.wait_for_load_state("networkidle")  # the home page's modules, which the first goto would otherwise cut short
    problems = record_problems(page)
    for path, (selector, text) in pages.items():
        page.goto(f"{live_server.url}{path}")
        expect(page.locator(selector)).to_contain_text(text)
        page.wait_for_load_state("networkidle")
        assert not problems, f"{path}: {problems}"
    expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(4)
    expect(page.locator("#run-progress")).to_be_hidden()


def test_a_stop_shows_stopping_until_the_job_has_stopped(page, live_server, clinician):
    from backend.datasets.models import Dataset
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Busy")
    dataset = Dataset.objects.create(project=project, name="Scans", status=Dataset.Status.INGESTING, progress_done=3, progress_total=12)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    expect(page.locator("#ingest-progress")).to_contain_text("25% · 3 of 12 steps")
    expect(page.locator("#dataset-status")).to_have_text("Ingesting")
    page.click("#ingest-stop")
    expect(page.locator("#dataset-status")).to_have_text("Stopping…")
    expect(page.locator("#ingest-stop")).to_be_hidden()
    assert Dataset.objects.get(pk=dataset.pk).stop_requested
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.STOPPED, message="Stopped by the user.")
    expect(page.locator("#dataset-status")).to_have_text("Stopped")
    expect(page.locator("#dataset-message")).to_have_text("Stopped by the user.")
    expect(page.locator("#ingest-progress")).to_be_hidden()
    assert not problems, problems


WATCHED = """<div id="watched"><span class="status"></span> <span class="message"></span>
  <div class="progress" hidden><div class="bar"></div><span class="label"></span></div><button class="stop" hidden>Stop</button></div>"""


def test_the_watcher_follows_a_job_in_the_shared_lifecycle_words(page, live_server, clinician):
    """status in queued/running/ready/failed/stopped, `finished`, `stop_requested`, `eta_seconds`:
    what every job's JSON carries once the backend shares one job lifecycle."""
    job = {"status": "queued", "finished": False, "stop_requested": False, "progress": 0.0, "progress_done": 0,
           "progress_total": 0, "progress_message": "", "eta_seconds": None, "message": "", "attempts": 0, "worker": ""}
    asked = []

    def answer(route):
        asked.append(route.request.url)
        route.fulfill(json=job)

    log_in(page, live_server.url)
    page.route(re.compile(r".*/api/watched-job/$"), answer)
    page.evaluate("""async (html) => {
        const { watchJob } = await import("/static/frontend/js/jobs.js");
        document.querySelector("main").insertAdjacentHTML("afterbegin", html);
        const part = (name) => document.querySelector(`#watched .${name}`);
        window.finishedWith = null;
        watchJob("/api/watched-job/", { view: { status: part("status"), message: part("message"), progress: part("progress"),
                                                stop: part("stop") },
                                        onFinish: (job) => { window.finishedWith = job.status; } });
    }""", WATCHED)
    watched = page.locator("#watched")
    expect(watched.locator(".status")).to_have_text("Queued")
    expect(watched.locator(".progress")).to_have_text("0% · Waiting for a worker")
    job.update(status="running", progress=0.3, progress_done=3, progress_total=10, progress_message="epoch 1 of 3", eta_seconds=75)
    expect(watched.locator(".progress")).to_have_text("30% · 3 of 10 steps · epoch 1 of 3 · 1 min 15 s left")
    expect(watched.locator(".status")).to_have_text("Running")
    job.update(stop_requested=True)  # asked by a script, or in another tab
    expect(watched.locator(".status")).to_have_text("Stopping…")
    expect(watched.locator(".stop")).to_be_hidden()
    shot(page, "m1-watcher-stopping")
    job.update(status="ready", finished=True, progress=1.0, progress_done=10, eta_seconds=None, message="All 10 done.")
    expect(watched.locator(".status")).to_have_text("Ready")
    expect(watched.locator(".message")).to_have_text("All 10 done.")
    expect(watched.locator(".progress")).to_be_hidden()
    page.wait_for_function("window.finishedWith === 'ready'")
    polls = len(asked)
    page.wait_for_timeout(2500)
    assert len(asked) == polls, "a finished job is no longer polled"
