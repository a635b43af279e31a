"""One image file uploaded to be explained (issue 22): read by the ingest's own readers, checked against the model
that will take it, kept as the ingest keeps a sample (its decoded pixels, a DICOM file's de-identified header), and
made into the model's input the way the model's training samples were (the training cache's 8 bits, or a plan's real
intensities at its spacing, or an imported model's prepared picture).

`read_upload` is a web-tier question (workers/engine/call.py): it runs in a child process, so a hostile file is
parsed away from the web worker (and a reader that crashes on it takes only the child). Its refusals say what is
wrong with the file and what to do; they become 400s with the field `file`. The rest is the worker's. No Django here.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .call import Refusal, question

MIN_SIDE = 8  # the smallest side a plan's patch may have (planning.check_plan): a model never learnt on less
MAX_VOXELS = 64 * 1024**2  # the model's input at most this many voxels a channel (a 400x400x400 CT at its plan's spacing)
MAX_PIXELS = 12_000 * 12_000  # a 2D picture before it is resized to the model's input
UPLOAD_PATIENT = "(upload)"  # the patient an upload is, for a pipeline's per-patient statistics: itself alone
ARRAY = "pixels.npy"


def dims_words(dims) -> str:
    return " and ".join("2D images" if d == 2 else "volumes" for d in sorted(dims))


def channel_words(count: int) -> str:
    return {1: "1 channel (grayscale)", 3: "3 channels (colour)"}.get(count, f"{count} channels")


def decoded_upload(data: bytes, name: str, deid_secret: str | None = None):
    """The file as the ingest decodes it (DICOM, NIfTI, .gz of either, PNG, JPEG, BMP, TIFF), or a Refusal that says
    why it cannot be read."""
    from .ingest.decoded import FileOutcome, NotAnImage, Quarantined
    from .ingest.deid import Deidentifier
    from .ingest.dicom import looks_like_dicom, read_dicom
    from .ingest.nifti import looks_like_nifti, read_nifti
    from .ingest.raster import read_raster

    if not data:
        raise Refusal("The file is empty; choose an image file (PNG, JPEG, DICOM or NIfTI).")
    deidentifier = Deidentifier(bytes.fromhex(deid_secret)) if deid_secret else None
    lowered = (name or "").lower()
    try:
        if data[:2] == b"\x1f\x8b":
            import gzip
            import zlib

            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                raise Refusal("The file looks gzip-compressed but cannot be decompressed (damaged or truncated); upload it "
                              "again.") from None
            lowered = lowered.removesuffix(".gz")
        head = data[:352]
        if looks_like_nifti(lowered, head):
            return read_nifti(data, lowered)
        if looks_like_dicom(lowered, head):
            return read_dicom(data, deidentifier)
        return read_raster(data, keep_original=deidentifier is None)
    except Quarantined as held:
        raise Refusal(f"This file is held back: {held}. Upload an image without burned-in annotations.") from None
    except NotAnImage as empty:
        raise Refusal(f"This file holds no picture ({empty}); upload an image (PNG, JPEG, DICOM or NIfTI).") from None
    except FileOutcome as outcome:
        raise Refusal(f"The file could not be read: {outcome}. Upload one PNG, JPEG, DICOM or NIfTI (.nii, .nii.gz) "
                      "file.") from None


def kind_and_channels(pixels: np.ndarray, kind: str) -> tuple[str, int]:
    """("image" or "volume", channels) of decoded pixels, as a sample's would be."""
    from .ingest.decoded import VOLUME

    if kind != VOLUME:
        return "image", 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 4:
        return "volume", 3 if pixels.shape[-1] == 3 else int(pixels.shape[0])
    return "volume", 1


def spatial_shape(pixels: np.ndarray, kind: str, channels: int) -> list[int]:
    """(H, W) of an image, (D, H, W) of a volume."""
    if kind == "image":
        return [int(n) for n in pixels.shape[:2]]
    if pixels.ndim == 4:
        return [int(n) for n in (pixels.shape[:3] if channels == 3 and pixels.shape[-1] == 3 else pixels.shape[1:])]
    return [int(n) for n in pixels.shape]


