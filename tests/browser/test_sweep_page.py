"""Sweeps as a person meets them (issue 22, T5): the run form's sweep card (a refusal beside its field, then a launch
that lands on the sweep's page), and a sweep's page: what it tries, its best trial and "Use the best settings" filling
the run form, the parallel-coordinates chart, the trials' table and its downloads, stopping. Screenshots at 1366,
1920 and 390 px, no sideways scroll on a phone outside the tables' own scroll boxes."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_form import chest, field, open_form  # noqa: F401 - chest is a fixture
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RATES = [0.1, 0.01, 0.001]


def a_sweep(user, partition, outcomes):
    """A grid sweep over three learning rates, every trial started at once; `outcomes` ends them by trial, as the worker
    does: ("succeeded", kept value) or ("pruned", value at epoch 1)."""
    from backend.experiments.models import GroupMember
    from backend.experiments.sweeps import launch_sweep, member_ended, report_epoch
    from backend.runs.models import MetricPoint, TrainingRun

    group = launch_sweep(user, partition, {"epochs": 9, "monitor": "validation.accuracy"},
                         {"sampler": "grid", "parallel": 3, "pruner": "successive_halving",
                          "dimensions": [{"setting": "optimizer.learning_rate", "values": RATES}]})
    members = list(GroupMember.objects.filter(group=group).order_by("trial").select_related("group__project"))
    for member, (status, value) in zip(members, outcomes, strict=False):
        MetricPoint.objects.create(run=member.run, epoch=1, subset="validation", name="accuracy", value=value)
        if status == "pruned":
            reason = report_epoch(member, 1, value)
            assert reason, "the test's values must make the pruner stop this one"
            TrainingRun.objects.filter(pk=member.run_id).update(status="stopped", message=reason, epochs_completed=1)
        else:
            report_epoch(member, 1, value)
            TrainingRun.objects.filter(pk=member.run_id).update(
                status=status, epochs_completed=9,
                results={"kept": {"epoch": 9, "monitor": "validation.accuracy", "value": value, "reason": "best"}})
        member_ended(member.run_id)
    return group, members


def test_a_sweeps_page_shows_its_trials_its_best_and_fills_the_run_form_with_it(page, live_server, clinician, chest):  # noqa: F811
    group, members = a_sweep(clinician, chest["partition"], [("succeeded", 0.8), ("succeeded", 0.9), ("pruned", 0.2)])
    best = members[1]
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/groups/{group.pk}/")
    expect(page.locator("#sweep-progress")).to_have_text("3 of 3 trials started · 3 finished · 1 pruned early · the sweep is done.")
    expect(page.locator("#sweep-search")).to_contain_text("optimizer.learning_rate: 0.1, 0.01, 0.001")
    expect(page.locator("#sweep-search")).to_contain_text("Picked by validation.accuracy (higher is better)")
    rate = best.values["optimizer.learning_rate"]
    expect(page.locator("#sweep-best")).to_have_text(
        f"Best: trial {best.trial + 1} (optimizer.learning_rate {rate:g}), validation.accuracy 0.9.")
    expect(page.locator("#sweep-stop")).to_be_hidden()
    expect(page.locator("#sweep-chart .parcoords")).to_have_count(1)
    rows = page.locator("#sweep-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(f'#sweep-table tr[data-run="{best.run_id}"]')).to_have_class("best")
    expect(page.locator(f'#sweep-table tr[data-run="{members[2].run_id}"]')).to_contain_text("pruned after epoch 1")
    for k, file_format in enumerate(("csv", "xlsx", "json")):
        href = page.locator(".downloads a").nth(k).get_attribute("href")
        assert href == f"/api/groups/{group.pk}/export/?table=trials&file={file_format}", href
        assert page.evaluate("(href) => fetch(href).then((r) => r.status)", href) == 200, href

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(600)  # Plotly follows the new width a moment later (the page redraws 200 ms after a resize)
        page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth")
        no_sideways_scroll(page)
        page.screenshot(path=str(ARTIFACTS / f"sweep-page-{width}.png"), full_page=True)

    page.set_viewport_size({"width": 1366, "height": 768})
    page.get_by_role("link", name="Use the best settings").click()
    page.wait_for_url(re.compile(rf"/projects/{group.project_id}/runs/new/\?from={best.run_id}$"))
    expect(page.locator("#schedule-chart .plot-container")).to_be_visible()
    expect(field(page, "optimizer.learning_rate")).to_have_value(str(rate))
    assert problems == [], problems


def test_the_run_forms_sweep_card_refuses_beside_the_field_then_launches(page, live_server, chest):  # noqa: F811
    from backend.experiments.models import RunGroup

    open_form(page, live_server, chest["project"])
    page.locator("#sweep-on").check()
    expect(page.locator("#launch")).to_have_text("Launch the sweep")
    expect(page.locator("#repeat-card")).to_be_hidden()
    setting = page.locator("#sweep-settings fieldset").first
    expect(setting.locator("select").first).to_have_value("optimizer.learning_rate")
    setting.locator("select").nth(1).select_option("values")
    setting.locator('input[aria-label="Values, separated by commas"]').fill("0.01")
    page.locator("#sweep-sampler").select_option("grid")
    page.click("#launch")
    expect(page.locator('[data-error-for="search.dimensions.0.values"]')).to_have_text(
        "List at least two values of optimizer.learning_rate to compare.")
    assert not RunGroup.objects.exists()
    page.screenshot(path=str(ARTIFACTS / "sweep-form-refused.png"), full_page=True)
    problems = record_problems(page)  # from here on: the refusal above was a 400, as it should be

    setting.locator('input[aria-label="Values, separated by commas"]').fill("0.01, 0.001")
    page.click("#sweep-add")
    second = page.locator("#sweep-settings fieldset").nth(1)
    second.locator("select").first.select_option("batch_size")
    second.locator('input[aria-label="Values, separated by commas"]').fill("4, 8")
    page.locator("#sweep-parallel").fill("2")
    page.click("#launch")
    page.wait_for_url(re.compile(r"/groups/\d+/$"))
    group = RunGroup.objects.get()
    assert group.kind == "sweep" and group.search["trials"] == 4 and group.search["parallel"] == 2
    assert [d["setting"] for d in group.search["dimensions"]] == ["optimizer.learning_rate", "batch_size"]
    expect(page.locator("#sweep-progress")).to_contain_text("2 of 4 trials started")
    expect(page.locator("#sweep-table tbody tr")).to_have_count(2)

    page.get_by_role("button", name="Stop the sweep").click()
    expect(page.locator("#sweep-progress")).to_contain_text("the sweep was stopped: no more trials start")
    expect(page.locator("#sweep-stop")).to_be_hidden()
    group.refresh_from_db()
    assert group.stop_requested and all(run.status == "stopped" for run in group.runs.all())
    assert problems == [], problems
