"""Label names: the files datasets ship them in (each format, and what is wrong with a malformed one), what an
ingest makes of them beside real masks, and what the dataset records."""
import pytest

from backend.datasets.models import Dataset
from tests.unit.test_mask_pairing import Ingested, brain_slabs
from workers.engine.ingest import ACCEPTED, REJECTED
from workers.engine.ingest.sources import DOCUMENT_REASON, TABLE_REASON
from workers.engine.label_names import LabelFileProblem, may_name_labels, names_problem, read_label_file

ITK_SNAP = b'''################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    IDX:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "grey matter"
    2     0  255    0        1  1  1    "white matter (WM)"
'''


# ------------------------------------------------------------------ each format


def test_a_decathlon_dataset_json_names_values_by_their_text():
    data = b'{"name": "Liver", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "cancer"}}'
    assert read_label_file("Task03_Liver/dataset.json", data) == {0: "background", 1: "liver", 2: "cancer"}


def test_an_nnunet_v2_dataset_json_is_read_the_other_way_round_and_regions_are_left_out():
    """KiTS23's: 'kidney' and 'masses' are regions (lists of labels trained as one), not names of one value."""
    data = b'{"channel_names": {"0": "CT"}, "labels": {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": 2}}'
    assert read_label_file("dataset.json", data) == {0: "background", 2: "tumor"}
    assert read_label_file("dataset.json", b'{"labels": {"background": 0, "liver": 1}}') == {0: "background", 1: "liver"}


def test_an_itk_snap_label_description_file():
    assert read_label_file("segmentation/labels.txt", ITK_SNAP) == {0: "Clear Label", 1: "grey matter", 2: "white matter (WM)"}
    # Without its header and without 'label' in its name, the lines alone say what it is (alpha written 0..255 too).
    assert read_label_file("colours.txt", b'1 255 0 0 255 1 1 "liver"\n2 0 0 255 255 1 1 "spleen"\n') == {1: "liver", 2: "spleen"}


@pytest.mark.parametrize(("name", "data"), [
    ("labels.csv", b"value,name\n0,background\n1,liver\n2,spleen\n"),
    ("labels.csv", b"0,background\n1,liver\n2,spleen\n"),  # no header
    ("label_names.tsv", b"value\tname\n0\tbackground\n1\tliver\n2\tspleen\n"),
    ("labels.csv", b"\xef\xbb\xbfWert;Name\r\n0;background\r\n1;liver\r\n2;spleen\r\n"),  # Excel: BOM, semicolons, CRLF
])
def test_a_two_column_table_of_values_and_names(name, data):
    assert read_label_file(name, data) == {0: "background", 1: "liver", 2: "spleen"}


@pytest.mark.parametrize(("name", "data"), [
    ("dataset.json", b'{"name": "Hippocampus", "numTraining": 260}'),  # describes the data, names no labels
    ("README.txt", b"Task04 Hippocampus\nLabels: 1 anterior, 2 posterior\n"),
    ("labels.csv", b"file,diagnosis\nlesion/0.png,benign\nnormal/0.png,healthy\n"),  # one row per image: a table to join
])
def test_files_that_name_no_labels_are_left_as_they_were(name, data):
    assert read_label_file(name, data) is None


