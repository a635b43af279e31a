"""A predicted label map as the files people take away (workers/engine/tasks/segmentation/mask_files.py), on real
data: a NIfTI mask of a NIfTI input, read by the ingest as uploads are (turned to RAS, radiological order), comes back
in the input's own orientation with its affine (nibabel's LAS anatomical.nii, an oblique one, the RAS MNI template);
a mask of a DICOM series has the affine its ImagePositionPatient/ImageOrientationPatient/PixelSpacing give; a PNG
keeps the label values; a DICOM SEG of real CT images reads back with highdicom: its segments, the series it
references, and per source image the very mask we wrote."""
import gzip
import io
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.real_data import anatomical, mni_brain, nifti
from workers.engine.ingest.dicom import describe, read_dicom, slice_location
from workers.engine.ingest.nifti import read_nifti
from workers.engine.tasks.segmentation.mask_files import (
    dicom_seg_bytes,
    label_png,
    label_preview_png,
    label_sizes,
    nifti_bytes,
)

SERIES = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def round_trip(image: nib.Nifti1Image, threshold: float) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The image uploaded (read by the ingest), labelled on the stored grid as a prediction is, the mask written;
    returns (the mask read back by nibabel, the labels the same threshold gives on the input's own array)."""
    decoded = read_nifti(nifti(np.asanyarray(image.dataobj), image.affine), "upload.nii.gz")
    stored_labels = (decoded.pixels > threshold).astype(np.uint8) + (decoded.pixels > 2 * threshold)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(stored_labels, decoded.meta, [])))
    own = np.asanyarray(image.dataobj)
    return mask, (own > threshold).astype(np.uint8) + (own > 2 * threshold)


def test_a_nifti_mask_of_an_las_input_has_its_affine_orientation_and_voxels():
    image = anatomical()
    assert nib.aff2axcodes(image.affine) == ("L", "A", "S")
    mask, expected = round_trip(image, float(np.percentile(image.get_fdata(), 60)))
    assert nib.aff2axcodes(mask.affine) == ("L", "A", "S")
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-5)
    assert mask.shape == image.shape and np.array_equal(np.asanyarray(mask.dataobj), expected)
    assert mask.header["qform_code"] == 1 and mask.header["sform_code"] == 1 and mask.get_data_dtype() == np.uint8
    assert mask.header.get_zooms() == image.header.get_zooms()


def test_a_nifti_mask_of_an_oblique_permuted_input_keeps_its_affine():
    t1, _, affine = mni_brain(step=6)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    permuted = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)  # axes stored as P, S, L: nothing like RAS
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ affine[:3, :3] @ permuted
    oblique[:3, 3] = [-40.5, 12.25, 7.0]
    image = nib.Nifti1Image(np.ascontiguousarray(t1.transpose(1, 2, 0)), oblique)
    mask, expected = round_trip(image, 60)
    np.testing.assert_allclose(mask.affine, oblique, atol=1e-5)
    assert nib.aff2axcodes(mask.affine) == nib.aff2axcodes(oblique) and np.array_equal(np.asanyarray(mask.dataobj), expected)
    assert expected.any() and (expected == 2).any()


def test_a_nifti_mask_keeps_the_input_qform_and_sform_codes():
    t1, _, affine = mni_brain(step=6)
    decoded = read_nifti(nifti(t1, affine), "t1.nii.gz")
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(
        nifti_bytes(np.ones(decoded.pixels.shape, np.uint8), decoded.meta, [], codes={"qform_code": 1, "sform_code": 4})))
    assert mask.header["qform_code"] == 1 and mask.header["sform_code"] == 4
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)


def series() -> list[pydicom.Dataset]:
    """pydicom's five real CT slices of one series, ordered as the ingest stacks them (along the slice normal)."""
    slices = [pydicom.dcmread(path) for path in SERIES.iterdir()]
    return sorted(slices, key=lambda ds: slice_location(describe(ds)))


def test_a_nifti_mask_of_a_dicom_series_lies_where_its_slices_do():
    slices = series()
    labels = np.zeros((len(slices), 16, 16), np.uint8)
    labels[1:4, 2:9, 5:12] = 1
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(labels, {}, [2.5, 0.5, 0.5], sources=slices)))
    assert mask.shape == (16, 16, 5), "columns, rows, slices, as dcm2niix writes them"
    assert np.array_equal(np.asanyarray(mask.dataobj), labels.transpose(2, 1, 0))
    lps_to_ras = np.diag([-1, -1, 1])
    for k, ds in enumerate(slices):
        row, column = 3, 7  # a pixel's place by PS3.3 C.7.6.2.1.1, against the mask's affine at (column, row, slice)
        spacing, orientation = [float(v) for v in ds.PixelSpacing], np.array([float(v) for v in ds.ImageOrientationPatient])
        place = (np.array([float(v) for v in ds.ImagePositionPatient]) + column * spacing[1] * orientation[:3]
                 + row * spacing[0] * orientation[3:])
        np.testing.assert_allclose(mask.affine @ [column, row, k, 1], [*(lps_to_ras @ place), 1], atol=1e-4)


