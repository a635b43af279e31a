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
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for label in DEMO_CLASSES:
            for number in range(per_class):
                buffer = io.BytesIO()
                Image.fromarray(demo_image(rng, label == "lesion", size), "L").save(buffer, format="PNG")
                archive.writestr(f"demo/{label}/{label}_{number:04d}.png", buffer.getvalue())
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
