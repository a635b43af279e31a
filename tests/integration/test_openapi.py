"""docs/openapi.yaml and docs/operations.md are the API and the operations as the code defines them; regenerate them with `make schema`."""
from pathlib import Path

import pytest
from django.core.management import call_command

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
OPERATIONS = SCHEMA.with_name("operations.md")


def test_checked_in_schema_matches_the_code(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    assert generated.read_text() == SCHEMA.read_text(), "The API changed: run `make schema` and commit docs/openapi.yaml."


def test_checked_in_operations_reference_matches_the_registry(tmp_path):
    generated = tmp_path / "operations.md"
    call_command("operations_doc", "--file", str(generated))
    text = generated.read_text()
    assert text == OPERATIONS.read_text(), "The operations changed: run `make schema` and commit docs/operations.md."
    assert "### Rotate (`rotate`)" in text and "| `degrees` (Angle (degrees)) | range | -180 to 180 | -15 to 15 |" in text
    assert "| `mask_volume` | Mask volume | ml | yes |" in text


@pytest.mark.django_db
def test_schema_and_swagger_ui_are_served(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("reader", password="x-password-1"))
    assert client.get("/api/schema/").status_code == 200
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b"swagger-ui" in page.content and b"cdn" not in page.content.lower()
