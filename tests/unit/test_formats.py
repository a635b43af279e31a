"""Every format the issue names comes in with the right pixels, order and geometry; the rest gets a reason."""
import gzip
import io
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet
from pydicom.pixels.decoders.base import get_decoder
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tests.medical import dicom_bytes, nifti_bytes, series
from workers.engine.display import to_uint8
from workers.engine.ingest import (
    ACCEPTED,
    QUARANTINED,
    REJECTED,
    SKIPPED,
    IngestLimits,
    IngestOptions,
    MemoryJournal,
    dicom,
    ingest_upload,
)
from workers.engine.ingest.deid import Deidentifier
from workers.engine.ingest.dicom import describe, read_dicom
from workers.engine.observer import SilentObserver


def ingest_files(tmp_path, files: dict[str, bytes], deidentify=True, labels_from="folders"):
    upload = tmp_path / "upload"
    for name, data in files.items():
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / name).write_bytes(data)
    journal = MemoryJournal()
    options = IngestOptions(deidentifier=Deidentifier(b"k" * 32) if deidentify else None, labels_from=labels_from)
    summary = ingest_upload(upload, tmp_path / "dataset", options, SilentObserver(), journal)
    outcomes = {r.path: r for r in journal.records.values()}
    return summary, outcomes


def sample_file(name: str) -> bytes:
    return open(get_testdata_file(name), "rb").read()


def reference_pixels(name: str) -> np.ndarray:
    return pydicom.dcmread(get_testdata_file(name)).pixel_array


@pytest.mark.parametrize("name, syntax", [
    ("MR_small.dcm", "Explicit VR Little Endian"),
    ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
    ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
    ("JPGExtended.dcm", "JPEG Extended (Process 2 and 4)"),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1)"),
    ("JPEG2000.dcm", "JPEG 2000 Image Compression"),
    ("examples_palette.dcm", "Explicit VR Little Endian"),
])
def test_dicom_transfer_syntaxes_decode_to_the_reference_pixels(tmp_path, name, syntax):
    assert pydicom.dcmread(get_testdata_file(name)).file_meta.TransferSyntaxUID.name == syntax
    summary, outcomes = ingest_files(tmp_path, {f"case/{name}": sample_file(name)})
    assert outcomes[f"case/{name}"].status == ACCEPTED, outcomes[f"case/{name}"].reason
    stored = np.load(tmp_path / "dataset" / summary.samples[0].array)
    reference = reference_pixels(name)
    if name == "examples_palette.dcm":
        assert stored.shape == (*reference.shape, 3) and stored.dtype == np.uint8, "palette colour is applied"
    else:
        assert np.array_equal(stored, reference)
        assert stored.dtype.byteorder in ("=", "|", "<"), "big-endian files are stored in native order"


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
                                  "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm", "rtdose.dcm"])
def test_the_kept_header_is_what_dcmwrite_writes_for_the_de_identified_dataset_less_its_pixels(name):
    data, deidentifier = sample_file(name), Deidentifier(b"k" * 32)
    kept = read_dicom(data, deidentifier).original
    reference = pydicom.dcmread(io.BytesIO(data), force=True)
    deidentifier.deidentify(reference)
    for tag in [tag for tag in reference.keys() if tag >> 16 in (0x7FE0, 0xFFFC)]:
        del reference[tag]
    written = io.BytesIO()
    reference.save_as(written, enforce_file_format=False)
    assert kept == written.getvalue(), "spliced bytes differ from dcmwrite's"
    header = pydicom.dcmread(io.BytesIO(kept))
    assert "PixelData" not in header and header.PatientIdentityRemoved == "YES"
    assert header.file_meta.TransferSyntaxUID == reference.file_meta.TransferSyntaxUID


