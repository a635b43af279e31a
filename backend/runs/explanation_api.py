"""/api/explanations/: one image's class probabilities and heat map by a run's kept model or an imported model (a
dataset's sample, or an uploaded file; docs/results.md, "Explain")."""
from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.errors import ServiceError, int_query_param
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.datasets.api import float_query_param

from .explanations import (
    check_upload,
    explanations_for,
    heat_map_png,
    readable_imported,
    readable_sample,
    start_explanation,
    start_upload_explanation,
    upload_png,
)
from .models import Explanation
from .segmentations import MASK_FILES, is_segmented, mask_file, mask_png
from .services import runs_for

MASK_KINDS = [*MASK_FILES]  # (in the viewset's body, `list` is its own method)
MASK_KINDS_HELP = "Default: the mask's first file. " + "; ".join(f"{kind}: {what}" for kind, (_, _, what) in MASK_FILES.items())
UPLOAD_FACTS = ("name", "format", "modality", "kind", "shape", "channels", "depth", "height", "width", "spacing", "fits", "notes")


class ExplanationSerializer(JobSerializer):
    project = serializers.SerializerMethodField()
    dataset = serializers.SerializerMethodField(help_text="The sample's dataset (null for an uploaded file).")
    upload = serializers.SerializerMethodField(help_text="null for a sample; for an uploaded file: {name, format, modality "
                                               "(DICOM's, else the format), kind (image or volume), shape (as decoded), channels, "
                                               "depth, height, width, spacing (mm), fits (how it reached the model), notes, planes "
                                               "({axis: count} the viewer may show)}.")
    image_url = serializers.SerializerMethodField(help_text="An uploaded file's plane as a PNG (?axis=&index=&center=&width=), "
                                                            "the picture the heat map lies over; null for a sample.")
    results = serializers.JSONField(read_only=True, help_text="{} until done; then {classes, probabilities (in the order of "
                                    "classes), predicted, explained_class (the class the heat map is of: the predicted one), "
                                    "method, layer (the module Grad-CAM looked at), input_shape (what the model saw: C, H, W or C, D, H, W), windows "
                                    "(1, or the sliding windows of a volume larger than the patch), heat_map_shape (the "
                                    "sample's grid, D H W; null: no heat map), note (why not)}. A segmentation run's: {task, "
                                    "classes, label_values (the dataset's value of each class), colours (each class's in the mask "
                                    "overlay), sizes ([{label, value, voxels, ml (a volume) or mm2 (a 2D image), with the spacing "
                                    "known}]), label_map_shape (D H W of the image's own grid), files, seg_note (why no DICOM SEG "
                                    "of a DICOM input), input_shape, ground_truth_sample (the dataset's sample this file is, with "
                                    "its mask; null)}.")
    heat_map_url = serializers.SerializerMethodField(help_text="One plane of the heat map as a transparent PNG over the "
                                                               "sample viewer's plane (?axis=&index=); null without one.")
    mask_url = serializers.SerializerMethodField(help_text="A segmentation's: one plane of the predicted label map in the "
                                                           "classes' colours, transparent on the background, over the image's "
                                                           "plane (?axis=&index=); null for a classification's or before done.")
    downloads = serializers.SerializerMethodField(help_text="A segmentation's mask files once done, {as: address}: nifti "
                                                            "(a volume), png and preview (a 2D image), seg (DICOM input: a "
                                                            "DICOM SEG); {} otherwise.")

    class Meta:
        model = Explanation
        fields = ["id", "project", "run", "imported_model", "sample", "dataset", "upload", "queue", *JOB_FIELDS, "results",
                  "heat_map_url", "mask_url", "downloads", "image_url", "created_at"]
        read_only_fields = fields

    def get_project(self, explanation) -> int:
        return explanation.run.project_id if explanation.run_id else explanation.imported_model.project_id

    def get_dataset(self, explanation) -> int | None:
        return explanation.sample.dataset_id if explanation.sample_id else None

    def get_upload(self, explanation) -> dict | None:
        if not explanation.upload:
            return None
        facts = {key: explanation.upload.get(key) for key in UPLOAD_FACTS}
        volume = facts["kind"] == "volume"
        facts["planes"] = ({"axial": facts["depth"], "coronal": facts["height"], "sagittal": facts["width"]} if volume
                           else {"axial": 1})
        return facts

    def get_image_url(self, explanation) -> str | None:
        return f"/api/explanations/{explanation.pk}/image/" if explanation.upload else None

    def get_heat_map_url(self, explanation) -> str | None:
        if explanation.status != Explanation.Status.DONE or not explanation.results.get("heat_map_shape"):
            return None
        return f"/api/explanations/{explanation.pk}/heat-map/"

    def get_mask_url(self, explanation) -> str | None:
        return f"/api/explanations/{explanation.pk}/mask/" if is_segmented(explanation) else None

    def get_downloads(self, explanation) -> dict:
        if not is_segmented(explanation):
            return {}
        return {kind: f"/api/explanations/{explanation.pk}/download/?as={kind}" for kind in explanation.results.get("files", {})}


