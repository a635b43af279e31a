"""How the pages name what a dataset's samples are labelled with (Dataset.labels_in_words): a segmentation
dataset says so, with its masks and their label values, never "(unlabelled)"."""
from backend.datasets.models import Dataset


def words(**fields) -> str:
    return Dataset(name="d", **fields).labels_in_words


def test_a_segmentation_dataset_names_its_masks_and_their_label_values():
    assert words(task="segmentation", class_counts={"": 6}, masked_count=6, mask_values=[0, 1, 2]) == \
        "segmentation · 6 masks · labels 0, 1, 2"
    assert words(task="segmentation", class_counts={"": 3}, masked_count=1, mask_values=[1]) == "segmentation · 1 mask · label 1"


def test_classes_beside_the_masks_are_named_too():
    assert words(task="segmentation", class_counts={"": 1, "tumour": 2}, masked_count=3, mask_values=[0, 1]) == \
        "segmentation · 3 masks · labels 0, 1 · classes (unlabelled), tumour"


def test_a_classification_dataset_lists_its_classes():
    assert words(class_counts={"PNEUMONIA": 3, "NORMAL": 2}) == "NORMAL, PNEUMONIA"
    assert words(class_counts={"": 4}) == "(unlabelled)"
    assert words() == ""  # not ingested yet: the pages show a dash
