"""The run page's charts stay in their cells: each Plotly drawing (its `.main-svg`, not only its div) lies inside
the grid cell that holds it, no chart covers another, and none runs past the window's edge, at 1280, 1920 and
390 px, after the window is resized and after a reload, for a finished run and for one whose points arrive
while the page is open. (Plotly sizes a chart from its div when it draws it; a chart drawn alone in the grid,
before its neighbour joined, once kept the whole row's width and covered the chart beside it.)"""
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_live_run import train
from tests.browser.test_page_modules import record_problems
from tests.browser.test_walkthrough import log_in
from tests.factories import ready_dataset, training_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {1280: 1000, 1920: 1080, 390: 844}  # window width -> height

# For each chart on the page: its div, the grid cell its div sits in (from the grid's resolved columns), and each
# of its drawings; then what is wrong: a drawing outside its cell, a chart over another, a chart past the window.
MEASURE = """() => {
  const sheet = document.documentElement.clientWidth;
  const charts = [...document.querySelectorAll("#metric-charts .js-plotly-plot, #system-charts .js-plotly-plot")];
  const box = (r) => ({ left: Math.round(r.left), right: Math.round(r.right), top: Math.round(r.top), bottom: Math.round(r.bottom),
                        width: Math.round(r.width) });
  const cellOf = (chart) => {
    const grid = chart.parentElement, style = getComputedStyle(grid), gridBox = grid.getBoundingClientRect();
    const columns = style.gridTemplateColumns.split(" ").map(parseFloat);
    const gap = parseFloat(style.columnGap) || 0, left0 = gridBox.left + parseFloat(style.paddingLeft);
    const own = chart.getBoundingClientRect();
    let left = left0;
    const gridRight = gridBox.right - parseFloat(style.paddingRight);
    for (const width of columns) {  // the column whose start is the chart's (a chart starts where its cell starts)
      if (Math.abs(own.left - left) < 2) return { left, right: left + width, width, gridRight };
      left += width + gap;
    }
    return { left: NaN, right: NaN, width: NaN };
  };
  const shown = charts.map((chart) => ({
    id: chart.id, div: box(chart.getBoundingClientRect()), cell: cellOf(chart),
    svgs: [...chart.querySelectorAll(".main-svg")].map((svg) => box(svg.getBoundingClientRect())),
  }));
  const problems = [];
  for (const chart of shown) {
    const { cell } = chart;
    if (Number.isNaN(cell.left)) problems.push(`${chart.id} does not start where a column of its grid starts`);
    if (cell.right > cell.gridRight + 1) problems.push(`${chart.id}: its cell (${Math.round(cell.width)} px) runs past its grid`);
    if (chart.div.right > sheet + 1) problems.push(`${chart.id} ends at ${chart.div.right} px, past the window's ${sheet} px`);
    if (chart.div.left < cell.left - 1 || chart.div.right > cell.right + 1)
      problems.push(`${chart.id}: its div (${chart.div.width} px) is wider than its cell (${Math.round(cell.width)} px)`);
    const outside = chart.svgs.find((svg) => svg.left < cell.left - 1 || svg.right > cell.right + 1);
    if (outside) problems.push(`${chart.id}: its drawing is ${outside.width} px wide in a cell of ${Math.round(cell.width)} px`);
  }
  for (const [k, one] of shown.entries()) {
    for (const other of shown.slice(k + 1)) {
      const [a, b] = [one.svgs[0] || one.div, other.svgs[0] || other.div];
      if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
        problems.push(`${one.id} covers ${other.id}`);
    }
  }
  return { charts: shown, problems };
}"""


def charts_in_their_cells(page, count: int, when: str) -> list[dict]:
    """Wait (Plotly redraws a resized chart a moment later) until `count` charts are drawn and each lies in its cell."""
    deadline = time.monotonic() + 10
    while True:
        measured = page.evaluate(MEASURE)
        drawn = [chart for chart in measured["charts"] if chart["svgs"]]
        if len(drawn) == count and not measured["problems"]:
            return measured["charts"]
        if time.monotonic() > deadline:
            sizes = [(chart["id"], [svg["width"] for svg in chart["svgs"]], round(chart["cell"]["width"])) for chart in measured["charts"]]
            pytest.fail(f"{when}: {len(drawn)} of {count} charts drawn; {measured['problems']}; (chart, drawings' widths, cell width): {sizes}")
        page.wait_for_timeout(200)


def resize(page, width: int):
    page.set_viewport_size({"width": width, "height": WIDTHS[width]})


