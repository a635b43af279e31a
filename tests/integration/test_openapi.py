"""docs/openapi.yaml, docs/operations.md, docs/training.md and the zoo tables of docs/models.md are the API, the
operations, the training settings and the model zoo as the code defines them; regenerate them with `make schema`."""
from pathlib import Path

import pytest
from django.core.management import call_command

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def test_checked_in_schema_matches_the_code(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    assert generated.read_text() == SCHEMA.read_text(), "The API changed: run `make schema` and commit docs/openapi.yaml."


def test_checked_in_references_match_the_registries(tmp_path):
    call_command("reference_docs", "--folder", str(tmp_path))
    for name in ("operations.md", "training.md", "models.md"):
        assert (tmp_path / name).read_text() == SCHEMA.with_name(name).read_text(), f"Run `make schema` and commit docs/{name}."
    text = (tmp_path / "operations.md").read_text()
    assert "### Rotate (`rotate`)" in text and "| `degrees` (Angle (degrees)) | range | -180 to 180 | -15 to 15 |" in text
    assert "| `mask_volume` | Mask volume | ml | yes |" in text
    training = (tmp_path / "training.md").read_text()
    assert "### SGD (`sgd`)" in training and "| `optimizer.momentum` (Momentum) | float | 0 to 0.999 | 0.9 |" in training
    assert "| `small_cnn` | adamw |" in training
    models = (tmp_path / "models.md").read_text()
    assert "| ResNet-18 | `resnet18` | classification | 2D, any channels | 1×1 or larger | 11.7 M | 6 | `fc` | `layer4` |" in models
    assert "[`resnet18-f37072fd.pth`](https://download.pytorch.org/models/resnet18-f37072fd.pth) | `f37072fd` | 69.758 %" in models


@pytest.mark.django_db
def test_schema_and_swagger_ui_are_served(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("reader", password="x-password-1"))
    assert client.get("/api/schema/").status_code == 200
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b"swagger-ui" in page.content and b"cdn" not in page.content.lower()
