from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlanMixin
from backend.core.errors import int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.projects.access import projects_for
from workers.engine.zoo.registry import MODELS

from .models import ImportedModel
from .services import delete_imported, import_model, imported_deletion, imported_models_for, predict, stop_import


class ImportedModelSerializer(JobSerializer):
    created_by = serializers.SerializerMethodField()
    trainable = serializers.BooleanField(read_only=True, help_text="Whether a run can start from it (weights copied, or converted).")
    mode_display = serializers.CharField(source="get_mode_display", read_only=True)
    architecture_title = serializers.SerializerMethodField()

    class Meta:
        model = ImportedModel
        fields = ["id", "project", "name", "kind", "file_name", "size_bytes", "sha256", "opset", "producer", "inputs", "outputs",
                  "metadata", "architecture", "architecture_title", "mode", "mode_display", "reason", "trainable", "classes", "class_count",
                  "channels", "input_size", "mean", "std", "details", *JOB_FIELDS, "created_by", "created_at"]
        read_only_fields = fields

    def get_created_by(self, imported) -> str:
        return imported.created_by.username if imported.created_by else ""

    def get_architecture_title(self, imported) -> str:
        entry = MODELS.get(imported.architecture)
        return entry.title if entry else ("Converted from ONNX" if imported.architecture else "")


class ImportUploadSerializer(serializers.Serializer):
    project = OwnedPrimaryKeyField(scope=projects_for, model_name="project")
    file = serializers.FileField(allow_empty_file=True, help_text="An .onnx file (one image input, weights inside), or a "
                                                                  ".safetensors file of a zoo network's weights. Pickled files "
                                                                  "(.pt, .pth, .pkl, .ckpt) are refused.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    architecture = serializers.CharField(max_length=50, required=False, allow_blank=True,
                                         help_text=f"For safetensors: the zoo network the weights belong to ({', '.join(MODELS)}).")
    mean = serializers.CharField(max_length=400, required=False, allow_blank=True,
                                 help_text="The normalisation the model expects, when the file does not apply it itself: per-"
                                           "channel mean of [0, 1] images, e.g. '0.485, 0.456, 0.406' (with std).")
    std = serializers.CharField(max_length=400, required=False, allow_blank=True, help_text="The per-channel std, with mean.")
    input_size = serializers.IntegerField(required=False, default=0, min_value=0, max_value=1024,
                                          help_text="For safetensors: the image side the model is exported at for prediction "
                                                    "(0: the architecture's usual size).")


class PredictSerializer(serializers.Serializer):
    image = serializers.FileField(allow_empty_file=True, help_text="One 2D image: PNG, JPEG, BMP, TIFF, or a 2D DICOM file.")


# `class` is a Python keyword: the serializer is made by type() to have a field of that name
TopSerializer = type("TopSerializer", (serializers.Serializer,), {
    "index": serializers.IntegerField(), "class": serializers.CharField(), "probability": serializers.FloatField()})


class PredictionSerializer(serializers.Serializer):
    outputs = serializers.ListField(child=serializers.FloatField(), help_text="The model's first output for the image.")
    probabilities = serializers.ListField(child=serializers.FloatField(), help_text="Softmax of the outputs (or the outputs, when "
                                                                                    "they are probabilities already).")
    classes = serializers.ListField(child=serializers.CharField(), help_text="Class names in output order (numbers when unknown).")
    top = TopSerializer()
    input_shape = serializers.ListField(child=serializers.IntegerField(), help_text="(C, H, W) the image was given to the model as.")
    outputs_are = serializers.CharField()


class ImportedModelViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Models imported from ONNX or safetensors files: checked on upload, then made trainable (or prediction-only) by a worker."""

    serializer_class = ImportedModelSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        queryset = imported_models_for(self.request.user).select_related("created_by")
        project = int_query_param(self.request, "project") if self.action == "list" else None
        return queryset if project is None else queryset.filter(project_id=project)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's imported models.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": ImportUploadSerializer}, responses={202: ImportedModelSerializer})
    def create(self, request):
        """Upload a model. Refused with 400, keeping nothing, when it cannot be imported (the message says why);
        otherwise 202: a worker finds out what it can become (`mode`, `reason`)."""
        upload = ImportUploadSerializer(data=request.data, context={"request": request})
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        imported = import_model(request.user, data["project"], data["file"], name=data.get("name", ""),
                                architecture=data.get("architecture", ""), mean=data.get("mean", ""), std=data.get("std", ""),
                                input_size=data.get("input_size", 0))
        return Response(ImportedModelSerializer(imported).data, status=status.HTTP_202_ACCEPTED)

    def retrieve(self, request, *args, **kwargs):
        imported = self.get_object()
        record(request.user, imported.project, Action.READ, imported)
        return Response(self.get_serializer(imported).data)

    def deletion_plan(self, user, imported):
        return imported_deletion(imported)

    def delete_thing(self, user, imported, with_runs):
        delete_imported(user, imported, with_runs)

    @extend_schema(request=None, responses={202: ImportedModelSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop an import: a queued one at once, a running one after its current step (the model is then not usable)."""
        return Response(ImportedModelSerializer(stop_import(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request={"multipart/form-data": PredictSerializer}, responses=PredictionSerializer)
    @action(detail=True, methods=["post"])
    def predict(self, request, pk=None):
        """The model's scores for one image, run by onnxruntime (any imported model that finished importing, prediction-only
        ones too). The image is prepared as datasets are (8 bits through its window, resized, [0, 1])."""
        imported = self.get_object()
        body = PredictSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(predict(request.user, imported, body.validated_data["image"]))
