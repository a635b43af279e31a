"""The run page's results card while the evaluation runs (js/evaluation.js, issue 22): the samples predicted of all,
and for the project's owners a Stop button that asks the server, says "Stopping…", then shows the evaluation
stopped; a viewer sees no Stop."""
import pytest
from playwright.sync_api import expect

from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_sees_the_evaluations_progress_and_stops_it(page, live_server, clinician):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    evaluation = Evaluation.objects.create(run=run, subset="test", status="running", progress_done=64, progress_total=120,
                                           progress_message="Predicting the subset measured")
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    status = page.locator('#evaluation [data-part="status"]')
    expect(status).to_have_text("Evaluating on the test subset… 64 of 120 samples predicted (the subset measured)")
    Evaluation.objects.filter(pk=evaluation.pk).update(progress_done=120, progress_message="Predicting the validation subset, "
                                                                                            "for the operating points")
    expect(status).to_have_text("Evaluating on the test subset… 120 of 120 samples predicted (the validation subset, for "
                                "the operating points)", timeout=10_000)

    page.locator("#evaluation-stop").click()
    expect(status).to_have_text("Evaluating on the test subset… Stopping…")
    expect(page.locator("#evaluation-stop")).to_be_hidden()
    assert Evaluation.objects.get(pk=evaluation.pk).stop_requested, "the click asked the server"
    # The worker sees the flag before its next batch and ends the evaluation.
    Evaluation.objects.filter(pk=evaluation.pk).update(status="stopped", message="Stopped by the user; nothing was kept.")
    expect(status).to_have_text("The evaluation was stopped: Stopped by the user; nothing was kept.", timeout=10_000)
    page.wait_for_load_state("networkidle")
    assert not [problem for problem in problems if not ("/events/" in problem and "ERR_ABORTED" in problem)], problems


def test_a_viewer_sees_the_progress_without_a_stop(page, live_server, clinician, django_user_model):
    from backend.projects.models import Project, ProjectMember, Role
    from backend.runs.models import Evaluation

    owner = django_user_model.objects.create_user("owner-of-chest", password="owner-password-1")
    project = Project.objects.create(owner=owner, name="Chest")
    ProjectMember.objects.create(project=project, user=clinician, role=Role.VIEWER)
    run = a_finished_run(owner, project)
    Evaluation.objects.create(run=run, subset="test", status="running", progress_done=10, progress_total=40)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator('#evaluation [data-part="status"]')).to_have_text("Evaluating on the test subset… 10 of 40 samples predicted")
    expect(page.locator("#evaluation-stop")).to_have_count(0)
