"""The run form as a person uses it: built from the training schema with its defaults, each refusal beside
its field and in a summary, the learning rate drawn beside the form as the schedule changes, Clone, and
the nested spec a launch sends."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset, training_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chest(clinician):
    """A project with a partition of a two-class dataset and an augmentation pipeline."""
    from backend.datasets.services import create_partition
    from backend.pipelines.services import create_pipeline
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project, per_class=20, name="X-rays")
    partition = create_partition(clinician, dataset, "", 60, 20, 20, 7)
    flips = create_pipeline(clinician, project, "Flips", "augmentation", [{"op": "flip", "params": {}}])
    return {"project": project, "partition": partition, "augmentation": flips}


def open_form(page, live_server, project, query=""):
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/runs/new/{query}")
    expect(page.locator("#schedule-chart .plot-container")).to_be_visible()


def field(page, path):
    return page.locator(f'#run-form [name="{path}"]')


def curve(page) -> list[float]:
    """The learning rates the chart draws (Plotly keeps the traces on its element)."""
    return page.evaluate("document.getElementById('schedule-chart').data[0].y")


def test_the_form_is_built_from_the_schema_with_its_defaults(page, live_server, chest):
    from workers.engine.training.spec import spec_schema

    schema = spec_schema()
    small_cnn, resnet18 = (next(a["defaults"] for a in schema["architectures"] if a["name"] == name) for name in ("small_cnn", "resnet18"))
    open_form(page, live_server, chest["project"], f"?partition={chest['partition'].pk}")
    expect(field(page, "partition")).to_have_value(str(chest["partition"].pk))
    # Up front: the data, the model, epochs, the learning rate, augmentation; the rest waits under "Advanced".
    expect(field(page, "model.architecture")).to_have_value("small_cnn")
    expect(field(page, "epochs")).to_have_value(str(small_cnn["epochs"]))
    expect(field(page, "optimizer.learning_rate")).to_have_value(f"{small_cnn['optimizer']['learning_rate']:g}")
    expect(field(page, "data.augmentation")).to_have_value("")
    expect(page.locator('#run-form input[name="resources.device"][value="cpu"]')).to_be_checked()
    expect(page.locator("#run-form")).to_contain_text("Passes over the training images.")  # each field's help
    expect(field(page, "optimizer.momentum")).to_have_count(0)  # AdamW has none
    expect(field(page, "batch_size")).to_be_hidden()
    shot(page, "r1-run-form")

    page.locator("#advanced summary").click()
    expect(field(page, "optimizer.name")).to_have_value(small_cnn["optimizer"]["name"])
    expect(field(page, "schedule.name")).to_have_value(small_cnn["schedule"]["name"])
    expect(field(page, "schedule.warmup_epochs")).to_have_value(str(small_cnn["schedule"]["warmup_epochs"]))
    expect(field(page, "batch_size")).to_have_value(str(small_cnn["batch_size"]))
    expect(page.locator('#run-form input[name="metrics"]:checked')).to_have_count(len(small_cnn["metrics"]))
    expect(field(page, "monitor")).to_have_value(small_cnn["monitor"])
    expect(page.locator("#run-form .phase")).to_have_count(0)
    assert page.locator('#run-form select[name="monitor"] option').evaluate_all("os => os.map(o => o.value)") == [
        "validation.loss", "train.loss", "validation.accuracy", "train.accuracy"]
    shot(page, "r2-run-form-advanced")

    # Another architecture brings its defaults into the fields the user has not touched.
    field(page, "epochs").fill("7")
    field(page, "model.architecture").select_option("resnet18")
    expect(field(page, "optimizer.learning_rate")).to_have_value(f"{resnet18['optimizer']['learning_rate']:g}")
    expect(field(page, "epochs")).to_have_value("7")
    # Another optimizer brings its own parameters, with their defaults.
    field(page, "optimizer.name").select_option("sgd")
    expect(field(page, "optimizer.momentum")).to_have_value("0.9")
    expect(field(page, "optimizer.learning_rate")).to_have_value("0.01")
    # The monitored metric's choices follow the metrics (AUC needs scores: validation only).
    page.locator('#run-form input[name="metrics"][value="auc"]').check()
    expect(page.locator('#run-form select[name="monitor"] option[value="validation.auc"]')).to_have_count(1)
    expect(page.locator('#run-form select[name="monitor"] option[value="train.auc"]')).to_have_count(0)


def test_each_refusal_is_beside_its_field_and_in_the_summary_opening_what_holds_it(page, live_server, chest):
    open_form(page, live_server, chest["project"])
    page.locator("#advanced summary").click()
    field(page, "optimizer.name").select_option("sgd")
    field(page, "optimizer.momentum").fill("2")
    field(page, "early_stopping.patience").fill("-1")
    page.locator("#advanced summary").click()  # closed again: the launch must open it
    expect(field(page, "optimizer.momentum")).to_be_hidden()
    field(page, "optimizer.learning_rate").fill("0")

    # While the user edits, the curve's check says so quietly: beside the field, no summary.
    rate_error = page.locator('[data-error-for="optimizer.learning_rate"]')
    expect(rate_error).to_contain_text("greater than 0")
    expect(rate_error).to_have_class(re.compile(r"\bquiet\b"))
    expect(page.locator("#error-summary")).to_be_hidden()
    expect(page.locator("#schedule-chart")).to_have_class(re.compile(r"\bstale\b"))

    page.click("#launch")
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary.locator("li")).to_have_count(2)  # one refusal per section at a time: the optimizer's rate first
    expect(summary.locator("li").first).to_have_text(re.compile(r"^Learning rate must be greater than 0"))  # up front: no group
    expect(summary).to_contain_text("Early stopping: Patience must be between 1 and 1000; it is -1")
    expect(rate_error).to_contain_text("greater than 0")
    expect(rate_error).not_to_have_class(re.compile(r"\bquiet\b"))
    expect(page.locator('[data-error-for="early_stopping.patience"]')).to_contain_text("between 1 and 1000")
    expect(page.locator("#advanced")).to_have_attribute("open", "")
    shot(page, "r3-run-form-errors")

    # Once a launch was refused, the summary follows the fixes: the optimizer's next refusal takes the rate's place.
    field(page, "optimizer.learning_rate").fill("0.01")
    expect(summary).to_contain_text("Optimizer: Momentum must be between 0 and 0.999; it is 2")
    expect(page.locator('[data-error-for="optimizer.momentum"]')).to_contain_text("between 0 and 0.999")
    expect(rate_error).to_have_text("")
    # A summary item takes the user to its field, opening what holds it; the summary goes once all is fixed.
    page.locator("#advanced summary").click()
    summary.get_by_text("Momentum must be").click()
    expect(field(page, "optimizer.momentum")).to_be_focused()
    expect(page.locator("#advanced")).to_have_attribute("open", "")
    field(page, "optimizer.momentum").fill("0.9")
    expect(summary.locator("li")).to_have_count(1)
    field(page, "early_stopping.patience").fill("5")
    expect(summary).to_be_hidden()
    expect(page.locator("#schedule-chart")).not_to_have_class(re.compile(r"\bstale\b"))


def test_the_schedule_is_drawn_beside_the_form_and_follows_it(page, live_server, chest):
    open_form(page, live_server, chest["project"])
    page.locator("#advanced summary").click()
    field(page, "batch_size").fill("4")  # 24 training images: 6 steps an epoch, so the warm-up shows
    expect(page.locator("#schedule-note")).to_contain_text("Cosine, 1 warm-up epoch: 20 epochs of 6 steps.")
    cosine = curve(page)
    assert cosine[0] < cosine[6] and cosine[6] == max(cosine) and cosine[-1] < cosine[6] / 10, "a warm-up, then down along the cosine"

    page.evaluate("window.drawnBefore = document.getElementById('schedule-chart').data[0].y")
    field(page, "schedule.name").select_option("step")
    expect(field(page, "schedule.step_epochs")).to_have_value("10")
    page.wait_for_function("document.getElementById('schedule-chart').data[0].y !== window.drawnBefore")
    steps = curve(page)
    assert sorted(set(round(rate, 12) for rate in steps)) == [0.0003, 0.003], "two levels: the rate, then a tenth of it"
    expect(page.locator("#schedule-note")).to_contain_text("Step: 20 epochs")

    # Phases are drawn on the curve, and each starts the schedule again.
    page.click("#add-phase")
    expect(page.locator("#run-form .phase")).to_have_count(2)
    expect(field(page, "epochs")).to_be_disabled()
    expect(field(page, "epochs")).to_have_value("20")
    expect(field(page, "phases.0.train")).to_have_value("head")
    field(page, "phases.1.epochs").fill("10")
    expect(field(page, "epochs")).to_have_value("15")
    # A schedule that cannot fit a phase is refused beside its field, quietly, while the user edits.
    expect(page.locator('[data-error-for="schedule.step_epochs"]')).to_contain_text("after the run's 5 epochs")
    expect(page.locator('[data-error-for="schedule.step_epochs"]')).to_have_class(re.compile(r"\bquiet\b"))
    field(page, "schedule.step_epochs").fill("2")
    expect(page.locator("#schedule-chart")).to_contain_text("1: head")
    expect(page.locator("#schedule-chart")).to_contain_text("2: all")
    expect(page.locator("#schedule-note")).to_contain_text("Each phase starts the schedule again.")
    shot(page, "r4-run-form-phases")

    field(page, "schedule.name").select_option("reduce_on_plateau")
    expect(page.locator("#schedule-note")).to_contain_text("depends on the run")
    expect(page.locator("#schedule-note")).to_contain_text("whenever the loss (validation) has not improved for 3 epochs")


def test_clone_starts_from_the_runs_spec_and_launches_the_same_settings(page, live_server, chest, clinician):
    from backend.runs.models import TrainingRun

    spec = training_spec(model={"architecture": "resnet18"}, epochs=12, batch_size=8, seed=4,
                         optimizer={"name": "sgd", "learning_rate": 0.02, "momentum": 0.8},
                         schedule={"name": "step", "step_epochs": 4, "gamma": 0.5}, metrics=["accuracy", "auc"], monitor="validation.auc",
                         data={"augmentation": chest["augmentation"].pk, "balancing": "weighted"})
    run = TrainingRun.objects.create(project=chest["project"], partition=chest["partition"], created_by=clinician, name="Baseline",
                                     spec=spec, status="succeeded")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.get_by_role("link", name="Clone").click()
    page.wait_for_url(re.compile(rf"/projects/{chest['project'].pk}/runs/new/\?from={run.pk}$"))
    expect(page.locator("#schedule-chart .plot-container")).to_be_visible()
    expect(field(page, "name")).to_have_value("Copy of Baseline")
    expect(page.locator("#run-intro")).to_contain_text("The settings of Baseline")
    expect(field(page, "model.architecture")).to_have_value("resnet18")
    expect(field(page, "epochs")).to_have_value("12")
    expect(field(page, "optimizer.learning_rate")).to_have_value("0.02")
    expect(field(page, "data.augmentation")).to_have_value(str(chest["augmentation"].pk))
    expect(field(page, "data.balancing")).to_have_value("weighted")
    page.locator("#advanced summary").click()
    expect(field(page, "optimizer.name")).to_have_value("sgd")
    expect(field(page, "optimizer.momentum")).to_have_value("0.8")
    expect(field(page, "schedule.step_epochs")).to_have_value("4")
    expect(field(page, "monitor")).to_have_value("validation.auc")
    expect(field(page, "seed")).to_have_value("4")
    shot(page, "r5-run-form-clone")

    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    copy = TrainingRun.objects.exclude(pk=run.pk).get()
    assert copy.name == "Copy of Baseline" and copy.partition_id == run.partition_id
    assert copy.spec == run.spec


def test_launching_sends_the_nested_spec_the_form_shows(page, live_server, chest):
    from backend.runs.models import TrainingRun

    open_form(page, live_server, chest["project"])
    field(page, "name").fill("Fine-tune")
    field(page, "model.architecture").select_option("resnet18")
    # The form is drawn again once the earlier runs of ResNet-18 are known: typing starts after that, as a person's would.
    expect(page.locator('[data-unavailable="run"]')).to_contain_text("No run of ResNet-18")
    field(page, "optimizer.learning_rate").fill("0.002")
    field(page, "data.augmentation").select_option(str(chest["augmentation"].pk))
    field(page, "data.balancing").select_option("factors")
    field(page, "data.class_factors.lesion").fill("3")
    page.locator("#advanced summary").click()
    field(page, "optimizer.name").select_option("sgd")  # the rate typed above stays
    field(page, "optimizer.momentum").fill("0.8")
    field(page, "schedule.name").select_option("constant")
    field(page, "schedule.warmup_epochs").fill("1")
    page.click("#add-phase")
    field(page, "phases.1.epochs").fill("3")
    field(page, "phases.1.learning_rate").fill("0.0005")
    page.locator('#run-form input[name="metrics"][value="auc"]').check()
    field(page, "monitor").select_option("validation.auc")
    field(page, "early_stopping.enabled").check()
    field(page, "early_stopping.patience").fill("2")
    field(page, "batch_size").fill("4")
    field(page, "precision").select_option("float32")
    field(page, "seed").fill("3")
    expect(page.locator("#schedule-note")).to_contain_text("Constant, 1 warm-up epoch: 8 epochs of 6 steps.")
    shot(page, "r6-run-form-filled")

    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as sent:
        page.click("#launch")
    body = sent.value.post_data_json
    assert body["optimizer"] == {"name": "sgd", "learning_rate": 0.002, "momentum": 0.8}
    assert body["phases"] == [{"epochs": 5, "learning_rate": None, "train": "head"}, {"epochs": 3, "learning_rate": 0.0005, "train": "all"}]
    assert "epochs" not in body and "learning_rate" not in body, "the phases make the epochs; every rate is in its section"
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert run.name == "Fine-tune" and run.partition_id == chest["partition"].pk
    spec = run.spec
    assert spec["model"]["architecture"] == "resnet18"
    assert spec["optimizer"] == {"name": "sgd", "learning_rate": 0.002, "momentum": 0.8, "nesterov": True, "weight_decay": 0.0005}
    assert spec["schedule"] == {"name": "constant", "warmup_epochs": 1}
    # Stored resolved: each phase with every setting, the ones the form left out at their defaults.
    assert spec["phases"] == [{**phase, "frozen_blocks": 0, "layer_rate_ratio": 1.0} for phase in body["phases"]] and spec["epochs"] == 8
    assert spec["metrics"] == ["accuracy", "auc"] and spec["monitor"] == "validation.auc"
    assert spec["early_stopping"] == {"enabled": True, "patience": 2, "min_delta": 0.0}
    assert spec["data"] == {"balancing": "factors", "class_factors": {"lesion": 3, "normal": 1}, "augmentation": chest["augmentation"].pk}
    assert (spec["batch_size"], spec["precision"], spec["seed"]) == (4, "float32", 3)
    assert spec["resources"] == {"device": "cpu", "processes": 1, "pool": ""}
