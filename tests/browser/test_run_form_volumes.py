"""The run form on a partition of volumes: the dataset's plan as fields with their reasons, a 3D network chosen for
the user, the plan values changed sent as data.plan, and the server's refusals (a patch larger than the volumes, a 2D
network) beside their fields before any run starts; the page fits a phone's width; MedicalNet's weights offered for
the 3D ResNets."""
import hashlib
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from backend.datasets.models import Dataset, Sample
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_run_form import field, open_form
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHAPE = (16, 24, 24)           # slice, row, column: as workers/engine/demo.py's volumes in tests/integration
SPACING = (2.0, 0.8, 0.8)      # mm


def ct_volumes(project, per_class=10) -> Dataset:
    """A ready classification dataset of CT volumes in Hounsfield units (air around a body of soft tissue; the
    "lesion" class has a brighter blob), one patient each, stored as the ingest stores them."""
    labels = ("lesion", "normal")
    dataset = Dataset.objects.create(project=project, name="CT volumes", status=Dataset.Status.READY, sample_count=2 * per_class,
                                     class_counts={label: per_class for label in labels}, channels=1, height=SHAPE[1],
                                     width=SHAPE[2], modalities="CT")
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(dataset.pk)
    z, y, x = np.indices(SHAPE)
    body = ((y - 12) / 10) ** 2 + ((x - 12) / 10) ** 2 < 1
    samples = []
    for n, label in enumerate(labels):
        for i in range(per_class):
            index = n * per_class + i
            volume = np.where(body, 40, -1000) + rng.normal(0, 10, SHAPE)
            if label == "lesion":
                volume[(z - 8) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 16] = 120
            np.save(arrays / f"{index:07d}.npy", volume.astype(np.int16))
            samples.append(Sample(
                dataset=dataset, source_dataset=dataset, label=label, kind=Sample.Kind.VOLUME, modality="CT",
                source_path=f"{label}/{i}.nii.gz", files=[f"{label}/{i}.nii.gz"], array=f"datasets/{dataset.pk}/arrays/{index:07d}.npy",
                cache_index=index, depth=SHAPE[0], height=SHAPE[1], width=SHAPE[2], channels=1, dtype="int16", spacing=list(SPACING),
                patient=f"P-{index:04d}", sha256=hashlib.sha256(f"{dataset.pk} volume {index}".encode()).hexdigest()))
    Sample.objects.bulk_create(samples)
    return dataset


@pytest.fixture
def scans(clinician):
    """A project with a partition of 2D images and one of CT volumes."""
    from backend.datasets.services import create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Scans")
    images = create_partition(clinician, ready_dataset(project, per_class=20, name="X-rays"), "", 60, 20, 20, 7)
    volumes = ct_volumes(project)
    return {"project": project, "images": images, "volumes": create_partition(clinician, volumes, "", 60, 20, 20, 7),
            "dataset": volumes}


def axes(page, key) -> list[str]:
    return [field(page, f"data.plan.{key}.{axis}").input_value() for axis in range(3)]


def error_beside(page, path):
    return page.locator(f'#run-form [data-error-for="{path}"]')


