"""The group page (js/pages/group.js) as a person sees it: three runs repeated over seeds, their curves as a mean with
a band, the test metrics as mean ± SD across the runs (checked against statistics.stdev by hand) beside the pooled
evaluation's interval, and the runs with their seeds. Screenshots at 1366, 1920 and 390 px, no sideways scroll on a
phone outside the tables' own scroll boxes."""
import statistics

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import TEST_P1, TEST_TRUTH, VALIDATION_P1, VALIDATION_TRUTH, no_sideways_scroll, predictions
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHIFTS = (0.0, 0.08, -0.12)  # each seed's model a little more or less sure of "normal"


def results_of(shift):
    from workers.engine.tasks.classification.results import classification_results

    test = predictions([min(max(p + shift, 0.01), 0.99) for p in TEST_P1], TEST_TRUTH)
    return classification_results(test, predictions(VALIDATION_P1, VALIDATION_TRUTH), resamples=200)


def a_settled_group(user):
    """Three succeeded runs of one project, each evaluated on the test subset, grouped and pooled."""
    from backend.experiments.models import GroupMember, RunGroup
    from backend.runs.models import Evaluation

    first = a_finished_run(user, name="seed 0")
    runs = [first] + [a_finished_run(user, project=first.project, name=f"seed {k}") for k in (1, 2)]
    evaluations = [Evaluation.objects.create(run=run, subset="test", status="done", results=results_of(shift))
                   for run, shift in zip(runs, SHIFTS, strict=True)]
    group = RunGroup.objects.create(project=first.project, partition=first.partition, kind=RunGroup.Kind.SEEDS,
                                    name="Three seeds", seeds=3, spec=first.spec)
    for seed, run in enumerate(runs):
        GroupMember.objects.create(group=group, run=run, seed=seed)
    pooled = results_of(0.0)
    RunGroup.objects.filter(pk=group.pk).update(pooled={
        "evaluations": sorted(e.pk for e in evaluations), "runs": sorted(r.pk for r in runs), "subset": "test", "results": pooled})
    return group, evaluations, pooled


def test_a_groups_curves_spread_and_pooled_interval_are_shown(page, live_server, clinician):
    group, evaluations, pooled = a_settled_group(clinician)
    accuracies = [e.results["metrics"]["accuracy"]["value"] for e in evaluations]
    assert len(set(accuracies)) > 1, accuracies  # the seeds differ, so the deviation is not zero
    mean, deviation = statistics.mean(accuracies), statistics.stdev(accuracies)

    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/groups/{group.pk}/")
    expect(page.locator("#group-progress")).to_have_text("3 of 3 runs finished · 3 evaluated on the test subset.")
    row = page.locator('#group-metrics tr[data-metric="accuracy"]')
    expect(row.locator("td").nth(1)).to_have_text(f"{mean * 100:.1f}% ± {deviation * 100:.1f}%")
    expect(row.locator("td").nth(2)).to_have_text("3")
    shown = pooled["metrics"]["accuracy"]
    expect(row.locator("td").nth(3)).to_have_text(
        f"{shown['value'] * 100:.1f}% ({shown['low'] * 100:.1f}–{shown['high'] * 100:.1f}%)")
    # One chart per metric, each with a mean line and its band (two traces more per subset).
    expect(page.locator('#group-charts [data-metric="accuracy"] .main-svg').first).to_be_visible()
    expect(page.locator('#group-charts [data-metric="accuracy"] .scatterlayer .trace')).to_have_count(6)
    expect(page.locator("#group-members tbody tr")).to_have_count(3)
    expect(page.locator("#group-members tbody tr").nth(2)).to_contain_text("seed 2")
    # The tables as files (fetched, not followed: a download does not navigate).
    for table in ("metrics", "members"):
        links = page.locator(f"#group-{table}-downloads a")
        expect(links).to_have_count(3)
        for k, file_format in enumerate(("csv", "xlsx", "json")):
            href = links.nth(k).get_attribute("href")
            assert href == f"/api/groups/{group.pk}/export/?table={table}&file={file_format}", href
            assert page.evaluate("(href) => fetch(href).then((r) => r.status)", href) == 200, href

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)  # Plotly follows the new width a moment later
        page.screenshot(path=str(ARTIFACTS / f"group-page-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    assert not problems, problems