@pytest.mark.parametrize(("name", "data", "message"), [
    ("dataset.json", b'{"labels": {"0": "background",\n "1": "liver"\n "2": "cancer"}}',
     "dataset.json is not valid JSON (line 3, column 2: Expecting ',' delimiter)"),
    ("dataset.json", b'{"labels": ["background", "liver"]}', '"labels" in dataset.json must be an object such as {"0": "background"'),
    ("dataset.json", b'{"labels": {"0": "background", "liver": 1}}', '"labels" in dataset.json mixes forms'),
    ("dataset.json", b'{"labels": {"0": "background", "one": "liver"}}',
     'label "one": "one" is not a label value; label values are whole numbers, 0 for background'),
    ("dataset.json", b'{"labels": {"0": "background", "70000": "liver"}}', "dataset.json names label 70000; label values go from 0 to 65535"),
    ("labels.txt", ITK_SNAP + b'    3   0 0 255  1 1 "no mesh column"\n',
     'line 18 is not a label description: "3   0 0 255  1 1 "no mesh column""; ITK-SNAP writes IDX R G B A VIS MSH "LABEL"'),
    ("labels.txt", b"# ITK-SnAP Label Description File\n", "the file names no labels"),
    ("labels.csv", b"value,name\n0,background\n1,liver\n1,spleen\n", "the table names label 1 twice ('liver' and 'spleen')"),
    ("labels.csv", b"value,name\n0,background\n1,liver,red\n", "row 3 has 3 columns; a table of label names has two: value, name"),
    ("labels.csv", b"value,name\n0,background\n1.5,liver\n", 'row 3: "1.5" is not a label value'),
    ("labels.csv", b"value,name\n0,background\n1,\n", "the table: label 1 has an empty name; give it a name, or leave it out"),
    ("labels.csv", b"value,name\n1,liver\n2,Liver\n", "the table: labels 1 and 2 are both named 'Liver'; give each label its own name"),
    ("labels.csv", b"value,name\n1," + b"x" * 101 + b"\n", "the name of label 1 is 101 characters long; names are at most 100"),
    ("labels.csv", b"value,name\n1,f\xe9mur\n", "the file is not UTF-8 text (byte 14); save it as UTF-8"),
])
def test_a_malformed_label_file_says_what_is_wrong(name, data, message):
    with pytest.raises(LabelFileProblem) as refused:
        read_label_file(name, data)
    assert message in str(refused.value)


def test_which_files_may_name_labels():
    assert may_name_labels("Task03_Liver/dataset.json", 400)
    assert may_name_labels("seg/labels.csv", 40) and may_name_labels("seg/label_names.tsv", 40)
    assert may_name_labels("notes.txt", 40), "a .txt is read: its content says whether it is ITK-SNAP's"
    assert not may_name_labels("clinical.csv", 40), "a table without 'label' in its name is a table to join"
    assert not may_name_labels("labels.csv", 5 * 1024**2), "a file of names is a few lines"
    assert not may_name_labels("dataset_description.json", 40)


def test_names_problem_is_empty_for_good_names():
    assert names_problem({0: "background", 1: "liver", 2: "liver tumour"}) == ""
    assert "control characters" in names_problem({1: "liver\tleft"})


# ------------------------------------------------- in an ingest, beside real masks


def decathlon(slabs, label_file: tuple[str, bytes] | None) -> dict[str, bytes]:
    files = {f"Task04_Brain/{label_file[0]}": label_file[1]} if label_file else {}
    for k, (image, mask) in enumerate(slabs, start=1):
        files[f"Task04_Brain/imagesTr/brain_00{k}.nii.gz"] = image
        files[f"Task04_Brain/labelsTr/brain_00{k}.nii.gz"] = mask
    return files


def test_a_dataset_json_beside_the_masks_names_their_labels_and_says_which_it_leaves_unnamed(tmp_path):
    """The masks (the MNI tissue map) hold 0, 1, 2; the file names 0, 1 and 5, which no mask holds (fine)."""
    label_file = ("dataset.json", b'{"labels": {"0": "background", "1": "grey matter", "5": "lesion"}}')
    ingested = Ingested(tmp_path, decathlon(brain_slabs(2), label_file))
    assert ingested.summary.task == "segmentation"
    assert ingested.summary.label_names == {"0": "background", "1": "grey matter", "5": "lesion"}
    assert ingested.outcomes["Task04_Brain/dataset.json"].status == ACCEPTED
    assert ingested.reason("Task04_Brain/dataset.json") == (
        "accepted: names the labels of the masks: 0 background, 1 grey matter, 5 lesion; the masks also hold 2, which no "
        "label file names: name it in the Labels card of the dataset page")
    assert len(ingested.samples) == 2, "the label file is no sample"


def test_an_itk_snap_file_names_every_label_and_leaves_nothing_to_report(tmp_path):
    ingested = Ingested(tmp_path, decathlon(brain_slabs(2), ("labels.txt", ITK_SNAP)))
    assert ingested.summary.label_names == {"0": "Clear Label", "1": "grey matter", "2": "white matter (WM)"}
    assert ingested.reason("Task04_Brain/labels.txt") == \
        "accepted: names the labels of the masks: 0 Clear Label, 1 grey matter, 2 white matter (WM)"


