"""A sweep trained by a real worker (issue 22, T5): a grid over two learning rates of a tiny run, one member at a
time, pruned by successive halving on the validation loss. The worker trains the first member (alone, nothing to
prune it against), tells Optuna, starts the second itself; the second's rate (10) is hopeless, and the pruner stops it
after its first epoch. The sweep then settles with the first as its best."""
import pytest

from backend.experiments.models import RunGroup
from backend.experiments.sweeps import study_of
from backend.runs.models import TrainingRun
from tests.conftest import demo_entries, wait_for
from tests.integration.test_volume_training import partition_of, ready_dataset

pytestmark = pytest.mark.django_db(transaction=True)

# Seed 1: Optuna's grid order puts the good rate first (the seed shuffles the grid; see the module's docstring).
SPEC = {"model": {"architecture": "small_cnn"}, "epochs": 3, "seed": 1, "monitor": "validation.loss",
        "early_stopping": {"enabled": False}}
SEARCH = {"sampler": "grid", "parallel": 1, "pruner": "successive_halving",
          "dimensions": [{"setting": "optimizer.learning_rate", "values": [0.002, 10]}]}


def settled_sweep(api, group_id: int, seconds: float = 400) -> dict:
    def ready():
        group = api.get(f"/api/groups/{group_id}/").json()
        return group if group["summary"]["settled"] else None
    return wait_for(ready, seconds, f"sweep {group_id} to settle")


def test_a_sweep_trains_its_members_one_after_another_and_prunes_the_hopeless_one(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=15), "Demo")
    response = api.post("/api/groups/", {"partition": partition_of(api, dataset), "spec": SPEC, "search": SEARCH}, format="json")
    assert response.status_code == 202, response.content
    assert len(response.json()["members"]) == 1, "one at a time: the worker starts the second"
    group = settled_sweep(api, response.json()["id"])
    log = celery_worker_process.log_path.read_text()[-3000:]
    rows = sorted(group["summary"]["rows"], key=lambda row: row["trial"])
    assert [(r["values"]["optimizer.learning_rate"], r["outcome"]) for r in rows] == [(0.002, "complete"), (10, "pruned")], log

    good, hopeless = (TrainingRun.objects.get(pk=row["run"]) for row in rows)
    assert good.status == "succeeded" and good.epochs_completed == 3
    assert hopeless.status == "stopped" and hopeless.epochs_completed == 1 and rows[1]["pruned_at"] == 1
    assert hopeless.message.startswith("Pruned by the sweep after epoch 1: its validation.loss")
    assert hopeless.log_lines.filter(text__startswith="Pruned by the sweep").exists()

    best = group["summary"]["best"]
    assert best["run"] == good.pk and best["objective"] == pytest.approx(good.results["kept"]["value"])
    trials = study_of(RunGroup.objects.get(pk=group["id"])).loaded().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert trials[0].value == pytest.approx(best["objective"])
