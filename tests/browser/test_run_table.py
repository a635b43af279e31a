"""The project page's table of runs: one decimal of accuracy, a column for each setting that differs between the
runs (and the shared ones said once), sorted by a click or a key on a header, numbers as numbers; without scripts
the same table, unsorted."""
import pytest
from playwright.sync_api import expect

from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def three_runs(user):
    from backend.runs.models import TrainingRun

    first = a_finished_run(user, name="baseline", accuracy=0.981, optimizer={"learning_rate": 3e-3}, batch_size=32)
    project = first.project
    a_finished_run(user, project=project, name="small batch", accuracy=0.975, optimizer={"learning_rate": 3e-4}, batch_size=8)
    slow = a_finished_run(user, project=project, name="slow start", accuracy=0.5, optimizer={"learning_rate": 1e-5}, batch_size=16)
    TrainingRun.objects.filter(pk=slow.pk).update(status="running", results={}, finished_at=None)  # no accuracy yet
    return project


def column(page, title: str) -> list[str]:
    """The texts of one column of the runs table, top to bottom."""
    return page.evaluate("""(title) => {
        const table = document.getElementById('run-table');
        const index = [...table.tHead.rows[0].cells].findIndex((th) => th.textContent.trim() === title);
        return [...table.tBodies[0].rows].map((row) => row.cells[index].textContent.trim());
    }""", title)


def test_the_runs_table_shows_what_differs_and_sorts_by_any_column(page, live_server, clinician, browser):
    project = three_runs(clinician)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    table = page.locator("#run-table")
    headers = [text.strip() for text in table.locator("thead th").all_text_contents()]
    assert headers == ["Run", "Dataset", "Learning rate", "Batch size", "Status", "Test accuracy"], "network, weights, epochs: the same"
    expect(page.locator("#run-shared")).to_have_text("The same for every run: network small_cnn · starting weights random · epochs 6.")
    assert column(page, "Run") == ["slow start", "small batch", "baseline"]  # newest first, as the server lists them
    assert column(page, "Test accuracy") == ["–", "97.5%", "98.1%"]

    accuracy = table.get_by_role("button", name="Test accuracy")
    accuracy.click()
    expect(table.locator("th", has_text="Test accuracy")).to_have_attribute("aria-sort", "ascending")
    assert column(page, "Test accuracy") == ["97.5%", "98.1%", "–"], "no accuracy yet: last"
    accuracy.click()
    expect(table.locator("th", has_text="Test accuracy")).to_have_attribute("aria-sort", "descending")
    assert column(page, "Test accuracy") == ["98.1%", "97.5%", "–"]

    # By the keyboard: the header's button takes the focus; 1e-05 < 0.0003 < 0.003 as numbers (not as text).
    table.get_by_role("button", name="Learning rate").focus()
    page.keyboard.press("Enter")
    expect(table.locator("th", has_text="Learning rate")).to_have_attribute("aria-sort", "ascending")
    expect(table.locator("th", has_text="Test accuracy")).not_to_have_attribute("aria-sort", "descending")
    assert column(page, "Learning rate") == ["1e-05", "0.0003", "0.003"]
    page.keyboard.press("Space")
    assert column(page, "Learning rate") == ["0.003", "0.0003", "1e-05"]
    table.get_by_role("button", name="Batch size").click()
    assert column(page, "Batch size") == ["8", "16", "32"], "8 before 16: numbers, not text"
    table.get_by_role("button", name="Run").click()
    assert column(page, "Run") == ["baseline", "slow start", "small batch"]
    expect(table.get_by_role("link", name="baseline")).to_have_attribute("href", f"/runs/{project.runs.get(name='baseline').pk}/")
    assert not problems, problems

    # On a phone the page never scrolls sideways: each wide table scrolls inside its own box.
    page.set_viewport_size({"width": 390, "height": 900})
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390", timeout=15_000)
    page.set_viewport_size({"width": 1280, "height": 1000})

    # Without scripts: the same table, as the server drew it.
    context = browser.new_context(java_script_enabled=False, storage_state=page.context.storage_state())
    try:
        bare = context.new_page()
        bare.goto(f"{live_server.url}/projects/{project.pk}/")
        assert [text.strip() for text in bare.locator("#run-table thead th").all_text_contents()] == headers
        expect(bare.locator("#run-table tbody tr")).to_have_count(3)
        expect(bare.locator("#run-table tbody tr").last).to_contain_text("98.1%")
        expect(bare.locator("#run-table .sort-button")).to_have_count(0)
    finally:
        context.close()
