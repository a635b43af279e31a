"""The comparison page (js/pages/comparison.js) as a person reaches and reads it: runs and a group ticked on the project
page, "Compare" saves the comparison and opens it; the curves of a chosen metric overlaid, the test metrics with
intervals (a group's mean ± SD beside its pooled interval; a run of other classes refused with the reason), a bar chart
per metric, the ROC curves overlaid, and a paired test between two runs whose p-values are the API's. Screenshots at
1366, 1920 and 390 px, no sideways scroll on a phone outside the tables' own scroll boxes."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def a_project_with_runs_to_compare(user):
    from backend.datasets.services import create_partition
    from backend.experiments.models import GroupMember, RunGroup
    from backend.projects.models import Project
    from tests.comparison_factories import evaluated_run
    from tests.factories import ready_dataset
    from workers.groups import pool

    project = Project.objects.create(owner=user, name="Chest")
    partition = create_partition(user, ready_dataset(project, name="X-rays", per_class=20), "", 60, 20, 20, 1)
    small = evaluated_run(project, partition, "Small CNN", skill=0.5, seed=1, epochs=8)
    resnet = evaluated_run(project, partition, "ResNet-18", skill=1.3, seed=2, epochs=8)
    three = evaluated_run(project, partition, "Three classes", classes=("lesion", "normal", "other"), seed=3, epochs=8)
    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="DenseNet, 2 seeds", seeds=2,
                                    created_by=user)
    for seed in range(2):
        GroupMember.objects.create(group=group, run=evaluated_run(project, partition, f"DenseNet seed {seed}", skill=1.2,
                                                                  seed=20 + seed, epochs=8), seed=seed)
    pool(group.pk)
    return project, (small, resnet, three), group


def test_runs_are_compared_from_the_project_page(page, live_server, clinician):
    from backend.experiments.models import Comparison

    project, (small, resnet, three), group = a_project_with_runs_to_compare(clinician)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#compare-button")).to_be_disabled()
    for run in (small, resnet, three):
        page.check(f'#run-table tr[data-run="{run.pk}"] input.compare-pick')
    page.check(f'#group-table tr[data-group="{group.pk}"] input.compare-pick')
    expect(page.locator("#compare-count")).to_have_text("4 chosen.")
    page.locator("section.card", has=page.locator("#run-table")).screenshot(path=str(ARTIFACTS / "comparison-project-runs-1366.png"))
    page.click("#compare-button")
    page.wait_for_url("**/comparisons/*/")
    comparison = Comparison.objects.get()
    assert page.url.endswith(f"/comparisons/{comparison.pk}/")
    assert {r.pk for r in comparison.runs.all()} == {small.pk, resnet.pk, three.pk} and list(comparison.groups.all()) == [group]

    expect(page.locator("#comparison-items li")).to_have_count(4)
    # The table: each run's value with its interval, the group's mean ± SD and pooled interval, the other class set refused.
    accuracy = page.locator('#comparison-metrics tr[data-metric="accuracy"]')
    figure = resnet.evaluations.get().results["metrics"]["accuracy"]
    expect(accuracy.locator(f'td[data-item="run-{resnet.pk}"]')).to_have_text(
        f"{figure['value'] * 100:.1f}% ({figure['low'] * 100:.1f}–{figure['high'] * 100:.1f}%)")
    expect(accuracy.locator(f'td[data-item="group-{group.pk}"]')).to_contain_text("(2 runs)")
    expect(accuracy.locator(f'td[data-item="group-{group.pk}"]')).to_contain_text("pooled")
    expect(accuracy.locator(f'td[data-item="run-{three.pk}"]')).to_have_text("refused*")
    assert "other" in accuracy.locator(f'td[data-item="run-{three.pk}"] .refused').get_attribute("title")
    expect(page.locator(f'#comparison-refusals li[data-item="run-{three.pk}"]')).to_contain_text("refused for Accuracy")
    expect(page.locator(f'#comparison-refusals li[data-item="run-{three.pk}"]')).to_contain_text("lesion, normal, other")
    # The results table as files (fetched, not followed: a download does not navigate).
    links = page.locator("#comparison-metrics-downloads a")
    expect(links).to_have_count(3)
    for k, file_format in enumerate(("csv", "xlsx", "json")):
        href = links.nth(k).get_attribute("href")
        assert href == f"/api/comparisons/{comparison.pk}/export/?table=metrics&file={file_format}", href
        assert page.evaluate("(href) => fetch(href).then((r) => r.status)", href) == 200, href
    # A bar chart per metric of the table, each bar with its error bar; the ROC curves of the comparable three.
    rows = page.locator("#comparison-metrics tbody tr").count()
    expect(page.locator("#comparison-bars .chart")).to_have_count(rows)
    expect(page.locator('#comparison-bars [data-metric="auc"] .main-svg').first).to_be_visible()
    expect(page.locator("#comparison-roc .scatterlayer .trace")).to_have_count(4)  # chance + two runs + the group
    expect(page.locator("#comparison-roc-notes li")).to_have_count(1)
    # Curves: accuracy at first (train and validation per run: 2 x 3, the group's each with its band: +2 x 3).
    expect(page.locator("#comparison-curves .gtitle")).to_have_text("Accuracy per epoch")
    expect(page.locator("#comparison-curves .scatterlayer .trace")).to_have_count(12)
    page.select_option("#comparison-metric", "loss")
    expect(page.locator("#comparison-curves .gtitle")).to_have_text("loss per epoch")

    # The paired test: the page's p-values are the API's.
    page.select_option('#paired-form select[name="a"]', str(small.pk))
    page.select_option('#paired-form select[name="b"]', str(resnet.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator("#paired-result")).to_be_visible()
    answer = page.evaluate(f"fetch('/api/comparisons/{comparison.pk}/paired/?a={small.pk}&b={resnet.pk}').then((r) => r.json())")
    for test in ("auc", "accuracy"):
        cell = page.locator(f'#paired-result tr[data-test="{test}"] td[data-p]')
        assert float(cell.get_attribute("data-p")) == pytest.approx(answer[test]["p_value"])
    expect(page.locator('#paired-result tr[data-test="auc"]')).to_contain_text("DeLong")
    expect(page.locator('#paired-result tr[data-test="accuracy"]')).to_contain_text("McNemar")
    # Two runs of different classes: the tests say why not.
    page.select_option('#paired-form select[name="b"]', str(three.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator('#paired-result tr[data-test="accuracy"]')).to_contain_text("classes differ")
    page.select_option('#paired-form select[name="b"]', str(resnet.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator('#paired-result tr[data-test="auc"]')).to_contain_text("DeLong")

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)  # Plotly follows the new width a moment later
        page.screenshot(path=str(ARTIFACTS / f"comparison-page-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#saved-comparisons a")).to_have_text(comparison.name)
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_a_refusal_is_shown_beside_the_button_and_an_outsider_gets_404(page, live_server, clinician, django_user_model):
    from backend.runs.models import TrainingRun
    from tests.factories import training_spec

    project, (small, _, _), _ = a_project_with_runs_to_compare(clinician)
    queued = TrainingRun.objects.create(project=project, partition=small.partition, name="queued", spec=training_spec(epochs=1))
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.check(f'#run-table tr[data-run="{small.pk}"] input.compare-pick')
    page.check(f'#run-table tr[data-run="{queued.pk}"] input.compare-pick')
    page.click("#compare-button")
    expect(page.locator("#compare-error")).to_contain_text("nothing in common")
    assert "/projects/" in page.url


def test_two_segmentations_are_compared_by_dice_and_wilcoxon(page, live_server, clinician):
    from backend.datasets.services import create_partition
    from backend.experiments.comparisons import create_comparison
    from backend.projects.models import Project
    from tests.comparison_factories import evaluated_run, segmentation_run
    from tests.factories import ready_dataset

    project = Project.objects.create(owner=clinician, name="Livers")
    partition = create_partition(clinician, ready_dataset(project, name="CT slices", per_class=20), "", 60, 20, 20, 1)
    unet = segmentation_run(project, partition, "U-Net", skill=0.78, seed=1, epochs=8)
    segresnet = segmentation_run(project, partition, "SegResNet", skill=0.83, seed=2, epochs=8)
    classifier = evaluated_run(project, partition, "Lesion classifier", seed=3, epochs=8)
    comparison = create_comparison(clinician, [unet.pk, segresnet.pk, classifier.pk], [])
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/comparisons/{comparison.pk}/")

    # Mean Dice and IoU with their intervals for the segmentations, a dash for the classifier; and the reverse.
    for metric in ("mean_dice", "mean_iou"):
        row = page.locator(f'#comparison-metrics tr[data-metric="{metric}"]')
        figure = segresnet.evaluations.get().results["metrics"][metric]
        expect(row.locator(f'td[data-item="run-{segresnet.pk}"]')).to_have_text(
            f"{figure['value']:.3f} ({figure['low']:.3f}–{figure['high']:.3f})")
        expect(row.locator(f'td[data-item="run-{classifier.pk}"]')).to_have_text("—")
    expect(page.locator('#comparison-metrics tr[data-metric="mean_dice"] td').first).to_have_text("Mean Dice")
    expect(page.locator(f'#comparison-metrics tr[data-metric="accuracy"] td[data-item="run-{unet.pk}"]')).to_have_text("—")
    expect(page.locator("#comparison-refusals li")).to_have_count(0)
    expect(page.locator('#comparison-bars [data-metric="mean_dice"] .main-svg').first).to_be_visible()
    # No ROC curve for a segmentation: the notes say why; the classifier's is drawn.
    for run in (unet, segresnet):
        expect(page.locator(f'#comparison-roc-notes li[data-item="run-{run.pk}"]')).to_contain_text("A segmentation has no ROC curve")
    expect(page.locator("#comparison-roc .scatterlayer .trace")).to_have_count(2)  # chance + the classifier

    # Wilcoxon's test on the cases' mean Dice: the page's numbers are the API's.
    page.select_option('#paired-form select[name="a"]', str(unet.pk))
    page.select_option('#paired-form select[name="b"]', str(segresnet.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator("#paired-result")).to_be_visible()
    answer = page.evaluate(f"fetch('/api/comparisons/{comparison.pk}/paired/?a={unet.pk}&b={segresnet.pk}').then((r) => r.json())")
    dice = page.locator('#paired-result tr[data-test="mean_dice"]')
    expect(dice).to_contain_text("Wilcoxon signed-rank (exact)")
    expect(dice).to_contain_text(f"W = {answer['mean_dice']['statistic']:g}")
    assert float(dice.locator("td[data-p]").get_attribute("data-p")) == pytest.approx(answer["mean_dice"]["p_value"])
    assert float(dice.locator("td[data-median]").get_attribute("data-median")) == pytest.approx(answer["mean_dice"]["median_difference"])
    expect(page.locator('#paired-result tr[data-test="auc"]')).to_contain_text("no ROC curve")
    # A segmentation against a classifier: refused beside the form.
    page.select_option('#paired-form select[name="b"]', str(classifier.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator("#paired-error")).to_contain_text("no paired test compares the two")
    refusal = f"/api/comparisons/{comparison.pk}/paired/?a={unet.pk}&b={classifier.pk}"
    assert any(p.startswith("400: ") and p.endswith(refusal) for p in problems), problems
    problems[:] = [p for p in problems if not p.endswith(refusal) and "status of 400" not in p]  # the refusal asked for
    page.select_option('#paired-form select[name="b"]', str(segresnet.pk))
    page.click('#paired-form button[type="submit"]')
    expect(page.locator('#paired-result tr[data-test="mean_dice"]')).to_be_visible()

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"comparison-segmentation-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    assert not problems, problems
