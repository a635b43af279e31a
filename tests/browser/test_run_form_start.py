"""What a run's model starts from, in the run form: ImageNet offered only when this server has its file (and why
not, and where to put it, when it has not), an earlier run picked from the runs the user can read, the input size
with an offer to resize inside the network, and the one-click fine-tuning preset; what is launched is what the
form showed."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_run_form import field, open_form
from tests.browser.test_walkthrough import shot
from tests.factories import ready_dataset, training_spec
from workers.engine.zoo.registry import MODELS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RESNET18_FILE = MODELS["resnet18"].weights_named("imagenet").filename


@pytest.fixture
def weights_folder(settings, tmp_path, monkeypatch):
    """The server's weights folder, empty, and torchvision's cache elsewhere and empty: an offline hospital server."""
    settings.PRETRAINED_WEIGHTS_DIR = tmp_path / "weights"
    settings.PRETRAINED_WEIGHTS_DIR.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return settings.PRETRAINED_WEIGHTS_DIR


@pytest.fixture
def chest(clinician):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project, per_class=20, name="X-rays")
    return {"project": project, "partition": create_partition(clinician, dataset, "", 60, 20, 20, 7)}


def source(page, name):
    return page.locator(f'#run-form input[name="model.weights"][value="{name}"]')


def test_imagenet_is_offered_only_when_the_server_has_its_file(page, live_server, chest, weights_folder):
    open_form(page, live_server, chest["project"])
    expect(source(page, "random")).to_be_checked()
    expect(source(page, "imagenet")).to_be_disabled()
    expect(page.locator('[data-unavailable="imagenet"]')).to_contain_text("Small CNN has no ImageNet weights")
    field(page, "model.architecture").select_option("resnet18")
    expect(source(page, "imagenet")).to_be_disabled()
    reason = page.locator('[data-unavailable="imagenet"]')
    expect(reason).to_contain_text(f"The ImageNet (torchvision) weights file {RESNET18_FILE} is not on this machine")
    expect(reason).to_contain_text(f"https://download.pytorch.org/models/{RESNET18_FILE}")
    expect(reason).to_contain_text(str(weights_folder))
    expect(source(page, "imported")).to_be_disabled()  # the project has imported none yet
    expect(page.locator('[data-unavailable="imported"]')).to_contain_text("No model has been imported yet")
    shot(page, "w1-run-form-imagenet-absent")

    (weights_folder / RESNET18_FILE).write_bytes(b"put there by an administrator")
    page.reload()
    field(page, "model.architecture").select_option("resnet18")
    expect(source(page, "imagenet")).to_be_enabled()
    expect(page.locator("#start-from")).to_contain_text(f"ImageNet (torchvision, {RESNET18_FILE})")
    # Until the user picks a source, a network whose ImageNet weights are here starts from them; one without, random.
    expect(source(page, "imagenet")).to_be_checked()
    field(page, "model.architecture").select_option("small_cnn")
    expect(source(page, "random")).to_be_checked()
    field(page, "model.architecture").select_option("resnet18")
    expect(source(page, "imagenet")).to_be_checked()
    source(page, "random").check()  # the user's choice stays
    field(page, "model.architecture").select_option("small_cnn")
    field(page, "model.architecture").select_option("resnet18")
    expect(source(page, "random")).to_be_checked()
    source(page, "imagenet").check()
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as sent:
        page.click("#launch")
    assert sent.value.post_data_json["model"] == {"architecture": "resnet18", "weights": "imagenet"}
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-lineage")).to_contain_text(f"Started from: ImageNet (torchvision, {RESNET18_FILE})")


def test_the_fine_tune_preset_fills_the_phases_and_the_launch_stores_them(page, live_server, chest, weights_folder):
    from backend.runs.models import TrainingRun

    (weights_folder / RESNET18_FILE).write_bytes(b"x")
    open_form(page, live_server, chest["project"])
    field(page, "model.architecture").select_option("resnet18")
    field(page, "epochs").fill("6")
    expect(page.locator("#fine-tune-help")).to_contain_text("Sets ImageNet weights, the head alone for 1 epoch at 0.002")
    page.click("#fine-tune")
    expect(source(page, "imagenet")).to_be_checked()
    page.locator("#advanced summary").click()
    expect(page.locator("#run-form .phase")).to_have_count(2)
    expect(field(page, "phases.0.train")).to_have_value("head")
    expect(field(page, "phases.0.learning_rate")).to_have_value("0.002")
    expect(field(page, "phases.0.frozen_blocks")).to_be_disabled()
    expect(field(page, "phases.1.train")).to_have_value("all")
    expect(field(page, "phases.1.epochs")).to_have_value("5")
    expect(field(page, "phases.1.learning_rate")).to_have_value("0.001")
    expect(field(page, "phases.1.layer_rate_ratio")).to_have_value("100")
    expect(field(page, "schedule.name")).to_have_value("one_cycle")
    expect(field(page, "schedule.rise_fraction")).to_have_value("0.3")
    expect(field(page, "epochs")).to_have_value("6")
    field(page, "phases.1.frozen_blocks").fill("1")  # the stem stays as ImageNet made it
    field(page, "model.train_frozen_batchnorm").check()
    expect(page.locator("#schedule-chart")).to_contain_text("1: head")
    shot(page, "w2-run-form-fine-tune")

    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    spec = TrainingRun.objects.get().spec
    assert spec["model"] == {"architecture": "resnet18", "weights": "imagenet", "input_size": 0, "train_frozen_batchnorm": True}
    assert spec["phases"] == [{"epochs": 1, "learning_rate": 0.002, "train": "head", "frozen_blocks": 0, "layer_rate_ratio": 1.0},
                              {"epochs": 5, "learning_rate": 0.001, "train": "all", "frozen_blocks": 1, "layer_rate_ratio": 100.0}]
    assert spec["schedule"] == {"name": "one_cycle", "rise_fraction": 0.3, "start_factor": 0.2, "final_factor": 0.0001, "warmup_epochs": 0}
    assert spec["epochs"] == 6


def test_a_run_started_from_an_earlier_run_names_it_in_its_lineage(page, live_server, chest, clinician):
    from backend.runs.models import TrainingRun

    def finished(name, architecture):
        run = TrainingRun.objects.create(project=chest["project"], partition=chest["partition"], created_by=clinician, name=name,
                                         status="succeeded", spec=training_spec(model={"architecture": architecture}),
                                         results={"classes": ["lesion", "normal"], "kept": {"epoch": 3}, "test": {"accuracy": 0.9}})
        run.storage_dir.mkdir(parents=True, exist_ok=True)
        run.weights_path.write_bytes(b"weights")
        return run

    older = finished("First try", "small_cnn")
    earlier = finished("Lesions, small CNN", "small_cnn")
    finished("A ResNet", "resnet18")
    open_form(page, live_server, chest["project"])
    source(page, "run").check()
    picker = field(page, "model.start_run")
    expect(picker).to_have_value(str(earlier.pk))  # the newest of this architecture
    options = picker.locator("option").all_inner_texts()
    assert options[1:] == [f"#{earlier.pk} Lesions, small CNN — Chest · X-rays · 2 classes · test accuracy 90.0% · epoch 3",
                           f"#{older.pk} First try — Chest · X-rays · 2 classes · test accuracy 90.0% · epoch 3"], options
    picker.select_option(str(older.pk))
    shot(page, "w3-run-form-earlier-run")

    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.exclude(pk__in=[older.pk, earlier.pk]).get(status="queued")
    assert run.spec["model"]["start_run"] == older.pk
    assert [step.get("run") for step in run.provenance["lineage"]] == [older.pk, None]
    lineage = page.locator("#run-lineage")
    expect(lineage).to_contain_text(f"Started from: run #{older.pk} 'First try' (dataset X-rays, partition {chest['partition'].name}) "
                                    "← random weights")
    expect(lineage.get_by_role("link", name=f"run #{older.pk} 'First try'")).to_have_attribute("href", f"/runs/{older.pk}/")
    shot(page, "w4-run-lineage")

    # Clone keeps the start.
    page.get_by_role("link", name="Clone").click()
    expect(source(page, "run")).to_be_checked()
    expect(field(page, "model.start_run")).to_have_value(str(older.pk))
    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    clone = TrainingRun.objects.filter(name=f"Copy of {run.name}").get()
    assert clone.spec == run.spec and clone.provenance["lineage"] == run.provenance["lineage"]

    # Another architecture: the earlier runs are its own, and none is chosen for the user.
    page.goto(f"{live_server.url}/projects/{chest['project'].pk}/runs/new/")
    source(page, "run").check()
    field(page, "model.architecture").select_option("resnet18")
    expect(field(page, "model.start_run")).to_have_value("")
    expect(field(page, "model.start_run").locator("option")).to_have_count(2)
    page.click("#launch")
    expect(page.locator('[data-error-for="model.start_run"]')).to_contain_text("needs its id")


def test_the_input_size_offers_the_size_a_network_takes(page, live_server, chest):
    open_form(page, live_server, chest["project"])
    expect(page.locator("#size-offer")).to_be_hidden()
    field(page, "model.architecture").select_option("inception_v3")
    offer = page.locator("#size-offer")
    expect(offer).to_contain_text("Inception-v3 takes images of at least 75×75 pixels; this dataset's are 64×64.")
    expect(page.locator("#model-fields")).to_contain_text("Inception-v3 takes 75×75 or larger.")
    shot(page, "w5-run-form-resize-offer")
    page.click("#resize-inside")
    expect(field(page, "model.input_size")).to_have_value("75")
    expect(offer).to_be_hidden()
    field(page, "model.input_size").fill("0")
    page.click("#launch")
    expect(page.locator('[data-error-for="model.input_size"]')).to_contain_text("Set the input size to 75 or more")
    page.click("#resize-inside")
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as sent:
        page.click("#launch")
    assert sent.value.post_data_json["model"]["input_size"] == 75
    page.wait_for_url(re.compile(r"/runs/\d+/$"))


def test_picking_an_imported_zoo_network_makes_it_the_model(page, live_server, chest, weights_folder, clinician):
    from backend.zoo.models import ImportedModel

    imported = ImportedModel.objects.create(project=chest["project"], name="Outside ResNet", kind="onnx", created_by=clinician,
                                            architecture="resnet18", mode=ImportedModel.Mode.WEIGHTS_COPIED,
                                            status=ImportedModel.Status.READY, channels=1, class_count=2)
    open_form(page, live_server, chest["project"])
    expect(field(page, "model.architecture")).to_have_value("small_cnn")
    source(page, "imported").check()
    page.locator('#run-form select[name="model.imported_model"]').select_option(str(imported.pk))
    expect(field(page, "model.architecture")).to_have_value("resnet18")  # the network the import's weights belong to
    expect(source(page, "imported")).to_be_checked()
    expect(page.locator('#run-form select[name="model.imported_model"]')).to_have_value(str(imported.pk))


def test_a_converted_import_is_offered_as_the_model_and_launched_at_its_own_size(page, live_server, chest, weights_folder, clinician):
    """A network the zoo does not have, converted from ONNX: picked as the model (or as the start), it starts only
    from its import, and the form offers the size it was exported at (24 here, the dataset's images are 64)."""
    from backend.zoo.models import ImportedModel
    from tests.model_files import custom_onnx

    converted = ImportedModel.objects.create(project=chest["project"], name="Outside CNN", kind="onnx", created_by=clinician,
                                             architecture="imported", mode=ImportedModel.Mode.CONVERTED,
                                             status=ImportedModel.Status.READY, channels=1, class_count=3, input_size=24)
    converted.storage_dir.mkdir(parents=True)
    custom_onnx(converted.onnx_path, channels=1, classes=3, size=24)
    open_form(page, live_server, chest["project"])
    field(page, "model.architecture").select_option("imported")
    expect(source(page, "imported")).to_be_checked()
    expect(page.locator('#run-form select[name="model.imported_model"]')).to_have_value(str(converted.pk))
    for other in ("random", "imagenet", "run"):
        expect(source(page, other)).to_have_count(0)
    expect(page.locator("#start-help")).to_contain_text("starts from its own weights")
    expect(page.locator('#run-form select[name="model.imported_model"] option:checked')).to_have_text(
        f"#{converted.pk} Outside CNN (Converted from ONNX)")
    offer = page.locator("#size-offer")
    expect(offer).to_contain_text("built for images of 24×24 pixels at most; this dataset's are 64×64")
    shot(page, "m4-run-form-converted-import")
    page.click("#launch")
    expect(page.locator('[data-error-for="model.input_size"]')).to_contain_text("was exported for 24×24 images")
    page.click("#resize-inside")
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as sent:
        page.click("#launch")
    assert sent.value.post_data_json["model"] == {"architecture": "imported", "weights": "imported", "imported_model": converted.pk,
                                                  "input_size": 24}
    page.wait_for_url(re.compile(r"/runs/\d+/$"))

    # Back to a zoo network: the converted import is left with it, and the run starts from random weights again.
    page.goto(f"{live_server.url}/projects/{chest['project'].pk}/runs/new/")
    source(page, "imported").check()
    page.locator('#run-form select[name="model.imported_model"]').select_option(str(converted.pk))
    expect(field(page, "model.architecture")).to_have_value("imported")
    field(page, "model.architecture").select_option("resnet18")
    expect(source(page, "random")).to_be_checked()


def test_answers_arriving_later_do_not_redraw_the_field_being_typed_in(page, live_server, chest):
    """The earlier runs of a network come after it is picked: "Start from" is drawn again then, and only it. A whole
    form drawn again under the user's fingers lost the typing's selection ("20" selected, "6" typed gave "206")."""
    import time

    def slowly(route):
        time.sleep(1.0)
        route.continue_()

    open_form(page, live_server, chest["project"])
    page.route("**/api/runs/starting-points/**", slowly)
    field(page, "model.architecture").select_option("resnet18")
    epochs = field(page, "epochs")
    epochs.evaluate("input => { input.dataset.marked = 'typed here'; input.focus(); }")
    expect(page.locator('[data-unavailable="run"]')).to_contain_text("No run of ResNet-18")
    expect(page.locator('#run-form input[name="epochs"][data-marked="typed here"]')).to_have_count(1)
    assert page.evaluate("document.activeElement.name") == "epochs"
