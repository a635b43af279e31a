"""Real scans and label maps that ship inside pinned packages (requirements.txt), for tests on data we did
not design: nothing here is downloaded.

- nilearn's MNI ICBM 2009a template: a real T1-weighted MR brain (197 x 233 x 189 at 1 mm, RAS) with
  its grey- and white-matter probability maps; thresholded, they make a real 0/1/2 tissue label map.
- nibabel's `anatomical.nii`: a real T1 MR volume (33 x 41 x 25 at 2 mm, LAS, big-endian int16).
- pydicom's `CT_small.dcm`: a real CT slice (128 x 128, signed 16-bit, Hounsfield units via rescale).
- StarDist's nuclei image with its hand-drawn instance mask (requirements-data.txt).
"""
from __future__ import annotations

import functools
import gzip
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
from pydicom.data import get_testdata_file

MNI = Path(nilearn.__file__).parent / "datasets" / "data"
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@functools.cache
def mni_brain(step: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1 uint8, tissue labels 0 background / 1 grey / 2 white matter, affine), every `step`-th voxel."""
    def load(name):
        image = nib.load(MNI / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        return np.asarray(image.dataobj)[::step, ::step, ::step], image.affine
    t1, affine = load("t1")
    grey, _ = load("gm")
    white, _ = load("wm")
    labels = np.zeros(t1.shape, np.uint8)
    labels[(grey >= 128) & (grey >= white)] = 1
    labels[(white >= 128) & (white > grey)] = 2
    scaled = affine.copy()
    scaled[:3, :3] *= step
    return t1, labels, scaled


def slab(volume: np.ndarray, affine: np.ndarray, first: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Axial slices first..first+depth-1 of a RAS volume, with the affine that keeps them in place."""
    moved = affine.copy()
    moved[:3, 3] = affine[:3, :3] @ np.array([0, 0, first]) + affine[:3, 3]
    return np.ascontiguousarray(volume[:, :, first:first + depth]), moved


def nifti(volume: np.ndarray, affine: np.ndarray, compressed: bool = True) -> bytes:
    image = nib.Nifti1Image(volume, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    data = image.to_bytes()
    return gzip.compress(data, mtime=0) if compressed else data


def anatomical() -> nib.Nifti1Image:
    return nib.load(NIBABEL_DATA / "anatomical.nii")


def ct_slice_path() -> str:
    return get_testdata_file("CT_small.dcm")


MIDLINE = 98  # the MNI 2009a template is symmetric: voxel column x mirrors 196 - x


@functools.cache
def mni_tissue_tiles(side: int = 20, margin: float = 0.1, brain: float = 0.5) -> tuple[tuple, ...]:
    """Non-overlapping side-mm cubes of the real MNI T1 (1 mm, uint8, each with the affine that keeps it in place),
    labelled by the tissue that dominates it according to the template's own probability maps: "grey" or "white"
    matter, by at least `margin` of the cube's volume, in cubes at least `brain` grey plus white matter (the others,
    mostly skull, scalp or CSF, and the ambiguous ones, left out). The template is left-right symmetric, so a cube's
    mirror image is its near twin: both carry one `pair` name, and a split must keep a pair together (a patient's).

    Returns ((name, label, pair, t1 (x, y, z) uint8, affine), ...), in grid order."""
    def load(name):
        image = nib.load(MNI / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        return np.asarray(image.dataobj), image.affine
    t1, affine = load("t1")
    grey, _ = load("gm")
    white, _ = load("wm")
    # Columns either side of the midline column, mirror images of each other: [98 - side*(k+1), 98 - side*k) and
    # [99 + side*k, 99 + side*(k+1)).
    halves = range((t1.shape[0] - 1 - MIDLINE) // side)
    columns = [(MIDLINE - side * (k + 1), k) for k in halves] + [(MIDLINE + 1 + side * k, k) for k in halves]
    rows = range((t1.shape[1] % side) // 2, t1.shape[1] - side + 1, side)
    slices = range((t1.shape[2] % side) // 2, t1.shape[2] - side + 1, side)
    tiles = []
    for x, column in columns:
        for y in rows:
            for z in slices:
                region = (slice(x, x + side), slice(y, y + side), slice(z, z + side))
                g, w = grey[region].mean() / 255, white[region].mean() / 255
                if g + w < brain or abs(g - w) < margin:
                    continue
                moved = affine.copy()
                moved[:3, 3] = affine[:3, :3] @ np.array([x, y, z]) + affine[:3, 3]
                tiles.append((f"x{x:03d}_y{y:03d}_z{z:03d}", "grey" if g > w else "white", f"c{column}_y{y:03d}_z{z:03d}",
                              np.ascontiguousarray(t1[region]), moved))
    return tuple(tiles)


def write_tiles_zip(path: Path, tiles) -> Path:
    """A zip with one folder per label of the tiles as .nii.gz (their real affines), as a user would upload them."""
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, label, _, volume, affine in tiles:
            archive.writestr(f"tiles/{label}/{name}.nii.gz", nifti(volume, affine))
    return path


def stardist_nuclei() -> tuple[Path, Path]:
    """StarDist's fluorescence image of cell nuclei and its hand-drawn instance mask (125 nuclei, each its own number;
    2018 Data Science Bowl, BBBC038v1, CC0), both 512 x 512 TIFFs, from the stardist package of requirements-data.txt
    (installed for its data, never imported: found without importing it)."""
    import importlib.util

    images = Path(importlib.util.find_spec("stardist").submodule_search_locations[0]) / "data" / "images"
    return images / "img2d.tif", images / "mask2d.tif"
