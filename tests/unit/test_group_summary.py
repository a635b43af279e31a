"""A group's figures across its members (issue 22, T5): the mean and the sample standard deviation (ddof=1) per
epoch and per test metric, checked against values worked by hand for three members."""
import math

import pytest

from backend.experiments.services import epoch_bands, spread


def test_mean_and_sample_deviation_of_three_members():
    # 0.6, 0.7, 0.8: mean 0.7; squared distances 0.01 + 0 + 0.01 over n - 1 = 2: variance 0.01, deviation 0.1.
    assert spread([0.6, 0.7, 0.8]) == pytest.approx({"mean": 0.7, "std": 0.1, "n": 3})
    # Not the population's (ddof=0, sqrt(0.02 / 3) = 0.0816): the members are a sample of the runs the spec can give.
    assert spread([0.6, 0.7, 0.8])["std"] != pytest.approx(math.sqrt(0.02 / 3))


def test_what_is_not_a_number_is_left_out_and_one_value_has_no_deviation():
    assert spread([0.5, None, float("nan")]) == {"mean": 0.5, "std": None, "n": 1}
    assert spread([]) == {"mean": None, "std": None, "n": 0}


def test_bands_per_epoch_over_the_members_that_reached_it():
    members = [{1: 1.0, 2: 0.5, 3: 0.2},
               {1: 2.0, 2: 1.5},  # stopped early after epoch 2
               {1: 3.0, 2: 1.0, 3: 0.4}]
    bands = epoch_bands(members)
    assert [band["epoch"] for band in bands] == [1, 2, 3]
    # Epoch 1: 1, 2, 3 -> mean 2, variance (1 + 0 + 1) / 2 = 1.
    assert bands[0] == pytest.approx({"epoch": 1, "mean": 2.0, "std": 1.0, "n": 3})
    # Epoch 2: 0.5, 1.5, 1.0 -> mean 1.0, variance (0.25 + 0.25 + 0) / 2 = 0.25.
    assert bands[1] == pytest.approx({"epoch": 2, "mean": 1.0, "std": 0.5, "n": 3})
    # Epoch 3: 0.2, 0.4 (two members) -> mean 0.3, variance (0.01 + 0.01) / 1 = 0.02.
    assert bands[2] == pytest.approx({"epoch": 3, "mean": 0.3, "std": math.sqrt(0.02), "n": 2})
