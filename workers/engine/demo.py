"""The generated demo dataset: faint blobs ("lesion") in noise, against noise alone ("normal")."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_CLASSES = ("lesion", "normal")


def demo_image(rng: np.random.Generator, lesion: bool, size: int = 64) -> np.ndarray:
    image = rng.normal(110.0, 22.0, (size, size))
    if lesion:
        cy, cx = rng.uniform(size * 0.25, size * 0.75, 2)
        sigma = rng.uniform(size / 16, size / 9)
        yy, xx = np.mgrid[:size, :size]
        image += rng.uniform(35, 55) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_demo_zip(path: str | Path, per_class: int = 200, size: int = 64, seed: int = 0) -> Path:
    """A zip with one folder per class of 8-bit grayscale PNGs."""
    def png(rng, label):
        buffer = io.BytesIO()
        Image.fromarray(demo_image(rng, label == "lesion", size), "L").save(buffer, format="PNG")
        return buffer.getvalue()

    return write_class_zip(path, per_class, seed, "demo/{label}/{label}_{number:04d}.png", png)


def write_class_zip(path: str | Path, per_class: int, seed: int, name: str, make) -> Path:
    """A zip with `per_class` files per demo class, each `make(rng, label)`'s bytes under `name` (a format string of
    label and number); one generator draws them all, in order, so a seed gives the same files."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for label in DEMO_CLASSES:
            for number in range(per_class):
                archive.writestr(name.format(label=label, number=number), make(rng, label))
    return path


def demo_subsets(folder: str | Path, per_class: int = 300, seed: int = 42):
    """The demo dataset ingested into `folder` and split 70/15/15: (train, validation, test, classes).

    The same path a user's upload takes, without the database: for benchmarks and tests.
    """
    from .data import CachedImages
    from .ingest import CACHE_FILE, IngestOptions, MemoryJournal, ingest_upload
    from .observer import SilentObserver
    from .splits import stratified_split

    folder = Path(folder)
    write_demo_zip(folder / "upload" / "demo.zip", per_class=per_class)
    summary = ingest_upload(folder / "upload", folder / "dataset", IngestOptions(deidentifier=None), SilentObserver(), MemoryJournal())
    labels = [sample.label for sample in summary.samples]
    classes = sorted(set(labels))
    assignment = stratified_split(labels, {"train": 70, "validation": 15, "test": 15}, seed=seed)

    def subset(name):
        chosen = [i for i, s in enumerate(assignment) if s == name]
        return CachedImages(folder / "dataset" / CACHE_FILE, [summary.samples[i].cache_index for i in chosen],
                            [classes.index(labels[i]) for i in chosen])

    return subset("train"), subset("validation"), subset("test"), classes


def demo_volume(rng: np.random.Generator, lesion: bool, shape: tuple[int, int, int] = (24, 32, 32)) -> np.ndarray:
    """A CT-like int16 volume in stored values (HU + 1024): soft tissue near 40 HU with noise, inside air, and for a
    lesion a brighter blob (about +60 HU) somewhere in the tissue."""
    depth, height, width = shape
    zz, yy, xx = np.mgrid[:depth, :height, :width]
    body = ((yy - height / 2) / (height * 0.42)) ** 2 + ((xx - width / 2) / (width * 0.42)) ** 2 <= 1
    hu = np.where(body, rng.normal(40.0, 18.0, shape), -1000.0 + rng.normal(0, 5, shape))
    if lesion:
        cz, cy, cx = (rng.uniform(n * 0.3, n * 0.7) for n in shape)
        sigma = rng.uniform(min(shape) / 10, min(shape) / 6)
        hu += body * rng.uniform(50, 80) * np.exp(-((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return np.clip(np.rint(hu + 1024), 0, 4095).astype(np.int16)


def write_demo_volume_zip(path: str | Path, per_class: int = 20, shape: tuple[int, int, int] = (24, 32, 32),
                          spacing: tuple[float, float, float] = (2.0, 0.8, 0.8), seed: int = 0) -> Path:
    """A zip with one folder per class of NIfTI CT volumes (int16, scl_inter -1024: stored values become HU)."""
    import nibabel as nib

    def nifti(rng, label):
        volume = demo_volume(rng, label == "lesion", shape)
        # NIfTI holds (x, y, z): columns, rows, slices; the ingest turns it to RAS and (D, H, W).
        image = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), np.diag([spacing[2], spacing[1], spacing[0], 1.0]))
        image.header.set_slope_inter(1.0, -1024.0)
        return gzip_bytes(image.to_bytes())

    return write_class_zip(path, per_class, seed, "volumes/{label}/{label}_{number:03d}.nii.gz", nifti)


def gzip_bytes(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data, compresslevel=1)


def demo_volume_subsets(folder: str | Path, per_class: int = 40, seed: int = 42, shape: tuple[int, int, int] = (24, 32, 32)):
    """The generated CT volumes ingested into `folder`, fingerprinted, planned, stored and split 70/15/15: (train,
    validation, test, classes, plan), the path a user's upload of volumes takes, without the database."""
    folder = Path(folder)
    write_demo_volume_zip(folder / "upload" / "volumes.zip", per_class=per_class, shape=shape)
    return planned_subsets(folder, seed)


def planned_subsets(folder: Path, seed: int = 42, dims: int = 3):
    """The upload in `folder`/upload (volumes, or 2D images with real intensities: `dims` 2) ingested, fingerprinted,
    planned, stored and split 70/15/15: (train, validation, test, classes, plan)."""
    from .ingest import IngestOptions, MemoryJournal, ingest_upload
    from .observer import SilentObserver
    from .planning import VolumeFacts, fingerprint_of, plan_for
    from .splits import stratified_split
    from .store import StoredVolume, VolumeRecords, build_store, store_folder

    summary = ingest_upload(folder / "upload", folder / "dataset", IngestOptions(deidentifier=None), SilentObserver(), MemoryJournal())
    samples = summary.samples
    root = folder / "dataset"
    plan = plan_for(fingerprint_of(VolumeFacts(lambda s=s: np.load(root / s.array, mmap_mode="r"), tuple(s.spacing), s.meta,
                                               s.modality, dims=dims) for s in samples))
    paths = build_store([StoredVolume(s.array, tuple(s.spacing), s.sha256, dims=dims) for s in samples], root,
                        store_folder(root / "store", plan["target_spacing"]), plan["target_spacing"])
    labels = [s.label for s in samples]
    classes = sorted(set(labels))
    assignment = stratified_split(labels, {"train": 70, "validation": 15, "test": 15}, seed=seed)

    def subset(name):
        chosen = [i for i, s in enumerate(assignment) if s == name]
        return VolumeRecords([paths[i] for i in chosen], [classes.index(labels[i]) for i in chosen],
                             [samples[i].meta for i in chosen], plan, patches=name == "train", seed=seed)

    return subset("train"), subset("validation"), subset("test"), classes, plan
