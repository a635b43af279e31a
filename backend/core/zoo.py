"""The model zoo as the web tier serves it: the registry's networks with whether their pretrained weights are on
this server, and a network's layer summary for given images and phase settings.

The summary is the engine's (workers/engine/zoo/summary.py): torch never loads into a web worker. A child
process that imports torch for one question took 5-12 s (the zoo page's "Updating…"), so the questions go to
one warm engine process for the machine (workers/engine/zoo/summary_server.py, over a Unix socket in the var
folder), started by the first web worker that needs it, and early: listing the networks (the zoo page's first
request) starts it in the background, so it is importing torch while the page paints and the user picks a
network. It ends after ENGINE_IDLE_SECONDS without questions, or with the web process that started it. Where
it cannot be reached, a child process answers, as before.

Answers are kept per web process and, through Django's cache (Redis, or files in the var folder), for the
machine's other web processes and the next start, keyed by the zoo engine's source and torch's version, so
an update never serves an old answer. One answer covers every phase setting (it lists the blocks each setting
freezes), so moving the page's "frozen blocks" control asks the engine nothing.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from backend.datasets.models import Dataset
from backend.datasets.services import datasets_for
from workers.engine.zoo import registry as zoo_registry
from workers.engine.zoo.inputs import SummaryInput, usual_size
from workers.engine.zoo.registry import MODELS, ModelEntry, WeightsEntry
from workers.engine.zoo.weights import WeightsUnavailable, find_weights

from .engine import ask_engine
from .errors import ServiceError

log = logging.getLogger(__name__)

TRAIN_CHOICES = ("all", "head")
WARM_ENGINE = True              # False: each new summary asks a child process of its own (bench/zoo_page.py's baseline)
ENGINE_IDLE_SECONDS = 600       # the warm engine ends after this long without questions (it holds about 0.9 GB)
ENGINE_START_SECONDS = 10.0     # for a new warm engine to listen (it binds its socket before importing torch)
ENGINE_ANSWER_SECONDS = 120.0   # for an answer, a new engine's torch import included
CACHE_SECONDS = 7 * 24 * 3600   # answers are a few kB (DenseNet's 34); recomputed in under a second when warm
_start_lock = threading.Lock()
_started: list[subprocess.Popen] = []  # warm engines this process started, reaped once they end


def architectures() -> list[dict]:
    """Every network of the registry, each pretrained weights entry saying whether its file is on this server. The
    zoo page asks this first: the warm engine starts now, in the background, for the layer tables to come."""
    warm_engine()
    return [{**entry.describe(), "weights": [{**weights.describe(), **weights_presence(weights)} for weights in entry.weights]}
            for entry in MODELS.values()]


def weights_presence(weights: WeightsEntry) -> dict:
    """Whether the weights file is in the toolkit's weights folder or torchvision's cache (found by name only:
    its hash is checked when a run starts from it, as reading 500 MB per page view would be too slow)."""
    try:
        path = find_weights(weights, settings.PRETRAINED_WEIGHTS_DIR)
    except WeightsUnavailable as missing:
        return {"available": False, "where": str(missing)}
    return {"available": True, "where": f"Found at {path}."}


def architecture_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ServiceError(f"There is no architecture '{name}'; choose one of {', '.join(MODELS)}.", code="not_found",
                           status_code=404)
    return MODELS[name]


def dataset_input(user, dataset_id: int) -> dict:
    """A readable dataset's channels, image size (its training cache's) and classes, or a 400 saying why not."""
    dataset = datasets_for(user).filter(pk=dataset_id).first()
    if dataset is None:
        raise ServiceError(f"No dataset with id {dataset_id} exists in your projects.", field="dataset")
    if dataset.status != Dataset.Status.READY or not dataset.channels:
        raise ServiceError(f"The dataset '{dataset.name}' is not ready ({dataset.get_status_display().lower()}); its image size "
                           "is known once its images are in.", field="dataset")
    classes = len(dataset.labels)
    if classes < 2:
        raise ServiceError(f"The dataset '{dataset.name}' has {classes} class{'es' if classes != 1 else ''}; a classifier needs "
                           "two or more: add labels from a table on the dataset page.", field="dataset")
    return {"channels": dataset.channels, "height": dataset.height, "width": dataset.width, "classes": classes,
            "dataset": {"id": dataset.pk, "name": dataset.name}}


def usual_input(entry: ModelEntry) -> dict:
    """What a summary shows when neither a dataset nor a size is given: RGB images at the network's usual size."""
    side = usual_size(entry)
    return {"channels": 3, "height": side, "width": side, "classes": 2, "dataset": None}


