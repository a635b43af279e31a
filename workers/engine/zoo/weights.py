"""Where a network's starting weights come from: pretrained files (ImageNet through torchvision's own
weights, read from its cache or the toolkit's weights folder, checked by hash; MedicalNet's 3D ResNets, read from
the weights folder, checked by their content against the network) and earlier runs.

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
    """The file of `weights` in the toolkit's weights folder (or torchvision's cache, for its files), or WeightsUnavailable."""
    folders = [*([Path(weights_folder)] if weights_folder else []), *([torch_hub_folder()] if weights.in_torch_cache else [])]
    for folder in folders:
        candidate = folder / weights.filename
        if candidate.is_file():
            return candidate
    if not weights.in_torch_cache:
        where = (f"at {Path(weights_folder) / weights.filename}" if weights_folder
                 else "in the toolkit's weights folder (TOOLKIT_WEIGHTS_DIR)")
        raise WeightsUnavailable(
            f"The {weights.title} weights file {weights.filename} is not on this machine. It is published at {weights.url}: "
            f"download it (on any computer with internet access) and put it {where}; or start from random weights.")
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
    """The file, found and checked against the hash in its name (torch.hub's convention) or its entry's; a file
    without a known hash (MedicalNet's) is checked by its content when read (`medicalnet_state`)."""
    path = find_weights(weights, weights_folder)
    if weights.sha256_prefix and not sha256_of(path).startswith(weights.sha256_prefix):
        raise WeightsUnavailable(
            f"{path} is not the {weights.title} weights file: its SHA-256 does not begin with {weights.sha256_prefix} as its "
            f"name says (a partial download or another file). Download it again from {weights.url}.")
    return path


# DenseNet's published files name some layers "norm.1" where torchvision's modules are "norm1" (torchvision
# renames them in densenet._load_state_dict, which also downloads, so the renaming is ours here).
DENSENET_OLD_NAMES = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def read_pretrained(entry: ModelEntry, weights: WeightsEntry, weights_folder: str | Path | None) -> dict:
    """The file's weights as a state dict of the network `entry` (MedicalNet's: the backbone's, without a head)."""
    import torch

    path = checked_weights(weights, weights_folder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as unreadable:  # a partial download, another format: torch's unpickler fails in many ways
        raise WeightsUnavailable(f"{path} is not the {weights.title} weights file: torch cannot read it as weights "
                                 f"({unreadable.__class__.__name__}). Download it again from {weights.url}.") from None
    if weights.layout == "medicalnet":
        return medicalnet_state(entry, weights, state, path)
    if entry.name == "densenet121":
        state = {rename_densenet(key): value for key, value in state.items()}
    return state


# MedicalNet's files are DataParallel checkpoints of segmentation networks: {"state_dict": {"module.conv1.weight": …,
# "module.conv_seg.…": …}}. Their backbone is MONAI's ResNet in MedicalNet's layout (networks.py); `conv_seg` is the
# segmentation head, which a classifier has no use for.
DATA_PARALLEL_PREFIX, SEGMENTATION_HEAD = "module.", "conv_seg."
# BatchNorm's step counter is no weight (files written by PyTorch before 0.4.1 lack it; it starts at 0 without).
NOT_WEIGHTS = ("num_batches_tracked",)


def medicalnet_state(entry: ModelEntry, weights: WeightsEntry, checkpoint, path: Path) -> dict:
    """A MedicalNet file's backbone as `entry`'s network names it: `module.` stripped, the segmentation head dropped,
    and every other tensor matched by name and shape against the network as MedicalNet built it (one channel), its
    classifier head alone left new. Anything else (another depth's file, another network's) is WeightsUnavailable
    naming the file."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} is not a MedicalNet weights file: it holds no 'state_dict'. Download "
                                 f"{weights.filename} again from {weights.url}.")
    state = {key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in state.items()
             if not key.removeprefix(DATA_PARALLEL_PREFIX).startswith(SEGMENTATION_HEAD)}
    expected = backbone_shapes(entry, first_layer_channels(state))
    head = (f"{entry.head}.",)
    state = {key: value for key, value in state.items() if not key.startswith(head)}  # the classifier head is made new
    missing = sorted(key for key in expected if key not in state and not key.startswith(head) and not key.endswith(NOT_WEIGHTS))
    unexpected = sorted(key for key in state if key not in expected)
    misshapen = sorted(f"{key} {tuple(state[key].shape)} (expected {expected[key]})" for key in state
                       if key in expected and tuple(state[key].shape) != expected[key])
    if missing or unexpected or misshapen:
        found = "; ".join(f"{what}: {', '.join(keys[:5])}{f' and {len(keys) - 5} more' if len(keys) > 5 else ''}"
                          for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", misshapen))
                          if keys)
        raise WeightsUnavailable(
            f"{path} is not MedicalNet's weights for {entry.title} ({weights.filename}): its tensors do not fit the network "
            f"({found}). It may be another depth's file; put {weights.filename} from {weights.url} there.")
    return state


def first_layer_channels(state: dict) -> int:
    conv = state.get("conv1.weight")
    return int(conv.shape[1]) if conv is not None and conv.dim() == 5 else 1


def backbone_shapes(entry: ModelEntry, channels: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of `entry`'s network for `channels` channels, by name, with its shape (built on the meta device:
    no memory, no time)."""
    import torch

    from .networks import bare_network

    with torch.device("meta"):
        network = bare_network(entry, channels, 2)
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def rename_densenet(key: str) -> str:
    match = DENSENET_OLD_NAMES.match(key)
    return match.group(1) + match.group(2) if match else key
