"""Masks go to the image their place names, in every layout people ship, and to no other.

Every test asserts which image received which mask by content (the stored mask equals the mask file
written beside that image), not by counts. The volumes are real: slabs of the MNI T1 template and its
tissue label map (nilearn), nibabel's anatomical MR and pydicom's CT slice (tests/real_data.py).
"""
import io
import random
import zipfile

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.medical import series
from tests.real_data import anatomical, ct_slice_path, mni_brain, nifti, slab
from workers.engine.ingest import ACCEPTED, REJECTED, IngestOptions, MemoryJournal, ingest_upload
from workers.engine.ingest.nifti import read_nifti
from workers.engine.ingest.pairing import image_keys, mask_keys, pair, role_of
from workers.engine.observer import SilentObserver


class Ingested:
    """An ingest of `files` (upload path -> bytes), as the tests look at it."""

    def __init__(self, tmp_path, files: dict[str, bytes], zips: dict[str, dict[str, bytes]] | None = None, shuffle=0):
        upload = tmp_path / "upload"
        upload.mkdir()
        names = list(files)
        random.Random(shuffle).shuffle(names)  # the order files come in must not matter
        for name in names:
            (upload / name).parent.mkdir(parents=True, exist_ok=True)
            (upload / name).write_bytes(files[name])
        for zip_name, members in (zips or {}).items():
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
            (upload / zip_name).write_bytes(buffer.getvalue())
        self.dest = tmp_path / "dataset"
        journal = MemoryJournal()
        self.summary = ingest_upload(upload, self.dest, IngestOptions(deidentifier=None), SilentObserver(), journal)
        self.outcomes = {r.path: r for r in journal.records.values()}
        self.samples = {s.source_path: s for s in self.summary.samples}

    def image(self, path) -> np.ndarray:
        return np.load(self.dest / self.samples[path].array)

    def mask(self, path) -> np.ndarray | None:
        mask = self.samples[path].mask
        return np.load(self.dest / mask) if mask else None

    def reason(self, path) -> str:
        outcome = self.outcomes[path]
        return f"{outcome.status}: {outcome.reason}" + (f"; {self.summary.notes[path]}" if path in self.summary.notes else "")


def decoded(data: bytes) -> np.ndarray:
    """A NIfTI file's voxels as the toolkit stores them (read_nifti is tested against nibabel elsewhere)."""
    return read_nifti(data, "file.nii.gz").pixels


def png(pixels: np.ndarray, palette: list[int] | None = None) -> bytes:
    picture = Image.fromarray(pixels)
    if palette is not None:
        picture = picture.convert("P")
        picture.putpalette(palette)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def brain_slabs(count: int, depth: int = 4, same_place: bool = True) -> list[tuple[bytes, bytes]]:
    """(T1, labels) of `count` different real slabs; with `same_place`, all with the first slab's affine,
    so that only where the files lie can tell them apart."""
    t1, labels, affine = mni_brain()
    pairs = []
    for k in range(count):
        first = 18 + 5 * k
        image, moved = slab(t1, affine, first, depth)
        mask, _ = slab(labels, affine, first, depth)
        place = slab(t1, affine, 18, depth)[1] if same_place else moved
        pairs.append((nifti(image, place), nifti(mask, place)))
    return pairs


# ------------------------------------------------------------------ the layouts


