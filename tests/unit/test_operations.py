"""Every operation on 2D and 3D input (or a clear refusal), reproducible from a seed; what the main ones do."""
import dataclasses

import numpy as np
import pytest

from workers.engine.pipelines import (
    OPERATIONS,
    PREPROCESSING,
    Context,
    Operation,
    ParamError,
    Pipeline,
    PipelineError,
    Statistics,
    UnsupportedInput,
)

SHAPES = {"2D grey": (1, 32, 40), "2D colour": (3, 32, 40), "3D": (1, 8, 16, 20)}
CONTEXT = Context(spacing=(2.5, 0.7, 0.7), meta={"rescale_slope": 1.0, "rescale_intercept": -1024.0, "window_center": 40.0,
                                                 "window_width": 400.0, "table": {"center": "10, 5, 3"}},
                  patient="P-1", statistics={("patient", "P-1"): (5.0, 2.0, 0.0, 10.0), ("dataset", ""): (4.0, 3.0, -1.0, 12.0)})
P3_AND_P4 = {"channel_shuffle", "add", "additive_gaussian_noise", "additive_laplace_noise", "additive_poisson_noise", "impulse_noise",
             "multiply", "dropout", "coarse_dropout", "salt_and_pepper", "salt", "pepper", "invert", "gaussian_blur", "average_blur",
             "median_blur", "histogram_equalization", "flip", "gamma_contrast", "rotate", "zoom", "shift", "random_crop", "center_crop",
             "resize", "elastic", "rescale_to_hu", "window", "z_score", "min_max", "resample", "crop_around_point"}


def always(name: str, **params) -> Operation:
    kind = OPERATIONS[name]
    if any(p.name == "probability" for p in kind.params):
        params.setdefault("probability", 1.0)
    return kind(**params)


def context_for(shape) -> Context:
    """A fresh context each time: operations that change the pixel grid update its spacing."""
    if len(shape) == 3:  # a 2D image: two spatial axes, two coordinates
        return Context(spacing=(0.7, 0.7), meta={**CONTEXT.meta, "table": {"center": "10, 5"}}, patient="P-1", statistics=CONTEXT.statistics)
    return dataclasses.replace(CONTEXT)


def image(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32) * 100


def test_the_registry_has_every_operation_the_requirements_name():
    assert P3_AND_P4 <= set(OPERATIONS), P3_AND_P4 - set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_each_operation_takes_2d_and_3d_input_and_a_seed_reproduces_it(name, shape):
    operation = always(name)
    source = image(shape)
    first = operation(source, np.random.default_rng(7), context_for(shape))
    again = operation(source, np.random.default_rng(7), context_for(shape))
    assert first.dtype == np.float32 and first.ndim == source.ndim and np.isfinite(first).all()
    assert np.array_equal(first, again), "the same seed gives the same result"
    assert np.array_equal(source, image(shape)), "the input is left as it was"
    if OPERATIONS[name].random:
        # Some operations are random only in whether they apply: give them an even chance.
        chancy = always(name, probability=0.5) if any(p.name == "probability" for p in OPERATIONS[name].params) else operation
        results = [chancy(source, np.random.default_rng(seed), context_for(shape)) for seed in range(8, 16)]
        if name != "channel_shuffle" or shape[0] > 1:  # shuffling one channel changes nothing
            assert any(r.shape != results[0].shape or not np.array_equal(r, results[0]) for r in results), "other seeds give other results"
    else:
        assert np.array_equal(operation(source, np.random.default_rng(99), context_for(shape)), first), "no randomness"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_describes_itself_and_its_defaults_are_valid(name):
    schema = OPERATIONS[name].schema()
    assert schema["title"] and schema["help"] and schema["dims"] and schema["category"] in ("augmentation", PREPROCESSING)
    for param in schema["params"]:
        assert param["help"] and "default" in param
    OPERATIONS[name]()  # defaults validate


def test_parameters_are_checked_with_a_message_naming_them():
    cases = [("gaussian_blur", {"sigma": [2, 1]}, "sigma", "low (2.0) must not be above high"),
             ("average_blur", {"size": 4}, "size", "odd"),
             ("average_blur", {"size": 2.5}, "size", "whole number"),
             ("rotate", {"degrees": [-200, 10]}, "degrees", "between -180 and 180; it is -200"),
             ("flip", {"axis": "diagonal"}, "axis", "one of left-right, up-down, head-foot"),
             ("invert", {"probability": "often"}, "probability", "a number"),
             ("window", {"from_file": "yes"}, "from_file", "true or false"),
             ("salt", {"amount": 0.1}, "amount", "has no parameter 'amount'")]
    for name, params, param, message in cases:
        with pytest.raises(ParamError) as error:
            OPERATIONS[name](**params)
        assert error.value.param == param and message in str(error.value), str(error.value)


