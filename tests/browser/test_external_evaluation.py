"""Evaluating a run on another dataset from the run page (js/external_evaluation.js): a dataset that does not fit the
model is refused beside the field the moment it is chosen; one that fits shows its classes mapped onto the model's by
name, each row changeable; Evaluate queues the evaluation with the mapping as shown, the results section follows it,
and the run's evaluations can be switched between. Screenshots at 1366, 1920 and 390 px."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import no_sideways_scroll, results
from tests.browser.test_walkthrough import log_in
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_another_dataset_is_checked_mapped_evaluated_and_shown(page, live_server, clinician):
    from backend.datasets.models import Dataset
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"weights")  # the kept model's file (no worker reads it here)
    Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    other = ready_dataset(run.project, labels=("Lesion", "healthy", "artefact"), per_class=4, name="Hospital B")
    colour = ready_dataset(run.project, name="Colour photos")
    Dataset.objects.filter(pk=colour.pk).update(channels=3)

    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    card = page.locator("#external-evaluation")
    expect(page.locator('#evaluation [data-part="title"]')).to_have_text("Results on the test subset")

    # A dataset the model cannot read: the reason beside the field, nothing to map, nothing to submit.
    page.select_option("#external-dataset", str(colour.pk))
    expect(card.locator('[data-error-for="dataset"]')).to_contain_text("3 channel(s)")
    expect(page.locator("#external-mapping-box")).to_be_hidden()
    expect(page.locator("#external-submit")).to_be_disabled()

    # One that fits: its classes by name onto the model's ("Lesion" is "lesion"), the others left out until chosen.
    page.select_option("#external-dataset", str(other.pk))
    expect(card.locator('[data-error-for="dataset"]')).to_have_text("")
    rows = page.locator("#external-mapping tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator('#external-mapping tr[data-class="Lesion"] select')).to_have_value("lesion")
    expect(page.locator('#external-mapping tr[data-class="healthy"] select')).to_have_value("")
    expect(page.locator('#external-mapping tr[data-class="artefact"] select')).to_have_value("")
    expect(page.locator('#external-mapping tr[data-class="healthy"] td').nth(1)).to_have_text("4")
    page.select_option('#external-mapping tr[data-class="healthy"] select', "normal")
    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        # The run page's Plotly charts follow a new width a moment later (later still on a loaded machine).
        page.wait_for_function("""() => {
            const width = document.documentElement.clientWidth;
            return document.documentElement.scrollWidth <= width && [...document.querySelectorAll("body *")].every(
                (node) => node.closest(".table-scroll") || node.getBoundingClientRect().right <= width + 1);
        }""")
        card.screenshot(path=str(ARTIFACTS / f"external-evaluation-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.click("#external-submit")
    status = page.locator('#evaluation [data-part="status"]')
    expect(status).to_contain_text("Evaluating on dataset Hospital B…")  # and the job's progress words
    queued = Evaluation.objects.get(run=run, dataset=other)
    assert queued.subset == Evaluation.WHOLE_DATASET
    assert queued.class_mapping == {"Lesion": "lesion", "healthy": "normal", "artefact": None}
    expect(page.locator('#evaluation [data-part="choice-box"]')).to_be_visible()
    expect(page.locator("#evaluation-choice option")).to_have_count(2)

    # The worker's results arrive: the section shows them, naming the dataset and the class left out.
    made = results()
    Evaluation.objects.filter(pk=queued.pk).update(status="done", results=made)
    expect(page.locator('#evaluation [data-part="summary"]')).to_contain_text(
        f"{made['samples']} samples of dataset Hospital B (classes left out: artefact)", timeout=15_000)
    expect(page.locator('#evaluation [data-part="title"]')).to_have_text("Results on dataset Hospital B")
    test = Evaluation.objects.get(run=run, subset="test")
    page.select_option("#evaluation-choice", str(test.pk))
    expect(page.locator('#evaluation [data-part="title"]')).to_have_text("Results on the test subset")
    expect(page.locator('#evaluation [data-part="summary"]')).to_contain_text("test samples")
    page.wait_for_load_state("networkidle")
    refused = f"400: {live_server.url}/api/evaluations/class-mapping/?run={run.pk}&dataset={colour.pk}"
    assert problems[:1] == [refused], problems  # the refusal asked for, and nothing else
    assert all("400" in problem for problem in problems), problems


def test_a_viewer_sees_no_evaluation_form(page, live_server, clinician, django_user_model):
    from backend.projects.models import ProjectMember, Role

    owner = django_user_model.objects.create_user("owner", password="owner-password-1")
    run = a_finished_run(owner)
    ready_dataset(run.project, name="Hospital B")
    ProjectMember.objects.create(project=run.project, user=clinician, role=Role.VIEWER)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#evaluation")).to_be_visible()
    expect(page.locator("#external-evaluation")).to_have_count(0)
