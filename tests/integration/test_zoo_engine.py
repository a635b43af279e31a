"""The zoo page's layer tables from the warm engine and the kept answers (backend/core/zoo.py): the counts they
show are those of the network a run builds (real weights, on the CPU), whichever path answered, so neither the
warm engine nor the cache can drift from the networks; answers are kept under the engine's version; the list of
networks starts the engine without waiting for it; where it cannot be reached, a child process answers as before.
No timing is asserted here (bench/zoo_page.py measures it)."""
from pathlib import Path

import pytest
from django.core.cache import cache

from backend.core import zoo
from backend.core.errors import ServiceError
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db
SUMMARY = "/api/architectures/{}/summary/?channels=1&height=64&width=64&classes=3"


@pytest.fixture(autouse=True, scope="module")
def no_engine_left_behind():
    yield
    zoo.stop_engine()


@pytest.fixture
def no_child(monkeypatch):
    """The old way (a child process per question) fails: what answers is the warm engine or a kept answer."""
    def refuse(*args, **kwargs):
        raise AssertionError("a child process was asked")

    monkeypatch.setattr(zoo, "ask_engine", refuse)


def own_parameters(model) -> dict[str, int]:
    """Each module's own parameters (not its children's), by the name the table shows."""
    return {name.removeprefix("network."): sum(p.numel() for p in module.parameters(recurse=False))
            for name, module in model.named_modules()}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_the_counts_shown_are_those_of_the_network_a_run_builds(api, monkeypatch, no_child, name):
    from workers.engine.zoo.networks import build_network

    zoo.engine_summary.cache_clear()
    body = api.get(SUMMARY.format(name)).json()
    real = build_network(name, 1, 3)  # real weights, on the CPU, as a training run builds it
    assert body["totals"]["parameters"] == sum(p.numel() for p in real.parameters())
    own = own_parameters(real)
    assert {layer["name"]: layer["parameters"] for layer in body["layers"]} == {layer["name"]: own[layer["name"]] for layer in body["layers"]}
    assert sum(layer["parameters"] for layer in body["layers"]) == body["totals"]["parameters"]
    card = next(entry for entry in api.get("/api/architectures/").json() if entry["name"] == name)
    assert card["parameters"] == sum(p.numel() for p in build_network(name, 3, 1000).parameters())

    # Another web process (this one's memory cleared) is answered from the shared cache, without the engine: the same.
    zoo.engine_summary.cache_clear()
    monkeypatch.setattr(zoo, "ask_warm_engine", lambda question: pytest.fail("the warm engine was asked"))
    try:
        assert api.get(SUMMARY.format(name)).json() == body
    finally:
        zoo.engine_summary.cache_clear()
        cache.delete(zoo.summary_cache_key({"architecture": name, "channels": 1, "height": 64, "width": 64, "classes": 3}))


def test_the_warm_engine_answers_what_a_child_process_answers():
    question = {"architecture": "small_cnn", "channels": 2, "height": 48, "width": 40, "classes": 4}
    assert zoo.ask_warm_engine(question) == zoo.ask_engine("layer_summary", **question)


def test_a_refusal_from_the_warm_engine_is_the_users_to_read():
    with pytest.raises(ServiceError, match="LeNet-5 is built for images of 32×32 pixels at most"):
        zoo.ask_warm_engine({"architecture": "lenet5", "channels": 1, "height": 64, "width": 64, "classes": 2})


def test_answers_are_kept_under_the_engines_version(monkeypatch):
    asked = []
    monkeypatch.setattr(zoo, "ask_warm_engine", lambda question: asked.append(question) or {"layers": len(asked)})
    arguments = ("resnet18", 7, 77, 77, 7)
    keys = []
    try:
        zoo.engine_summary.cache_clear()
        assert zoo.engine_summary(*arguments) == {"layers": 1} and len(asked) == 1
        keys.append(zoo.summary_cache_key(asked[0]))
        zoo.engine_summary.cache_clear()
        assert zoo.engine_summary(*arguments) == {"layers": 1} and len(asked) == 1, "kept, for any web process"
        monkeypatch.setattr(zoo, "engine_version", lambda: "an-update")
        zoo.engine_summary.cache_clear()
        assert zoo.engine_summary(*arguments) == {"layers": 2}, "an update of the engine asks it again"
        keys.append(zoo.summary_cache_key(asked[0]))
    finally:
        zoo.engine_summary.cache_clear()
        cache.delete_many(keys)


def test_the_version_changes_with_the_engines_source(monkeypatch, tmp_path):
    version = zoo.engine_version()
    assert version == zoo.engine_version() and len(version) == 16
    copy = tmp_path / "zoo"
    copy.mkdir()
    for source in Path(zoo.zoo_registry.__file__).parent.glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    (copy / "summary.py").write_bytes((copy / "summary.py").read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(zoo.zoo_registry, "__file__", str(copy / "registry.py"))
    zoo.engine_version.cache_clear()
    try:
        assert zoo.engine_version() != version
    finally:
        zoo.engine_version.cache_clear()


def test_without_a_warm_engine_a_child_process_answers(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "engine_socket", lambda: tmp_path / "none.sock")
    monkeypatch.setattr(zoo, "start_engine", lambda path=None: False)
    monkeypatch.setattr(zoo, "ask_engine", lambda name, **question: {"asked": name, **question})
    zoo.engine_summary.cache_clear()
    try:
        answer = zoo.engine_summary("small_cnn", 5, 55, 55, 5)
    finally:
        zoo.engine_summary.cache_clear()
        cache.delete(zoo.summary_cache_key({"architecture": "small_cnn", "channels": 5, "height": 55, "width": 55, "classes": 5}))
    assert answer == {"asked": "layer_summary", "architecture": "small_cnn", "channels": 5, "height": 55, "width": 55, "classes": 5}


def test_listing_the_networks_starts_the_warm_engine(api, settings, tmp_path):
    settings.VAR_DIR = tmp_path  # an engine of this test's own
    path = zoo.engine_socket()
    assert not zoo.listening(path)
    assert api.get("/api/architectures/").status_code == 200
    wait_for(lambda: zoo.listening(path), 60, "the warm engine to listen")
    assert zoo.ask_warm_engine({"architecture": "lenet5", "channels": 1, "height": 32, "width": 32, "classes": 2})["parameters"] > 0
    assert zoo.stop_engine()
    wait_for(lambda: not path.exists(), 30, "the warm engine to end")