def test_operations_that_cannot_take_the_input_say_so():
    with pytest.raises(ParamError, match="no head-foot axis"):
        always("flip", axis="head-foot")(image((1, 8, 8)), np.random.default_rng(0))
    with pytest.raises(UnsupportedInput, match="voxel spacing"):
        always("resample")(image((1, 8, 8)), np.random.default_rng(0), Context())
    with pytest.raises(UnsupportedInput, match="statistics fitted over the patient"):
        always("z_score", scope="patient")(image((1, 8, 8)), np.random.default_rng(0), Context(patient="P-9"))
    with pytest.raises(UnsupportedInput, match="must hold 2 coordinates"):
        always("crop_around_point")(image((1, 8, 8)), np.random.default_rng(0), Context(meta={"table": {"center": "1;2;3"}}))


def test_intensity_operations_do_what_they_say():
    rng = np.random.default_rng
    ramp = np.linspace(0, 10, 1 * 16 * 16, dtype=np.float32).reshape(1, 16, 16)
    inverted = always("invert")(ramp, rng(0))
    assert inverted[0, 0, 0] == 10 and inverted[0, -1, -1] == 0
    salted = always("salt", fraction=0.25)(ramp, rng(0))
    assert 0.15 < np.mean(salted == 10) < 0.35
    assert np.mean(always("dropout", fraction=0.5)(ramp + 1, rng(0)) == 0) == pytest.approx(0.5, abs=0.1)
    noisy = always("salt_and_pepper", fraction=0.1)(np.full((1, 32, 32), 5.0, np.float32) + rng(1).random((1, 32, 32), np.float32), rng(0))
    assert np.abs(always("median_blur")(noisy, rng(0)) - 5.5).max() < np.abs(noisy - 5.5).max(), "a median removes the specks"
    assert always("add", value=[2, 2])(ramp, rng(0)) == pytest.approx(ramp + 2)
    assert always("multiply", factor=[3, 3])(ramp, rng(0)) == pytest.approx(ramp * 3)
    assert always("gaussian_blur", sigma=[2, 2])(ramp, rng(0)).std() < ramp.std()
    crowded = np.concatenate([np.linspace(0, 1, 200), np.linspace(9, 10, 56)]).astype(np.float32).reshape(1, 16, 16)
    equalized = always("histogram_equalization")(crowded, rng(0))
    dark = crowded < 1.5
    assert np.ptp(equalized[dark]) > 5 * np.ptp(crowded[dark]), "equalizing spreads the crowded dark values"
    assert np.std(always("additive_gaussian_noise", std=1.0)(np.zeros((1, 64, 64), np.float32), rng(0))) == pytest.approx(1.0, rel=0.1)
    brightened = always("gamma_contrast", gamma=[0.5, 0.5])(ramp, rng(0))
    assert brightened[0, 8, 8] > ramp[0, 8, 8]


def test_geometric_operations_do_what_they_say():
    rng = np.random.default_rng
    picture = image((1, 12, 16))
    assert np.array_equal(always("flip", axis="left-right")(picture, rng(0)), picture[:, :, ::-1])
    assert np.array_equal(always("flip", axis="up-down")(picture, rng(0)), picture[:, ::-1, :])
    volume = image((1, 6, 8, 10))
    assert np.array_equal(always("flip", axis="head-foot")(volume, rng(0)), volume[:, ::-1])
    assert always("rotate", degrees=[0, 0])(picture, rng(0)) == pytest.approx(picture, abs=1e-3)
    assert always("center_crop", fraction=0.5)(picture, rng(0)).shape == (1, 6, 8)
    assert np.array_equal(always("center_crop", fraction=0.5)(picture, rng(0)), picture[:, 3:9, 4:12])
    assert always("resize", height=24, width=32)(picture, rng(0)).shape == (1, 24, 32)
    assert always("resize", height=4, width=5, depth=3)(volume, rng(0)).shape == (1, 3, 4, 5)
    assert always("elastic", magnitude=[0, 0])(picture, rng(0)) == pytest.approx(picture, abs=1e-4)
    assert always("elastic", magnitude=[0, 0])(volume, rng(0)) == pytest.approx(volume, abs=1e-4)
    warped = always("elastic", magnitude=[2, 2])(picture, rng(0))
    assert 0 < np.abs(warped - picture).mean() and warped.shape == picture.shape
    shifted = always("shift", fraction=0.25)(np.ones((1, 16, 16), np.float32), rng(0))
    assert 0 < np.mean(shifted == 0) < 0.5, "a shift brings in empty border"


