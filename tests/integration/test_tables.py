"""Tables beside images: CSV and XLSX joined by file name or patient ID, previewed, then applied."""
import io

import pandas as pd
import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Partition
from tests.factories import ready_dataset

pytestmark = pytest.mark.django_db


def csv_file(text: str, name="labels.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode())


def xlsx_file(frame: pd.DataFrame, name="labels.xlsx") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False, engine="openpyxl")
    return SimpleUploadedFile(name, buffer.getvalue())


def post(api, dataset, what, table, **fields):
    return api.post(f"/api/datasets/{dataset.pk}/table/{what}/", {"table": table, **fields}, format="multipart")


def test_a_csv_joined_by_file_name_is_previewed_without_writing_then_applied(api, project):
    dataset = ready_dataset(project, labels=("a", "b"), per_class=3)
    table = "file,diagnosis\n0.png,benign\n1,malignant\nunknown.png,benign\n"  # with and without extension
    response = post(api, dataset, "preview", csv_file(table), column="file", image_key="file_name", label_column="diagnosis")
    assert response.status_code == 200, response.content
    preview = response.json()
    # Both 'a/0.png' and 'b/0.png' are called 0.png: each matches the row for 0.png.
    assert preview["matched_samples"] == 4 and preview["unmatched_samples"] == 2
    assert preview["unmatched_rows"] == 1 and preview["unmatched_row_examples"] == ["unknown.png"]
    assert preview["label_counts"] == {"benign": 2, "malignant": 2}
    dataset.refresh_from_db()
    assert dataset.class_counts == {"a": 3, "b": 3}, "a preview writes nothing"
    response = post(api, dataset, "apply", csv_file(table), column="file", image_key="file_name", label_column="diagnosis")
    assert response.status_code == 200, response.content
    dataset.refresh_from_db()
    assert dataset.class_counts == {"a": 1, "b": 1, "benign": 2, "malignant": 2}
    assert (dataset.storage_dir / "table.csv").is_file()


def test_an_xlsx_of_real_patient_ids_joins_pseudonymised_samples_and_no_real_id_is_stored(api, project):
    dataset = ready_dataset(project, labels=("x",), per_class=4)
    deidentifier = project.deidentifier()
    for number, sample in enumerate(dataset.samples.order_by("id")):
        sample.patient = deidentifier.pseudonym_for_value("patient", f"MRN-{number % 2}")
        sample.save()
    frame = pd.DataFrame({"mrn": ["MRN-0", "MRN-1", "MRN-9"], "name": ["Doe^Jane", "Roe^Rick", "Poe^Pat"],
                          "finding": ["tumour", "healthy", "healthy"]})
    fields = {"column": "mrn", "image_key": "patient", "label_column": "finding", "identifier_columns": ["name"]}
    preview = post(api, dataset, "preview", xlsx_file(frame), **fields).json()
    assert preview["matched_samples"] == 4 and preview["unmatched_rows"] == 1
    assert "MRN-9" not in str(preview) and "Poe" not in str(preview), "examples are shown pseudonymised"
    assert post(api, dataset, "apply", xlsx_file(frame), **fields).status_code == 200
    dataset.refresh_from_db()
    assert dataset.class_counts == {"healthy": 2, "tumour": 2}
    stored = (dataset.storage_dir / "table.csv").read_text()
    everything = "\n".join(str(row) for model in apps.get_models() for row in model.objects.values())
    for real in ("MRN-0", "MRN-1", "Doe^Jane", "Roe^Rick"):
        assert real not in stored and real not in everything


def test_bad_tables_and_joins_are_refused_with_the_field_and_what_to_do(api, project):
    dataset = ready_dataset(project, per_class=2)
    cases = [
        (csv_file("file,label\n0.png,a\n"), {"column": "filename"}, "column", "its columns are: file, label"),
        (csv_file("file,label\n0.png,a\n"), {"column": "file", "label_column": "diagnosis"}, "label_column", "no column 'diagnosis'"),
        (csv_file("file,label\n0.png,a\n"), {"column": "file", "identifier_columns": ["mrn"]}, "identifier_columns", "no column 'mrn'"),
        (csv_file("a,b\n", name="labels.csv"), {}, "table", "no rows"),
        (csv_file("whatever", name="labels.pdf"), {}, "table", ".csv or .xlsx"),
        (SimpleUploadedFile("labels.xlsx", b"PK\x03\x04 not really a workbook"), {}, "table", "cannot be read"),
    ]
    for table, fields, field, message in cases:
        response = post(api, dataset, "preview", table, **fields)
        assert response.status_code == 400 and response.json()["field"] == field, response.content
        assert message in response.json()["message"]
    response = post(api, dataset, "apply", csv_file("file,label\n0.png,a\n"), column="file")
    assert response.status_code == 400 and response.json()["field"] == "label_column"
    Partition.objects.create(dataset=dataset, name="p", train_percent=70, validation_percent=15, test_percent=15, seed=1)
    response = post(api, dataset, "apply", csv_file("file,label\n0.png,a\n"), column="file", label_column="label")
    assert response.status_code == 409 and "partitions" in response.json()["message"]
