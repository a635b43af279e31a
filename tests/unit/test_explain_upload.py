"""An uploaded file to explain (issue 22): read by the ingest's readers, checked against the model before any job
(workers/engine/uploaded.py), and made into the model's input exactly as a training sample of the same file would be.

The files are real ones we did not make where they exist: pydicom's CT and MR slices, nilearn's MNI T1 template.
Each refusal names what is wrong and what to do; a file that fits is kept as the ingest keeps a sample."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.real_data import mni_brain, nifti
from workers.engine.call import Refusal
from workers.engine.ingest.job import cache_pixels
from workers.engine.ingest.raster import read_raster
from workers.engine.uploaded import cached_input, planned_input, read_upload

ROOT = Path(__file__).resolve().parents[2]
GREY_2D = {"who": "run 1's model", "dims": [2], "channels": 1, "grey_to_colour": True, "modalities": [], "plan": None,
           "size": [64, 64]}
CT_VOLUMES = {"who": "run 2's model", "dims": [3], "channels": 1, "grey_to_colour": False, "modalities": ["CT"],
              "plan": {"target_spacing": [2.0, 2.0, 2.0], "dims": 3, "normalisation": "ct"}, "size": None}


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def refusal(tmp_path, name, data, expect) -> str:
    with pytest.raises(Refusal) as refused:
        read_upload(write(tmp_path, name, data), name, expect)
    return str(refused.value)


def test_a_real_ct_slice_fits_a_grayscale_2d_model_and_is_kept_as_the_ingest_keeps_it(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    facts = read_upload(path, "CT_small.dcm", {**GREY_2D, "modalities": ["CT"]}, folder=str(tmp_path / "kept"))
    assert facts["format"] == "DICOM" and facts["modality"] == "CT" and facts["kind"] == "image"
    assert facts["shape"] == [128, 128] and facts["channels"] == 1 and facts["spacing"] == pytest.approx([0.661468, 0.661468])
    assert "resized to 64 × 64" in facts["fits"]
    kept = np.load(tmp_path / "kept" / "pixels.npy")
    assert kept.shape == (128, 128) and kept.dtype == np.int16, "the stored values, as the ingest stores a sample's"
    assert facts["meta"]["rescale_intercept"] == -1024, "Hounsfield units through the rescale, as a sample's meta says"


def test_refusals_say_what_is_wrong_and_what_to_do(tmp_path):
    mr = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    words = refusal(tmp_path, "MR_small.dcm", mr, CT_VOLUMES)
    assert "one 2D image" in words and "takes volumes" in words and "NIfTI" in words, words
    words = refusal(tmp_path, "MR_small.dcm", mr, {**GREY_2D, "modalities": ["CT"]})
    assert "This DICOM file is MR" in words and "learnt on CT" in words and "trained on MR" in words, words
    colour = png(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    words = refusal(tmp_path, "colour.png", colour, GREY_2D)
    assert "3 channels (colour)" in words and "takes 1 channel (grayscale)" in words and "grayscale" in words, words
    assert "corrupt or truncated image" in refusal(tmp_path, "broken.png", colour[:60], GREY_2D)
    words = refusal(tmp_path, "notes.txt", b"this is not an image at all", GREY_2D)
    assert "could not be read" in words and "PNG, JPEG, DICOM or NIfTI" in words, words
    assert "empty" in refusal(tmp_path, "empty.png", b"", GREY_2D)
    tiny = refusal(tmp_path, "tiny.png", png(np.zeros((4, 5), np.uint8)), GREY_2D)
    assert "4 × 5 pixels" in tiny and "at least 8" in tiny, tiny
    t1, _, affine = mni_brain(step=3)
    volume = nifti(t1, affine)
    words = refusal(tmp_path, "t1.nii.gz", volume, GREY_2D)
    assert "is a volume" in words and "takes 2D images" in words, words
    words = refusal(tmp_path, "slice.png", png(t1[:, :, 30]), CT_VOLUMES)
    assert "one 2D image" in words


def test_a_volume_checked_at_the_plans_spacing(tmp_path):
    t1, _, affine = mni_brain(step=3)  # 66 x 78 x 63 at 3 mm
    path = write(tmp_path, "t1.nii.gz", nifti(t1, affine))
    mr_plan = {**CT_VOLUMES, "modalities": [], "plan": {"target_spacing": [3.0, 3.0, 3.0], "dims": 3, "normalisation": "zscore"}}
    facts = read_upload(path, "t1.nii.gz", mr_plan)
    assert facts["kind"] == "volume" and facts["format"] == "NIfTI" and facts["spacing"] == [3.0, 3.0, 3.0]
    assert "at the model's spacing (3 × 3 × 3 mm) it is" in facts["fits"]
    coarse = {**mr_plan, "plan": {**mr_plan["plan"], "target_spacing": [40.0, 40.0, 40.0]}}
    with pytest.raises(Refusal, match="too small"):
        read_upload(path, "t1.nii.gz", coarse)
    fine = {**mr_plan, "plan": {**mr_plan["plan"], "target_spacing": [0.5, 0.5, 0.5]}}
    with pytest.raises(Refusal, match="million voxels"):
        read_upload(path, "t1.nii.gz", fine)
    with pytest.raises(Refusal, match="display values, not Hounsfield units"):
        read_upload(write(tmp_path, "slice.png", png(t1[30])), "slice.png", {**CT_VOLUMES, "dims": [2], "plan": {
            "target_spacing": [1.0, 1.0], "dims": 2, "normalisation": "ct"}})


def test_an_upload_reaches_the_model_as_the_same_file_ingested_would(tmp_path):
    """The 8-bit path: the training cache's row of the same picture, scaled as CachedImages reads it."""
    picture = np.random.default_rng(1).integers(0, 255, (50, 70), dtype=np.uint8)
    data = png(picture)
    facts = read_upload(write(tmp_path, "x.png", data), "x.png", GREY_2D, folder=str(tmp_path / "kept"))
    kept = np.load(tmp_path / "kept" / "pixels.npy")
    row, _ = cache_pixels(read_raster(data, keep_original=False).pixels, {}, (1, 64, 64))
    assert np.array_equal(cached_input(kept, facts["meta"], (1, 64, 64)), row.astype(np.float32) / 255)
    colour_model = cached_input(kept, facts["meta"], (3, 64, 64))
    assert colour_model.shape == (3, 64, 64) and np.array_equal(colour_model[0], colour_model[2]), "grey repeated, as the cache does"


