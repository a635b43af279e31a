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
    """What the page shows of a run while it goes on: the job's fields, how far training got, its place in
    the queue, whether it can be resumed, and (once finished) its results."""

    queue_position = serializers.SerializerMethodField(help_text="1: next to be taken by a worker of its queue; null once it "
                                                                 "left the queue.")
    has_checkpoint = serializers.BooleanField(read_only=True, help_text="A checkpoint exists: a stopped or failed run can be resumed.")

    class Meta:
        model = TrainingRun
        fields = ["id", *JOB_FIELDS, "epochs_completed", "queue", "queue_position", "has_checkpoint", "results"]
        read_only_fields = fields

    def get_queue_position(self, run) -> int | None:
        from .services import queue_position

        return queue_position(run)


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunLogLine
        fields = ["id", "text", "recorded_at"]
        read_only_fields = fields
