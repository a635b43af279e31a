"""Inference throughput of an exported ONNX file in onnxruntime against the same model in PyTorch eval, on the CPU;
prints JSON.

Target (issue 13): the ONNX file runs at >= 0.8x PyTorch's images per second. Both sides get the same model (the
toolkit's ZooModel, normalisation inside, exported by the toolkit's own exporter with its metadata), the same batch
of images in [0, 1] and the same intra-op thread count (torch.set_num_threads; onnxruntime's intra_op_num_threads,
one inter-op thread); onnxruntime runs with its default session options otherwise (all graph optimisations), as a
user of the file would. Rounds alternate which side goes first, so a noisy machine slows both alike; the ratio is
the median of the rounds' ratios.

Usage: python bench/onnx_inference.py [--model resnet18:224 small_cnn:64] [--batch 16] [--threads N] [--rounds 7]
BENCH_SMOKE=1: small_cnn:64 alone, 1 round, each side timed for 0.2 s.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size  # noqa: E402
from workers.engine.export import INPUT_NAME, OUTPUT_NAME, ModelFacts, export_onnx, model_metadata  # noqa: E402
from workers.engine.tasks import task_for  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

TARGET = 0.8
CHANNELS = {"small_cnn": 1}  # the demo's grey images; the others as ImageNet's RGB
MIN_SECONDS = size(1.0, 0.2)  # each side of a round runs batches for at least this long


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=size(["resnet18:224", "small_cnn:64"], ["small_cnn:64"]),
                        help="architecture:side, one or more")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads, both sides")
    parser.add_argument("--rounds", type=int, default=size(7, 1))
    return parser.parse_args()


def exported(architecture: str, side: int, folder: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    channels = CHANNELS.get(architecture, 3)
    model = build_network(architecture, channels, 2).eval()
    facts = ModelFacts(architecture=architecture, task=task_for("classification", ["a", "b"]), input_shape=(channels, side, side), spec={})
    path = export_onnx(model, torch.rand(2, channels, side, side), folder / f"{architecture}-{side}.onnx",
                       model_metadata(model, facts))
    return model, path


def session_for(path: Path, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(step, min_seconds: float) -> float:
    """Seconds per batch: batches run until at least `min_seconds` have passed."""
    batches, start = 0, time.perf_counter()
    while True:
        step()
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / batches


def bench(architecture: str, side: int, batch: int, threads: int, rounds: int, folder: Path) -> dict:
    model, path = exported(architecture, side, folder)
    session = session_for(path, threads)
    images = torch.rand(batch, model.mean.shape[1], side, side)
    feed = {INPUT_NAME: images.numpy()}

    def pytorch_step():
        with torch.inference_mode():
            model(images)

    def onnx_step():
        session.run([OUTPUT_NAME], feed)

    for step in (pytorch_step, onnx_step):  # warm-up: first-use costs (allocators, kernel choices) counted for neither
        timed(step, size(0.3, 0.1))
    pytorch, onnx = [], []
    for round_ in range(rounds):
        order = (pytorch_step, onnx_step) if round_ % 2 == 0 else (onnx_step, pytorch_step)
        seconds = {step: timed(step, MIN_SECONDS) for step in order}
        pytorch.append(seconds[pytorch_step])
        onnx.append(seconds[onnx_step])
    with torch.inference_mode():
        difference = float(np.abs(session.run([OUTPUT_NAME], feed)[0] - model(images).numpy()).max())
    ratio = statistics.median(p / o for p, o in zip(pytorch, onnx))  # onnx images/s over PyTorch's
    return {
        "architecture": architecture, "side": side, "channels": int(model.mean.shape[1]), "batch": batch,
        "file_megabytes": round(path.stat().st_size / 2**20, 1), "max_abs_difference": difference,
        "pytorch_images_per_second": round(batch / statistics.median(pytorch), 1),
        "onnx_images_per_second": round(batch / statistics.median(onnx), 1),
        "throughput_ratio": round(ratio, 3), "meets_target": ratio >= TARGET,
    }


def main():
    args = arguments()
    torch.set_num_threads(args.threads)
    folder = scratch("bench-onnx-")
    results = [bench(name, int(side), args.batch, args.threads, args.rounds, folder)
               for name, side in (spec.split(":") for spec in args.model)]
    report("onnx_inference", {
        "device": "cpu", "threads": args.threads, "rounds": args.rounds,
        # A shared machine's load slows PyTorch's OpenMP threads more than onnxruntime's (their barriers wait for a
        # thread the system has descheduled): compare figures taken at a similar load, or with --threads 1.
        "cpus": len(os.sched_getaffinity(0)), "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "graph_optimization_level": str(onnxruntime.SessionOptions().graph_optimization_level),
        "models": results, "target": {"throughput_ratio_at_least": TARGET},
        "meets_target": all(r["meets_target"] for r in results),
    }, indent=2)


if __name__ == "__main__":
    main()
