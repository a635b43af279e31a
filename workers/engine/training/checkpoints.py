"""Checkpoints on disk: written atomically, read back with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so loading one runs no code
(a pickle may; A2). `checkpoint.pt` is the whole trainer state (resume starts from it); `best.pt`
the weights of the best epoch so far. Each is written to a temporary file in the same folder,
flushed to disk and renamed over the old one: a worker killed while writing leaves the previous
checkpoint whole.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = 1
STATE_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"


def save_atomically(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path.name} is a checkpoint of another format ({checkpoint.get('format')}); it cannot be resumed.")
    return checkpoint


def state_path(folder: str | Path) -> Path:
    return Path(folder) / STATE_FILE


def best_path(folder: str | Path) -> Path:
    return Path(folder) / BEST_FILE


def has_checkpoint(folder: str | Path | None) -> bool:
    return folder is not None and state_path(folder).is_file()