def layer_summary(name: str, images: dict, input_size: int = 0, train: str = "all", frozen_blocks: int = 0) -> dict:
    """The network `name`'s layers for `images` ({channels, height, width, classes, dataset}, and depth for a 3D
    network's volumes), resized inside the network to `input_size` when it is set, each layer marked frozen or
    trainable for the phase settings."""
    entry = architecture_entry(name)
    depth, height, width = seen_sides(images, input_size)
    problem, about = SummaryInput(name, images["channels"], height, width, images["classes"], depth).problem_and_field()
    if problem:
        raise ServiceError(problem, field=problem_field(about, images, input_size))
    answer = engine_summary(name, images["channels"], height, width, images["classes"], depth)
    return summary_for_phase(entry, answer, images, input_size, train, frozen_blocks)


def seen_sides(images: dict, input_size: int) -> tuple[int, int, int]:
    """The depth (0 for images), height and width the network's first layer sees: the input size's square (cube) when it
    is set, else the images' own."""
    depth = images.get("depth", 0)
    if input_size:
        return (input_size if depth else 0), input_size, input_size
    return depth, images["height"], images["width"]


def summary_for_phase(entry: ModelEntry, answer: dict, images: dict, input_size: int, train: str, frozen_blocks: int) -> dict:
    """The engine's answer with each block and layer marked frozen or trainable for one phase's settings."""
    frozen = frozen_block_indices(answer["freezes"], train, frozen_blocks)
    depth, height, width = seen_sides(images, input_size)
    seen = [depth, height, width] if depth else [height, width]
    return {
        "architecture": entry.name, "title": entry.title,
        "input": {**images, "input_size": input_size, "network_input": [images["channels"], *seen],
                  "accepted_sizes": entry.accepted_sizes()},
        "phase": {"train": train, "frozen_blocks": frozen_blocks, "frozen_block_count": len(frozen)},
        "blocks": [{**block, "frozen": block["index"] in frozen} for block in answer["blocks"]],
        "layers": [{**layer, "frozen": layer["block"] in frozen, "trainable": bool(layer["parameters"]) and layer["block"] not in frozen}
                   for layer in answer["layers"]],
        "totals": totals(answer, frozen),
        "output_shape": answer["output_shape"],
    }


def problem_field(about: str, images: dict, input_size: int) -> str:
    """The request field a problem names: the input size for a size it set, else the dataset the values came from."""
    if about == "size" and input_size:
        return "input_size"
    if about == "depth":  # typed even with a dataset (a dataset's samples do not say it)
        return "depth"
    if images.get("dataset"):
        return "dataset"
    return "height" if about == "size" else about


@lru_cache(maxsize=256)
def engine_summary(name: str, channels: int, height: int, width: int, classes: int, depth: int = 0) -> dict:
    """The engine's summary: from this process's memory, the shared cache, the warm engine, or (where that cannot
    be reached) a child process of its own. A refusal is a ServiceError, and is not kept. `depth`: a 3D network's
    volumes' (0: images, and the question has none)."""
    question = {"architecture": name, "channels": channels, "height": height, "width": width, "classes": classes,
                **({"depth": depth} if depth else {})}
    key = summary_cache_key(question)
    answer = shared_get(key)
    if answer is None:
        answer = (ask_warm_engine(question) if WARM_ENGINE else None) or ask_engine("layer_summary", **question)
        shared_set(key, answer)
    return answer