class ExplanationRequestSerializer(serializers.Serializer):
    run = serializers.IntegerField(help_text="The run whose kept model explains the sample.")
    sample = serializers.IntegerField(help_text="A sample of the run's dataset, or of another dataset of the same kind, "
                                                "channels and intensities.")


class UploadModelSerializer(serializers.Serializer):
    run = serializers.IntegerField(required=False, help_text="The run whose kept model explains the file (or imported_model).")
    imported_model = serializers.IntegerField(required=False, help_text="The imported model that explains the file (or run).")
    file = serializers.FileField(required=False, allow_empty_file=True,
                                 help_text="One image file: PNG, JPEG, BMP, TIFF, DICOM, or NIfTI (.nii, .nii.gz); a 2D image "
                                           "or a volume as the model takes, of its channels and modality.")


class ExplanationUploadSerializer(UploadModelSerializer):
    sample = serializers.IntegerField(required=False, help_text="Instead of a file, with run: a dataset's sample.")


class UploadCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    format = serializers.CharField(help_text="DICOM, NIfTI, PNG, JPEG ...")
    modality = serializers.CharField(help_text="DICOM's modality (CT, MR ...), else the format.")
    kind = serializers.CharField(help_text="image or volume")
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="The decoded pixels' shape.")
    channels = serializers.IntegerField()
    spacing = serializers.ListField(child=serializers.FloatField(), help_text="mm a pixel (row, column) or voxel (slice, row, column); [] when unknown.")
    fits = serializers.CharField(help_text="How the file would reach the model.")
    notes = serializers.ListField(child=serializers.CharField())


class ExplanationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Explanations: a sample's class probabilities and a Grad-CAM heat map by a run's kept model, computed by a worker.
    `?run=` lists one run's, `?sample=` one sample's."""

    serializer_class = ExplanationSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        explanations = explanations_for(self.request.user).select_related("run__project", "imported_model__project", "sample")
        run, sample = int_query_param(self.request, "run"), int_query_param(self.request, "sample")
        imported = int_query_param(self.request, "imported_model")
        if run is not None:
            explanations = explanations.filter(run_id=run)
        if imported is not None:
            explanations = explanations.filter(imported_model_id=imported)
        return explanations.filter(sample_id=sample) if sample is not None else explanations

    @extend_schema(parameters=[OpenApiParameter("run", int, description="Only this run's explanations."),
                               OpenApiParameter("imported_model", int, description="Only this imported model's."),
                               OpenApiParameter("sample", int, description="Only this sample's.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        explanation = self.get_object()
        if explanation.is_finished:  # the page's polls of one under way are not reads of a result
            record(request.user, explanation.project, Action.READ, explanation)
        return Response(self.get_serializer(explanation).data)

    @extend_schema(request={"application/json": ExplanationRequestSerializer, "multipart/form-data": ExplanationUploadSerializer},
                   responses={202: ExplanationSerializer})
    def create(self, request):
        """Explain a dataset's sample with a run's kept model (JSON {run, sample}), or an uploaded file with a run's kept
        model or an imported model (multipart {run or imported_model, file}); the project's owners. The file is read and
        checked first: one that cannot be read, or whose kind (2D image or volume), channels, modality or size the model
        cannot take, is refused with a 400 (`field`: file) saying what to do, and nothing is kept. The same model and
        sample (or file, by its content) queued, running or done already: that explanation is answered."""
        multipart = (request.content_type or "").startswith("multipart/")
        fields = request.data if hasattr(request.data, "keys") else {}  # a JSON body of null or a list: the serializer says so
        if "file" in fields or "imported_model" in fields or (multipart and "sample" not in fields):
            return self.create_for_upload(request)
        asked = ExplanationRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        run = self.readable_run(asked.validated_data["run"])
        explanation = start_explanation(request.user, run, readable_sample(request.user, asked.validated_data["sample"]))
        return Response(ExplanationSerializer(explanation).data, status=status.HTTP_202_ACCEPTED)

    def readable_run(self, pk):
        run = runs_for(self.request.user).filter(pk=pk).select_related("partition__dataset", "project").first()
        if run is None:
            raise ServiceError(f"There is no run {pk} that you can read.", field="run", code="not_found", status_code=404)
        return run

    def upload_models(self, data) -> dict:
        return {"run": self.readable_run(data["run"]) if data.get("run") is not None else None,
                "imported": readable_imported(self.request.user, data["imported_model"]) if data.get("imported_model") is not None else None}

    def create_for_upload(self, request):
        asked = UploadModelSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        explanation = start_upload_explanation(request.user, asked.validated_data.get("file"),
                                               **self.upload_models(asked.validated_data))
        return Response(ExplanationSerializer(explanation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request={"multipart/form-data": UploadModelSerializer}, responses=UploadCheckSerializer)
    @action(detail=False, methods=["post"])
    def check(self, request):
        """Whether an uploaded file can be explained by the model (the project's owners): what it is and how it would
        reach the model (200), or a 400 (`field`: file) saying what is wrong and what to do. Nothing is kept or queued:
        the page asks this as soon as a file is chosen."""
        asked = UploadModelSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        return Response(check_upload(request.user, asked.validated_data.get("file"), **self.upload_models(asked.validated_data)))

    @extend_schema(responses={(200, "image/png"): bytes}, parameters=[
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
        OpenApiParameter("center", float, description="Window center, in the file's units (with width; default: its own)."),
        OpenApiParameter("width", float, description="Window width (with center)."),
    ])
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        """One plane of an uploaded file, drawn as the sample viewer draws a sample's: the picture the heat map lies over."""
        png, used, count = upload_png(self.get_object(), request.query_params.get("axis", "axial"), int_query_param(request, "index"),
                                      float_query_param(request, "center"), float_query_param(request, "width"))
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

    @extend_schema(responses={(200, "image/png"): bytes}, parameters=[
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
    ])
    @action(detail=True, methods=["get"], url_path="heat-map")
    def heat_map(self, request, pk=None):
        """One plane of the heat map as a PNG with transparency, on the grid of GET /api/samples/{id}/slice/'s plane."""
        png, used, count = heat_map_png(self.get_object(), request.query_params.get("axis", "axial"),
                                        int_query_param(request, "index"))
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

    @extend_schema(responses={(200, "image/png"): bytes}, parameters=[
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
    ])
    @action(detail=True, methods=["get"])
    def mask(self, request, pk=None):
        """A segmentation's predicted label map, one plane, in the classes' colours (results.colours) and transparent on
        the background, on the grid of the image's plane (GET image/ for an upload): the overlay of the viewer."""
        png, used, count = mask_png(self.get_object(), request.query_params.get("axis", "axial"), int_query_param(request, "index"))
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

    @extend_schema(responses={(200, "application/octet-stream"): bytes}, parameters=[
        OpenApiParameter("as", str, enum=MASK_KINDS, description=MASK_KINDS_HELP),
    ])
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """A segmentation's predicted mask as a file: NIfTI for a volume (the input's affine, spacing and orientation), PNG
        for a 2D image (the label values, and a coloured preview), DICOM SEG for a DICOM input (referencing its images).
        One the image has not (a DICOM SEG of a NIfTI file, a PNG of a volume) is a 400 (`field`: as) saying which it has."""
        explanation = self.get_object()
        path, filename, content_type = mask_file(explanation, request.query_params.get("as"))
        record(request.user, explanation.project, Action.DOWNLOAD, explanation, name=filename)
        return FileResponse(open(path, "rb"), as_attachment=True, filename=filename, content_type=content_type)
