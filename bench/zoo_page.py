"""The model zoo page's requests on a cold start and warm, against the old way measured in the same invocation;
prints JSON.

Issue ("What a new user meets in the browser"): the zoo page said "Updating…" for about 12 s on a cold start.
Each new layer table (a network, an image size) was answered by a child process that imported torch and, on its
first meta-device pass, torch._dynamo. Now one warm engine process per machine answers them
(workers/engine/zoo/summary_server.py), started in the background by the page's first request (the list of
networks), and answers are kept (backend/core/zoo.py).

cold: a fresh web process each time (Django's test client, SQLite and a var folder of its own: no warm engine,
  no kept answers), as after a server start: the zoo page, the list of networks, then, after THINK seconds (a
  user reading the cards), the first layer table (ResNet-18, 1×64×64), the same network at another size,
  another network, and a phase change. Medians of REPEATS fresh processes. The baseline is the same run with
  the warm engine off (zoo.WARM_ENGINE = False: a child process per new question, as before).
restart: a fresh web process again, on the var folder a cold run left (its kept answers, as after a server
  restart): the same requests, answered from the shared cache while the new engine starts.
warm: in this process, the warm engine started and each network asked once (untimed): a new question for each
  network (a size not asked before, so no answer is kept anywhere), against the baseline's child process per
  question for some of the same questions; and a question answered from the shared cache (Django's) by a
  process that has not asked it.
`ratio` is new / baseline: below 1 is faster.

Usage: python bench/zoo_page.py [repeats] [think_seconds]   (defaults 3 and 5; BENCH_SMOKE=1: 1 and 0, fewer networks)
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import SMOKE, report, scratch, size  # noqa: E402

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else size(3, 1)
THINK = float(sys.argv[2]) if len(sys.argv) > 2 and not sys.argv[1].startswith("--") else size(5.0, 0.0)
SUMMARY = "/api/architectures/{}/summary/?channels=1&height={}&width={}&classes=2"
COLD_REQUESTS = {
    "first_table_s": SUMMARY.format("resnet18", 64, 64),
    "other_size_s": SUMMARY.format("resnet18", 128, 128),
    "other_network_s": SUMMARY.format("densenet121", 128, 128),
    "phase_change_s": SUMMARY.format("densenet121", 128, 128) + "&frozen_blocks=2",
}


def django_here(var_dir: Path) -> None:
    """Django in this process with SQLite, a file cache and the warm engine's socket under `var_dir`."""
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ["TOOLKIT_VAR_DIR"] = str(var_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    import django

    django.setup()


def cold_run(mode: str, think: float, var_dir: str) -> dict:
    """One fresh web process's figures (run as `zoo_page.py --cold warm|baseline|restart THINK VAR_DIR` in a process
    of its own)."""
    django_here(Path(var_dir))
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from backend.core import zoo

    zoo.WARM_ENGINE = mode != "baseline"
    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    client = Client(HTTP_HOST="localhost")
    client.force_login(users.filter(username="bench").first() or users.create_user("bench", password="bench-password-1"))

    def timed(url: str) -> float:
        start = time.perf_counter()
        response = client.get(url)
        seconds = time.perf_counter() - start
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        return round(seconds, 3)

    figures = {"page_s": timed("/zoo/"), "list_s": timed("/api/architectures/")}
    time.sleep(think)
    figures.update({name: timed(url) for name, url in COLD_REQUESTS.items()})
    figures["torch_in_web_process"] = "torch" in sys.modules
    zoo.stop_engine()
    return figures


def cold(mode: str, var_dir: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--cold", mode, str(THINK), str(var_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"cold run ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> dict:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0] if key.endswith("_s")}


def warm() -> dict:
    django_here(scratch("bench-zoo-warm-"))
    from backend.core import zoo
    from backend.core.engine import ask_engine
    from workers.engine.zoo.inputs import usual_size
    from workers.engine.zoo.registry import MODELS

    names = ["resnet18", "densenet121"] if SMOKE else list(MODELS)
    baseline_names = names[4:7] if len(names) > 6 else names[:1]

    def question(name: str, side: int) -> dict:
        side = MODELS[name].max_size or max(side, MODELS[name].min_size)
        return {"architecture": name, "channels": 1, "height": side, "width": side, "classes": 2}

    start = time.perf_counter()
    assert zoo.start_engine(), "the warm engine did not start"
    for name in names:  # each network once: the engine's lazy imports done, as after a while on a server
        zoo.ask_warm_engine(question(name, usual_size(MODELS[name])))
    warmed = time.perf_counter() - start
    engine, child = {}, {}
    try:
        for name in names:
            started = time.perf_counter()
            answer = zoo.ask_warm_engine(question(name, 160))
            engine[name] = round(time.perf_counter() - started, 3)
            assert answer and answer["architecture"] == name
        for name in baseline_names:
            started = time.perf_counter()
            ask_engine("layer_summary", **question(name, 176))
            child[name] = round(time.perf_counter() - started, 3)
        # The shared cache: an answer another web process (or this one before a restart) kept.
        zoo.engine_summary("resnet18", 1, 192, 192, 2)
        zoo.engine_summary.cache_clear()
        started = time.perf_counter()
        zoo.engine_summary("resnet18", 1, 192, 192, 2)
        shared = time.perf_counter() - started
    finally:
        zoo.stop_engine()
    new_question = statistics.median(engine.values())
    baseline = statistics.median(child.values())
    return {"engine_start_and_first_pass_s": round(warmed, 2), "new_question_median_s": round(new_question, 3),
            "new_question_slowest_s": max(engine.values()), "baseline_child_per_question_median_s": round(baseline, 3),
            "ratio": round(new_question / baseline, 4), "from_shared_cache_s": round(shared, 4),
            "per_network_s": engine, "baseline_per_network_s": child}


def main():
    runs = {"new": [], "restart": [], "baseline": []}
    for _ in range(REPEATS):
        var_dir = scratch("bench-zoo-cold-")
        runs["new"].append(cold("warm", var_dir))
        runs["restart"].append(cold("restart", var_dir))  # the kept answers of the run before, a new engine
        runs["baseline"].append(cold("baseline", scratch("bench-zoo-baseline-")))
    figures = {name: medians(done) for name, done in runs.items()}
    old = figures["baseline"]
    report("zoo_page", {
        "repeats": REPEATS, "think_seconds": THINK,
        "cold": {**figures,
                 "ratio": {key: round(figures["new"][key] / old[key], 3) for key in COLD_REQUESTS},
                 "restart_ratio": {key: round(figures["restart"][key] / old[key], 4) for key in COLD_REQUESTS},
                 "torch_in_web_process": any(run["torch_in_web_process"] for done in runs.values() for run in done)},
        "warm": warm(),
    }, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--cold":
        print(json.dumps(cold_run(sys.argv[2], float(sys.argv[3]), sys.argv[4])))
    else:
        main()
