"""Which mask belongs to which image: decided by where both lie in the upload, never by file name alone.

The layouts people ship (docs/datasets.md shows each with an example):
- roots side by side: `images/...` beside `masks/...` (or `labels/`, `segmentations/` ...), the mask at the
  same path under its root as its image under its own (a mask may add `_mask`, `_seg`, `_label` ...);
  the Medical Segmentation Decathlon's `imagesTr/` + `labelsTr/` (and `imagesTs/` + `labelsTs/`) alike;
- nnU-Net's raw layout: `imagesTr/case_0000.nii.gz`, `case_0001.nii.gz` ... are the channels of one
  sample `case`, whose mask is `labelsTr/case.nii.gz`;
- beside the image: `case.png` with `case_seg.png` (or `_mask`, `_label`, `_labels`) in the same folder;
- BIDS derivatives: `derivatives/<pipeline>/sub-01/anat/sub-01_T1w_label-lesion_mask.nii.gz` for
  `sub-01/anat/sub-01_T1w.nii.gz`, matched by the BIDS entities of both names.

Every place is turned into keys (a path with the root folder, extensions and suffixes taken off); a
mask goes to the one image that shares a key with it. A mask that fits no image, one that several
images could take, and several masks for one image are refused with the reason: pairing never depends
on the order of the files.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

IMAGE_ROLE = "image"
MASK_ROLE = "mask"
IMAGE_ROOTS = {"images", "image", "imgs", "imagestr", "imagests", "volumes", "scans"}
MASK_ROOTS = {"masks", "mask", "labels", "label", "labelstr", "labelsts", "segmentations", "segmentation", "seg",
              "gt", "groundtruth", "ground_truth"}
# A mask beside its image says so at the end of its name.
MASK_SUFFIXES = ("_mask", "-mask", "_seg", "-seg", "_labels", "_label", "_gt")
# BIDS derivatives: suffixes of label maps (probabilistic maps, `_probseg`, are not label maps).
BIDS_MASK_SUFFIXES = {"mask", "dseg", "seg", "roi", "label", "labels"}
MASK_WORDS = BIDS_MASK_SUFFIXES | {"gt"}
# Entities that describe a derivative rather than name the acquisition it was made from.
BIDS_DERIVATIVE_ENTITIES = {"desc", "label", "res", "den", "hemi", "atlas", "roi", "from", "to", "mode", "seg"}
BIDS_NATIVE_SPACES = {"orig", "native", "individual"}
EXTENSIONS = (".nii.gz", ".nii", ".dcm", ".dicom", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm",
              ".ppm", ".gz")
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Root:
    """An `images/`- or `masks/`-like folder: where it is in the path, what it holds, and its split
    ('tr' for imagesTr/labelsTr, 'ts' for imagesTs/labelsTs, '' otherwise: only equal splits pair)."""

    index: int
    role: str
    split: str


def root_of(folders: list[str]) -> Root | None:
    """The outermost folder that says whether the files under it are images or masks."""
    for index, folder in enumerate(folders):
        name = folder.casefold()
        if name in IMAGE_ROOTS or name in MASK_ROOTS:
            split = name[-2:] if name[:-2] in ("images", "labels") and name[-2:] in ("tr", "ts") else ""
            return Root(index, MASK_ROLE if name in MASK_ROOTS else IMAGE_ROLE, split)
    return None


def bare_name(name: str) -> str:
    """A file name without its extensions ('case.nii.gz' -> 'case')."""
    lowered = name.casefold()
    if lowered.endswith(".gz") and not lowered.endswith(".nii.gz"):
        name, lowered = name[:-3], lowered[:-3]  # a single gzipped file pairs as what it holds
    for extension in EXTENSIONS:
        if lowered.endswith(extension):
            return name[: -len(extension)]
    return name


def mask_suffix(base: str) -> str:
    """The mask suffix a name ends with ('' if none)."""
    lowered = base.casefold()
    return next((suffix for suffix in MASK_SUFFIXES if lowered.endswith(suffix) and len(lowered) > len(suffix)), "")


def in_derivatives(folders: list[str]) -> bool:
    return any(folder.casefold() == "derivatives" for folder in folders)


def bids_tokens(base: str) -> tuple[list[tuple[str, str]], list[str]] | None:
    """A BIDS name's entities [(key, value)] and its plain tokens (suffixes such as 'T1w', 'mask'), or
    None when the name is not BIDS ('sub-01_ses-1_T1w' -> [('sub', '01'), ('ses', '1')], ['T1w'])."""
    tokens = base.split("_")
    if not tokens[0].startswith("sub-"):
        return None
    entities, plain = [], []
    for token in tokens:
        key, dash, value = token.partition("-")
        if dash and key and value:
            entities.append((key.casefold(), value.casefold()))
        elif token:
            plain.append(token.casefold())
    return entities, plain


def role_of(place: str) -> str:
    """Whether the file at `place` (its path in the upload, '/'-separated) is an image or a mask."""
    folders, name = place.split("/")[:-1], place.split("/")[-1]
    base = bare_name(name)
    if mask_suffix(base):  # also inside an images/ folder: 'images/a.png' beside 'images/a_mask.png'
        return MASK_ROLE
    root = root_of(folders)
    if root is not None:
        return root.role
    bids = bids_tokens(base)
    if bids and in_derivatives(folders) and bids[1] and bids[1][-1] in BIDS_MASK_SUFFIXES:
        return MASK_ROLE
    return IMAGE_ROLE


def in_a_root(place: str) -> bool:
    return root_of(place.split("/")[:-1]) is not None


def scope_and_rest(folders: list[str]) -> tuple[list[str], str, list[str]]:
    """(folders above the root, the root's split, folders below it); with no root, every folder is below."""
    root = root_of(folders)
    if root is None:
        return [], "", folders
    return folders[: root.index], root.split, folders[root.index + 1:]


def bids_scope(folders: list[str]) -> list[str]:
    """The folders above a BIDS tree: what lies before its first `sub-*` or `derivatives` folder."""
    for index, folder in enumerate(folders):
        if folder.casefold() == "derivatives" or folder.startswith("sub-"):
            return folders[:index]
    return folders


def bids_key(folders: list[str], entities: list[tuple[str, str]], modality: str) -> str:
    """Folders are left out: sub- and ses- are in the name, and derivatives need not mirror the raw tree."""
    named = [f"{key}-{value}" for key, value in entities
             if key not in BIDS_DERIVATIVE_ENTITIES and not (key == "space" and value in BIDS_NATIVE_SPACES)]
    return "bids:" + "/".join(bids_scope(folders)).casefold() + "|" + "_".join(named) + "|" + modality


def path_key(split: str, folders: list[str], base: str) -> str:
    return f"{split}:" + "/".join([*folders, base]).casefold()


def image_keys(place: str, case: str | None = None) -> list[str]:
    """The keys a mask may name this image by; `case` replaces the file's own name for the channels of
    one nnU-Net case."""
    folders, name = place.split("/")[:-1], place.split("/")[-1]
    above, split, below = scope_and_rest(folders)
    base = case if case is not None else bare_name(name)
    keys = [path_key(split, [*above, *below], base)]
    bids = bids_tokens(base)
    if bids:
        entities, plain = bids
        modality = plain[-1] if plain else ""
        keys += [bids_key(folders, entities, modality), bids_key(folders, entities, "")]
    return keys


def folder_keys(folder: str) -> list[str]:
    """The keys of a sample that is a folder (a DICOM series): a mask named as the folder takes it."""
    parts = [part for part in folder.split("/") if part]
    if not parts:
        return []
    return image_keys("/".join(parts))


def mask_keys(place: str) -> list[str]:
    folders, name = place.split("/")[:-1], place.split("/")[-1]
    above, split, below = scope_and_rest(folders)
    base = bare_name(name)
    bids = bids_tokens(base)
    if bids:
        entities, plain = bids
        if in_derivatives(folders) or (plain and plain[-1] in BIDS_MASK_SUFFIXES):
            modalities = plain[:-1] if plain and plain[-1] in MASK_WORDS else plain
            return [bids_key(folders, entities, modalities[-1] if modalities else "")]
    suffix = mask_suffix(base)
    return [path_key(split, [*above, *below], base[: len(base) - len(suffix)] if suffix else base)]


def channel_of(place: str) -> tuple[str, int] | None:
    """(case, channel) for a file named like nnU-Net's channels ('la_003_0001.nii.gz' -> ('la_003', 1))."""
    match = CHANNEL.match(bare_name(place.split("/")[-1]))
    return (match["case"], int(match["channel"])) if match else None


def channel_groups(places: dict[int, str]) -> dict[int, tuple[str, str, int]]:
    """The images that are channels of nnU-Net cases: {record index: (folder, case, channel)}.

    Only inside an images root (imagesTr/, images/ ...) in which every file is named `<case>_<4 digits>`:
    elsewhere `scan_0001.png` is just a name."""
    by_folder: dict[str, dict[int, str]] = defaultdict(dict)
    for index, place in places.items():
        if in_a_root(place):
            by_folder[place.rsplit("/", 1)[0]][index] = place
    groups = {}
    for folder, members in by_folder.items():
        named = {index: channel_of(place) for index, place in members.items()}
        if all(named.values()):
            groups.update({index: (folder, case, channel) for index, (case, channel) in named.items()})
    return groups


@dataclass
class Pairing:
    """Masks given to images (mask key -> image key, in the caller's own keys) and masks refused, with why."""

    given: dict
    refused: dict


def pair(images: dict, masks: dict, image_paths: dict, mask_paths: dict, sources: dict) -> Pairing:
    """`images`: {image: its keys}; `masks`: {mask: its keys}; `*_paths`: what the report calls each;
    `sources`: {image or mask: the archive it came from}, used only to tell apart equal places in
    different archives of one upload."""
    by_key: dict[str, list] = defaultdict(list)
    for image, keys in images.items():
        for key in dict.fromkeys(keys):
            by_key[key].append(image)
    chosen, refused = {}, {}
    for mask, keys in masks.items():
        candidates = list(dict.fromkeys(image for key in keys for image in by_key.get(key, [])))
        if len(candidates) > 1:
            own = [image for image in candidates if sources.get(image) == sources.get(mask)]
            candidates = own if len(own) == 1 else candidates
        if not candidates:
            refused[mask] = f"no image at the place this mask names ({describe_key(keys[0])}); not used"
        elif len(candidates) > 1:
            names = ", ".join(sorted(image_paths[image] for image in candidates)[:4])  # the same words in any upload order
            refused[mask] = f"{len(candidates)} images could take this mask ({names}); which one is meant is unclear, so none does"
        else:
            chosen[mask] = candidates[0]
    masks_of: dict = defaultdict(list)
    for mask, image in chosen.items():
        masks_of[image].append(mask)
    given = {}
    for image, its_masks in masks_of.items():
        if len(its_masks) == 1:
            given[its_masks[0]] = image
            continue
        names = ", ".join(sorted(mask_paths[mask] for mask in its_masks))
        for mask in its_masks:
            refused[mask] = (f"one of {len(its_masks)} masks for {image_paths[image]} ({names}); which one is meant "
                             "is unclear, so none is used")
    return Pairing(given=given, refused=refused)


def describe_key(key: str) -> str:
    if key.startswith("bids:"):
        scope, entities, modality = key[len("bids:"):].split("|")
        name = "_".join(filter(None, [entities, modality]))
        return f"a BIDS image named {name}" + (f" under {scope}/" if scope else "")
    split, _, path = key.partition(":")
    where = {"tr": " in imagesTr/", "ts": " in imagesTs/"}.get(split, "")
    return f"an image '{path}.*'{where}: the same path under the images folder, or beside the mask"
