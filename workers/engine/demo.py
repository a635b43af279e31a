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
