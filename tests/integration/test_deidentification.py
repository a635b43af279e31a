"""De-identification (PS3.15 Annex E Basic Profile): nothing identifying survives in storage or the database."""
import io

import pydicom
import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from backend.datasets.models import Dataset as ImageDataset
from backend.datasets.services import create_dataset_from_upload
from backend.projects.models import Project
from tests.conftest import make_zip
from tests.medical import dicom_bytes
from workers.engine.ingest.deid import EXACT_ACTIONS, Deidentifier
from workers.ingest import INGEST

PLANTED_DATE, PLANTED_DATETIME, PLANTED_TIME = "18500615", "18500615131313", "131313.1313"
UID_MARK = "1.2.826.0.1.3680043.10.999."
# Binary numbers (US, UL, FL ...) cannot carry a searchable marker; every attribute the profile
# names with a text, date, time, UID or sequence value gets one.
PLANTABLE = {"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR", "DA", "DT", "TM", "UI", "DS", "IS", "SQ"}
KEEP_FOR_DECODING = {"SOPClassUID"}


def marker(number: int) -> str:
    return f"ZQ{number:04d}X"


def plant(ds: Dataset) -> list[str]:
    """Put a unique, searchable value into every attribute the profile names; return what to look for."""
    markers = []
    for number, tag in enumerate(sorted(EXACT_ACTIONS)):
        try:
            vr, keyword = dictionary_VR(tag), keyword_for_tag(tag)
        except KeyError:
            continue
        if vr not in PLANTABLE or not keyword or keyword in KEEP_FOR_DECODING or (tag >> 16) in (0x0000, 0x0002, 0x7FE0):
            continue
        value = {"DA": PLANTED_DATE, "DT": PLANTED_DATETIME, "TM": PLANTED_TIME, "UI": f"{UID_MARK}{number}",
                 "DS": f"9{number:04d}.25", "IS": f"97{number:05d}", "AS": "097Y"}.get(vr, marker(number))
        if vr == "SQ":
            item = Dataset()
            item.CodeMeaning = marker(number)
            value = Sequence([item])
        ds.add_new(tag, vr, value)
        markers.append(str(value[0].CodeMeaning) if vr == "SQ" else value)
    block = ds.private_block(0x0099, "HOSPITAL PRIVATE", create=True)
    block.add_new(0x01, "LO", "ZQPRIVATEX")
    ds.add_new(0x60004000, "LT", "ZQOVERLAYX")
    return markers + ["ZQPRIVATEX", "ZQOVERLAYX", UID_MARK, PLANTED_DATE, PLANTED_TIME, "097Y"]


def planted_file() -> tuple[bytes, list[str]]:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(patient_id="ZQPATIENTX", patient_name="ZQNAME^X")))
    markers = plant(ds) + ["ZQPATIENTX", "ZQNAME"]
    ds.PatientID, ds.PatientName = "ZQPATIENTX", "ZQNAME^X"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue(), markers


def everything_in_the_database() -> str:
    rows = []
    for model in apps.get_models():
        rows.extend(str(row) for row in model.objects.values())
    return "\n".join(rows)


def ingest(project, user, files: dict[str, bytes]) -> ImageDataset:
    upload = SimpleUploadedFile("upload.zip", make_zip(files))
    dataset, _ = create_dataset_from_upload(project, "planted", [upload], user, labels_from="none")
    INGEST.run(dataset.pk, "test")
    dataset.refresh_from_db()
    return dataset


@pytest.mark.django_db
def test_no_planted_identifying_value_survives_in_storage_or_database(project, user, settings):
    data, markers = planted_file()
    assert len(markers) > 200, "the profile names hundreds of attributes; most must be planted"
    dataset = ingest(project, user, {"case/planted.dcm": data, "case/other.dcm": dicom_bytes(patient_id="ZQPATIENTX")})
    assert dataset.status == "ready", dataset.message
    stored = {p: p.read_bytes() for p in settings.STORAGE_ROOT.rglob("*") if p.is_file()}
    assert any(p.suffix == ".dcm" for p in stored), "de-identified originals are kept"
    database = everything_in_the_database()
    for value in markers:
        for path, content in stored.items():
            assert value.encode() not in content, f"{value} survived in {path}"
        assert value not in database, f"{value} survived in the database"
    kept = pydicom.dcmread(next(p for p in stored if p.suffix == ".dcm"))
    assert kept.PatientIdentityRemoved == "YES" and "Annex E" in kept.DeidentificationMethod and kept.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert kept.PatientID.startswith("P-") and str(kept.PatientName) == kept.PatientID
    assert not any(element.tag.is_private for element in kept.iterall())
    assert not (dataset.storage_dir / "upload").exists(), "the upload, identifiers and all, is gone after ingest"


@pytest.mark.django_db
def test_pseudonyms_dates_and_uids_are_consistent_within_a_project_and_differ_between_projects(project, user):
    other_project = Project.objects.create(owner=user, name="Other")
    study = "1.2.826.0.1.3680043.8.498.77"
    files = {"a/1.dcm": dicom_bytes(patient_id="MRN-1", study_uid=study), "a/2.dcm": dicom_bytes(patient_id="MRN-1", study_uid=study, instance=2, position=(0, 0, 9)),
             "b/3.dcm": dicom_bytes(patient_id="MRN-2")}
    first = ingest(project, user, files)
    second = ingest(project, user, {"c/4.dcm": dicom_bytes(patient_id="MRN-1", study_uid=study)})
    elsewhere = ingest(other_project, user, {"d/5.dcm": dicom_bytes(patient_id="MRN-1", study_uid=study)})

    def stored(dataset):
        return [pydicom.dcmread(s.project_dir / s.original) for s in dataset.samples.order_by("source_path")]

    one, two, three = stored(first)
    again, = stored(second)
    other, = stored(elsewhere)
    assert one.PatientID == two.PatientID == again.PatientID != three.PatientID
    assert other.PatientID != one.PatientID, "each project has its own pseudonyms"
    assert one.StudyInstanceUID == again.StudyInstanceUID != study
    assert one.StudyDate == again.StudyDate != "20200315", "dates shift by the same offset for one patient"
    assert one.PatientBirthDate < one.StudyDate, "intervals are kept: birth still comes before the study"
    assert first.patient_count == 2


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_raw_bytes_and_decoded_values_are_de_identified_alike(syntax):
    # Most elements are de-identified on their undecoded bytes (apply_raw); the decoded path
    # (apply) handles the rest. Both must give the same file, whatever the encoding.
    data, _ = planted_file()
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData  # pydicom will not byte-swap pixel data into big endian
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian, force_encoding=True)
    deidentifier = Deidentifier(b"s" * 32)
    raw, decoded = (pydicom.dcmread(io.BytesIO(buffer.getvalue())) for _ in range(2))
    for element in decoded:  # iterating decodes every top-level element: apply_raw declines them all
        assert not element.is_raw
    deidentifier.deidentify(raw)
    deidentifier.deidentify(decoded)
    written = []
    for dataset in (raw, decoded):
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=False)
        written.append(pydicom.dcmread(io.BytesIO(out.getvalue())))
    from_raw, from_decoded = written
    assert set(from_raw.keys()) == set(from_decoded.keys())
    for tag in from_raw.keys():
        assert from_raw[tag].value == from_decoded[tag].value, f"{from_raw[tag].keyword} differs"
