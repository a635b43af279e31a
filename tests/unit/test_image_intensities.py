"""2D images with real intensities (CT slices in Hounsfield units, 16-bit radiographs) train from a plan, as volumes
do: stored in their own dtype, resampled to the plan's pixel spacing, read in patches, augmented on modality values
(HU), normalised by the plan; 8-bit images keep the training cache."""
import json

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from backend.datasets.models import real_intensities
from tests.medical import dicom_bytes
from workers.engine.demo import planned_subsets, write_class_zip
from workers.engine.display import modality_values
from workers.engine.export import export_onnx, onnx_predict
from workers.engine.pipelines import Pipeline
from workers.engine.planning import (
    IMAGE_BUDGET_CPU,
    VolumeFacts,
    check_plan,
    fingerprint_of,
    intensities,
    normalised,
    plan_for,
)
from workers.engine.store import StoredVolume, VolumeRecords, build_store, store_folder, volume_input_rule
from workers.engine.training.evaluation import measured
from workers.engine.training.run import train
from workers.engine.training.spec import fitted_to_subset
from workers.engine.training.trainer import TrainingData

CT_META = {"rescale_slope": 1.0, "rescale_intercept": -1024.0}


def ct_slice(rng: np.random.Generator, lesion: bool, size: int = 64) -> np.ndarray:
    """A CT-like slice in stored values (HU + 1024): soft tissue near 40 HU with noise inside air; for a lesion, a
    denser patch of about +60 HU somewhere in the tissue (the 8-bit window 40/400 would show it as 15 grey levels)."""
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) / (size * 0.42)) ** 2 + ((xx - size / 2) / (size * 0.42)) ** 2 <= 1
    hu = np.where(body, rng.normal(40.0, 18.0, (size, size)), -1000.0 + rng.normal(0, 5, (size, size)))
    if lesion:
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        sigma = rng.uniform(size / 12, size / 7)
        hu += body * rng.uniform(50, 80) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return np.clip(np.rint(hu + 1024), 0, 4095).astype(np.int16)


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices")
    write_class_zip(folder / "upload" / "slices.zip", 40, 0, "slices/{label}/{label}_{number:03d}.dcm",
                    lambda rng, label: dicom_bytes(ct_slice(rng, label == "lesion")))
    train_set, validation, test, classes, plan = planned_subsets(folder, dims=2)
    return TrainingData(train_set, validation, 1, classes, dims=2, window=tuple(plan["patch_size"])), test, plan


def test_ct_slices_are_planned_in_hounsfield_units_and_stored_as_int16(slices):
    data, _, plan = slices
    assert plan["dims"] == 2 and plan["normalisation"] == "ct", plan["reasons"]
    assert plan["target_spacing"] == [0.7, 0.7] and plan["patch_size"] == [64, 64]
    assert -100 < plan["mean"] < 150, "the dataset's statistics are in Hounsfield units (tissue near 40 HU)"
    stored = np.load(data.train.paths[0], mmap_mode="r")
    assert stored.dtype == np.int16 and stored.shape == (1, 64, 64)
    image = data.train[0]["image"]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert "Each image channels first (C, H, W)" in volume_input_rule(plan)


def test_a_real_ct_slice_reaches_the_augmentation_in_hounsfield_units(tmp_path):
    """pydicom's CT_small.dcm (a real scan, 128x128 int16, intercept -1024): a window 40/400 in the augmentation acts
    on its HU, as a radiologist's window does; the 8-bit cache would have squeezed it to 0-255 first."""
    dicom = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stored = dicom.pixel_array
    meta = {"rescale_slope": float(dicom.RescaleSlope), "rescale_intercept": float(dicom.RescaleIntercept)}
    np.save(tmp_path / "slice.npy", stored)
    spacing = tuple(float(v) for v in dicom.PixelSpacing)
    plan = plan_for(fingerprint_of([VolumeFacts(lambda: stored, spacing, meta, "CT", dims=2)]))
    assert plan["dims"] == 2 and plan["normalisation"] == "ct" and plan["patch_size"] == [128, 128]
    [path] = build_store([StoredVolume("slice.npy", spacing, "a" * 64, dims=2)], tmp_path, store_folder(tmp_path / "store", spacing),
                         spacing)
    window = Pipeline.from_steps([{"op": "window", "params": {"center": 40, "width": 400}}])
    records = VolumeRecords([path], [0], [meta], {**plan, "normalisation": "none"}, augment=window)
    shown = records[0]["image"][0].numpy()
    hu = stored.astype(np.float64) * meta["rescale_slope"] + meta["rescale_intercept"]
    expected = np.clip((hu - (40 - 200)) / 400, 0, 1)
    assert np.abs(shown - expected).max() < 1e-5
    assert 0.05 < (expected > 0).mean() < 0.95, "the slice holds values on both sides of the window's edge"


