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


def write_blob_nifti_zip(path: str | Path, count: int = 20, shape: tuple[int, int, int] = (16, 32, 32),
                         spacing: tuple[float, float, float] = (3.0, 1.0, 1.0), seed: int = 0) -> Path:
    """A zip of NIfTI image/mask pairs as people upload them for segmentation: images/case_NNN.nii.gz and
    masks/case_NNN.nii.gz of anisotropic blob volumes (`blob_volume`: labels 1 bright, 2 dark), with an affine that
    places them off the origin, so a predicted mask keeping the input's affine is tested on one that is not plain."""
    import zipfile

    import nibabel as nib

    rng = np.random.default_rng(seed)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    affine[:3, 3] = [-40.0, 25.5, 112.0]

    def nifti(array):
        # NIfTI holds (x, y, z): columns, rows, slices; the ingest turns it to (D, H, W).
        image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
        image.header.set_qform(affine, code=1)
        image.header.set_sform(affine, code=1)
        return gzip_bytes(image.to_bytes())

    with zipfile.ZipFile(path, "w") as archive:
        for number in range(count):
            volume, mask = blob_volume(rng, shape, spacing)
            archive.writestr(f"images/case_{number:03d}.nii.gz", nifti(volume))
            archive.writestr(f"masks/case_{number:03d}.nii.gz", nifti(mask))
    return Path(path)


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


SHAPE_LABELS = ("background", "disc", "square")


def shapes_image(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A 2D image to outline, in real (int16) intensities: a noisy background near 100 with a brighter disc (label 1)
    and a square (label 2) at random places and sizes, which may touch; some images lack one of them (an empty
    reference is part of the task). Returns (image (H, W) int16, mask (H, W) uint8)."""
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(100.0, 20.0, (size, size)) + 10.0 * np.sin(xx / rng.uniform(6, 12))  # noise and a shading
    mask = np.zeros((size, size), np.uint8)
    if rng.random() > 0.1:
        side = int(rng.integers(size // 6, size // 3))
        top, left = rng.integers(2, size - side - 2, 2)
        mask[top:top + side, left:left + side] = 2
    if rng.random() > 0.1:
        radius = rng.uniform(size / 12, size / 6)
        cy, cx = rng.uniform(radius + 2, size - radius - 2, 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 1
    image += np.where(mask == 1, 60.0, 0.0) + np.where(mask == 2, 40.0, 0.0)
    return np.clip(np.rint(image), 0, 4095).astype(np.int16), mask


BLOB_LABELS = ("background", "bright", "dark")


def blob_volume(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float]
                ) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume to outline, anisotropic (thick slices): tissue with noise inside air, a bright ellipsoid (label 1)
    and a dark one (label 2) of random radii in millimetres (so fewer voxels across the slices), at random places.
    Returns (volume (D, H, W) int16, mask (D, H, W) uint8)."""
    grid = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    extent = [n * s for n, s in zip(shape, spacing)]
    volume = rng.normal(300.0, 40.0, shape)
    mask = np.zeros(shape, np.uint8)
    for label, contrast in ((2, -120.0), (1, 150.0)):
        radii = rng.uniform(5.0, 9.0, 3)
        centre = [rng.uniform(r + 1, e - r - 1) for r, e in zip(radii, extent)]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        mask[inside] = label
        volume += np.where(inside, contrast, 0.0)
    volume = np.where(mask == 0, volume, volume + rng.normal(0, 20.0, shape))
    return np.clip(np.rint(volume), 0, 4095).astype(np.int16), mask


def planned_segmentation_subsets(folder: str | Path, samples, spacings, labels, seed: int = 42, dims: int = 3):
    """Images (volumes) with their masks, stored as a dataset's arrays in `folder`, fingerprinted with their masks,
    planned, stored at the plan's spacing (masks beside them, resampled by nearest neighbour) and split 70/15/15:
    (train, validation, test, classes, plan), the records carrying "mask". The path a segmentation dataset takes once
    it is ingested, without the database."""
    import hashlib

    from .planning import VolumeFacts, fingerprint_of, plan_for
    from .store import StoredVolume, VolumeRecords, build_store, mask_path, store_folder

    root = Path(folder) / "dataset"
    root.mkdir(parents=True, exist_ok=True)
    stored = []
    for number, ((image, mask), spacing) in enumerate(zip(samples, spacings)):
        np.save(root / f"{number:04d}.npy", image)
        np.save(root / f"{number:04d}_mask.npy", mask)
        sha = hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()
        stored.append(StoredVolume(f"{number:04d}.npy", tuple(spacing), sha, f"{number:04d}_mask.npy", dims=dims))
    plan = plan_for(fingerprint_of(
        VolumeFacts(lambda v=v: np.load(root / v.array, mmap_mode="r"), v.spacing, {}, "MR",
                    lambda v=v: np.load(root / v.mask), dims=dims) for v in stored))
    paths = build_store(stored, root, store_folder(root / "store", plan["target_spacing"]), plan["target_spacing"])
    order = np.random.default_rng(seed).permutation(len(paths))
    cut_train, cut_validation = round(len(paths) * 0.7), round(len(paths) * 0.85)
    chosen = {"train": order[:cut_train], "validation": order[cut_train:cut_validation], "test": order[cut_validation:]}

    def subset(name):
        rows = sorted(int(k) for k in chosen[name])
        return VolumeRecords([paths[k] for k in rows], [0] * len(rows), [{}] * len(rows), plan, patches=name == "train",
                             seed=seed, masks=[mask_path(paths[k]) for k in rows])

    return subset("train"), subset("validation"), subset("test"), list(labels), plan


def demo_shapes_subsets(folder: str | Path, count: int = 60, size: int = 64, seed: int = 0):
    """Generated 2D images of discs and squares to outline (`shapes_image`), planned and split."""
    rng = np.random.default_rng(seed)
    samples = [shapes_image(rng, size) for _ in range(count)]
    return planned_segmentation_subsets(folder, samples, [(1.0, 1.0)] * count, SHAPE_LABELS, dims=2)


def demo_blob_subsets(folder: str | Path, count: int = 30, spacing: tuple[float, float, float] = (3.0, 1.0, 1.0),
                      seed: int = 0):
    """Generated anisotropic volumes of two blobs to outline (`blob_volume`), of a few shapes, planned and split."""
    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(16, 22)), int(rng.integers(36, 48)), int(rng.integers(36, 48))) for _ in range(count)]
    samples = [blob_volume(rng, shape, spacing) for shape in shapes]
    return planned_segmentation_subsets(folder, samples, [spacing] * count, BLOB_LABELS, dims=3)
