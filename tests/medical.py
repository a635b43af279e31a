"""Medical test files made by the tests themselves: DICOM slices and series, NIfTI volumes."""
from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498."


def dicom_bytes(pixels: np.ndarray | None = None, *, patient_id="PAT001", patient_name="Doe^Jane", series_uid=None,
                study_uid=None, position=(0.0, 0.0, 0.0), instance=1, modality="CT", slope=1.0, intercept=-1024.0,
                window=(40.0, 400.0), burned_in=None, extra=None, sop_class=CTImageStorage) -> bytes:
    """A CT-like single-frame DICOM file (16-bit signed unless pixels say otherwise)."""
    pixels = np.arange(64 * 64, dtype=np.int16).reshape(64, 64) % 2000 if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, patient_name, "19600102"
    ds.StudyInstanceUID = study_uid or generate_uid(ROOT)
    ds.SeriesInstanceUID = series_uid or generate_uid(ROOT)
    ds.StudyDate, ds.Modality, ds.InstanceNumber = "20200315", modality, instance
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.5
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = window
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    colour = pixels.ndim == 3
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def series(count: int = 5, *, patient_id="PAT001", spacing=2.5, names=None) -> dict[str, bytes]:
    """One CT series; slice k holds the value k*100 everywhere, so order is visible in the volume."""
    series_uid, study_uid = generate_uid(ROOT), generate_uid(ROOT)
    names = names or [f"slice_{k:03d}.dcm" for k in range(count)]
    return {
        names[k]: dicom_bytes(np.full((32, 32), k * 100, np.int16), patient_id=patient_id, series_uid=series_uid,
                              study_uid=study_uid, position=(0.0, 0.0, k * spacing), instance=k + 1)
        for k in range(count)
    }


def nifti_bytes(volume: np.ndarray, zooms=(1.0, 1.0, 2.0), version: int = 1, compressed: bool = False, descrip: str = "") -> bytes:
    image_class = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    affine = np.diag([*zooms[:3], 1.0])
    image = image_class(volume, affine)
    image.header.set_zooms(tuple(zooms) + (1.0,) * (volume.ndim - 3))
    if descrip:
        image.header["descrip"] = descrip
    data = image.to_bytes()
    return gzip.compress(data) if compressed else data