def check_fits(kind: str, channels: int, shape: list[int], spacing: list[float], decoded_format: str, modality: str,
               expect: dict) -> str:
    """Refuses (with what to do) a file the model cannot take as its training samples were; returns how it will go in.

    `expect`: who (the model in words), dims (the spatial dimensions it takes: [2], [3]), channels, grey_to_colour (a
    grayscale file may go to a colour model: the training cache repeats it), modalities (the DICOM modalities it learnt
    on; [] when unknown), plan ({target_spacing, dims, normalisation[, patch_size]} or None), size ([H, W] a 2D input is resized to,
    or None)."""
    who = expect["who"]
    dims = 3 if kind == "volume" else 2
    if dims not in expect["dims"]:
        if dims == 2:
            raise Refusal(f"This file is one 2D image and {who} takes volumes: upload the whole scan as one NIfTI file (.nii "
                          "or .nii.gz) or one multi-frame DICOM file.")
        raise Refusal(f"This file is a volume ({' × '.join(map(str, shape))}) and {who} takes 2D images: upload one slice "
                      "(a PNG, JPEG or single-frame DICOM file).")
    wanted = int(expect["channels"])
    if channels != wanted and not (channels == 1 and expect.get("grey_to_colour")):
        what = "save it in grayscale" if wanted == 1 else ("save it in colour (RGB)" if wanted == 3 else
                                                          f"give it {wanted} channels")
        raise Refusal(f"This file has {channel_words(channels)} and {who} takes {channel_words(wanted)}: {what}, or choose a "
                      "model that takes it.")
    learnt = [m for m in expect.get("modalities", []) if m]
    if modality and learnt and modality not in learnt:
        raise Refusal(f"This DICOM file is {modality} and {who} learnt on {', '.join(learnt)}: upload a {' or '.join(learnt)} "
                      f"image, or explain it with a model trained on {modality}.")
    plan = expect.get("plan")
    if plan and plan.get("normalisation") == "ct" and decoded_format not in ("DICOM", "NIfTI"):
        raise Refusal(f"This {decoded_format} file holds display values, not Hounsfield units, and {who} learnt on CT in "
                      "Hounsfield units: upload the DICOM or NIfTI file of the scan.")
    if min(shape) < MIN_SIDE:
        raise Refusal(f"This file is {' × '.join(map(str, shape))} pixels: too small for {who}, which needs at least "
                      f"{MIN_SIDE} a side. Upload a larger image.")
    if plan:
        from .planning import resampled_shape, spacing_of

        target = [float(v) for v in plan["target_spacing"]]
        grid = resampled_shape(shape, spacing_of(spacing, dims), target)
        at = f"at the model's spacing ({' × '.join(f'{v:g}' for v in target)} mm) it is {' × '.join(map(str, grid))}"
        if min(grid) < MIN_SIDE:
            raise Refusal(f"This file is {' × '.join(map(str, shape))} with spacing {' × '.join(f'{v:g}' for v in spacing_of(spacing, dims))} "
                          f"mm; {at}: too small for {who} (at least {MIN_SIDE} a side). Upload a larger scan, or check its "
                          "spacing.")
        if int(np.prod(grid)) > MAX_VOXELS:
            raise Refusal(f"This file is {' × '.join(map(str, shape))}; {at}, over the {MAX_VOXELS // 1024**2} million "
                          f"voxels an explanation takes. Crop it to the region of interest and upload it again.")
        patch = [int(v) for v in plan.get("patch_size") or []]
        padded = (f" It is smaller than the model's patch ({' × '.join(map(str, patch))}) on a side: the prediction pads it, "
                  "as a sliding window does." if patch and any(g < p for g, p in zip(grid, patch)) else "")
        return f"{at}, normalised as the model's training samples were.{padded}"
    if int(np.prod(shape)) > MAX_PIXELS:
        raise Refusal(f"This image is {' × '.join(map(str, shape))} pixels, over the {MAX_PIXELS // 1000**2} million an "
                      "explanation reads. Downscale it and upload it again.")
    size = expect.get("size")
    if size:
        return f"resized to {size[1]} × {size[0]} pixels through its window to 8 bits, as the model's training images were."
    return "through its window to 8 bits, as the model's training images were."