def test_numbers_are_read_from_raw_decimal_strings_leniently():
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((4, 4), np.int16))), force=True)
    meta = describe(ds)
    assert meta["pixel_spacing"] == [0.7, 0.7] and meta["rescale_intercept"] == -1024.0 and meta["instance"] == 1
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((4, 4), np.int16))), force=True)
    raw = ds.get_item(0x00280030)
    ds[0x00280030] = raw._replace(value=b"0.5\\abc ", length=8)  # one unreadable number: the spacing is unknown
    ds[0x00281053] = ds.get_item(0x00281053)._replace(value=b" 2 ", length=4)  # padded either side
    meta = describe(ds)
    assert "pixel_spacing" not in meta and meta["rescale_slope"] == 2.0


def test_every_compressed_transfer_syntax_has_an_installed_decoder():
    # JPEG lossless (process 14) has no small sample file to decode here, so check the plugin is there.
    for syntax in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
                   JPEG2000Lossless, JPEG2000, RLELossless, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                   ImplicitVRLittleEndian):
        assert get_decoder(syntax).is_available, f"no decoder for {syntax.name}"


def test_multi_frame_signed_8_and_16_bit_and_rgb(tmp_path):
    files = {
        "a/rtdose.dcm": sample_file("rtdose.dcm"),                   # multi-frame, 32-bit
        "a/rgb_2frame.dcm": sample_file("SC_rgb_rle_2frame.dcm"),    # multi-frame colour
        "a/ct.dcm": sample_file("CT_small.dcm"),                     # 16-bit signed
        "a/us.dcm": sample_file("examples_rgb_color.dcm"),           # 8-bit RGB
        "a/eight.dcm": dicom_bytes(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64) % 200),
    }
    summary, outcomes = ingest_files(tmp_path, files)
    assert all(o.status == ACCEPTED for o in outcomes.values()), {p: o.reason for p, o in outcomes.items()}
    kinds = {s.source_path: (s.kind, tuple(s.shape), s.dtype) for s in summary.samples}
    assert kinds["a/rtdose.dcm"] == ("volume", (15, 10, 10), "uint32")
    assert kinds["a/rgb_2frame.dcm"] == ("volume", (2, 100, 100, 3), "uint8")
    assert kinds["a/ct.dcm"] == ("image", (128, 128), "int16")
    assert kinds["a/us.dcm"][:2] == ("image", (240, 320, 3))
    assert kinds["a/eight.dcm"] == ("image", (64, 64), "uint8")


def test_files_without_pixel_data_are_recognised_and_reported(tmp_path):
    files = {"x/report.dcm": sample_file("reportsi.dcm"), "x/struct.dcm": sample_file("rtstruct.dcm"),
             "x/image.dcm": dicom_bytes()}
    _, outcomes = ingest_files(tmp_path, files)
    assert outcomes["x/report.dcm"].status == SKIPPED and "structured report with no pixel data" in outcomes["x/report.dcm"].reason
    assert outcomes["x/struct.dcm"].status == SKIPPED and "RT structure set" in outcomes["x/struct.dcm"].reason
    assert outcomes["x/image.dcm"].status == ACCEPTED


def test_corrupt_and_truncated_dicom_get_a_reason(tmp_path):
    good = dicom_bytes()
    files = {"x/truncated.dcm": good[: len(good) - 500], "x/garbage.dcm": b"\x00" * 128 + b"DICM" + b"\x13" * 50,
             "x/ok.dcm": good, "x/pixels_short.dcm": sample_file("MR_truncated.dcm")}
    _, outcomes = ingest_files(tmp_path, files)
    for name in ("x/truncated.dcm", "x/garbage.dcm", "x/pixels_short.dcm"):
        assert outcomes[name].status == REJECTED and "corrupt or truncated" in outcomes[name].reason, outcomes[name].reason
    assert outcomes["x/ok.dcm"].status == ACCEPTED


