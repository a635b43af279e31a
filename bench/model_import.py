"""Which zoo networks an ONNX import recognises: every network of the zoo, with random weights and random
BatchNorm statistics (so that folding shows), exported by the toolkit's exporter (torch.export, opset 20) and by
the TorchScript exporter (opset 13), checked as an upload is and imported as the worker imports it. Prints one
JSON line per network and exporter: the mode, the network found, how the weights were matched, how many
BatchNorm layers had been folded, the largest difference from onnxruntime and the seconds taken.

Target (issue 13): every zoo network exported by either exporter comes back as `weights_copied`, as itself.
Measured (2 CPUs): all 12 networks from both exporters but two that the TorchScript exporter cannot export at
the size used (AlexNet and VGG-16: adaptive pooling to 6×6 from a side it does not divide); VGG-16's import takes
about 20 s, the others 0.3 to 8 s.

Usage: python bench/model_import.py [network ...]   (BENCH_SMOKE=1: small_cnn, when no network is named)
"""
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SMOKE, report, scratch, size  # noqa: E402
from workers.engine.export import export_onnx  # noqa: E402
from workers.engine.zoo.conversion import import_onnx  # noqa: E402
from workers.engine.zoo.imports import inspect_onnx  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402
from workers.engine.zoo.registry import MODELS  # noqa: E402


def exported(name: str, exporter: str, folder: Path) -> Path:
    entry = MODELS[name]
    side = entry.max_size or max(entry.min_size, 64)
    torch.manual_seed(0)
    model = build_network(name, 3, 5).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 2)
                module.bias.uniform_(-1, 1)
    path = folder / f"{name}-{exporter}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torch.export":
            export_onnx(model, torch.rand(2, 3, side, side), path)
        else:
            torch.onnx.export(model, (torch.rand(1, 3, side, side),), str(path), dynamo=False, opset_version=13)
    return path


def main(names: list[str]) -> None:
    folder = scratch("model-import-bench-")
    for name in names or size(list(MODELS), ["small_cnn"]):
        for exporter in ("torch.export", "torchscript"):
            try:
                path = exported(name, exporter, folder)
            except Exception as error:
                report("model_import", {"network": name, "exporter": exporter, "export_failed": f"{type(error).__name__}: {str(error)[:120]}"})
                if SMOKE:  # small_cnn goes through both exporters: failing to is a regression, not a known limit
                    raise
                continue
            started = time.perf_counter()
            result = import_onnx(path, inspect_onnx(str(path)))
            report("model_import", {"network": name, "exporter": exporter, "mode": result.mode, "found": result.architecture,
                                    "matched": result.details.get("matched"), "folded_batchnorm": result.details.get("folded_batchnorm"),
                                    "max_difference": result.details.get("max_difference"),
                                    "seconds": round(time.perf_counter() - started, 2)})


if __name__ == "__main__":
    main(sys.argv[1:])