def test_a_png_mask_keeps_its_label_values_and_the_preview_is_coloured():
    labels = np.zeros((20, 30), np.int64)
    labels[2:8, 3:9], labels[10:15, 10:25] = 1, 7
    back = np.asarray(Image.open(io.BytesIO(label_png(labels))))
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    labels[0, 0] = 300  # over 8 bits: a 16-bit PNG
    wide = Image.open(io.BytesIO(label_png(labels)))
    assert np.array_equal(np.asarray(wide).astype(np.int64), labels)
    preview = np.asarray(Image.open(io.BytesIO(label_preview_png(labels))))
    assert preview.shape == (20, 30, 3) and (preview[0, 5] == 0).all() and tuple(preview[4, 4]) != tuple(preview[12, 12])
    with pytest.raises(ValueError, match="2D image"):
        label_png(np.zeros((2, 4, 4), np.uint8))


def seg_of(data: bytes):
    return hd.seg.segread(io.BytesIO(data))


def test_a_dicom_seg_of_a_real_ct_series_reads_back_with_its_segments_series_and_masks():
    slices = series()
    labels = np.zeros((len(slices), 16, 16), np.uint8)
    labels[0:3, 2:9, 5:12] = 1
    labels[2:5, 10:14, 1:6] = 4  # the dataset's values: 1 liver, 4 lesion
    seg = seg_of(dicom_seg_bytes(labels, slices, [(1, "liver"), (4, "lesion")], algorithm="run 7"))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "lesion"]
    assert seg.StudyInstanceUID == slices[0].StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [ds.SOPInstanceUID for ds in slices]
    stacked = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in slices], combine_segments=True)
    numbers = np.select([labels == 1, labels == 4], [1, 2], 0)  # segment numbers 1.. in the order given
    assert np.array_equal(stacked, numbers)


def test_a_dicom_seg_of_one_ct_slice_and_of_its_header_without_pixels():
    path = get_testdata_file("CT_small.dcm")
    header = pydicom.dcmread(path, stop_before_pixels=True)  # what an upload keeps: the header, the pixels apart
    decoded = read_dicom(Path(path).read_bytes(), None)
    labels = (decoded.pixels > np.percentile(decoded.pixels, 70)).astype(np.uint8)
    seg = seg_of(dicom_seg_bytes(labels, [header], [(1, "bright")]))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == header.SeriesInstanceUID
    mask = seg.get_pixels_by_source_instance([header.SOPInstanceUID], combine_segments=True)
    assert mask.shape == (1, 128, 128) and np.array_equal(mask[0], labels)


def test_label_sizes_are_voxel_counts_times_the_voxel_volume():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:5, :5, :5] = 1           # 125 voxels of 2 x 2 x 2 mm = 1000 mm³ = 1 ml
    labels[5:, 5:, 5:6] = 2          # 25 voxels = 0.2 ml
    assert label_sizes(labels, [0, 1, 2, 3], [2.0, 2.0, 2.0]) == [
        {"value": 0, "voxels": 850, "ml": 6.8}, {"value": 1, "voxels": 125, "ml": 1.0},
        {"value": 2, "voxels": 25, "ml": 0.2}, {"value": 3, "voxels": 0, "ml": 0.0}]
    assert label_sizes(labels[0], [1], [0.5, 0.25]) == [{"value": 1, "voxels": 25, "mm2": 3.125}], "25 pixels of 0.125 mm²"
    assert label_sizes(labels, [1], []) == [{"value": 1, "voxels": 125}], "no spacing, no volume"


def test_a_volume_mask_without_its_dicom_headers_lies_where_the_ingest_kept_them_and_a_multiframe_one_by_its_groups():
    """The same five slices' geometry three ways: from each slice's header, from what the ingest keeps of a series
    (the first slice's position and orientation, the pixel and slice spacing), and from one enhanced multi-frame
    header that carries it in functional groups (per-frame positions, shared orientation and pixel measures)."""
    from pydicom.dataset import Dataset

    slices = series()
    labels = np.zeros((len(slices), 16, 16), np.uint8)
    labels[2, 3, 4] = 1

    def affine(**where):
        return nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(labels, **where))).affine

    by_headers = affine(meta={}, spacing=[2.5, 0.5, 0.5], sources=slices)
    kept = describe(slices[0])
    gap = abs(slice_location(describe(slices[1])) - slice_location(kept))
    np.testing.assert_allclose(affine(meta=kept, spacing=[gap, *map(float, slices[0].PixelSpacing)]), by_headers, atol=1e-4)

    frames = Dataset()
    frames.NumberOfFrames = len(slices)
    shared, orientation, measures = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = slices[0].ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = slices[0].PixelSpacing, slices[0].SliceThickness
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    frames.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for ds in slices:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = ds.ImagePositionPatient
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    frames.PerFrameFunctionalGroupsSequence = per_frame
    np.testing.assert_allclose(affine(meta={}, spacing=[], sources=[frames]), by_headers, atol=1e-6)
    assert not np.allclose(affine(meta={}, spacing=[2.5, 0.5, 0.5]), by_headers), "without geometry: the spacing alone"