def test_preprocessing_uses_the_sample_facts():
    rng = np.random.default_rng(0)
    raw = np.array([[[0, 1024, 1064, 2048]]], np.float32)
    hu = always("rescale_to_hu")(raw, rng, CONTEXT)
    assert hu.tolist() == [[[-1024, 0, 40, 1024]]]
    windowed = always("window", center=40, width=400)(hu, rng, CONTEXT)
    assert windowed == pytest.approx(np.array([[[0.0, 0.4, 0.5, 1.0]]]))
    assert always("window", center=0, width=10, from_file=True)(hu, rng, CONTEXT).tolist() == windowed.tolist()
    values = image((1, 16, 16))
    z = always("z_score")(values, rng)
    assert z.mean() == pytest.approx(0, abs=1e-4) and z.std() == pytest.approx(1, abs=1e-3)
    assert always("z_score", scope="dataset")(values, rng, CONTEXT) == pytest.approx((values - 4.0) / 3.0)
    scaled = always("min_max")(values, rng)
    assert scaled.min() == 0 and scaled.max() == pytest.approx(1)
    assert always("resample", pixel_mm=1.4)(image((1, 10, 20)), rng, Context(spacing=(0.7, 0.7))).shape == (1, 5, 10)
    context = dataclasses.replace(CONTEXT)
    assert always("resample", pixel_mm=1.4, slice_mm=5)(image((1, 8, 10, 20)), rng, context).shape == (1, 4, 5, 10)
    assert context.spacing == pytest.approx((5.0, 1.4, 1.4)), "the context says what spacing the output has"
    pipeline = Pipeline.from_steps([{"op": "resample", "params": {"pixel_mm": 1.4}}])
    output, after = pipeline.apply(image((1, 10, 20)), 0, Context(spacing=(0.7, 0.7)))
    assert output.shape == (1, 5, 10) and after.spacing == pytest.approx((1.4, 1.4))
    grid = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    patch = always("crop_around_point", height=4, width=6)(grid, rng, Context(meta={"table": {"center": "10, 5"}}))
    assert patch.shape == (1, 4, 6) and patch[0, 2, 3] == grid[0, 5, 10], "centred on column 10, row 5"
    edge = always("crop_around_point", height=4, width=6)(grid, rng, Context(meta={"table": {"center": "0, 0"}}))
    assert edge.shape == (1, 4, 6) and edge[0, 0, 0] == 0 and edge[0, 2, 3] == grid[0, 0, 0], "padded where it leaves the image"


def test_a_pipeline_is_json_validated_whole_and_reproducible():
    steps = [{"op": "rescale_to_hu"}, {"op": "window", "params": {"center": -600, "width": 1500}},
             {"op": "rotate", "params": {"degrees": [-10, 10]}}, {"op": "additive_gaussian_noise", "params": {"std": 0.01}}]
    pipeline = Pipeline.from_steps(steps)
    assert pipeline.steps()[1] == {"op": "window", "params": {"center": -600.0, "width": 1500.0, "from_file": False}}
    assert Pipeline.from_steps(pipeline.steps()).steps() == pipeline.steps(), "the canonical JSON round-trips"
    source = image((1, 16, 16)) * 20
    assert np.array_equal(pipeline(source, 5, CONTEXT), pipeline(source, 5, CONTEXT))
    assert not np.array_equal(pipeline(source, 5, CONTEXT), pipeline(source, 6, CONTEXT))
    with pytest.raises(PipelineError) as error:
        Pipeline.from_steps([{"op": "flip", "params": {"axis": "diag"}}, {"op": "sharpen"}, "blur", {"op": "salt", "params": []}])
    assert [(e.step, e.param) for e in error.value.errors] == [(0, "axis"), (1, "op"), (2, ""), (3, "params")]


def test_statistics_per_patient_and_dataset_feed_the_normalisation():
    statistics = Statistics()
    statistics.add(np.full((1, 2, 2), 2.0), "P-1")
    statistics.add(np.full((1, 2, 2), 4.0), "P-1")
    statistics.add(np.full((1, 2, 2), 10.0), "P-2")
    fitted = statistics.fitted()
    assert fitted[("patient", "P-1")] == (3.0, 1.0, 2.0, 4.0)
    mean, std, low, high = fitted[("dataset", "")]
    assert (mean, low, high) == (pytest.approx(16 / 3), 2.0, 10.0) and std == pytest.approx(np.std([2] * 4 + [4] * 4 + [10] * 4))
