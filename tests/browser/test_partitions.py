"""The partition page as a person sees it: counts per class and subset, the chart, the patient check."""
import re

import pytest
from playwright.sync_api import expect

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
