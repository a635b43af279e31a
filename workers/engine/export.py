"""ONNX export of a trained model, and the check that onnxruntime agrees with PyTorch."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Write the model as ONNX with a dynamic batch axis; the input is (N, C, H, W) in [0, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example.cpu(),), str(path), dynamo=True, verbose=False,
            # One self-contained file: what the user downloads must load on its own.
            external_data=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    return path


def onnx_predict(path: str | Path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


@torch.no_grad()
def max_abs_difference(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    expected = model.cpu().eval()(images.cpu()).numpy()
    return float(np.abs(onnx_predict(path, images.numpy()) - expected).max())
