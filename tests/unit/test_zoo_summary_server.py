"""The zoo's warm engine (workers/engine/zoo/summary_server.py) as a server: it answers, refuses and reports faults
without ending, drops what is not a question, warms every network while nobody asks, and ends when asked, when
idle, or when its socket file is no longer its own. A stand-in summary keeps torch out of these tests; the real
one is tests/integration/test_zoo_engine.py's."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workers.engine.call import Refusal
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.summary_server import serve

ROOT = Path(__file__).resolve().parents[2]
QUESTION = {"architecture": "resnet18", "channels": 1, "height": 64, "width": 64, "classes": 3}


class StandIn:
    """layer_summary's stand-in: refuses LeNet-5, fails on AlexNet, and notes what it was asked (with a 3D
    network's depth)."""

    def __init__(self):
        self.asked = []
        self.depths = {}

    def __call__(self, architecture, channels, height, width, classes, depth=0):
        self.asked.append(architecture)
        self.depths[architecture] = depth
        if architecture == "lenet5":
            raise Refusal("LeNet-5 is built for images of 32×32 pixels at most")
        if architecture == "alexnet":
            raise RuntimeError("something unexpected")
        return {"architecture": architecture, "parameters": channels * (depth or 1) * height * width * classes}


def start(path, idle=60.0, summarise=None):
    summarise = summarise or StandIn()
    ended = []
    thread = threading.Thread(target=lambda: ended.append(serve(str(path), idle, summarise)), daemon=True)
    thread.start()
    for _ in range(500):
        if path.exists():
            break
        thread.join(0.01)
    assert path.exists(), "the server did not bind its socket"
    return thread, ended, summarise


def send(path, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(10)
        connection.connect(str(path))
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return data


def ask(path, request: dict) -> dict:
    return json.loads(send(path, json.dumps(request).encode() + b"\n"))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "zoo.sock"


def test_it_answers_refuses_and_reports_faults_without_ending(path):
    thread, ended, _ = start(path)
    assert path.stat().st_mode & 0o077 == 0, "only this user may ask"
    assert ask(path, QUESTION) == {"answer": {"architecture": "resnet18", "parameters": 64 * 64 * 3}}
    assert ask(path, {**QUESTION, "architecture": "lenet5"}) == {"error": "LeNet-5 is built for images of 32×32 pixels at most"}
    fault = ask(path, {**QUESTION, "architecture": "alexnet"})
    assert list(fault) == ["fault"] and "RuntimeError: something unexpected" in fault["fault"]
    assert "KeyError" in ask(path, {"architecture": "resnet18"})["fault"], "a question without its values"
    # What is not a question gets no answer, and the server goes on.
    assert send(path, b"") == b""
    assert send(path, b"not json\n") == b""
    assert send(path, b"[1, 2]\n") == b""
    assert ask(path, {**QUESTION, "classes": 2})["answer"]["parameters"] == 64 * 64 * 2
    volume = {**QUESTION, "architecture": "small_cnn_3d", "depth": 16}
    assert ask(path, volume)["answer"]["parameters"] == 16 * 64 * 64 * 3, "a 3D network's question carries its depth"
    assert ask(path, {"quit": True}) == {"answer": "bye"}
    thread.join(10)
    assert not thread.is_alive() and ended == [0]
    assert not path.exists(), "the socket file goes with the server"


def test_while_idle_it_builds_every_network_once_then_ends(path):
    thread, ended, summarise = start(path, idle=0.5)
    thread.join(30)
    assert not thread.is_alive() and ended == [0]
    assert sorted(summarise.asked) == sorted(MODELS)
    assert summarise.depths == {name: 64 if entry.dims == 3 else 0 for name, entry in MODELS.items()}, \
        "a 3D network is warmed on a 64³ cube"
    assert not path.exists()


def test_it_ends_when_another_server_takes_its_place(path, tmp_path):
    thread, ended, _ = start(path)
    other = tmp_path / "other"
    other.write_text("another server's socket")
    os.replace(other, path)
    thread.join(30)
    assert not thread.is_alive() and ended == [0]
    assert path.read_text() == "another server's socket", "the other's file is left alone"


STARTER = """
import os, subprocess, sys, time
engine = "from workers.engine.zoo.summary_server import serve; import sys; serve(sys.argv[1], 600, lambda **question: {})"
subprocess.Popen([sys.executable, "-c", engine, sys.argv[1]])
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
"""


def test_it_ends_with_the_process_that_started_it(path):
    """A web worker (or a test run) that ends takes its engine with it, idle or not."""
    subprocess.run([sys.executable, "-c", STARTER, str(path)], cwd=ROOT, check=True, timeout=60)
    assert path.exists(), "the engine outlives its starter by a moment"
    deadline = time.monotonic() + 60
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists(), "the engine did not end with the process that started it"