def test_a_series_becomes_one_volume_ordered_by_position_not_by_file_name(tmp_path):
    # File names run against the slice order: z = 0 is called slice_004, z = 10 slice_000.
    names = [f"slice_{k:03d}.dcm" for k in (4, 2, 0, 3, 1)]
    files = {f"normal/p1/series/{n}": data for n, data in series(5, names=names).items()}
    files.update({f"tumour/p2/series/{n}": data for n, data in series(2, patient_id="P2").items()})
    summary, outcomes = ingest_files(tmp_path, files)
    assert len(summary.samples) == 2
    volume_spec = summary.samples[0]
    assert volume_spec.kind == "volume" and volume_spec.label == "normal"
    volume = np.load(tmp_path / "dataset" / volume_spec.array)
    assert volume.shape == (5, 32, 32)
    assert [int(volume[k, 0, 0]) for k in range(5)] == [0, 100, 200, 300, 400]
    assert volume_spec.spacing == [2.5, 0.7, 0.7]
    assert "ordered by position along the slice normal" in summary.notes["normal/p1/series/slice_004.dcm"]


def test_without_positions_a_series_is_ordered_by_instance_number(tmp_path):
    files = {}
    for name, data in series(4, names=["d.dcm", "c.dcm", "b.dcm", "a.dcm"]).items():
        ds = pydicom.dcmread(io.BytesIO(data))
        del ds.ImagePositionPatient
        buffer = io.BytesIO()
        ds.save_as(buffer)
        files[f"s/{name}"] = buffer.getvalue()
    summary, _ = ingest_files(tmp_path, files, labels_from="none")
    volume = np.load(tmp_path / "dataset" / summary.samples[0].array)
    assert [int(volume[k, 0, 0]) for k in range(4)] == [0, 100, 200, 300]
    assert summary.samples[0].meta["ordered_by"] == "InstanceNumber"


def test_burned_in_annotation_is_quarantined(tmp_path):
    files = {"x/burned.dcm": dicom_bytes(burned_in="YES"), "x/clean.dcm": dicom_bytes(burned_in="NO", patient_id="B")}
    summary, outcomes = ingest_files(tmp_path, files)
    assert outcomes["x/burned.dcm"].status == QUARANTINED and "BurnedInAnnotation" in outcomes["x/burned.dcm"].reason
    assert [s.source_path for s in summary.samples] == ["x/clean.dcm"]
    assert not list((tmp_path / "dataset").rglob("*burned*"))


def test_rescale_and_window_are_read_and_used_for_display(tmp_path):
    stored = np.array([[0, 1024, 1064, 1264, 4000]], dtype=np.int16)  # HU: -1024, 0, 40, 240, 2976
    summary, _ = ingest_files(tmp_path, {"x/ct.dcm": dicom_bytes(stored, window=(40.0, 400.0))})
    meta = summary.samples[0].meta
    assert (meta["rescale_slope"], meta["rescale_intercept"], meta["window_center"], meta["window_width"]) == (1.0, -1024.0, 40.0, 400.0)
    shown = to_uint8(np.load(tmp_path / "dataset" / summary.samples[0].array), meta)
    # Window 40 +- 200 HU: air black, water a bit under mid-grey, 240 HU and bone white.
    assert shown.tolist() == [[0, 102, 127, 255, 255]]


def test_nifti_3d_4d_gz_and_nifti2_with_spacing_and_orientation(tmp_path):
    volume = np.arange(8 * 6 * 4, dtype=np.int16).reshape(8, 6, 4)   # x, y, z
    files = {
        "v/plain.nii": nifti_bytes(volume, zooms=(0.5, 0.8, 3.0)),
        "v/packed.nii.gz": nifti_bytes(volume + 1, compressed=True),
        "v/two.nii": nifti_bytes(volume + 2, version=2),
        "v/four.nii.gz": nifti_bytes(np.stack([volume + 3, volume + 4], axis=-1), compressed=True),
    }
    summary, outcomes = ingest_files(tmp_path, files)
    assert all(o.status == ACCEPTED for o in outcomes.values()), {p: o.reason for p, o in outcomes.items()}
    samples = {s.source_path: s for s in summary.samples}
    plain = samples["v/plain.nii"]
    assert plain.kind == "volume" and plain.shape == [4, 6, 8], "stored as (slices, rows, columns)"
    assert plain.spacing == [3.0, 0.8, 0.5] and plain.meta["orientation_codes"] == "RAS"
    stored = np.load(tmp_path / "dataset" / plain.array)
    assert stored[0, 0, 0] == volume[7, 5, 0], "radiological view: patient right on the left, anterior up"
    assert samples["v/two.nii"].meta["nifti_version"] == 2
    assert samples["v/four.nii.gz"].shape == [2, 4, 6, 8]


