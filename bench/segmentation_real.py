"""The segmentation defaults on real data whose masks we did not draw; prints JSON.

The data: the fluorescence microscopy image of cell nuclei that StarDist ships (stardist/data/images/img2d.tif,
512x512 uint16) with its nucleus masks (mask2d.tif, one label per nucleus, drawn by the annotators of the 2018 Data
Science Bowl: BBBC038v1, Caicedo et al., Nature Methods 2019; the images and masks are CC0, the package BSD-3). Every
nucleus is the class "nucleus". The image is cut into square tiles, planned and stored as ingest would store them
(demo.planned_segmentation_subsets), split 70/15/15 (the test tiles are unseen parts of the same image, not an unseen
image), and trained with the segmentation task's defaults (the plan's patch, the default 2D U-Net, Dice +
cross-entropy, the validation subset's mean foreground Dice monitored). Reported: the test subset's mean Dice (over
the foreground labels), per-class Dice and IoU, and the training time.

StarDist is not one of the project's requirements (it brings TensorFlow's CSBDeep along): its files are read from an
installed `stardist` package (found without importing it) or from the wheel itself, given as the first argument
(`pip download --no-deps stardist==0.9.2`: 3 MB). Without either, the benchmark says so and succeeds.

Usage: python bench/segmentation_real.py [stardist wheel] [tile side]
       (BENCH_SMOKE=1: a 128x128 corner in 32x32 tiles, 2 epochs)
"""
import importlib.util
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size, skip  # noqa: E402

WHEEL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STARDIST_WHEEL", "")
TILE = int(sys.argv[2]) if len(sys.argv) > 2 else size(64, 32)
FIELD = size(512, 128)     # the side of the image's corner that is used (512: all of it)
EPOCHS = size(None, 2)      # None: the defaults'
IMAGES = "stardist/data/images/"
CLASSES = ("background", "nucleus")


def read_tiff(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def nuclei() -> tuple[np.ndarray, np.ndarray, str] | None:
    """(image uint16, nucleus labels (0 background, 1.. one per nucleus), where they were read), or None."""
    if WHEEL:
        with zipfile.ZipFile(WHEEL) as wheel:
            return read_tiff(wheel.read(IMAGES + "img2d.tif")), read_tiff(wheel.read(IMAGES + "mask2d.tif")), WHEEL
    found = importlib.util.find_spec("stardist")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / "data" / "images"
    return read_tiff((folder / "img2d.tif").read_bytes()), read_tiff((folder / "mask2d.tif").read_bytes()), str(folder)


def tiles(image: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping TILE-sided squares of the image's FIELD-sided corner, each with its 0/1 nucleus mask."""
    pairs = []
    for row in range(0, FIELD - TILE + 1, TILE):
        for column in range(0, FIELD - TILE + 1, TILE):
            region = (slice(row, row + TILE), slice(column, column + TILE))
            pairs.append((image[region].astype(np.int16), (labels[region] > 0).astype(np.uint8)))
    return pairs


def main():
    found = nuclei()
    if found is None:
        skip("segmentation_real", "StarDist's sample image is not here: pip download --no-deps stardist==0.9.2, "
                                  "then give the wheel's path as the first argument (or STARDIST_WHEEL)")
    image, labels, source = found

    from workers.engine.demo import planned_segmentation_subsets
    from workers.engine.training.evaluation import measured
    from workers.engine.training.run import train
    from workers.engine.training.spec import fitted_to_subset
    from workers.engine.training.trainer import TrainingData

    samples = tiles(image, labels)
    train_set, validation, test, classes, plan = planned_segmentation_subsets(
        scratch("bench-real-"), samples, [(1.0, 1.0)] * len(samples), CLASSES, dims=2)
    data = TrainingData(train_set, validation, 1, classes, dims=2, window=tuple(plan["patch_size"]))
    asked = {"task": "segmentation", "data": {"plan": plan}, **({"epochs": EPOCHS} if EPOCHS else {})}
    spec = fitted_to_subset(asked, len(train_set))
    start = time.perf_counter()
    model = train(spec, data).kept_model()
    trained = time.perf_counter() - start
    figures = measured(model, test, spec, classes, dims=2, window=data.window)
    report("segmentation_real", {
        "data": "StarDist's nuclei image (2018 Data Science Bowl, BBBC038v1, CC0)", "read_from": source,
        "image": list(image.shape), "nuclei": int(len(np.unique(labels)) - 1), "field": FIELD, "tile": TILE,
        "tiles": {"train": len(train_set), "validation": len(validation), "test": len(test)},
        "foreground_share": round(float((labels[:FIELD, :FIELD] > 0).mean()), 3),
        "architecture": spec["model"]["architecture"], "loss": spec["loss"]["name"], "epochs": spec["epochs"],
        "batch_size": spec["batch_size"], "patch": plan["patch_size"], "normalisation": plan["normalisation"],
        "cores": os.cpu_count(), "training_seconds": round(trained, 1),
        "test": {name: round(value, 4) for name, value in figures.items()},
    })


if __name__ == "__main__":
    main()
