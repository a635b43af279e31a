"""The run form on a partition of images with masks: only segmentation networks, losses and metrics are offered
(the task follows the data, no field of its own), a U-Net of the data's dimensions is chosen for the user with Dice +
cross-entropy and mean Dice monitored; going to a partition of classes brings a classifier back; a run launched
with the defaults is a segmentation run; the page fits a phone's width."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_run_form import field, open_form
from tests.factories import ready_dataset, shapes_with_masks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def outlines(clinician):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Outlines")
    classes = create_partition(clinician, ready_dataset(project, per_class=10, name="X-rays"), "", 60, 20, 20, 7)
    shapes = shapes_with_masks(project, count=20, label_names={"1": "disc", "2": "square"})
    return {"project": project, "classes": classes, "shapes": create_partition(clinician, shapes, "", 60, 20, 20, 7)}


def options(page, name) -> list[str]:
    return page.locator(f'#run-form select[name="{name}"] option').evaluate_all("(all) => all.map((o) => o.value)")


def test_a_partition_with_masks_offers_only_segmentation_and_launches_it(page, live_server, outlines):
    from backend.runs.models import TrainingRun
    from workers.engine.training.spec import spec_schema

    schema = spec_schema()
    segmenting = {a["name"] for a in schema["architectures"] if a["task"] == "segmentation"}
    open_form(page, live_server, outlines["project"], f"?partition={outlines['shapes'].pk}")
    expect(field(page, "partition").locator("option:checked")).to_contain_text("segmentation, 3 labels")
    expect(field(page, "model.architecture")).to_have_value("unet_2d")
    assert set(options(page, "model.architecture")) == segmenting, "only the networks that outline"
    assert page.locator('select[name="model.architecture"] optgroup').first.get_attribute("label") == "For 2D images"
    expect(page.locator('input[name="model.input_size"]')).to_have_count(0)  # a segmentation network takes the plan's patch
    page.locator("#advanced summary").click()
    expect(field(page, "loss.name")).to_have_value("dice_ce")
    assert set(options(page, "loss.name")) == {"dice", "dice_ce", "dice_focal", "tversky"}
    boxes = page.locator('#run-form input[name="metrics"]').evaluate_all("(all) => all.map((b) => [b.value, b.checked])")
    assert dict(boxes) == {"mean_dice": True, "class_dice": True, "iou": True, "pixel_accuracy": True, "case_dice": False}
    expect(field(page, "monitor")).to_have_value("validation.mean_dice")
    assert "validation.class_dice" not in options(page, "monitor"), "a value per label is charted, never monitored"
    expect(field(page, "task")).to_have_count(0)
    expect(field(page, "inference.mirror")).not_to_be_checked()  # test-time mirroring: offered, off by default
    for width in (1366, 1920, 390):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(ARTIFACTS / f"run-form-segmentation-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 1000})

    # A partition of classes: a classifier again, with its loss; back to the masks: the U-Net again.
    field(page, "partition").select_option(str(outlines["classes"].pk))
    expect(field(page, "model.architecture")).to_have_value("small_cnn")
    expect(field(page, "loss.name")).to_have_value("cross_entropy")
    expect(field(page, "inference.mirror")).to_have_count(0)  # nothing to mirror in a class
    assert not set(options(page, "model.architecture")) & segmenting
    field(page, "partition").select_option(str(outlines["shapes"].pk))
    expect(field(page, "model.architecture")).to_have_value("unet_2d")
    expect(field(page, "loss.name")).to_have_value("dice_ce")

    field(page, "inference.mirror").check()
    field(page, "epochs").fill("1")
    with page.expect_response(lambda response: response.url.endswith("/api/runs/") and response.request.method == "POST") as sent:
        page.locator('#run-form button[type="submit"]').click()
    assert sent.value.status == 202, sent.value.text()
    run = TrainingRun.objects.get()
    assert run.spec["task"] == "segmentation" and run.spec["model"]["architecture"] == "unet_2d"
    assert run.spec["data"]["plan"]["dims"] == 2 and run.spec["loss"]["name"] == "dice_ce"
    assert run.spec["inference"]["mirror"] is True