@pytest.mark.parametrize("mask_root", ["masks", "labels", "segmentations"])
def test_equal_names_in_subject_folders_pair_by_path_under_the_roots(tmp_path, mask_root):
    """The fault this was written for: six real slabs all named slab.nii.gz, one per subject folder."""
    slabs = brain_slabs(6)
    files = {}
    for k, (image, mask) in enumerate(slabs, start=1):
        files[f"images/sub-0{k}/slab.nii.gz"] = image
        files[f"{mask_root}/sub-0{k}/slab.nii.gz"] = mask
    ingested = Ingested(tmp_path, files, shuffle=len(mask_root))
    assert ingested.summary.task == "segmentation"
    for k, (image, mask) in enumerate(slabs, start=1):
        path = f"images/sub-0{k}/slab.nii.gz"
        assert np.array_equal(ingested.image(path), decoded(image))
        assert np.array_equal(ingested.mask(path), decoded(mask)), f"{path} got another subject's mask"
        assert ingested.reason(f"{mask_root}/sub-0{k}/slab.nii.gz") == f"accepted: ; mask of {path} (labels 0, 1, 2)"
    assert len({ingested.mask(p).tobytes() for p in ingested.samples}) == 6, "six different masks"


def test_decathlon_images_tr_and_labels_tr_pair_by_equal_names_and_splits_stay_apart(tmp_path):
    slabs = brain_slabs(4)
    files = {"Task04_Brain/dataset.json": b'{"labels": {"0": "background", "1": "grey", "2": "white"}}'}
    for k, (image, mask) in enumerate(slabs[:3], start=1):
        files[f"Task04_Brain/imagesTr/brain_00{k}.nii.gz"] = image
        files[f"Task04_Brain/labelsTr/brain_00{k}.nii.gz"] = mask
    files["Task04_Brain/imagesTs/brain_004.nii.gz"] = slabs[3][0]
    files["Task04_Brain/labelsTr/brain_004.nii.gz"] = slabs[3][1]  # a training label for a test image: not its mask
    ingested = Ingested(tmp_path, files)
    for k, (_, mask) in enumerate(slabs[:3], start=1):
        assert np.array_equal(ingested.mask(f"Task04_Brain/imagesTr/brain_00{k}.nii.gz"), decoded(mask))
    assert ingested.mask("Task04_Brain/imagesTs/brain_004.nii.gz") is None
    assert ingested.outcomes["Task04_Brain/labelsTr/brain_004.nii.gz"].status == REJECTED
    assert "an image 'task04_brain/brain_004.*' in imagesTr/" in ingested.reason("Task04_Brain/labelsTr/brain_004.nii.gz")
    assert ingested.outcomes["Task04_Brain/dataset.json"].status == ACCEPTED, "it names the labels (test_label_names.py)"
    assert ingested.summary.label_names == {"0": "background", "1": "grey", "2": "white"}
    assert {s.label for s in ingested.summary.samples} == {""}, "images/ and labels/ folders are not classes"


def test_nnunet_channels_become_one_sample_with_its_label(tmp_path):
    t1, labels, affine = mni_brain()
    _, white, _ = mni_brain_white()
    files, expected = {}, {}
    for k in range(3):
        first = 20 + 6 * k
        channels = [nifti(*slab(t1, affine, first, 4)), nifti(*slab(white, affine, first, 4))]
        label = nifti(*slab(labels, affine, first, 4))
        for channel, data in enumerate(channels):
            files[f"Dataset002_Brain/imagesTr/brain_{k:03d}_{channel:04d}.nii.gz"] = data
        files[f"Dataset002_Brain/labelsTr/brain_{k:03d}.nii.gz"] = label
        expected[f"Dataset002_Brain/imagesTr/brain_{k:03d}_0000.nii.gz"] = (channels, label)
    files["Dataset002_Brain/imagesTr/brain_009_0000.nii.gz"] = nifti(*slab(t1, affine, 50, 4))  # its _0001 is missing
    ingested = Ingested(tmp_path, files)
    for path, (channels, label) in expected.items():
        stored = ingested.image(path)
        assert stored.shape[0] == 2 and all(np.array_equal(stored[c], decoded(channels[c])) for c in range(2))
        assert np.array_equal(ingested.mask(path), decoded(label))
        assert ingested.samples[path].files == [path, path.replace("_0000", "_0001")]
    assert len(ingested.summary.samples) == 3
    lonely = ingested.outcomes["Dataset002_Brain/imagesTr/brain_009_0000.nii.gz"]
    assert lonely.status == REJECTED and "case 'brain_009' has 1 channels and the other cases beside it have 2" in lonely.reason


