"""Runs as groups (issue 22, T5): one spec launched as several runs (repeats over seeds, folds of a cross-validation)
whose results are read together. The runs app knows one run and its evaluations; this app knows which runs belong
together, and keeps the group's pooled evaluation."""
from django.conf import settings
from django.db import models

from backend.datasets.models import Partition
from backend.projects.models import Project
from backend.runs.models import Evaluation, TrainingRun


class RunGroup(models.Model):
    """Runs of one spec: `seeds` repeats it with seeds spec seed, +1, ... on one partition; `folds` trains one run per
    fold of a k-fold partition (each fold validates once; crossed with seeds when seeds > 1); `sweep` tries the
    spec with other values of up to four settings, each run's chosen by Optuna (backend/experiments/sweeps.py)."""

    class Kind(models.TextChoices):
        SEEDS = "seeds", "Repeats over seeds"
        FOLDS = "folds", "Cross-validation over folds"
        SWEEP = "sweep", "Sweep over settings"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="run_groups")
    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, related_name="run_groups",
                                  help_text="The partition chosen; a cross-validation's members use each fold's partition.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=200)
    spec = models.JSONField(default=dict, help_text="The settings asked for (each member's spec is its run's, resolved).")
    seeds = models.PositiveSmallIntegerField(default=1, help_text="Runs per partition, with seeds spec seed + 0 .. seeds - 1.")
    runs = models.ManyToManyField(TrainingRun, through="GroupMember", related_name="groups")
    pooled = models.JSONField(default=dict, blank=True,
                              help_text="The members' evaluations pooled into one (workers/groups.py): results, and which "
                                        "evaluations it pooled.")
    search = models.JSONField(default=dict, blank=True,
                              help_text="A sweep's search (workers/engine/sweeps.py): sampler, trials, runs at once, pruner, the "
                                        "settings varied, and the objective (the validation metric it picks by).")
    stop_requested = models.BooleanField(default=False, help_text="Stopped by a user: no member is started any more.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def evaluated_subset(self) -> str:
        """What each member is measured on: the held-out fold (its validation subset) or the shared test subset."""
        return "validation" if self.kind == self.Kind.FOLDS else "test"

    def member_evaluations(self):
        """Each member's newest done evaluation on the group's subset of its own partition (not another dataset)."""
        done = Evaluation.objects.filter(run__groups=self, subset=self.evaluated_subset, dataset__isnull=True,
                                         status=Evaluation.Status.DONE).order_by("run_id", "-created_at")
        newest = {}
        for evaluation in done:
            newest.setdefault(evaluation.run_id, evaluation)
        return list(newest.values())


class GroupMember(models.Model):
    """One run of a group: which seed it was given and, in a cross-validation, which fold it holds out; in a sweep,
    its trial: the settings Optuna chose and how it ended for the sweep."""

    class Outcome(models.TextChoices):
        PENDING = "", "Not ended"
        COMPLETE = "complete", "Complete"
        PRUNED = "pruned", "Pruned"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        REPLACED = "replaced", "Failed; trained again"

    group = models.ForeignKey(RunGroup, on_delete=models.CASCADE, related_name="members")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="group_memberships")
    seed = models.IntegerField()
    fold = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1..k: the fold held out (the validation subset).")
    trial = models.PositiveIntegerField(null=True, blank=True, help_text="A sweep's trial number (Optuna's, from 0).")
    values = models.JSONField(default=dict, blank=True, help_text="A sweep member's settings, by dotted name.")
    attempt = models.PositiveSmallIntegerField(default=1, help_text="2: a sweep member trained again after its first run failed.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING, blank=True,
                               help_text="How a sweep member ended, as the sweep told Optuna.")
    pruned_at = models.PositiveIntegerField(null=True, blank=True, help_text="The epoch after which the sweep's pruner stopped it.")

    class Meta:
        ordering = ["fold", "seed", "trial", "id"]
        constraints = [models.UniqueConstraint(fields=["group", "run"], name="one_membership_per_run")]


class Comparison(models.Model):
    """Runs and groups of one project read side by side (issue 22, R3; docs/results.md "Compare"), saved so that its
    address can be shared with the project's members. What it shows is computed when it is read
    (backend/experiments/comparisons.py): a run that goes on training, or a group that gets another member, shows its
    latest figures."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    name = models.CharField(max_length=200)
    runs = models.ManyToManyField(TrainingRun, blank=True, related_name="comparisons")
    groups = models.ManyToManyField(RunGroup, blank=True, related_name="comparisons")
    metric = models.CharField(max_length=50, help_text="The metric whose curves per epoch are overlaid (a metric point's name).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name