def screenshot(page, width):
    """The whole page from its top (docs/images/run-form-volumes.png is the 1280 one): scrolled to the top first, so
    that the sticky chart beside the form is drawn beside the data, not where the last field scrolled it."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"run-form-volumes-{width}.png"), full_page=True)


def test_the_form_shows_the_plan_of_a_partition_of_volumes_and_its_refusals(page, live_server, scans):
    from backend.datasets.planning import plan_of
    from backend.runs.models import TrainingRun

    plan = plan_of(scans["dataset"])
    assert plan["normalisation"] == "ct" and plan["patch_size"] == list(SHAPE) and plan["target_spacing"] == list(SPACING)

    # 2D images first: no plan, 2D networks first, nothing of a plan sent.
    open_form(page, live_server, scans["project"], f"?partition={scans['images'].pk}")
    expect(field(page, "partition")).to_have_value(str(scans["images"].pk))
    expect(page.locator("#plan")).to_have_count(0)
    expect(field(page, "model.architecture")).to_have_value("small_cnn")
    assert page.locator('select[name="model.architecture"] optgroup').first.get_attribute("label") == "For 2D images"

    # The volumes: the plan's values as fields, each with its reason; a 3D network, the 3D ones first.
    with page.expect_request(lambda request: request.url.endswith("/api/runs/schedule/")) as drawn:
        field(page, "partition").select_option(str(scans["volumes"].pk))
    assert "plan" not in drawn.value.post_data_json.get("data", {}), "values left as planned are the server's to fill in"
    group = page.locator("#plan")
    expect(group.locator("legend")).to_have_text("Plan for volumes")
    expect(field(page, "model.architecture")).to_have_value("small_cnn_3d")
    assert page.locator('select[name="model.architecture"] optgroup').first.get_attribute("label") == "For volumes (3D)"
    expect(page.locator('input[name="model.input_size"]')).to_have_count(0)  # a 3D network takes the plan's patches
    assert axes(page, "target_spacing") == [f"{v:g}" for v in SPACING]
    assert axes(page, "patch_size") == [str(v) for v in SHAPE]
    expect(field(page, "data.plan.normalisation")).to_have_value("ct")
    expect(field(page, "data.plan.normalisation").locator("option:checked")).to_have_text("CT: clip, then one z-score")
    assert [field(page, f"data.plan.clip.{part}").input_value() for part in (0, 1)] == [f"{v:g}" for v in plan["clip"]]
    expect(field(page, "data.plan.mean")).to_have_value(f"{plan['mean']:g}")
    expect(field(page, "data.plan.std")).to_have_value(f"{plan['std']:g}")
    for key in ("target_spacing", "normalisation", "patch_size"):
        expect(group).to_contain_text(plan["reasons"][key])
    page.locator("#advanced summary").click()
    expect(field(page, "batch_size")).to_have_value(str(plan["batch_size"]))  # the plan's, not small_cnn_3d's 8
    expect(page.locator("#advanced-fields")).to_contain_text(plan["reasons"]["batch_size"])
    page.locator("#advanced summary").click()

    # Another normalisation: CT's values leave the form (and the request).
    field(page, "data.plan.normalisation").select_option("zscore")
    expect(field(page, "data.plan.mean")).to_have_count(0)
    field(page, "data.plan.normalisation").select_option("ct")
    expect(field(page, "data.plan.mean")).to_have_value(f"{plan['mean']:g}")

    # A patch deeper than the volumes: refused beside the patch field while editing, before any run.
    with page.expect_request(lambda request: request.url.endswith("/api/runs/schedule/")) as sent:
        field(page, "data.plan.patch_size.0").fill("32")
    assert sent.value.post_data_json["data"]["plan"] == {"normalisation": "ct", "patch_size": [32, 24, 24]}
    expect(error_beside(page, "data.plan.patch_size")).to_contain_text("The patch (32×24×24 voxels) is larger than 20 of the volumes")
    assert not TrainingRun.objects.exists()
    screenshot(page, 1280)

    field(page, "data.plan.patch_size.0").fill("16")
    expect(error_beside(page, "data.plan.patch_size")).to_be_empty()

    # A 2D network: refused beside the architecture, naming the 3D ones.
    field(page, "model.architecture").select_option("resnet18")
    expect(error_beside(page, "model.architecture")).to_contain_text("is a 2D network and this dataset holds volumes (3D)")
    assert not TrainingRun.objects.exists()
    for width in (1920, 390):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_function("(w) => document.documentElement.scrollWidth <= w", arg=width, timeout=15_000)
        screenshot(page, width)
    page.set_viewport_size({"width": 1280, "height": 1000})

    # A 3D network and a smaller patch: the run records the plan with the value changed.
    field(page, "model.architecture").select_option("small_cnn_3d")
    expect(error_beside(page, "model.architecture")).to_be_empty()
    field(page, "data.plan.patch_size.1").fill("16")
    field(page, "data.plan.patch_size.2").fill("16")
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as launched:
        page.click("#launch")
    assert launched.value.post_data_json["data"]["plan"] == {"normalisation": "ct", "patch_size": [16, 16, 16]}
    page.wait_for_url(f"{live_server.url}/runs/**")
    run = TrainingRun.objects.get()
    assert run.spec["model"]["architecture"] == "small_cnn_3d"
    assert run.spec["data"]["plan"]["patch_size"] == [16, 16, 16] and run.spec["data"]["plan"]["clip"] == plan["clip"]


def test_medicalnet_is_offered_for_the_3d_resnets_with_where_its_file_goes(page, live_server, scans, settings, tmp_path,
                                                                           monkeypatch):
    """MedicalNet's weights: offered only for the networks that have them, greyed out with where to put the file and
    where it is published until the server has it, then launched and named in the run's lineage."""
    settings.PRETRAINED_WEIGHTS_DIR = folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    medicalnet = page.locator('#run-form input[name="model.weights"][value="medicalnet"]')
    open_form(page, live_server, scans["project"], f"?partition={scans['volumes'].pk}")
    expect(field(page, "model.architecture")).to_have_value("small_cnn_3d")
    expect(medicalnet).to_have_count(0)  # the small 3D CNN has none
    field(page, "model.architecture").select_option("resnet18_3d")
    expect(medicalnet).to_be_disabled()
    expect(page.locator("#start-from")).to_contain_text("MedicalNet (Tencent, resnet_18_23dataset.pth)")
    reason = page.locator('[data-unavailable="medicalnet"]')
    expect(reason).to_contain_text(f"put it at {folder / 'resnet_18_23dataset.pth'}")
    expect(reason).to_contain_text("published at https://github.com/Tencent/MedicalNet")

    (folder / "resnet_18_23dataset.pth").write_bytes(b"put there by an administrator")
    page.reload()
    field(page, "model.architecture").select_option("resnet18_3d")
    expect(medicalnet).to_be_enabled()
    medicalnet.check()
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as sent:
        page.click("#launch")
    assert sent.value.post_data_json["model"] == {"architecture": "resnet18_3d", "weights": "medicalnet"}
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-lineage")).to_contain_text("Started from: MedicalNet's ResNet-18 weights (Tencent, resnet_18_23dataset.pth)")
