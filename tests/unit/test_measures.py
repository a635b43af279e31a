"""Aggregation measures: intensity statistics, and mask volume and area from the voxel spacing."""
import numpy as np
import pytest

from workers.engine.pipelines.measures import MEASURES, box_statistics, checked_measures, histogram, measure, summarise


def test_intensity_statistics_of_an_image():
    image = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    result = measure(image, ["mean", "std", "min", "max", "median", "p5", "p95"])
    assert result["problems"] == {}
    values = result["values"]
    assert (values["mean"], values["min"], values["max"], values["median"]) == (49.5, 0.0, 99.0, 49.5)
    assert values["p5"] == pytest.approx(4.95) and values["std"] == pytest.approx(np.arange(100).std())


def test_mask_volume_in_ml_and_area_in_mm2_use_the_spacing():
    volume = np.zeros((1, 10, 20, 20), np.float32)
    mask = np.zeros((10, 20, 20), np.uint8)
    mask[2:6, 5:15, 5:15] = 1  # 4 slices x 100 voxels
    result = measure(volume, ["mask_volume", "lesion_area"], mask, spacing=(2.5, 0.5, 0.5))
    assert result["values"]["mask_volume"] == pytest.approx(400 * 2.5 * 0.25 / 1000)
    assert result["values"]["lesion_area"] == pytest.approx(100 * 0.25)
    flat = measure(np.zeros((1, 20, 20), np.float32), ["lesion_area", "mask_volume"], mask[3], spacing=(0.5, 0.5))
    assert flat["values"] == {"lesion_area": 25.0} and "needs a 3D mask" in flat["problems"]["mask_volume"]


def test_what_cannot_be_measured_is_said_not_guessed():
    image = np.ones((1, 4, 4), np.float32)
    result = measure(image, ["mask_volume", "lesion_area", "mask_mean", "mean"], None, ())
    assert result["values"] == {"mean": 1.0}
    assert set(result["problems"]) == {"mask_volume", "lesion_area", "mask_mean"} and "no mask" in result["problems"]["lesion_area"]
    no_spacing = measure(image, ["lesion_area"], np.ones((4, 4)), ())
    assert "spacing is unknown" in no_spacing["problems"]["lesion_area"]
    with pytest.raises(ValueError, match="unknown measures"):
        measure(image, ["volume"])
    assert all(m.title for m in MEASURES.values())


def test_a_histogram_shares_its_bins_over_images():
    edges, counts = histogram([np.zeros((1, 2, 2)), np.ones((1, 2, 2))], bins=2)
    assert edges == [0.0, 0.5, 1.0] and counts == [4, 4]


def test_boxes_follow_tukey_and_ignore_missing_values():
    box = box_statistics([1, 2, 3, 4, 100, None, float("nan")])
    assert box["count"] == 5 and box["median"] == 3 and (box["q1"], box["q3"]) == (2, 4)
    assert box["upperfence"] == 4 and box["max"] == 100, "100 is an outlier beyond 1.5 IQR"
    assert box_statistics([None]) == {"count": 0}


def test_a_summary_gives_every_label_a_box_and_a_histogram_over_shared_bins():
    rows = [("a", {"mean": 1.0, "mask_volume": 2.0}), ("a", {"mean": 3.0}), ("b", {"mean": 5.0, "mask_volume": None})]
    summary = summarise(rows, ["mean", "mask_volume"], bins=4)
    assert summary["mean"]["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert summary["mean"]["labels"]["a"]["counts"] == [1, 0, 1, 0] and summary["mean"]["labels"]["b"]["counts"] == [0, 0, 0, 1]
    assert set(summary["mask_volume"]["labels"]) == {"a"}, "a label without any value has no chart"


def test_measure_names_are_checked_and_kept_in_order_once():
    assert checked_measures(["p95", "mean", "p95", "histogram"]) == ["p95", "mean", "histogram"]
    with pytest.raises(ValueError, match="unknown measure.*radius"):
        checked_measures(["mean", "radius"])
    with pytest.raises(ValueError, match="a list"):
        checked_measures("mean")