@question
def read_upload(path: str, file_name: str, expect: dict, folder: str | None = None, deid_secret: str | None = None,
                field: str = "file") -> dict:
    """What an uploaded file is and how it will reach the model, or a refusal. With `folder`, its decoded pixels
    (pixels.npy, as the ingest stores a sample's) and a DICOM file's de-identified header (original.dcm) are written
    there; the facts returned are what the explanation keeps of the file."""
    data = Path(path).read_bytes()
    decoded = decoded_upload(data, file_name, deid_secret)
    kind, channels = kind_and_channels(decoded.pixels, decoded.kind)
    shape = spatial_shape(decoded.pixels, kind, channels)
    meta = dict(decoded.meta)
    spacing = [float(v) for v in (meta.get("voxel_spacing") or meta.get("pixel_spacing") or [])]
    fits = check_fits(kind, channels, shape, spacing, decoded.format, decoded.modality, expect)
    facts = {"name": Path(file_name or "upload").name[:255], "format": decoded.format, "modality": decoded.modality or decoded.format,
             "kind": kind, "shape": list(decoded.pixels.shape), "dtype": str(decoded.pixels.dtype), "channels": channels,
             "depth": shape[0] if kind == "volume" else 1, "height": shape[-2], "width": shape[-1], "spacing": spacing,
             "meta": meta, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "notes": decoded.notes,
             "fits": fits, "array": ARRAY, "original": ""}
    if decoded.format == "NIfTI":
        facts["nifti_codes"] = nifti_codes(data)
    if folder:
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        with open(target / ARRAY, "wb") as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(decoded.pixels), allow_pickle=False)
        if decoded.original is not None and decoded.format == "DICOM":
            (target / "original.dcm").write_bytes(decoded.original)
            facts["original"] = "original.dcm"
    return facts


def nifti_codes(data: bytes) -> dict:
    """The qform and sform codes of a NIfTI file's header (what space its affine maps to: scanner, aligned, a
    template...): a mask of the file is written with them (tasks/segmentation/mask_files.py); {} when unreadable."""
    import gzip
    import io

    import nibabel as nib

    head = gzip.GzipFile(fileobj=io.BytesIO(data)).read(540) if data[:2] == b"\x1f\x8b" else data[:540]
    for header_class, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        try:  # the header alone, its extensions left out (4 zero bytes say there are none)
            header = header_class.from_fileobj(io.BytesIO(head[:size] + b"\0" * 4), check=False)
        except Exception:  # noqa: BLE001 (not this version's header: the other is tried)
            continue
        if int(header["sizeof_hdr"]) == size:
            return {"qform_code": int(header["qform_code"]), "sform_code": int(header["sform_code"])}
    return {}


# ------------------------------------------------------------------------------------------- the worker's side


def cached_input(pixels: np.ndarray, meta: dict, shape: tuple[int, int, int]) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]: the picture as the training cache holds an image (windowed to 8 bits, resized to
    the cache's grid, grayscale repeated for a colour cache), scaled as CachedImages reads it."""
    from .ingest.job import cache_pixels

    cached, _ = cache_pixels(np.asarray(pixels), meta, tuple(shape))
    return cached.astype(np.float32) / 255.0


def planned_input(array_path: Path, spacing: list[float], meta: dict, plan: dict, stored_path: Path) -> np.ndarray:
    """(C, [D,] H, W) float32: the file's real intensities as a plan's store keeps a sample (resampled to the plan's
    spacing, written once beside the upload) and read as the evaluation reads whole samples (VolumeRecords)."""
    from .store import VolumeRecords, write_resampled

    if not stored_path.is_file():
        write_resampled(array_path, spacing, plan["target_spacing"], stored_path, dims=plan.get("dims", 3))
    return VolumeRecords([stored_path], [0], [meta], plan, patches=False)[0]["image"].numpy()