def test_the_default_2d_network_learns_ct_slices_from_the_plan_and_exports_them(slices, tmp_path):
    data, test, plan = slices
    spec = fitted_to_subset({"data": {"plan": plan}}, len(data.train))
    assert spec["model"]["architecture"] == "small_cnn"
    outcome = train(spec, data)
    model = outcome.kept_model()
    assert model.mean.abs().max() == 0 and (model.std == 1).all(), "the plan normalised the slices: the model takes them as they are"
    figures = measured(model, test, spec, data.classes, dims=2, window=data.window)
    assert figures["accuracy"] >= 0.9, figures
    images = torch.stack([data.validation.as_patches()[i]["image"] for i in range(3)])
    path = export_onnx(model, images[:2], tmp_path / "model.onnx")
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(onnx_predict(path, images.numpy()) - expected).max() < 1e-4


def test_large_images_are_planned_whole_at_a_coarser_spacing():
    """A classifier should see the whole image: 512x512 slices at 0.7 mm become 256x256 at 1.4 mm on a CPU, not
    crops of a quarter."""
    slices = [VolumeFacts(lambda: np.full((512, 512), 1000, np.int16), (0.7, 0.7), CT_META, "CT", dims=2) for _ in range(3)]
    plan = plan_for(fingerprint_of(slices))
    assert plan["target_spacing"] == [1.4, 1.4] and plan["patch_size"] == [256, 256]
    assert 256 * 256 <= IMAGE_BUDGET_CPU and "coarsened 2 times" in plan["reasons"]["target_spacing"]
    assert plan["batch_size"] == 16
    radiographs = [VolumeFacts(lambda: np.full((300, 200), 900, np.uint16), (), {}, "DX", dims=2)]
    plan = plan_for(fingerprint_of(radiographs))
    assert plan["normalisation"] == "zscore" and plan["target_spacing"] == [1.0, 1.0] and plan["patch_size"] == [296, 200]


def test_modality_values_of_a_stored_slice_are_hounsfield_units():
    assert modality_values(np.array([[0, 1024, 1064]], np.int16), CT_META).tolist() == [[-1024.0, 0.0, 40.0]]


def test_one_small_image_does_not_shrink_the_patch_of_the_others():
    sizes = [(256, 256), (240, 250), (40, 40)]
    images = [VolumeFacts(lambda shape=shape: np.full(shape, 900, np.uint16), (1.0, 1.0), {}, "DX", dims=2) for shape in sizes]
    plan = plan_for(fingerprint_of(images))
    assert plan["patch_size"] == [240, 248] and "smaller ones padded" in plan["reasons"]["patch_size"]
    assert check_plan(plan) == {}


def radiograph(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A 16-bit radiograph-like image: air (dark), soft tissue, and a bright bone band."""
    image = np.full((64, 64), 300.0)
    image[8:56, 8:56] = 2000.0
    image[28:36, 8:56] = 3600.0
    return np.clip(scale * image + rng.normal(0, 30, image.shape), 0, 65535).astype(np.uint16)


def test_images_on_one_scale_get_one_z_score_over_all_their_values_not_only_the_bright_ones():
    """The "dataset" normalisation clips to the percentiles of every pixel: air and soft tissue keep their difference
    (clipped to the bright foreground's percentiles, both would become one value)."""
    rng = np.random.default_rng(0)
    images = [radiograph(rng) for _ in range(6)]
    plan = plan_for(fingerprint_of([VolumeFacts(lambda image=image: image, (), {}, "DX", dims=2) for image in images]))
    assert plan["normalisation"] == "dataset" and plan["clip"][0] < 400 and plan["clip"][1] > 3500, plan
    values = normalised(images[0][None].astype(np.float32), plan)
    assert values[0, 0, 0] < values[0, 20, 20] < values[0, 30, 30], "air < soft tissue < bone after normalising"
    differently_scaled = [radiograph(rng, scale) for scale in (0.5, 1.0, 2.0, 1.5)]
    plan = plan_for(fingerprint_of([VolumeFacts(lambda image=image: image, (), {}, "DX", dims=2) for image in differently_scaled]))
    assert plan["normalisation"] == "zscore", "images on different scales are z-scored one by one"


def test_monochrome1_images_are_turned_so_that_dense_is_bright_and_nan_pixels_are_left_out():
    assert intensities(np.array([[0, 100]], np.uint16), {"photometric": "MONOCHROME1"}).tolist() == [[0.0, -100.0]]
    with_nan = np.full((32, 32), 5.0, np.float32)
    with_nan[0, 0] = np.nan
    fingerprint = fingerprint_of([VolumeFacts(lambda: with_nan, (), {}, dims=2), VolumeFacts(lambda: with_nan * 2, (), {}, dims=2)])
    assert all(np.isfinite(v) for v in fingerprint["channels"][0]["all"].values())
    json.dumps(fingerprint, allow_nan=False)  # storable as JSON (PostgreSQL's jsonb takes no NaN)


def test_only_wide_integers_and_real_floats_count_as_real_intensities():
    assert not real_intensities({"uint8"}, True) and real_intensities({"uint8", "int16"}, False)
    assert real_intensities({"float32"}, True) and not real_intensities({"float32"}, False)  # a resized 8-bit JPEG
