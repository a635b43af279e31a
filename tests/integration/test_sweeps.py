"""Sweeps (issue 22, T5): one spec tried with settings Optuna picks, each member a normal queued run; refusals with
their field before anything is made; the life of a sweep as its members end (told to Optuna, the next started, a
crashed one trained again, a stopped sweep starting nothing), and the pruner stopping a member that trails. Members
are queued here and their endings written as a worker writes them; tests/integration/test_sweep_training.py trains a
sweep with a real worker."""
import pytest

from backend.datasets.services import create_partition
from backend.experiments.models import GroupMember, RunGroup
from backend.experiments.sweeps import advance_sweeps, member_ended, member_of, report_epoch, study_of
from backend.runs.models import TrainingRun
from tests.factories import ready_dataset

pytestmark = pytest.mark.django_db
Outcome = GroupMember.Outcome

RATES = {"setting": "optimizer.learning_rate", "values": [0.1, 0.01, 0.001]}
BATCHES = {"setting": "batch_size", "values": [4, 8]}


@pytest.fixture
def partition(user, project):
    return create_partition(user, ready_dataset(project, per_class=12), "", 60, 20, 20, 1)


def launch(api, partition, search, spec=None, **body):
    spec = {"epochs": 3, "monitor": "validation.accuracy", **(spec or {})}
    return api.post("/api/groups/", {"partition": partition.pk, "spec": spec, "search": search, **body}, format="json")


def sweep(api, group_id) -> dict:
    return api.get(f"/api/groups/{group_id}/").json()


def end(run: TrainingRun, status: str, value: float | None = None) -> None:
    """Write a member's ending as the training job does (its kept epoch's monitored value), then tell the sweep."""
    results = {"kept": {"epoch": 3, "monitor": "validation.accuracy", "value": value}} if value is not None else {}
    TrainingRun.objects.filter(pk=run.pk).update(status=status, results=results, epochs_completed=3)
    member_ended(run.pk)


def test_a_grid_sweep_starts_its_first_members_as_normal_runs_with_the_settings_optuna_chose(api, partition):
    response = launch(api, partition, {"sampler": "grid", "parallel": 2, "pruner": "none", "dimensions": [RATES, BATCHES]})
    assert response.status_code == 202, response.content
    group = response.json()
    assert group["kind"] == "sweep" and group["search"]["trials"] == 6, "a grid makes every combination: 3 x 2"
    assert group["search"]["objective"] == "validation.accuracy" and group["search"]["direction"] == "maximize"
    members = group["members"]
    assert len(members) == 2 and all(m["status"] == "queued" and m["outcome"] == "" for m in members), "two at once"
    for member in members:
        run = TrainingRun.objects.get(pk=member["run"])
        assert run.spec["optimizer"]["learning_rate"] == member["values"]["optimizer.learning_rate"]
        assert run.spec["batch_size"] == member["values"]["batch_size"] and run.spec["epochs"] == 3
    assert members[0]["values"] != members[1]["values"]
    summary = group["summary"]
    assert summary["used"] == 2 and summary["trials"] == 6 and summary["best"] is None and not summary["settled"]


