"""PATCH /api/datasets/{id}/ names the label values of a segmentation dataset's masks: each refusal is a 400 with
field label_names, a message that says what to do, and nothing saved."""
import pytest

from backend.audit.models import AuditEvent
from backend.datasets.label_names import label_rows
from backend.datasets.models import Dataset
from tests.factories import ready_dataset, volumes_with_masks

pytestmark = pytest.mark.django_db


@pytest.fixture
def segmented(project):
    """Three masked volumes holding labels 1 and 2 (one of them 1 only), one volume without a mask."""
    dataset = volumes_with_masks(project)
    held = [[0, 1, 2], [0, 1], [0, 1, 2]]
    for sample, values in zip(dataset.samples.exclude(mask="").order_by("id"), held):
        sample.meta = {"mask_values": values}
        sample.save(update_fields=["meta"])
    Dataset.objects.filter(pk=dataset.pk).update(mask_values=[0, 1, 2], masked_count=3, label_names={"1": "liver"})
    return Dataset.objects.get(pk=dataset.pk)


def patch(api, dataset, names):
    return api.patch(f"/api/datasets/{dataset.pk}/", {"label_names": names}, format="json")


def test_names_are_saved_and_read_back_with_the_values_left_unnamed(api, segmented):
    response = patch(api, segmented, {"0": "outside", "1": "liver", "2": " tumour "})
    assert response.status_code == 200, response.json()
    assert response.json()["label_names"] == {"0": "outside", "1": "liver", "2": "tumour"}
    assert response.json()["unnamed_label_values"] == []
    segmented.refresh_from_db()
    assert segmented.segmentation_labels == [(0, "outside"), (1, "liver"), (2, "tumour")]
    assert AuditEvent.objects.filter(object_name=f"{segmented.name}: label names").exists()
    # Leaving a value out takes its name away: it goes by its number again.
    body = patch(api, segmented, {"1": "liver"}).json()
    assert body["label_names"] == {"1": "liver"} and body["unnamed_label_values"] == [2]
    assert api.get(f"/api/datasets/{segmented.pk}/").json()["unnamed_label_values"] == [2]


def test_the_card_counts_the_masks_that_hold_each_value(segmented):
    assert label_rows(segmented) == [
        {"value": 0, "name": "", "shown": "background", "masks": 3, "unnamed": False},
        {"value": 1, "name": "liver", "shown": "liver", "masks": 3, "unnamed": False},
        {"value": 2, "name": "", "shown": "label 2", "masks": 2, "unnamed": True},
    ]


@pytest.mark.parametrize(("names", "message"), [
    ({"one": "liver"}, "'one' is not a label value; label values are whole numbers from 0 (background), such as 1 or 2."),
    ({"1.5": "liver"}, "'1.5' is not a label value"),
    ({"-1": "liver"}, "'-1' is not a label value"),
    ({"7": "spleen"}, "value 7 is in no mask; the masks hold 0, 1, 2. Name only these values."),
    ({"1": ""}, "Label 1 has an empty name; give it a name, or leave it out."),
    ({"1": "   "}, "Label 1 has an empty name"),
    ({"1": "liver", "2": "Liver"}, "Labels 1 and 2 are both named 'Liver'; give each label its own name."),
    ({"2": "x" * 101}, "The name of label 2 is 101 characters long; names are at most 100."),
    ({"1": "liver", "01": "tumour"}, "Label 1 is given twice ('liver' and 'tumour'); give it once."),
    ({"1": None}, 'Each name must be text, e.g. {"1": "liver"}.'),
    ({"1": 5}, "Each name must be text"),
])
def test_each_refusal_says_why_under_label_names_and_saves_nothing(api, segmented, names, message):
    response = patch(api, segmented, names)
    assert response.status_code == 400
    assert response.json()["field"] == "label_names", response.json()
    assert message in response.json()["message"]
    segmented.refresh_from_db()
    assert segmented.label_names == {"1": "liver"}, "nothing saved"


def test_a_list_is_no_set_of_names(api, segmented):
    response = api.patch(f"/api/datasets/{segmented.pk}/", {"label_names": ["liver"]}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "label_names"


def test_a_classification_dataset_and_one_still_ingesting_have_no_names_to_give(api, project, segmented):
    classes = ready_dataset(project)
    response = patch(api, classes, {"1": "liver"})
    assert response.status_code == 400 and response.json()["field"] == "label_names"
    assert "has no masks" in response.json()["message"]
    Dataset.objects.filter(pk=segmented.pk).update(status=Dataset.Status.INGESTING)
    response = patch(api, segmented, {"1": "liver"})
    assert response.status_code == 400 and "wait for its ingest to finish" in response.json()["message"]


def test_a_viewer_may_not_rename(api, project, segmented, django_user_model):
    from rest_framework.test import APIClient

    from backend.projects.models import ProjectMember, Role

    viewer = django_user_model.objects.create_user("reader", password="x-password-1")
    ProjectMember.objects.create(project=project, user=viewer, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(viewer)
    assert patch(client, segmented, {"1": "spleen"}).status_code == 403
    segmented.refresh_from_db()
    assert segmented.label_names == {"1": "liver"}
