from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.tasks import TRAIN_QUEUES
from workers.engine.architectures import ARCHITECTURES

from .errors import error_body
from .models import WorkerHeartbeat


class ArchitectureSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()


class ArchitectureList(APIView):
    """The network topologies a run can use."""

    @extend_schema(responses=ArchitectureSerializer(many=True))
    def get(self, request):
        return Response([{"name": a.name, "title": a.title, "description": a.description} for a in ARCHITECTURES.values()])


class WorkerSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerHeartbeat
        fields = ["hostname", "queues", "cpu_count", "gpu_count", "gpu_names", "last_seen"]
        read_only_fields = fields


class ResourcesSerializer(serializers.Serializer):
    cpu_available = serializers.BooleanField()
    gpu_available = serializers.BooleanField()
    workers = WorkerSerializer(many=True)


class ResourceList(APIView):
    """The compute resources online now: workers, their queues and GPUs."""

    @extend_schema(responses=ResourcesSerializer)
    def get(self, request):
        workers = list(WorkerHeartbeat.online())
        return Response({
            "cpu_available": WorkerHeartbeat.queue_is_served(TRAIN_QUEUES["cpu"]),
            "gpu_available": WorkerHeartbeat.queue_is_served(TRAIN_QUEUES["gpu"]),
            "workers": WorkerSerializer(workers, many=True).data,
        })


@csrf_exempt  # it changes nothing; without this, unknown POST paths would answer an HTML 403
def api_not_found(request, *args, **kwargs):
    """No API operation has this path (ids are whole numbers; paths end with a slash)."""
    message = f"No API operation at {request.path}. See /api/docs/ for the list."
    return JsonResponse(error_body([{"code": "not_found", "message": message, "field": None}]), status=404)
