"""A run page watched live from the real web server (uvicorn, as `manage.py serve` starts it): points and
log lines written as the worker writes them (RunReporter) appear without a reload, and when the server is
restarted the page reconnects by itself and catches up with what was written meanwhile, no gap, nothing twice."""
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_page_modules import record_problems
from tests.browser.test_walkthrough import log_in, shot
from tests.conftest import free_port, start_web_server, stop_process
from tests.factories import ready_dataset, training_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def a_running_run(user):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun

    project = Project.objects.create(owner=user, name="Chest")
    partition = create_partition(user, ready_dataset(project, per_class=6, name="X-rays"), "", 75, 25, 0, 7)
    return TrainingRun.objects.create(project=project, partition=partition, name="live", spec=training_spec(epochs=8),
                                      status="running", started_at=timezone.now())


def train(reporter, epochs):
    """What the worker records for each epoch: its progress, four points and a line of log."""
    for epoch in epochs:
        reporter.progress(epoch, 8, f"epoch {epoch} of 8")
        for subset in ("train", "validation"):
            gap = 0.1 if subset == "validation" else 0.0
            reporter.metric(epoch, subset, "loss", 1.0 / epoch + gap)
            reporter.metric(epoch, subset, "accuracy", 0.5 + epoch / 20 - gap)
        reporter.log(f"epoch {epoch}: loss {1.0 / epoch:.3f}")


def chart_epochs(page) -> dict:
    """The epochs each curve of the loss chart holds, as Plotly has them."""
    return page.evaluate("Object.fromEntries(document.getElementById('metric-chart-loss').data.map(t => [t.name, Array.from(t.x)]))")


def test_the_run_page_catches_up_after_the_server_restarts(page, clinician, tmp_path):
    from workers.jobs import finish
    from workers.training import RunReporter

    run = a_running_run(clinician)
    reporter = RunReporter(run, interval=0)
    port = free_port()
    server = start_web_server(tmp_path / "web.log", port)
    try:
        log_in(page, server.url)
        page.wait_for_load_state("networkidle")
        problems = record_problems(page)
        page.goto(f"{server.url}/runs/{run.pk}/")
        expect(page.locator("#run-status")).to_have_text("Running")
        expect(page.locator("#run-log-empty")).to_be_visible()
        train(reporter, [1, 2, 3])
        expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(6)
        expect(page.locator("#run-progress")).to_contain_text("3 of 8 steps")
        expect(page.locator("#run-log .log-line")).to_have_count(3)
        page.evaluate("window.__sameDocument = true")

        stop_process(server)  # the page's stream drops; what is written now must reach it all the same
        train(reporter, [4, 5])
        server = start_web_server(tmp_path / "web.log", port)
        train(reporter, [6, 7])
        expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(14, timeout=30_000)
        assert chart_epochs(page) == {"train": list(range(1, 8)), "validation": list(range(1, 8))}, "no gap, nothing twice"
        expect(page.locator("#run-log .log-line")).to_have_count(7)
        expect(page.locator("#run-log .log-line").last).to_contain_text("epoch 7: loss 0.143")
        expect(page.locator("#run-progress")).to_contain_text("7 of 8 steps")
        shot(page, "live-run-after-restart")

        train(reporter, [8])
        finish(type(run), run.pk, "succeeded", "Finished.")
        expect(page.locator("#run-status")).to_have_text("Succeeded")
        expect(page.locator("#results")).to_be_visible()
        expect(page.locator("#test-accuracy")).to_have_text("not measured")
        expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(16)
        assert page.evaluate("window.__sameDocument") is True, "caught up without a reload"
        shot(page, "live-run-finished")
    finally:
        stop_process(server)
    # The stream the restart cut shows as a failed request; anything else would be a fault of the page.
    cut = ("/events/", "ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED")
    assert not [problem for problem in problems if not any(sign in problem for sign in cut)], problems