def mni_brain_white():
    """A second real channel on the same grid: the white-matter probability map."""
    import nibabel as nib

    from tests.real_data import MNI
    t1, _, affine = mni_brain()
    image = nib.load(MNI / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    return t1, np.asarray(image.dataobj)[::3, ::3, ::3].copy(), affine


@pytest.mark.parametrize("suffix", ["_seg", "_mask", "_label", "_labels"])
def test_a_mask_beside_its_image_with_a_suffix(tmp_path, suffix):
    t1, labels, _ = mni_brain()
    files = {}
    for k, site in enumerate(("site-a", "site-b", "site-c")):
        z = 25 + 7 * k
        files[f"{site}/case.png"] = png(t1[:, :, z])
        files[f"{site}/case{suffix}.png"] = png(labels[:, :, z])
    ingested = Ingested(tmp_path, files)
    for k, site in enumerate(("site-a", "site-b", "site-c")):
        z = 25 + 7 * k
        assert np.array_equal(ingested.image(f"{site}/case.png"), t1[:, :, z])
        assert np.array_equal(ingested.mask(f"{site}/case.png"), labels[:, :, z]), "0/1/2 pictures keep their labels"
        assert ingested.samples[f"{site}/case.png"].label == site
    assert len(ingested.summary.samples) == 3


def test_bids_derivatives_pair_by_entities(tmp_path):
    real = anatomical()
    t1 = np.asarray(real.dataobj)
    lesion = (t1 > np.percentile(t1, 90)).astype(np.uint8)
    slabs = brain_slabs(3, same_place=False)
    files = {
        "ds/sub-01/anat/sub-01_T1w.nii.gz": nifti(t1, real.affine),
        "ds/derivatives/lesions/sub-01/anat/sub-01_T1w_label-lesion_mask.nii.gz": nifti(lesion, real.affine),
        # ATLAS 2.0's naming: session, native space, label and desc entities
        "ds/sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz": slabs[0][0],
        "ds/derivatives/atlas/sub-02/ses-1/anat/sub-02_ses-1_space-orig_label-L_desc-T1lesion_mask.nii.gz": slabs[0][1],
        # two images of one subject and a mask that does not say which
        "ds/sub-03/anat/sub-03_T1w.nii.gz": slabs[1][0],
        "ds/sub-03/anat/sub-03_FLAIR.nii.gz": slabs[2][0],
        "ds/derivatives/lesions/sub-03/anat/sub-03_label-lesion_mask.nii.gz": slabs[1][1],
    }
    ingested = Ingested(tmp_path, files)
    assert np.array_equal(ingested.mask("ds/sub-01/anat/sub-01_T1w.nii.gz"), decoded(files[
        "ds/derivatives/lesions/sub-01/anat/sub-01_T1w_label-lesion_mask.nii.gz"]))
    assert np.array_equal(ingested.mask("ds/sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz"), decoded(slabs[0][1]))
    assert ingested.mask("ds/sub-03/anat/sub-03_T1w.nii.gz") is None
    assert ingested.mask("ds/sub-03/anat/sub-03_FLAIR.nii.gz") is None
    refused = ingested.reason("ds/derivatives/lesions/sub-03/anat/sub-03_label-lesion_mask.nii.gz")
    assert refused.startswith("rejected: 2 images could take this mask")
    assert "ds/sub-03/anat/sub-03_FLAIR.nii.gz" in refused and "ds/sub-03/anat/sub-03_T1w.nii.gz" in refused
    assert {s.label for s in ingested.summary.samples} == {""}, "subject folders are not classes"


def test_masks_pair_inside_their_own_archive(tmp_path):
    t1, labels, _ = mni_brain()
    zips = {f"hospital-{h}.zip": {"images/a.png": png(t1[:, :, 20 + 9 * i]), "masks/a.png": png(labels[:, :, 20 + 9 * i])}
            for i, h in enumerate("ab")}
    ingested = Ingested(tmp_path, {}, zips=zips)
    for i, h in enumerate("ab"):
        assert np.array_equal(ingested.mask(f"hospital-{h}.zip/images/a.png"), labels[:, :, 20 + 9 * i])


# ------------------------------------------------------------ nothing ambiguous


def test_a_mask_two_images_could_take_and_two_masks_for_one_image_are_refused(tmp_path):
    t1, labels, _ = mni_brain()
    picture, mask = png(t1[:, :, 30]), png(labels[:, :, 30])
    files = {"images/a.png": picture, "a.png": png(t1[:, :, 31]), "masks/a.png": mask,
             "images/b.png": png(t1[:, :, 32]), "masks/b.png": mask, "masks/b_mask.png": png(labels[:, :, 33]),
             "masks/c.png": mask}
    ingested = Ingested(tmp_path, files)
    assert all(ingested.mask(path) is None for path in ("images/a.png", "a.png", "images/b.png"))
    assert ingested.reason("masks/a.png") == ("rejected: 2 images could take this mask (a.png, images/a.png); "
                                              "which one is meant is unclear, so none does")
    for name in ("masks/b.png", "masks/b_mask.png"):
        assert ingested.reason(name) == ("rejected: one of 2 masks for images/b.png (masks/b.png, masks/b_mask.png); "
                                         "which one is meant is unclear, so none is used")
    assert ingested.reason("masks/c.png").startswith("rejected: no image at the place this mask names (an image 'c.*'")
    assert ingested.summary.task == "classification"
    assert not (ingested.dest / ingested.outcomes["masks/c.png"].detail.get("array", "x")).exists()


# ------------------------------------------------------------------- geometry


def test_geometry_is_checked_not_only_the_shape(tmp_path):
    real = anatomical()
    t1 = np.asarray(real.dataobj).astype(np.int16)
    brain = (t1 > np.percentile(t1, 60)).astype(np.uint8)
    shifted, zoomed = real.affine.copy(), real.affine.copy()
    shifted[:3, 3] += shifted[:3, :3] @ [0, 0, 3]  # three slices further up
    zoomed[2, 2] = 2.5
    flipped = real.affine @ np.array([[-1, 0, 0, t1.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    files = {
        # (each image differs by one grey level: equal files would be one sample, the others duplicates)
        "images/same.nii": nifti(t1, real.affine), "masks/same.nii": nifti(brain[::-1], flipped),  # RAS on disk, same voxels
        "images/up.nii": nifti(t1 + 1, real.affine), "masks/up.nii": nifti(brain, shifted),
        "images/thick.nii": nifti(t1 + 2, real.affine), "masks/thick.nii": nifti(brain, zoomed),
    }
    ingested = Ingested(tmp_path, files)
    assert np.array_equal(ingested.mask("images/same.nii"), decoded(nifti(brain, real.affine))), \
        "the same voxels stored in another orientation are the same mask"
    assert ingested.reason("masks/up.nii") == (
        "rejected: does not fit images/up.nii, the image its place names: it lies elsewhere in the patient than its "
        "image: origin 6 mm away (32 x 40 x -10 mm against 32 x 40 x -16 mm); not used")
    assert "voxel spacing 2.5 x 2 x 2 mm against 2 x 2 x 2 mm" in ingested.reason("masks/thick.nii")
    assert ingested.mask("images/up.nii") is None and ingested.mask("images/thick.nii") is None


def test_a_real_ct_slice_and_a_dicom_mask_on_its_grid(tmp_path):
    ct = pydicom.dcmread(ct_slice_path())
    hounsfield = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    labels = np.where(hounsfield > 300, 2, np.where(hounsfield > -300, 1, 0)).astype(np.uint16)

    def dicom_mask(position_shift=0.0) -> bytes:
        mask = pydicom.dcmread(ct_slice_path())
        mask.PixelData, mask.BitsAllocated, mask.BitsStored, mask.HighBit = labels.tobytes(), 16, 16, 15
        mask.PixelRepresentation, mask.RescaleSlope, mask.RescaleIntercept = 0, 1, 0
        mask.ImagePositionPatient = [float(v) + position_shift for v in mask.ImagePositionPatient]
        buffer = io.BytesIO()
        mask.save_as(buffer)
        return buffer.getvalue()

    other = pydicom.dcmread(ct_slice_path())
    other.SeriesInstanceUID = other.SOPInstanceUID = pydicom.uid.generate_uid()  # another acquisition of that slice
    buffer = io.BytesIO()
    other.save_as(buffer)
    files = {"images/ct.dcm": open(ct_slice_path(), "rb").read(), "masks/ct.dcm": dicom_mask(),
             "images/other/ct.dcm": buffer.getvalue(), "masks/other/ct.dcm": dicom_mask(5.0)}
    ingested = Ingested(tmp_path, files)
    assert np.array_equal(ingested.mask("images/ct.dcm"), labels), "a DICOM mask keeps its 0/1/2"
    assert sorted(ingested.samples["images/ct.dcm"].meta["mask_values"]) == [0, 1, 2]
    assert "origin 8.66 mm away" in ingested.reason("masks/other/ct.dcm")


def test_a_nifti_mask_of_a_dicom_series_is_compared_in_one_frame(tmp_path):
    """DICOM positions are LPS, NIfTI's RAS: a mask exported from the series by a NIfTI tool lies on it."""
    files = {f"images/case/{name}": data for name, data in series(5).items()}
    depth, rows, columns, pixel, thickness = 5, 32, 32, 0.7, 2.5
    labels = np.zeros((depth, rows, columns), np.uint8)
    labels[1:4, 5:12, 20:30] = 1  # (slice, row, column) of the DICOM volume
    # canonical RAS voxel (i, j, k) = stored (d=k, h=rows-1-j, w=columns-1-i); world = (-w*0.7, -h*0.7, 2.5*d)
    affine = np.diag([pixel, pixel, thickness, 1.0])
    affine[:3, 3] = [-(columns - 1) * pixel, -(rows - 1) * pixel, 0]
    canonical = labels[:, ::-1, ::-1].transpose(2, 1, 0)
    naive = np.diag([pixel, pixel, thickness, 1.0])  # the DICOM position taken for RAS
    files["masks/case.nii.gz"] = nifti(np.ascontiguousarray(canonical), affine)
    files["images/second/slice.dcm"] = series(1)["slice_000.dcm"]
    files["masks/second.nii.gz"] = nifti(np.zeros((32, 32, 1), np.uint8), naive)
    ingested = Ingested(tmp_path, files)
    assert np.array_equal(ingested.mask("images/case"), labels)
    assert ingested.outcomes["masks/second.nii.gz"].status == REJECTED


# ---------------------------------------------------------------- label values


def test_label_values_survive_and_only_pictures_are_read_as_pictures(tmp_path):
    t1, labels, affine = mni_brain()
    image, mask = slab(t1, affine, 30, 3)[0], slab(labels, affine, 30, 3)[0]
    grey = t1[:, :, 30]
    picture_mask = (labels[:, :, 30] > 0).astype(np.uint8) * 255
    colours = np.array([[0, 0, 0], [0, 255, 0], [255, 0, 0]], np.uint8)[labels[:, :, 30]]
    palette = [0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9)
    files = {
        "images/a.nii.gz": nifti(image, affine), "masks/a.nii.gz": nifti(mask, affine),
        "images/b.nii.gz": nifti(image // 2, affine), "masks/b.nii.gz": nifti(mask * 127, affine),
        "images/c.png": png(grey), "masks/c.png": png(picture_mask),
        "images/d.png": png(grey // 2), "masks/d.png": png(labels[:, :, 30], palette=palette),
        "images/e.png": png(grey // 3), "masks/e.png": png(colours),
        "images/f.nii.gz": nifti(image // 3, affine), "masks/f.nii.gz": nifti(mask.astype(np.float32) * 0.5, affine),
    }
    ingested = Ingested(tmp_path, files)
    assert np.array_equal(ingested.mask("images/a.nii.gz"), decoded(files["masks/a.nii.gz"])), "0/1/2 stays 0/1/2"
    assert sorted(np.unique(ingested.mask("images/b.nii.gz"))) == [0, 127, 254], "a NIfTI's values are its labels"
    assert np.array_equal(ingested.mask("images/c.png"), picture_mask // 255), "a 0/255 picture is 0/1"
    assert np.array_equal(ingested.mask("images/d.png"), labels[:, :, 30]), "a paletted PNG's indices are its labels"
    assert np.array_equal(ingested.mask("images/e.png"), labels[:, :, 30]), "black, then each colour in order"
    assert "colours read as labels (0: rgb(0, 0, 0), 1: rgb(0, 255, 0), 2: rgb(255, 0, 0))" in ingested.reason("masks/e.png")
    assert ingested.reason("masks/f.nii.gz") == ("rejected: the mask holds fractional values (a probability map?); "
                                                 "a mask holds whole label numbers, 0 for background")
    assert ingested.summary.samples and {tuple(s.meta.get("mask_values", [])) for s in ingested.summary.samples} >= {(0, 1, 2)}


def test_the_summary_counts_masked_samples_and_their_labels(tmp_path):
    from workers.engine.samples import summarise

    slabs = brain_slabs(3)
    files = {f"images/s{k}.nii.gz": image for k, (image, _) in enumerate(slabs)}
    files.update({f"masks/s{k}.nii.gz": mask for k, (_, mask) in enumerate(slabs[:2])})
    summary = summarise(Ingested(tmp_path, files).summary.samples)
    assert (summary["task"], summary["masked_count"], summary["sample_count"], summary["mask_values"]) == \
        ("segmentation", 2, 3, [0, 1, 2])


# --------------------------------------------------------------- the rules alone


@pytest.mark.parametrize(("place", "role"), [
    ("images/a.png", "image"), ("masks/a.png", "mask"), ("x/labelsTr/a.nii.gz", "mask"), ("a_seg.png", "mask"),
    ("class-1/a_Mask.PNG", "mask"), ("images/a_mask.png", "mask"), ("sub-01/anat/sub-01_T1w.nii.gz", "image"),
    ("derivatives/x/sub-01/anat/sub-01_dseg.nii.gz", "mask"), ("derivatives/x/sub-01/anat/sub-01_probseg.nii.gz", "image"),
    ("lesion/segment.png", "image"), ("scan_0001.png", "image"),
])
def test_roles_by_place(place, role):
    assert role_of(place) == role


def test_keys_name_the_same_place_for_an_image_and_its_mask():
    assert set(mask_keys("study/masks/sub-01/slab_mask.nii.gz")) & set(image_keys("study/images/sub-01/slab.nii.gz"))
    assert not set(mask_keys("study/masks/sub-01/slab.nii.gz")) & set(image_keys("study/images/sub-02/slab.nii.gz"))
    assert not set(mask_keys("labelsTr/a.nii.gz")) & set(image_keys("imagesTs/a.nii.gz"))
    assert set(mask_keys("labelsTr/a.nii.gz")) & set(image_keys("imagesTr/a_0000.nii.gz", case="a"))


def test_accepted_outcomes_stay_accepted_for_images_without_masks(tmp_path):
    slabs = brain_slabs(2)
    ingested = Ingested(tmp_path, {"images/a.nii.gz": slabs[0][0], "images/b.nii.gz": slabs[1][0], "masks/a.nii.gz": slabs[0][1]})
    assert ingested.outcomes["images/b.nii.gz"].status == ACCEPTED and ingested.mask("images/b.nii.gz") is None
    assert ingested.summary.notes["images/a.nii.gz"] == "its mask: masks/a.nii.gz"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["images/{s}/a.png", "{s}/a.png", "masks/{s}/a.png", "masks/{s}/a_mask.png",
                                 "{s}/a_seg.png", "labelsTr/{s}.nii.gz", "imagesTr/{s}_0000.nii.gz"]), min_size=1, max_size=12),
       st.lists(st.sampled_from(["sub-01", "sub-02", "x"]), min_size=1, max_size=12), st.randoms())
def test_pairing_never_depends_on_order(templates, subjects, shuffler):
    """Whatever the layout, the same files give the same pairs and refusals in any order; no image gets two masks."""
    places = sorted({template.format(s=subject) for template, subject in zip(templates, subjects)})
    images = {p: image_keys(p) for p in places if role_of(p) == "image"}
    masks = {p: mask_keys(p) for p in places if role_of(p) == "mask"}
    names = {p: p for p in places}

    def paired(order):
        return pair({p: images[p] for p in order if p in images}, {p: masks[p] for p in order if p in masks},
                    names, names, {})

    first = paired(places)
    shuffled = list(places)
    shuffler.shuffle(shuffled)
    again = paired(shuffled)
    assert (first.given, first.refused) == (again.given, again.refused)
    assert set(first.given) | set(first.refused) == set(masks), "every mask is either given or refused"
    assert len(set(first.given.values())) == len(first.given), "no image has two masks"


def test_a_binary_nifti_mask_saved_as_0_255_is_the_same_as_0_1():
    """Issue 23: binary masks stored as 0/255 or 0/1 are the same thing, pictures or not; a label map that also holds
    other values keeps them."""
    from workers.engine.ingest.masks import make_labels

    volume = np.zeros((4, 6, 6), np.uint8)
    volume[1:3, 2:4, 2:4] = 255
    labels, values, note = make_labels(volume, "NIfTI", "volume")
    assert values == [0, 1] and np.array_equal(labels, volume // 255) and note == "0/255 mask read as 0 (background) and 1"
    volume[0, 0, 0] = 2
    labels, values, _ = make_labels(volume, "NIfTI", "volume")
    assert values == [0, 2, 255] and labels.max() == 255


def test_a_real_instance_mask_of_nuclei_is_read_as_one_label_and_a_label_map_of_touching_structures_is_not(tmp_path):
    """StarDist's real nuclei image and its hand-drawn mask (data we did not make): 125 nuclei each numbered on its own
    would make a 126-label segmentation; they are one label, the note says how many objects. Forty touching stripes
    numbered 1 to 40 are a label map and keep their labels."""
    from tests.real_data import stardist_nuclei
    from workers.engine.ingest.masks import make_labels

    image, mask = stardist_nuclei()
    ingested = Ingested(tmp_path, {"images/nuclei.tif": image.read_bytes(), "masks/nuclei.tif": mask.read_bytes()})
    assert ingested.outcomes["masks/nuclei.tif"].status == ACCEPTED
    assert ingested.summary.samples[0].meta["mask_values"] == [0, 1]
    assert set(np.unique(ingested.mask("images/nuclei.tif")).tolist()) == {0, 1}
    assert "an instance mask (125 objects, each its own number) read as one label" in ingested.reason("masks/nuclei.tif")

    stripes = np.repeat(np.arange(1, 41, dtype=np.uint8), 3)[None, :].repeat(20, axis=0)
    labels, values, note = make_labels(stripes, "PNG", "image")
    assert values == list(range(1, 41)) and np.array_equal(labels, stripes) and "instance" not in note
