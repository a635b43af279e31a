"""What a run's points, log lines and state look like to clients: shared by the JSON endpoints and the live events."""
from rest_framework import serializers

from backend.core.jobs import JOB_FIELDS, JobSerializer

from .models import MetricPoint, RunLogLine, TrainingRun


class MetricPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = ["id", "epoch", "subset", "name", "value"]
        read_only_fields = fields


class RunStatusSerializer(JobSerializer):
    """What the page shows of a run while it goes on: the job's fields and how far training got."""

    class Meta:
        model = TrainingRun
        fields = ["id", *JOB_FIELDS, "epochs_completed", "test_accuracy", "test_loss"]
        read_only_fields = fields


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunLogLine
        fields = ["id", "text", "recorded_at"]
        read_only_fields = fields