def test_a_malformed_label_file_is_rejected_with_its_reason_and_the_masks_still_come_in(tmp_path):
    ingested = Ingested(tmp_path, decathlon(brain_slabs(2), ("labels.csv", b"value,name\n0,background\n1,\n")))
    assert ingested.outcomes["Task04_Brain/labels.csv"].status == REJECTED
    assert ingested.reason("Task04_Brain/labels.csv") == (
        "rejected: names the labels of the masks, but the table: label 1 has an empty name; give it a name, or leave it "
        "out; not used")
    assert ingested.summary.label_names == {}
    assert all(ingested.mask(path) is not None for path in ingested.samples)


def test_documents_and_tables_that_name_no_labels_stay_skipped_and_are_never_images(tmp_path):
    files = decathlon(brain_slabs(1), None) | {
        "Task04_Brain/README.txt": b"Brain tissue, 2 subjects.\n",
        "Task04_Brain/labels.csv": b"file,site\nbrain_001,A\n",
    }
    ingested = Ingested(tmp_path, files)
    assert ingested.reason("Task04_Brain/README.txt") == f"skipped: {DOCUMENT_REASON}"
    assert ingested.reason("Task04_Brain/labels.csv") == f"skipped: {TABLE_REASON}"
    assert list(ingested.samples) == ["Task04_Brain/imagesTr/brain_001.nii.gz"]
    assert ingested.summary.label_names == {}


def test_two_label_files_that_disagree_keep_the_first_by_path(tmp_path):
    files = decathlon(brain_slabs(1), ("dataset.json", b'{"labels": {"0": "background", "1": "grey", "2": "white"}}'))
    files["Task04_Brain/labels.csv"] = b"1,cortex\n2,white\n"
    ingested = Ingested(tmp_path, files)
    assert ingested.summary.label_names == {"0": "background", "1": "grey", "2": "white"}
    assert "label 1 is 'grey' in Task04_Brain/dataset.json, which is kept" in ingested.reason("Task04_Brain/labels.csv")


def test_an_upload_without_masks_keeps_no_names(tmp_path):
    image, _ = brain_slabs(1)[0]
    ingested = Ingested(tmp_path, {"scans/brain.nii.gz": image,
                                   "scans/dataset.json": b'{"labels": {"0": "background", "1": "liver"}}'})
    assert ingested.summary.task == "classification" and ingested.summary.label_names == {}
    assert "no mask in the upload holds labels, so the names are not used" in ingested.reason("scans/dataset.json")


# ------------------------------------------------------------ what the dataset records


def test_segmentation_labels_put_background_first_and_name_the_unnamed_by_number():
    dataset = Dataset(mask_values=[2, 1, 3], label_names={"1": "liver", "3": "tumour", "9": "spleen"})
    assert dataset.segmentation_labels == [(0, "background"), (1, "liver"), (2, "label 2"), (3, "tumour")]
    assert dataset.unnamed_label_values == [2]
    renamed = Dataset(mask_values=[0, 1], label_names={"0": "outside"})
    assert renamed.segmentation_labels == [(0, "outside"), (1, "label 1")]
    assert renamed.unnamed_label_values == [1], "0 is background without a name"


def test_a_malformed_label_file_is_said_at_upload(tmp_path):
    """The quick look before an upload is accepted warns of it, beside the files that are no images."""
    from workers.engine.ingest import inspect_upload

    image, mask = brain_slabs(1)[0]
    for name, data in {"imagesTr/a.nii.gz": image, "labelsTr/a.nii.gz": mask, "dataset.json": b'{"labels": {"0": "bg", "x": "liver"}}',
                       "README.txt": b"about the data\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    problems = {p.path: p.reason for p in inspect_upload(tmp_path, "folders").problems}
    assert problems == {"dataset.json": 'names the labels of the masks, but label "x": "x" is not a label value; label values '
                                        "are whole numbers, 0 for background; not used"}
