"""Where a network's starting weights come from: pretrained files (ImageNet through torchvision's own
weights, read from its cache or the toolkit's weights folder, checked by hash) and earlier runs.

Nothing here downloads: hospitals are often offline, so a missing file is reported with the folder to put
it in and the address it comes from. Finding a file is plain Python (the web tier asks before a launch);
loading it is torch's (the worker). Files are read with `torch.load(weights_only=True)`: tensors and plain
values only, never arbitrary objects.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .registry import ModelEntry, WeightsEntry


class WeightsUnavailable(LookupError):
    """The file a run needs is not on this machine, or is not the file it should be; the message says what to do."""


def torch_hub_folder() -> Path:
    """torch.hub's checkpoint folder, worked out as torch does it (without importing torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"



def find_weights(weights: WeightsEntry, weights_folder: str | Path | None) -> Path:
    """The file of `weights` in the toolkit's weights folder or torchvision's cache, or WeightsUnavailable."""
    folders = [*([Path(weights_folder)] if weights_folder else []), torch_hub_folder()]
    for folder in folders:
        candidate = folder / weights.filename
        if candidate.is_file():
            return candidate
    where = " or ".join(str(f) for f in folders)
    raise WeightsUnavailable(
        f"The {weights.title} weights file {weights.filename} is not on this machine. Download it from {weights.url} "
        f"(on any computer with internet access) and put it in {where}; or start from random weights.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_weights(weights: WeightsEntry, weights_folder: str | Path | None) -> Path:
    """The file, found and checked against the hash in its name (torch.hub's convention)."""
    path = find_weights(weights, weights_folder)
    if not sha256_of(path).startswith(weights.sha256_prefix):
        raise WeightsUnavailable(
            f"{path} is not the {weights.title} weights file: its SHA-256 does not begin with {weights.sha256_prefix} as its "
            f"name says (a partial download or another file). Download it again from {weights.url}.")
    return path


# DenseNet's published files name some layers "norm.1" where torchvision's modules are "norm1" (torchvision
# renames them in densenet._load_state_dict, which also downloads, so the renaming is ours here).
DENSENET_OLD_NAMES = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def read_pretrained(entry: ModelEntry, weights: WeightsEntry, weights_folder: str | Path | None) -> dict:
    import torch

    path = checked_weights(weights, weights_folder)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if entry.name == "densenet121":
        state = {rename_densenet(key): value for key, value in state.items()}
    return state


def rename_densenet(key: str) -> str:
    match = DENSENET_OLD_NAMES.match(key)
    return match.group(1) + match.group(2) if match else key