@pytest.mark.parametrize("deidentify", [True, False])
def test_a_bids_subject_folder_names_the_patient_of_nifti_files(tmp_path, deidentify):
    volume = np.zeros((4, 4, 3), np.int16)
    files = {"study/sub-07/anat/sub-07_T1w.nii.gz": nifti_bytes(volume, compressed=True),
             "study/sub-07/dwi/sub-07_dwi.nii.gz": nifti_bytes(volume + 1, compressed=True),
             "study/other/scan.nii": nifti_bytes(volume + 2)}
    summary, _ = ingest_files(tmp_path, files, deidentify=deidentify, labels_from="none")
    patients = {s.source_path: s.patient for s in summary.samples}
    expected = Deidentifier(b"k" * 32).pseudonym_for_value("patient", "sub-07") if deidentify else "sub-07"
    assert patients["study/sub-07/anat/sub-07_T1w.nii.gz"] == patients["study/sub-07/dwi/sub-07_dwi.nii.gz"] == expected
    assert patients["study/other/scan.nii"] == ""


def test_nifti_with_an_impossible_header_or_truncated_data_is_rejected(tmp_path):
    good = nifti_bytes(np.zeros((4, 4, 4), np.float32))
    negative = bytearray(good)
    negative[42:44] = (-3).to_bytes(2, "little", signed=True)   # dim[1] < 0
    wrong_size = bytearray(good)
    wrong_size[0:4] = (123).to_bytes(4, "little")
    files = {"v/negative.nii": bytes(negative), "v/truncated.nii": good[:-100], "v/sizeof.nii": bytes(wrong_size), "v/ok.nii": good}
    _, outcomes = ingest_files(tmp_path, files)
    assert "impossible" in outcomes["v/negative.nii"].reason
    assert "truncated" in outcomes["v/truncated.nii"].reason
    assert "sizeof_hdr" in outcomes["v/sizeof.nii"].reason
    assert outcomes["v/ok.nii"].status == ACCEPTED