def test_a_planned_upload_is_resampled_and_normalised_as_the_store_and_the_evaluation_read_samples(tmp_path):
    from workers.engine.store import StoredVolume, VolumeRecords, build_store

    t1, _, affine = mni_brain(step=3)
    facts = read_upload(write(tmp_path, "t1.nii.gz", nifti(t1, affine)), "t1.nii.gz",
                        {**CT_VOLUMES, "modalities": [], "plan": None}, folder=str(tmp_path / "kept"))
    plan = {"target_spacing": [6.0, 6.0, 6.0], "dims": 3, "normalisation": "zscore", "patch_size": [16, 16, 16]}
    got = planned_input(tmp_path / "kept" / "pixels.npy", facts["spacing"], facts["meta"], plan, tmp_path / "kept" / "stored.npy")
    stored = build_store([StoredVolume("kept/pixels.npy", tuple(facts["spacing"]), "a" * 64)], tmp_path, tmp_path / "store",
                         plan["target_spacing"])
    expected = VolumeRecords(stored, [0], [facts["meta"]], plan)[0]["image"].numpy()
    assert got.shape == expected.shape == (1, 32, 39, 33) and np.array_equal(got, expected)
    assert abs(float(got.mean())) < 0.1 and 0.9 < float(got.std()) < 1.1, "z-scored by the whole volume's statistics"


def test_the_web_tier_asks_the_question_in_a_child_process(tmp_path):
    """What backend/core/engine.py runs: the answer is JSON, a refusal is {"error": ...} (the API's 400)."""
    arguments = {"path": get_testdata_file("MR_small.dcm"), "file_name": "MR_small.dcm", "expect": {**GREY_2D, "modalities": ["CT"]}}
    done = subprocess.run([sys.executable, "-m", "workers.engine.call", "read_upload"], input=json.dumps(arguments),
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "This DICOM file is MR" in json.loads(done.stdout)["error"]
