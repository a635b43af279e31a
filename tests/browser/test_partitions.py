"""The partition page as a person sees it: counts per class and subset, the chart, the patient check; and the dataset
page's form, which shows what a split gives before making it."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_partition_page_shows_counts_and_the_patient_check(page, live_server, clinician):
    from backend.datasets.services import create_column_partition, create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project, per_class=10, name="X-rays")
    partition = create_partition(clinician, dataset, "", 60, 20, 20, 7)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name=partition.name).click()
    page.wait_for_url(re.compile(rf"/partitions/{partition.pk}/$"))
    expect(page.locator("#leakage")).to_have_text("No patient in two subsets.")
    expect(page.locator("#partition-facts")).to_contain_text("60/20/20 %, stratified by label, patients kept whole · seed 7")
    expect(page.locator("#partition-counts tbody tr")).to_have_count(3)
    expect(page.locator("#partition-counts tr.total td").last).to_have_text("20")
    expect(page.locator("#partition-chart .main-svg").first).to_be_visible()
    shot(page, "s1-partition")

    for number, sample in enumerate(dataset.samples.order_by("id")):
        sample.meta = {"table": {"split": ["train", "test"][number % 2]}}  # patients have two samples: each now leaks
        sample.save()
    leaky = create_column_partition(clinician, dataset, "", "split")
    page.goto(f"{live_server.url}/partitions/{leaky.pk}/")
    expect(page.locator("#leakage")).to_contain_text("10 patients are in more than one subset")
    expect(page.locator("#leakage code").first).to_contain_text("(train, test)")


def test_the_form_previews_the_counts_refuses_an_empty_subset_and_links_the_same_partition(page, live_server, clinician):
    """Six patients of twelve images, 70/15/15: whole patients give 48 / 24 / 0 (tests/integration/test_partitions.py
    works it by hand). The form says so before anything is made, and refuses the empty test subset beside its field."""
    from backend.projects.models import Project
    from tests.integration.test_partitions import six_patients_of_twelve

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = six_patients_of_twelve(project)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    form = page.locator("#partition-form")
    preview = page.locator("#partition-preview")
    expect(preview.locator(".partition-counts")).to_have_text("train 48 · validation 24 · test 0 samples (6 patients: 4/2/0)")
    expect(preview.locator(".warnings")).to_contain_text("This split gives 67/33/0 % of the samples where 70/15/15 % was asked")
    expect(form.locator('[data-error-for="test_percent"]')).to_contain_text("The test subset would be empty")
    expect(form.locator('[data-error-for="test_percent"]')).not_to_have_class(re.compile("quiet"))
    expect(form.locator('button[type="submit"]')).to_be_disabled()
    card = form.locator("xpath=ancestor::section[1]")
    for width in (1280, 1920, 390):
        page.set_viewport_size({"width": width, "height": 1000})
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(ARTIFACTS / f"partition-warning-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 1000})
    assert not dataset.partitions.exists(), "nothing is created by looking"

    # No test subset asked for: what whole patients give, made at once.
    form.locator('input[name="validation_percent"]').fill("30")
    form.locator('input[name="test_percent"]').fill("0")
    expect(form.locator('[data-error-for="test_percent"]')).to_be_empty()
    expect(form.locator('button[type="submit"]')).to_be_enabled()
    form.locator('button[type="submit"]').click()
    expect(page.locator("#partition-table tbody tr")).to_have_count(1)
    made = dataset.partitions.get()
    # Asked again, the same partition is not made twice: the form names it and links to it.
    link = preview.locator(".partition-existing a")
    expect(link).to_have_text(made.name)
    expect(form.locator('button[type="submit"]')).to_be_disabled()
    shot(page, "partition-exists")
    link.click()
    page.wait_for_url(re.compile(rf"/partitions/{made.pk}/$"))
    expect(page.locator("#leakage")).to_have_text("No patient in two subsets.")
    expect(page.locator("#partition-facts")).to_contain_text("patients per subset 4/2/0")


def test_without_patient_ids_the_page_says_the_split_is_by_image_not_that_no_patient_leaks(page, live_server, clinician):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project, per_class=10, name="Photos")
    dataset.samples.update(patient="")
    partition = create_partition(clinician, dataset, "", 70, 15, 15, 1)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    expect(page.locator(f'#partition-table tr[data-partition="{partition.pk}"]')).to_contain_text("split by image")
    expect(page.locator("#partition-preview .warnings")).to_contain_text("No sample has a patient ID, so the split is by image")
    page.goto(f"{live_server.url}/partitions/{partition.pk}/")
    expect(page.locator("#leakage")).to_contain_text("Split by image: no sample has a patient ID")
    expect(page.locator("#leakage")).to_contain_text("the test figures may be optimistic")
    expect(page.locator("#leakage")).not_to_have_class("ok")
    expect(page.locator("#partition-facts")).to_contain_text("stratified by label, split by image (no patient IDs) · seed 1")
    shot(page, "partition-by-image")