def a_finished_run(user, project=None, name="finished", accuracy=0.981, epochs=6, **settings):
    """A succeeded run with its curves: loss, accuracy and balanced accuracy on both subsets, and the learning
    rate, speed and memory of each epoch (six charts on its page, two of them for the metrics picked at first)."""
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import MetricPoint, TrainingRun

    if project is None:
        project = Project.objects.create(owner=user, name="Chest")
    dataset = project.datasets.first() or ready_dataset(project, name="X-rays")
    partition = dataset.partitions.first() or create_partition(user, dataset, "", 75, 25, 0, 7)
    run = TrainingRun.objects.create(
        project=project, partition=partition, name=name, spec=training_spec(epochs=epochs, **settings), status="succeeded",
        started_at=timezone.now(), finished_at=timezone.now(),
        results={"test": {"accuracy": accuracy, "loss": 0.12}, "kept": {"epoch": epochs - 1, "reason": f"Epoch {epochs - 1}: the lowest validation loss."}})
    points = []
    for epoch in range(1, epochs + 1):
        for subset, gap in (("train", 0.0), ("validation", 0.05)):
            points += [MetricPoint(run=run, epoch=epoch, subset=subset, name="loss", value=1.0 / epoch + gap),
                       MetricPoint(run=run, epoch=epoch, subset=subset, name="accuracy", value=0.6 + epoch / 20 - gap),
                       MetricPoint(run=run, epoch=epoch, subset=subset, name="balanced_accuracy", value=0.55 + epoch / 20 - gap)]
        points += [MetricPoint(run=run, epoch=epoch, subset="system", name="learning_rate", value=3e-3 * 0.7 ** epoch),
                   MetricPoint(run=run, epoch=epoch, subset="system", name="images_per_second", value=420 + 5 * epoch),
                   MetricPoint(run=run, epoch=epoch, subset="system", name="memory_mb", value=812.0)]
    MetricPoint.objects.bulk_create(points)
    return run


def test_a_finished_runs_charts_stay_in_their_cells_at_every_width(page, live_server, clinician):
    run = a_finished_run(clinician)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#run-status")).to_have_text("Succeeded")
    charts_in_their_cells(page, 5, "at 1280 px, first drawn")
    for width in (1920, 390, 1280):
        resize(page, width)
        charts_in_their_cells(page, 5, f"resized to {width} px")
        page.reload()
        expect(page.locator("#test-accuracy")).to_have_text("98.1%")
        charts_in_their_cells(page, 5, f"reloaded at {width} px")
    # A third metric picked: the grid takes another row, and the charts already drawn keep to their cells.
    page.check('#metric-picker input[value="balanced_accuracy"]')
    charts_in_their_cells(page, 6, "with a third metric picked")
    page.uncheck('#metric-picker input[value="accuracy"]')
    page.uncheck('#metric-picker input[value="balanced_accuracy"]')
    charts_in_their_cells(page, 4, "with the loss alone")
    # Alone in its row, the loss chart's cell widens to the whole row, and its drawing follows.
    page.wait_for_function("""() => {
        const svg = document.querySelector('#metric-chart-loss .main-svg');
        return svg && svg.getBoundingClientRect().width > document.getElementById('metric-charts').clientWidth - 2;
    }""", timeout=10_000)
    assert not problems, problems


def a_running_run(user):
    """A run the worker has just claimed: nothing measured yet."""
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun

    project = Project.objects.create(owner=user, name="Chest")
    partition = create_partition(user, ready_dataset(project, name="X-rays"), "", 60, 20, 20, 7)
    return TrainingRun.objects.create(project=project, partition=partition, name="live", spec=training_spec(epochs=8),
                                      status="running", started_at=timezone.now())


def stream(reporter, epoch: int):
    """One epoch as the worker records it: the loss and accuracy curves, then its learning rate, speed and memory."""
    train(reporter, [epoch])
    for name, value in (("learning_rate", 3e-3 * 0.7 ** epoch), ("images_per_second", 400.0 + epoch), ("memory_mb", 640.0)):
        reporter.metric(epoch, "system", name, value)


def test_a_running_runs_charts_stay_in_their_cells_as_points_arrive(page, live_server, clinician):
    from workers.jobs import finish
    from workers.training import RunReporter

    run = a_running_run(clinician)
    reporter = RunReporter(run, interval=0)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#run-status")).to_have_text("Running")
    stream(reporter, 1)  # the first points, while the page is open: the charts are made as they come
    expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(2)
    charts_in_their_cells(page, 5, "at 1280 px, the first epoch streamed in")
    epoch = 2
    for width in (1920, 390, 1280):
        resize(page, width)
        charts_in_their_cells(page, 5, f"resized to {width} px")
        stream(reporter, epoch)
        expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(2 * epoch)
        charts_in_their_cells(page, 5, f"at {width} px, epoch {epoch} streamed in")
        page.reload()
        expect(page.locator("#run-status")).to_have_text("Running")
        expect(page.locator("#metric-chart-loss .scatterlayer .point")).to_have_count(2 * epoch)
        charts_in_their_cells(page, 5, f"reloaded at {width} px")
        epoch += 1
    stream(reporter, epoch)
    finish(type(run), run.pk, "succeeded", "Finished.")
    expect(page.locator("#run-status")).to_have_text("Succeeded")
    charts_in_their_cells(page, 5, "finished")
    # Each reload cuts the open event stream short: the browser counts that a failed request, and it is no fault.
    assert not [problem for problem in problems if not ("/events/" in problem and "ERR_ABORTED" in problem)], problems
