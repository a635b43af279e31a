"""The learning-rate finder on the run form, with a real worker: refused settings said in words, the
search's progress, then the curve, the suggestion, and "Use this rate" setting the form's learning rate.
The search takes the form's own settings: what the form would launch."""
import re

import pytest
from playwright.sync_api import expect

from backend.datasets.services import create_partition
from backend.projects.models import Project
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_form import field
from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset, with_training_cache

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_find_a_rate_watch_the_sweep_and_use_the_suggestion(page, live_server, clinician, celery_worker_process):
    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = with_training_cache(ready_dataset(project, per_class=40, name="X-rays"))
    partition = create_partition(clinician, dataset, "", 70, 15, 15, 1)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/projects/{project.pk}/runs/new/?partition={partition.pk}")
    page.locator("#advanced summary").click()
    field(page, "batch_size").fill("500")
    finder = page.locator("#rate-finder")

    finder.get_by_role("button", name="Find a learning rate").click()
    expect(finder.get_by_role("alert")).to_contain_text("batch size: The batch size (500) is larger than the training subset")
    assert f"400: {live_server.url}/api/rate-searches/" in problems
    assert all("400" in problem for problem in serious(problems)), f"the refusal, and nothing else, went wrong: {problems}"
    problems.clear()

    field(page, "batch_size").fill("4")
    finder.get_by_role("button", name="Find a learning rate").click()
    expect(finder.locator(".error")).to_be_empty()
    expect(finder.locator(".progress")).to_be_visible()
    expect(finder.locator(".progress .label")).to_contain_text(re.compile(r"\d+%"))
    expect(finder.locator(".status")).to_have_text("Done", timeout=180_000)
    expect(finder.locator(".progress")).to_be_hidden()
    expect(finder.locator(".rate-finder-chart .scatterlayer .trace")).to_have_count(2)  # the curve, and the suggestion's mark
    assert page.evaluate("() => document.querySelector('.rate-finder-chart')._fullLayout.xaxis.type") == "log"
    suggestion = finder.locator(".rate-finder-suggestion")
    expect(suggestion).to_contain_text("Suggested learning rate:")
    expect(finder.locator(".status + span")).to_contain_text("halfway down the loss's fall")
    finder.get_by_role("button", name="Use this rate").click()
    shown = suggestion.text_content().split(": ")[1]
    assert float(field(page, "optimizer.learning_rate").input_value()) == pytest.approx(float(shown))
    expect(finder).to_contain_text(f"The learning rate is now {shown}.")
    expect(finder.get_by_role("button", name="Search again")).to_be_enabled()
    shot(page, "rate_finder")

    # In phases (the fine-tune preset, its first phase then set to all but the first block: on these images, unlike
    # ImageNet's features, a head alone on random features learns too little for the curve to suggest anything), the
    # sweep trains what the first phase trains, and its rate goes to the first phase, the second keeping half of it.
    page.click("#fine-tune")
    expect(field(page, "phases.0.learning_rate")).to_have_value("0.002")
    field(page, "phases.0.train").select_option("all")
    field(page, "phases.0.frozen_blocks").fill("1")
    with page.expect_request(lambda request: request.url.endswith("/api/rate-searches/") and request.method == "POST") as sent:
        finder.get_by_role("button", name="Search again").click()
    first_phase = sent.value.post_data_json["phases"][0]
    assert (first_phase["train"], first_phase["frozen_blocks"], first_phase["learning_rate"]) == ("all", 1, 0.002), first_phase
    expect(finder.get_by_role("button", name="Search again")).to_be_enabled(timeout=180_000)  # disabled while it searches
    expect(finder.locator(".status")).to_have_text("Done")
    expect(suggestion).to_contain_text("Suggested learning rate:")
    finder.get_by_role("button", name="Use this rate").click()
    first = float(suggestion.text_content().split(": ")[1])
    assert float(field(page, "phases.0.learning_rate").input_value()) == pytest.approx(first)
    assert float(field(page, "phases.1.learning_rate").input_value()) == pytest.approx(first / 2, rel=0.05)
    expect(finder).to_contain_text("The first phase's learning rate is now")
    assert not serious(problems), problems


def serious(problems: list[str]) -> list[str]:
    """The browser asks for a favicon the toolkit does not have, whenever it likes: not the module's doing."""
    return [problem for problem in problems if "favicon.ico" not in problem]
