"""A segmentation's results checked against values worked by hand (workers/engine/tasks/segmentation/results.py):
Dice and IoU of two offset squares, HD95 and NSD with anisotropic spacing, volumes in ml, both labels empty, one
empty (the worst case, not dropped), and the bootstrap over patients (a patient's cases drawn together)."""
import math

import numpy as np
import pytest

from workers.engine.tasks.segmentation.results import case_scores, segmentation_results, worst_distance

CLASSES = ["background", "lesion"]


def squares(offset=2, size=20):
    """Two 10 x 10 squares, the second moved `offset` pixels along the columns."""
    reference, predicted = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
    reference[3:13, 3:13] = 1
    predicted[3:13, 3 + offset:13 + offset] = 1
    return predicted, reference


def test_two_squares_offset_by_two_pixels():
    predicted, reference = squares()
    case = case_scores(predicted, reference, (1.0, 1.0), CLASSES)
    # 10 x 8 pixels overlap: Dice 2 * 80 / (100 + 100) = 0.8, IoU 80 / 120 = 2/3.
    assert case.dice["lesion"] == pytest.approx(0.8) and case.iou["lesion"] == pytest.approx(2 / 3)
    # Each edge pixel of one square lies at most 2 px from the other's edge.
    assert case.hd95["lesion"] == pytest.approx(2.0)
    # NSD at 1 mm: of each square's 36 edge pixels, 16 lie 2 px from the other's edge (its far column of 10, and 6 of
    # the column inside the other square): (20 + 20) / 72.
    assert case.nsd["lesion"] == pytest.approx(40 / 72)
    assert case.reference_volume["lesion"] == pytest.approx(100.0), "an image's size is its area in mm²"
    assert case.empty == {"lesion": ""} and case.mean_dice == pytest.approx(0.8)


def test_nsd_counts_a_whole_boundary_within_a_wider_tolerance():
    predicted, reference = squares()
    assert case_scores(predicted, reference, (1.0, 1.0), CLASSES, tolerance_mm=2.0).nsd["lesion"] == pytest.approx(1.0)


def test_distances_use_the_anisotropic_spacing():
    # The same squares moved 2 columns, columns 3 mm apart: every distance triples.
    predicted, reference = squares()
    assert case_scores(predicted, reference, (1.0, 3.0), CLASSES).hd95["lesion"] == pytest.approx(6.0)
    # Two single voxels 1 slice, 0 rows and 2 columns apart, spacing (3, 1, 0.5) mm: sqrt(3² + 1²) = 3.162 mm.
    reference, predicted = np.zeros((4, 5, 6), np.uint8), np.zeros((4, 5, 6), np.uint8)
    reference[1, 1, 1], predicted[2, 1, 3] = 1, 1
    case = case_scores(predicted, reference, (3.0, 1.0, 0.5), CLASSES)
    assert case.hd95["lesion"] == pytest.approx(math.sqrt(10), rel=1e-4)
    assert case.reference_volume["lesion"] == pytest.approx(3 * 1 * 0.5 / 1000), "one voxel of 1.5 mm³ in ml"
    # The NSD tolerance is at least one voxel along the finest axis (0.5 mm here: 1 mm kept).
    assert case.tolerance_mm == 1.0 and case.nsd["lesion"] == 0.0


def test_a_correctly_empty_prediction_scores_perfect_and_is_kept():
    empty = np.zeros((8, 8), np.uint8)
    case = case_scores(empty, empty, (1.0, 1.0), CLASSES)
    assert (case.dice["lesion"], case.iou["lesion"], case.hd95["lesion"], case.nsd["lesion"]) == (1.0, 1.0, 0.0, 1.0)
    assert case.empty["lesion"] == "both"


def test_a_missed_structure_and_a_false_alarm_score_the_worst_case():
    reference = np.zeros((10, 20), np.uint8)
    reference[2:4, 2:4] = 1
    missed = case_scores(np.zeros_like(reference), reference, (2.0, 0.5), CLASSES)
    diagonal = math.sqrt((10 * 2.0) ** 2 + (20 * 0.5) ** 2)
    assert worst_distance((10, 20), (2.0, 0.5)) == pytest.approx(diagonal)
    assert (missed.dice["lesion"], missed.iou["lesion"], missed.nsd["lesion"]) == (0.0, 0.0, 0.0)
    assert missed.hd95["lesion"] == pytest.approx(diagonal) and missed.empty["lesion"] == "missed"
    false_alarm = case_scores(reference, np.zeros_like(reference), (2.0, 0.5), CLASSES)
    assert false_alarm.empty["lesion"] == "false_alarm" and false_alarm.hd95["lesion"] == pytest.approx(diagonal)


def test_several_labels_are_scored_each_and_averaged_over_the_foreground():
    reference = np.zeros((12, 12), np.uint8)
    reference[1:5, 1:5], reference[7:11, 7:11] = 1, 2
    predicted = reference.copy()
    predicted[predicted == 2] = 0  # the second label missed
    case = case_scores(predicted, reference, (1.0, 1.0), ["background", "liver", "tumour"])
    assert case.dice == {"liver": 1.0, "tumour": 0.0} and case.mean_dice == 0.5
    assert case.hd95["liver"] == 0.0 and case.empty == {"liver": "", "tumour": "missed"}


def test_results_average_cases_with_an_interval_from_patients():
    predicted, reference = squares()
    good = case_scores(reference, reference, (1.0, 1.0), CLASSES)
    offset = case_scores(predicted, reference, (1.0, 1.0), CLASSES)
    missed = case_scores(np.zeros_like(reference), reference, (1.0, 1.0), CLASSES)
    cases, patients = [good, offset, missed, good], ["A", "B", "C", "D"]
    results = segmentation_results(cases, patients, CLASSES, dims=2, resamples=500, seed=1)
    dice = results["per_class"]["dice"][0]
    assert dice["class"] == "lesion" and dice["value"] == pytest.approx((1 + 0.8 + 0 + 1) / 4)
    assert dice["low"] < dice["value"] < dice["high"] and 0 <= dice["low"] and dice["high"] <= 1
    assert results["metrics"]["mean_dice"]["value"] == pytest.approx(0.7)
    assert results["empty"]["lesion"] == {"both": 0, "missed": 1, "false_alarm": 0}
    assert results["samples"] == 4 and results["patients"] == 4 and results["volume_unit"] == "mm²"
    # Each patient's cases drawn together: every case twice, under one patient each, gives the same interval ...
    doubled = segmentation_results(cases * 2, patients * 2, CLASSES, dims=2, resamples=500, seed=1)
    assert doubled["per_class"]["dice"][0]["low"] == pytest.approx(dice["low"])
    assert doubled["per_class"]["dice"][0]["high"] == pytest.approx(dice["high"])
    # ... while as eight patients of their own the interval narrows (the cases are not independent).
    apart = segmentation_results(cases * 2, [f"{p}{k}" for k in range(2) for p in patients], CLASSES, dims=2, resamples=500, seed=1)
    assert apart["per_class"]["dice"][0]["high"] - apart["per_class"]["dice"][0]["low"] < dice["high"] - dice["low"]


def test_a_single_value_has_an_interval_of_itself():
    predicted, reference = squares()
    offset = case_scores(predicted, reference, (1.0, 1.0), CLASSES)
    results = segmentation_results([offset] * 3, ["A", "B", ""], CLASSES, dims=2, resamples=200)
    hd95 = results["per_class"]["hd95"][0]
    assert (hd95["value"], hd95["low"], hd95["high"]) == pytest.approx((2.0, 2.0, 2.0))
    assert results["samples_without_patient"] == 1