def test_each_member_that_ends_is_told_to_optuna_and_the_next_starts_until_the_grid_is_done(api, partition):
    group_id = launch(api, partition, {"sampler": "grid", "parallel": 2, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    seen = []
    while True:
        waiting = [m for m in GroupMember.objects.filter(group_id=group_id).select_related("run") if not m.run.is_finished]
        if not waiting:
            break
        member = waiting[0]
        seen.append(member.values["optimizer.learning_rate"])
        end(member.run, "succeeded", value=member.values["optimizer.learning_rate"] * 5)  # the largest rate wins
    assert sorted(seen) == sorted(RATES["values"]), "every value of the grid once"
    data = sweep(api, group_id)["summary"]
    assert data["settled"] and data["used"] == 3
    assert data["best"]["values"] == {"optimizer.learning_rate": 0.1} and data["best"]["objective"] == pytest.approx(0.5)
    group = RunGroup.objects.get(pk=group_id)
    trials = study_of(group).loaded().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert sorted(t.value for t in trials) == pytest.approx([0.005, 0.05, 0.5])
    member_ended(GroupMember.objects.filter(group_id=group_id).first().run_id)  # told twice: nothing changes
    assert GroupMember.objects.filter(group_id=group_id).count() == 3


def test_a_crashed_member_is_trained_once_more_with_its_settings_then_counted_failed(api, partition):
    group_id = launch(api, partition, {"sampler": "random", "trials": 2, "parallel": 1, "pruner": "none",
                                       "dimensions": [{"setting": "optimizer.learning_rate", "low": 1e-4, "high": 0.1,
                                                       "log": True}]}).json()["id"]
    first = GroupMember.objects.get(group_id=group_id)
    end(first.run, "failed")
    again = GroupMember.objects.filter(group_id=group_id).exclude(pk=first.pk).get()
    assert again.values == first.values and again.attempt == 2 and again.run.status == "queued"
    assert GroupMember.objects.get(pk=first.pk).outcome == Outcome.REPLACED
    end(again.run, "failed")
    assert GroupMember.objects.get(pk=again.pk).outcome == Outcome.FAILED, "a second crash is not tried a third time"
    third = GroupMember.objects.filter(group_id=group_id, attempt=1).exclude(pk=first.pk).get()
    assert third.values != first.values, "the crashed trial counted as one: the second trial is new settings"
    assert sweep(api, group_id)["summary"]["used"] == 2


def test_a_stopped_sweep_stops_its_queued_members_and_starts_no_more(api, partition):
    group_id = launch(api, partition, {"sampler": "grid", "parallel": 2, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    response = api.post(f"/api/groups/{group_id}/stop/")
    assert response.status_code == 202 and response.json()["stop_requested"]
    members = GroupMember.objects.filter(group_id=group_id).select_related("run")
    assert len(members) == 2 and all(m.run.status == "stopped" and m.outcome == Outcome.STOPPED for m in members)
    assert sweep(api, group_id)["summary"]["settled"], "nothing more will happen: the page stops asking"
    assert advance_sweeps() == 0
    member_ended(members[0].run_id)
    assert GroupMember.objects.filter(group_id=group_id).count() == 2, "no trial started after the stop"


def test_the_heartbeat_advances_a_sweep_whose_member_was_stopped_from_its_page(api, partition):
    group_id = launch(api, partition, {"sampler": "grid", "parallel": 1, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    first = GroupMember.objects.get(group_id=group_id)
    assert api.post(f"/api/runs/{first.run_id}/stop/").status_code == 202  # queued: stopped at once, no worker told
    assert TrainingRun.objects.get(pk=first.run_id).status == "stopped"
    assert advance_sweeps() == 1
    assert GroupMember.objects.get(pk=first.pk).outcome == Outcome.STOPPED
    assert GroupMember.objects.filter(group_id=group_id).count() == 2, "the next trial started in its place"
    assert advance_sweeps() == 0, "nothing more to do until a member ends"


def test_the_pruner_stops_a_member_that_trails_the_others_at_a_rung(api, partition):
    """Successive halving keeps the best third at each rung (epochs m, 3m, 9m; m = 1 for 9 epochs): of fewer than six
    members at a rung only the best goes on. Nothing is pruned before a third of the trials (here one) trained to the
    end: the second, behind the first at epoch 1, goes on while the first trains. Once the first has completed, the
    third, behind it at epoch 1, is pruned, and says why."""
    group_id = launch(api, partition, {"sampler": "random", "trials": 3, "parallel": 3, "pruner": "successive_halving",
                                       "dimensions": [RATES]}, spec={"epochs": 9}).json()["id"]
    strong, also_strong, weak = GroupMember.objects.filter(group_id=group_id).order_by("trial").select_related("group__project")
    assert report_epoch(strong, 1, 0.9) == "" and report_epoch(also_strong, 1, 0.3) == "", "no trial has completed yet"
    end(strong.run, "succeeded", value=0.9)
    reason = report_epoch(weak, 1, 0.3)
    assert reason.startswith("Pruned by the sweep after epoch 1: its validation.accuracy (0.3)")
    assert GroupMember.objects.get(pk=weak.pk).pruned_at == 1
    TrainingRun.objects.filter(pk=weak.run_id).update(status="stopped", message=reason)
    member_ended(weak.run_id)
    assert GroupMember.objects.get(pk=weak.pk).outcome == Outcome.PRUNED
    assert [t.state.name for t in study_of(RunGroup.objects.get(pk=group_id)).loaded().get_trials()][weak.trial] == "PRUNED"
    assert member_of(weak.run_id).group_id == group_id and member_of(10**9) is None


def test_no_pruner_never_stops_a_member(api, partition):
    group_id = launch(api, partition, {"sampler": "random", "trials": 2, "parallel": 2, "pruner": "none",
                                       "dimensions": [RATES]}).json()["id"]
    good, bad = GroupMember.objects.filter(group_id=group_id).select_related("group__project")
    assert report_epoch(good, 1, 0.9) == "" and report_epoch(bad, 1, 0.1) == "" and report_epoch(bad, 2, 0.1) == ""


@pytest.mark.parametrize("search, field", [
    ({"dimensions": []}, "search.dimensions"),
    ({}, "search.dimensions"),
    ({"sampler": "grid", "dimensions": [{"setting": "batch_size", "values": list(range(1, 16))},
                                        {"setting": "epochs", "values": list(range(1, 16))}]}, "search.dimensions"),
    ({"trials": 201, "dimensions": [RATES]}, "search.trials"),
    ({"trials": 0, "dimensions": [RATES]}, "search.trials"),
    ({"sampler": "annealing", "dimensions": [RATES]}, "search.sampler"),
    ({"pruner": "hyperband", "dimensions": [RATES]}, "search.pruner"),
    ({"dimensions": [RATES, BATCHES, {"setting": "epochs", "values": [1, 2]}, {"setting": "seed", "values": [1, 2]},
                     {"setting": "gradient_clipping", "values": [0, 1]}]}, "search.dimensions"),
    ({"dimensions": [RATES, RATES]}, "search.dimensions.1.setting"),
    ({"dimensions": [{"setting": "optimizer.learning_rate", "values": [0.1]}]}, "search.dimensions.0.values"),
    ({"dimensions": [{"setting": "optimizer.learning_rate", "values": [0.1, -1]}]}, "search.dimensions.0.values"),
    ({"dimensions": [{"setting": "optimizer.learning_rate", "low": 0.1, "high": 0.01}]}, "search.dimensions.0.high"),
    ({"dimensions": [{"setting": "optimizer.learning_rate", "low": 0, "high": 0.1, "log": True}]}, "search.dimensions.0.low"),
    ({"dimensions": [{"setting": "optimizer.learning_rate", "low": 1e-4, "high": 50}]}, "search.dimensions.0.high"),
    ({"sampler": "grid", "dimensions": [{"setting": "optimizer.learning_rate", "low": 1e-4, "high": 0.1}]},
     "search.dimensions.0.values"),
    ({"dimensions": [{"setting": "optimizer.wings", "values": [1, 2]}]}, "search.dimensions.0.values"),
    ({"dimensions": [{"setting": "model.architecture", "values": ["small_cnn", "no_such_net"]}]}, "search.dimensions.0.values"),
    ("grid please", "search"),
])
def test_refusals_name_their_field_and_create_nothing(api, partition, search, field):
    response = launch(api, partition, search)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field, response.json()
    assert not RunGroup.objects.exists() and not TrainingRun.objects.exists()


def test_a_sweep_needs_a_validation_metric_to_pick_by(api, user, project, partition):
    no_validation = create_partition(user, partition.dataset, "train and test", 80, 0, 20, 1)
    refused = launch(api, no_validation, {"dimensions": [RATES]}, spec={"monitor": "train.loss"})
    assert refused.status_code == 400 and refused.json()["field"] == "partition", refused.json()
    by_train = launch(api, partition, {"dimensions": [RATES]}, spec={"epochs": 2, "monitor": "train.loss"})
    assert by_train.status_code == 400 and by_train.json()["field"] == "spec.monitor", by_train.json()
    assert "validation metric" in by_train.json()["message"]
    with_seeds = launch(api, partition, {"dimensions": [RATES]}, seeds=3)
    assert with_seeds.status_code == 400 and with_seeds.json()["field"] == "search", with_seeds.json()
    assert not RunGroup.objects.exists()


def test_a_range_over_a_whole_number_setting_draws_whole_numbers(api, partition):
    response = launch(api, partition, {"sampler": "random", "trials": 3, "parallel": 3, "pruner": "none",
                                       "dimensions": [{"setting": "batch_size", "low": 2, "high": 9}]})
    assert response.status_code == 202, response.content
    assert response.json()["search"]["dimensions"][0]["integer"] is True
    assert all(isinstance(m["values"]["batch_size"], int) and 2 <= m["values"]["batch_size"] <= 9
               for m in response.json()["members"])


def test_the_trials_table_exports_one_row_per_member_with_its_settings(api, partition):
    group_id = launch(api, partition, {"sampler": "grid", "parallel": 1, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    member = GroupMember.objects.get(group_id=group_id)
    end(member.run, "succeeded", value=0.75)
    rows = api.get(f"/api/groups/{group_id}/export/?file=json").json()
    first = next(row for row in rows if row["run"] == member.run_id)
    assert first["optimizer.learning_rate"] == member.values["optimizer.learning_rate"]
    assert first["outcome"] == "complete" and first["validation.accuracy"] == 0.75 and first["trial"] == 1
    assert len(rows) == 2, "the first member and the one started after it"
    wrong = api.get(f"/api/groups/{group_id}/export/?table=metrics")
    assert wrong.status_code == 400 and wrong.json()["field"] == "table"


def test_deleting_a_sweep_waits_for_its_runs_then_takes_its_study_and_keeps_its_runs(api, partition,
                                                                                      django_capture_on_commit_callbacks):
    group_id = launch(api, partition, {"sampler": "grid", "parallel": 1, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    group = RunGroup.objects.get(pk=group_id)
    folder = group.project.storage_dir / "sweeps" / str(group_id)
    assert (folder / "study.journal").exists()
    plan = api.get(f"/api/groups/{group_id}/deletion/").json()
    assert not plan["allowed"] and "still queued or training; stop the group first" in plan["reason"]
    refused = api.delete(f"/api/groups/{group_id}/")
    assert refused.status_code == 409 and RunGroup.objects.filter(pk=group_id).exists()

    assert api.post(f"/api/groups/{group_id}/stop/").status_code == 202
    assert api.get(f"/api/groups/{group_id}/deletion/").json()["allowed"]
    runs = list(TrainingRun.objects.filter(groups=group_id).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):  # the folder goes once the deletion has committed
        assert api.delete(f"/api/groups/{group_id}/").status_code == 204
    assert not RunGroup.objects.filter(pk=group_id).exists() and not folder.exists()
    assert sorted(TrainingRun.objects.filter(pk__in=runs).values_list("pk", flat=True)) == sorted(runs), "its runs are kept"
    assert advance_sweeps() == 0


def test_deleting_a_comparison_takes_nothing_else(api, partition):
    from backend.experiments.models import Comparison

    group_id = launch(api, partition, {"sampler": "grid", "parallel": 1, "pruner": "none", "dimensions": [RATES]}).json()["id"]
    run = TrainingRun.objects.filter(groups=group_id).get()
    comparison = Comparison.objects.create(project=run.project, name="Rates", metric="loss")
    comparison.runs.set([run])
    comparison.groups.set([group_id])
    comparison_id = comparison.pk
    assert api.get(f"/api/comparisons/{comparison_id}/deletion/").json()["allowed"]
    assert api.delete(f"/api/comparisons/{comparison_id}/").status_code == 204
    assert not Comparison.objects.exists() and RunGroup.objects.filter(pk=group_id).exists() and TrainingRun.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize("setting", ["a..b", ".", "optimizer", "model", "data.plan", "data.plan.patch_size", "phases",
                                     "resources.device", "task", "model.start_run", "metrics"])
def test_odd_settings_are_refused_with_a_reason_never_a_500(api, partition, setting):
    response = launch(api, partition, {"sampler": "grid", "dimensions": [{"setting": setting, "values": [1, 2]}]})
    assert response.status_code == 400, response.content
    assert response.json()["field"].startswith("search.dimensions.0"), response.json()
    assert not RunGroup.objects.exists()