def written(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def raster(array, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_raster_formats_keep_their_depth(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    colour = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    wide = rng.integers(0, 65535, (20, 30), dtype=np.uint16)
    files = {
        "r/a.png": raster(grey, "PNG"), "r/b.pgm": raster(grey, "PPM"), "r/c.ppm": raster(colour, "PPM"),
        "r/d.bmp": raster(colour, "BMP"), "r/e.tif": raster(wide, "TIFF"), "r/f.png": raster(wide, "PNG"),
        "r/g.jpg": raster(colour, "JPEG", quality=95), "r/h.tif": raster(colour, "TIFF"),
    }
    summary, outcomes = ingest_files(tmp_path, files, deidentify=False)
    assert all(o.status == ACCEPTED for o in outcomes.values()), {p: o.reason for p, o in outcomes.items()}
    stored = {s.source_path: np.load(tmp_path / "dataset" / s.array) for s in summary.samples}
    assert np.array_equal(stored["r/a.png"], grey) and np.array_equal(stored["r/b.pgm"], grey)
    assert np.array_equal(stored["r/c.ppm"], colour) and np.array_equal(stored["r/d.bmp"], colour)
    assert np.array_equal(stored["r/e.tif"], wide) and np.array_equal(stored["r/f.png"], wide)
    assert stored["r/g.jpg"].shape == (20, 30, 3) and np.array_equal(stored["r/h.tif"], colour)


def test_masks_are_paired_with_their_images_for_segmentation(tmp_path):
    image = np.zeros((16, 16), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    volume = np.zeros((6, 5, 4), np.int16)
    volume_mask = np.zeros((6, 5, 4), np.uint8)
    volume_mask[1:3, 1:3, 1:3] = 1
    files = {
        "images/case1.png": raster(image, "PNG"), "masks/case1_mask.png": raster(mask, "PNG"),
        "images/case2.png": raster(image + 1, "PNG"), "masks/orphan.png": raster(mask // 2, "PNG"),
        "images/vol.nii.gz": nifti_bytes(volume, compressed=True), "masks/vol.nii.gz": nifti_bytes(volume_mask, compressed=True),
        "masks/case2.png": raster(np.zeros((8, 8), np.uint8), "PNG"),
    }
    summary, outcomes = ingest_files(tmp_path, files)
    assert summary.task == "segmentation"
    samples = {s.source_path: s for s in summary.samples}
    assert set(samples) == {"images/case1.png", "images/case2.png", "images/vol.nii.gz"}
    stored_mask = np.load(tmp_path / "dataset" / samples["images/case1.png"].mask)
    assert set(np.unique(stored_mask).tolist()) == {0, 1}, "0/255 pictures become 0/1 labels"
    assert np.load(tmp_path / "dataset" / samples["images/vol.nii.gz"].mask).sum() == 8
    assert samples["images/case2.png"].mask == ""
    assert outcomes["masks/case2.png"].status == "rejected"
    assert "its shape [8, 8] differs from the image's [16, 16]" in outcomes["masks/case2.png"].reason
    assert outcomes["masks/orphan.png"].status == "rejected"
    assert "no image at the place this mask names (an image 'orphan.*'" in outcomes["masks/orphan.png"].reason


def test_zip_of_dicom_series_with_labels_from_folders(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, patient in (("tumour", "A"), ("healthy", "B")):
            for name, data in series(3, patient_id=patient).items():
                archive.writestr(f"study/{label}/{patient}/{name}", data)
    summary, _ = ingest_files(tmp_path, {"upload.zip": buffer.getvalue()})
    assert summary.class_counts == {"healthy": 1, "tumour": 1}
    assert len({s.patient for s in summary.samples}) == 2


# ------------------------------------------------- files from the wild: odd but readable


def with_one_element_written_the_implicit_way() -> bytes:
    """An explicit-VR file whose AccessionNumber is written the implicit way (no VR, a 4-byte
    length), as some writers do: pydicom reads it with no VR and, once de-identification replaces
    it, cannot write it back (TypeError: encoding without a string argument). The original failure."""
    data = dicom_bytes(patient_id="MIXED", extra={"AccessionNumber": "ZQACCESX"})
    explicit = struct.pack("<HH2sH", 0x0008, 0x0050, b"SH", 8) + b"ZQACCESX"
    return data.replace(explicit, struct.pack("<HHI", 0x0008, 0x0050, 8) + b"ZQACCESX")


def test_pydicom_alone_cannot_write_back_an_element_read_with_no_vr():
    ds = pydicom.dcmread(io.BytesIO(with_one_element_written_the_implicit_way()))
    assert ds.get_item(0x00080050).VR is None
    Deidentifier(b"k" * 32).deidentify(ds)
    with pytest.raises(TypeError, match="encoding without a string argument"):
        ds.save_as(io.BytesIO(), enforce_file_format=False)


def test_an_element_pydicom_cannot_write_back_no_longer_stops_the_file_or_the_upload(tmp_path):
    files = {"x/mixed.dcm": with_one_element_written_the_implicit_way(), "x/good.dcm": dicom_bytes(patient_id="GOOD"),
             "x/good.png": raster(np.zeros((8, 8), np.uint8), "PNG")}
    summary, outcomes = ingest_files(tmp_path, files)
    assert {p: o.status for p, o in outcomes.items()} == {p: ACCEPTED for p in files}, {p: o.reason for p, o in outcomes.items()}
    kept = (tmp_path / "dataset" / outcomes["x/mixed.dcm"].detail["original"]).read_bytes()
    header = pydicom.dcmread(io.BytesIO(kept))
    assert b"ZQACCESX" not in kept and header.PatientIdentityRemoved == "YES" and header.AccessionNumber == ""


def test_a_header_that_cannot_be_written_rejects_its_file_with_the_reason_and_the_rest_comes_in(tmp_path, monkeypatch):
    original = dicom.write_copy

    def write_copy(ds, data, layout, touched):
        if ds.Modality == "XA":
            raise TypeError("encoding without a string argument")
        return original(ds, data, layout, touched)

    monkeypatch.setattr(dicom, "write_copy", write_copy)
    files = {"x/broken.dcm": dicom_bytes(modality="XA"), "x/good.dcm": dicom_bytes(patient_id="GOOD"),
             "x/good.png": raster(np.zeros((8, 8), np.uint8), "PNG")}
    summary, outcomes = ingest_files(tmp_path, files)
    assert outcomes["x/broken.dcm"].status == REJECTED
    assert outcomes["x/broken.dcm"].reason == "the de-identified header could not be written (TypeError: encoding without a string argument)"
    assert sorted(s.source_path for s in summary.samples) == ["x/good.dcm", "x/good.png"]


def without_file_meta(ds, implicit: bool) -> bytes:
    """What pydicom reads only with force=True: no preamble, no 'DICM', no file meta; the data set
    starts with a group 0x0008 element."""
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


@pytest.mark.parametrize("name, implicit", [("IM0001", True), ("1.2.826.0.1.3680043.8.498.77", True), ("scan.dcm", False)])
def test_dicom_with_no_preamble_and_no_file_meta_is_read_and_kept_with_a_proper_header(tmp_path, name, implicit):
    pixels = np.arange(16 * 16, dtype=np.int16).reshape(16, 16)
    data = without_file_meta(pydicom.dcmread(io.BytesIO(dicom_bytes(pixels))), implicit)
    assert data[:2] == b"\x08\x00" and b"DICM" not in data[:200]
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(io.BytesIO(data))
    summary, outcomes = ingest_files(tmp_path, {f"x/{name}": data})
    assert outcomes[f"x/{name}"].status == ACCEPTED, outcomes[f"x/{name}"].reason
    assert np.array_equal(np.load(tmp_path / "dataset" / summary.samples[0].array), pixels)
    header = pydicom.dcmread(tmp_path / "dataset" / summary.samples[0].original)  # no force: a proper file
    expected = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert header.file_meta.TransferSyntaxUID == expected and header.PatientIdentityRemoved == "YES"
    assert header.file_meta.MediaStorageSOPClassUID == header.SOPClassUID


def cd_with_dicomdir(count: int) -> dict[str, bytes]:
    """A DICOMDIR and its files as pydicom's FileSet writes them (PT000000/ST000000/SE000000/IM00000k)."""
    file_set = FileSet()
    for data in series(count).values():
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyTime, ds.StudyID, ds.SeriesNumber = "101010", "1", 1
        file_set.add(ds)
    with tempfile.TemporaryDirectory() as folder:
        file_set.write(folder)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_a_dicomdir_is_skipped_as_an_index_and_its_order_orders_slices_that_say_nothing_of_theirs(tmp_path):
    files = cd_with_dicomdir(4)
    images = sorted(name for name in files if name != "DICOMDIR")
    dicomdir = pydicom.dcmread(io.BytesIO(files["DICOMDIR"]))
    listed_order = [2, 0, 1, 3]  # the DICOMDIR lists IM000002, IM000000, IM000001, IM000003
    for record, k in zip([r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"], listed_order):
        record.ReferencedFileID = images[k].split("/")
    files["DICOMDIR"] = written(dicomdir)
    for name in images:  # no position, no InstanceNumber: nothing in the files orders them
        ds = pydicom.dcmread(io.BytesIO(files[name]))
        del ds.ImagePositionPatient, ds.InstanceNumber
        files[name] = written(ds)
    del files[images[3]]  # listed, not uploaded
    summary, outcomes = ingest_files(tmp_path, {f"cd/{name}": data for name, data in files.items()}, labels_from="none")
    index = outcomes["cd/DICOMDIR"]
    assert index.status == SKIPPED and index.reason.startswith("DICOMDIR: an index of the files beside it; upload them with it")
    assert f"1 of the 4 files it lists are not in the upload (cd/{images[3]})" in summary.notes["cd/DICOMDIR"]
    volume = np.load(tmp_path / "dataset" / summary.samples[0].array)
    assert [int(volume[k, 0, 0]) for k in range(3)] == [200, 0, 100]
    assert summary.samples[0].meta["ordered_by"] == "the DICOMDIR's order"


def test_a_dicomdir_is_recognised_by_its_sop_class_whatever_its_name(tmp_path):
    files = cd_with_dicomdir(2)
    _, outcomes = ingest_files(tmp_path, {"cd/index.dcm": files["DICOMDIR"]})
    assert outcomes["cd/index.dcm"].status == SKIPPED and outcomes["cd/index.dcm"].reason.startswith("DICOMDIR: an index")


def test_single_gzipped_files_are_read_as_what_they_hold_within_the_limits(tmp_path):
    pixels = np.arange(32 * 32, dtype=np.int16).reshape(32, 32)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:9] = 255
    files = {
        "images/scan.dcm.gz": gzip.compress(dicom_bytes(pixels)),
        "images/photo.png.gz": gzip.compress(raster(mask // 3, "PNG")),
        "masks/photo.png.gz": gzip.compress(raster(mask, "PNG")),
        "images/bomb.dcm.gz": gzip.compress(b"\0" * (8 * 1024**2)),
        "images/broken.dcm.gz": gzip.compress(dicom_bytes(patient_id="B"))[:-40],
        "images/volume.nii.gz": nifti_bytes(np.zeros((4, 4, 3), np.int16), compressed=True),
    }
    summary, outcomes = ingest_files(tmp_path, files)
    for name in ("images/scan.dcm.gz", "images/photo.png.gz", "masks/photo.png.gz", "images/volume.nii.gz"):
        assert outcomes[name].status == ACCEPTED, outcomes[name].reason
    samples = {s.source_path: s for s in summary.samples}
    assert np.array_equal(np.load(tmp_path / "dataset" / samples["images/scan.dcm.gz"].array), pixels)
    assert samples["images/photo.png.gz"].mask, "a gzipped mask pairs with its gzipped image"
    assert outcomes["images/bomb.dcm.gz"].status == REJECTED
    assert outcomes["images/bomb.dcm.gz"].reason == "compression ratio over 200:1 is too high (possible gzip bomb)"
    assert outcomes["images/broken.dcm.gz"].status == REJECTED and outcomes["images/broken.dcm.gz"].reason.startswith("corrupt gzip file")


def test_a_gzipped_file_larger_than_the_limit_once_decompressed_is_rejected(tmp_path):
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "big.dcm.gz").write_bytes(gzip.compress(dicom_bytes(np.zeros((1024, 1024), np.int16))))  # 2 MB in 2 kB
    journal = MemoryJournal()
    limits = IngestLimits(max_entry_bytes=1024**2)
    ingest_upload(upload, tmp_path / "dataset", IngestOptions(deidentifier=None, limits=limits), SilentObserver(), journal)
    outcome, = journal.records.values()
    assert (outcome.status, outcome.reason) == (REJECTED, "once decompressed, the file is larger than 1 MB")


def test_de_identification_removes_what_it_cannot_read_rather_than_failing_the_file():
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    item = Dataset()
    item[0x00080100] = RawDataElement(Tag(0x00080100), "ZZ", 0, None, 0, False, True)  # a VR pydicom does not know
    ds.AnatomicRegionSequence = Sequence([item])  # kept by the profile: its items are cleaned too
    ds.AccessionNumber = "ZQACCESX"
    patient, touched = Deidentifier(b"k" * 32).deidentify(ds)
    assert 0x00080100 not in ds.AnatomicRegionSequence[0], "what cannot be read (and so not cleaned) goes"
    assert not ds.AccessionNumber and ds.PatientID == patient, "the rest is de-identified as always"
    ds.save_as(io.BytesIO(), enforce_file_format=False)
