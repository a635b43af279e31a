"""Segmentation refused or fitted at launch, before any worker (issue 23, "Bad input"): thin volumes get a patch
rounded up to the U-Net's multiples of 8 and are padded, a typed patch far past them is refused beside the patch;
masks that hold only the background, masks holding a value their declared label names leave out, a dataset without
masks asked to segment, a segmentation network for a
dataset of classes and a classifier for a dataset of masks are each refused with the field that is wrong; nothing
is created."""
import pytest

from backend.datasets.models import Dataset
from backend.datasets.services import create_partition
from backend.runs.models import TrainingRun
from tests.factories import ready_dataset, shapes_with_masks, volumes_with_masks

pytestmark = pytest.mark.django_db


def launch(api, partition, **settings):
    return api.post("/api/runs/", {"partition": partition.pk, **settings}, format="json")


def refused(response, field: str, words: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field and words in response.json()["message"], response.json()


@pytest.fixture
def thin(project):
    """Six 10-slice volumes at 2 x 0.5 x 0.5 mm, five with a mask of label 1."""
    dataset = volumes_with_masks(project, masked_voxels=((40, 120, 90), (300, 200)), shape=(10, 16, 16))
    Dataset.objects.filter(pk=dataset.pk).update(masked_count=5, mask_values=[0, 1])
    dataset.refresh_from_db()
    return create_partition(project.owner, dataset, "", 50, 25, 25, 3)


def test_thin_volumes_train_in_a_patch_rounded_up_to_the_network_and_a_larger_one_is_refused(api, project, thin):
    response = launch(api, thin, epochs=1)
    assert response.status_code == 202, response.content
    spec = response.json()["spec"]
    assert spec["task"] == "segmentation" and spec["model"]["architecture"] == "unet_3d"
    assert spec["data"]["plan"]["patch_size"] == [16, 16, 16], "10 slices padded to the U-Net's 16"
    assert "rounded up from 10x16x16" in spec["data"]["plan"]["reasons"]["patch_size"]
    refused(launch(api, thin, data={"plan": {"patch_size": [32, 16, 16]}}), "data.plan.patch_size",
            "The patch (32×16×16 voxels) is larger than")
    assert TrainingRun.objects.count() == 1

    # Six slices would be mostly padding in the U-Net's 16: refused, naming what to do instead.
    six = volumes_with_masks(project, masked_voxels=((40, 120, 60), (300, 90)), shape=(6, 16, 16))
    Dataset.objects.filter(pk=six.pk).update(masked_count=5, mask_values=[0, 1])
    refused(launch(api, create_partition(project.owner, six, "", 50, 25, 25, 3)), "data.plan.patch_size",
            "the slice side would become 16, more than 2 times the smallest sample's 6")
    assert TrainingRun.objects.count() == 1


def test_what_cannot_be_segmented_is_refused_with_its_field(api, project, thin):
    refused(launch(api, thin, model={"architecture": "resnet18_3d"}), "model.architecture", "is a classification network")
    outlines = create_partition(project.owner, shapes_with_masks(project, count=8), "", 50, 25, 25, 3)
    refused(launch(api, outlines, task="classification"), "task", "holds masks and no classes to classify by")
    refused(launch(api, thin, task="classification"), "model.architecture", "choose a 3D network (Small 3D CNN, ResNet-18 (3D), ResNet-50 (3D), SE-ResNet-50 (3D), DenseNet-121 (3D)).")
    Dataset.objects.filter(pk=thin.dataset_id).update(mask_values=[0, 1, 3], label_names={"1": "liver"})
    refused(launch(api, thin), "partition", "hold label value 3, which its label names do not declare (they name 1)")
    Dataset.objects.filter(pk=thin.dataset_id).update(mask_values=[0], label_names={})
    refused(launch(api, thin), "task", "hold only the background")

    classes = create_partition(project.owner, ready_dataset(project, per_class=6), "", 50, 25, 25, 3)
    refused(launch(api, classes, task="segmentation"), "task", "holds no masks, so there is nothing to segment")
    refused(launch(api, classes, model={"architecture": "unet_2d"}), "model.architecture", "is a segmentation network")
    assert not TrainingRun.objects.exists()