@lru_cache(maxsize=1)
def engine_version() -> str:
    """What an answer depends on: the zoo engine's source and the versions of torch and torchvision (read from
    their installed metadata, without importing them)."""
    digest = hashlib.sha256()
    for path in sorted(Path(zoo_registry.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for library in ("torch", "torchvision"):
        try:
            digest.update(f"{library}=={metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} absent".encode())
    return digest.hexdigest()[:16]


def summary_cache_key(question: dict) -> str:
    key = "zoo-summary:{}:{architecture}:{channels}:{height}:{width}:{classes}".format(engine_version(), **question)
    return f"{key}:{question['depth']}" if question.get("depth") else key


def shared_get(key: str) -> dict | None:
    try:
        return cache.get(key)
    except Exception as error:  # a cache that is down costs speed, not the answer
        log.warning("zoo summary cache unreadable: %s", error)
        return None


def shared_set(key: str, answer: dict) -> None:
    try:
        cache.set(key, answer, CACHE_SECONDS)
    except Exception as error:
        log.warning("zoo summary cache unwritable: %s", error)


# ---------------------------------------------------------------------------------------------- the warm engine


def engine_socket() -> Path:
    """Where the machine's warm engine listens: in the var folder, or, where that path is too long for a Unix
    socket (107 bytes), in the temporary folder under a name made from the var folder's."""
    path = Path(settings.VAR_DIR) / "zoo-engine.sock"
    if len(os.fsencode(path)) > 96:  # room for the server's staging suffix (".<pid>")
        digest = hashlib.sha256(os.fsencode(Path(settings.VAR_DIR).resolve())).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"toolkit-zoo-{digest}.sock"
    return path


def exchange(path: Path, request: dict, timeout: float) -> dict:
    """One question to the warm engine and its reply (see summary_server.py for the protocol)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
    if not chunks:
        raise ConnectionError("the warm engine closed the connection without an answer")
    return json.loads(b"".join(chunks))


def ask_warm_engine(question: dict) -> dict | None:
    """The warm engine's summary (starting the engine when none listens), or None when it cannot give one: the
    caller then asks a child process of its own. A refusal is a ServiceError, as ask_engine's are."""
    path = engine_socket()
    try:
        try:
            reply = exchange(path, question, ENGINE_ANSWER_SECONDS)
        except (FileNotFoundError, ConnectionRefusedError):
            if not start_engine(path):
                return None
            reply = exchange(path, question, ENGINE_ANSWER_SECONDS)
    except (OSError, ValueError) as error:
        log.warning("the zoo's warm engine did not answer (%s); asking a child process", error)
        return None
    if "error" in reply:
        raise ServiceError(reply["error"])
    if "answer" not in reply:
        log.warning("the zoo's warm engine failed on %s; asking a child process: %s", question, reply.get("fault"))
        return None
    return reply["answer"]


def listening(path: Path) -> bool:
    """Whether a warm engine listens at `path` (an empty connection, which it takes as a sign of use)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(str(path))
        return True
    except OSError:
        return False


def start_engine(path: Path | None = None) -> bool:
    """Start the warm engine unless one listens; whether one listens. The machine's web processes take turns
    by a file lock, so they start one between them."""
    path = path or engine_socket()
    with _start_lock, open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if listening(path):
            return True
        _started[:] = [process for process in _started if process.poll() is None]
        # Not the web process's stdout and stderr: a pipe a caller reads to its end would stay open as long as the
        # engine lives. What goes wrong in it comes back in its answers.
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.engine.zoo.summary_server", str(path), str(ENGINE_IDLE_SECONDS)],
            cwd=settings.BASE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started.append(process)
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if listening(path):
                return True
            time.sleep(0.02)
        return listening(path)


def warm_engine() -> None:
    """Have the warm engine start, in a thread of its own: the caller does not wait for it."""
    if WARM_ENGINE:
        threading.Thread(target=start_quietly, name="zoo-engine-start", daemon=True).start()


def start_quietly() -> None:
    try:
        start_engine()
    except OSError as error:
        log.warning("the zoo's warm engine could not start: %s", error)


def stop_engine() -> bool:
    """Ask the warm engine to end (benchmarks and tests, which should not leave one behind); whether one was asked."""
    try:
        return exchange(engine_socket(), {"quit": True}, ENGINE_ANSWER_SECONDS).get("answer") == "bye"
    except (OSError, ValueError):
        return False


def frozen_block_indices(freezes: dict, train: str, frozen_blocks: int) -> set[int]:
    """The blocks the phase freezes, as the engine's transfer.frozen_prefixes listed them for each setting."""
    if train == "head":
        return set(freezes["head"])
    settings_listed = freezes["first_blocks"]
    return set(settings_listed[min(frozen_blocks, len(settings_listed) - 1)])


def totals(answer: dict, frozen: set[int]) -> dict:
    frozen_parameters = sum(block["parameters"] for block in answer["blocks"] if block["index"] in frozen)
    return {"parameters": answer["parameters"], "trainable_parameters": answer["parameters"] - frozen_parameters,
            "frozen_parameters": frozen_parameters, "multiply_accumulates": answer["multiply_accumulates"],
            "layers": len(answer["layers"])}
