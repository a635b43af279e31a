from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.tasks import TRAIN_QUEUES
from workers.engine.zoo.inputs import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE, MIN_CLASSES

from . import zoo
from .errors import LARGEST_ID, ServiceError, error_body
from .models import WorkerHeartbeat


class WeightsSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What the run spec's model.weights names: imagenet or medicalnet.")
    title = serializers.CharField()
    filename = serializers.CharField(help_text="The file's name, as its publisher (torchvision, MedicalNet) names it.")
    url = serializers.CharField(help_text="Where it is published: download it there, on a computer with internet access.")
    mean = serializers.ListField(child=serializers.FloatField())
    std = serializers.ListField(child=serializers.FloatField())
    size = serializers.IntegerField(allow_null=True, help_text="The image side the weights were trained at (null: volumes "
                                                               "of many sizes, MedicalNet's).")
    imagenet_top1 = serializers.FloatField(allow_null=True, help_text="ImageNet top-1 accuracy in %, as torchvision reports "
                                                                      "it (null for weights not trained on ImageNet).")
    sha256_prefix = serializers.CharField(allow_null=True, help_text="The file's SHA-256 begins with this (checked when a run "
                                                                     "starts from it); null: no hash is published, the "
                                                                     "file's tensors are checked against the network.")
    description = serializers.CharField(allow_blank=True, help_text="What the weights were trained on, and how inputs were "
                                                                    "normalised.")
    available = serializers.BooleanField(help_text="The file is in the weights folder (TOOLKIT_WEIGHTS_DIR) or torchvision's cache.")
    where = serializers.CharField(help_text="Where it was found, or which file to put where.")


class ArchitectureSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    task = serializers.CharField(help_text="classification")
    dims = serializers.IntegerField(help_text="2 for images, 3 for volumes.")
    channels = serializers.CharField(help_text="The channel counts it takes: any (its first layer is fitted to the images).")
    parameters = serializers.IntegerField(help_text="For 3 channels and 1000 classes.")
    min_size = serializers.IntegerField(help_text="The smallest image side it takes (a volume's: the smallest cube's).")
    max_size = serializers.IntegerField(allow_null=True, help_text="The largest, for a network built for one size.")
    accepted_sizes = serializers.CharField()
    head = serializers.CharField(help_text="The classifier layer, replaced for new classes.")
    gradcam_layer = serializers.CharField()
    blocks = serializers.IntegerField(help_text="Layer groups, input to output, the head last (what a phase freezes).")
    source = serializers.CharField(help_text="torchvision, monai or toolkit.")
    weights = WeightsSerializer(many=True, help_text="Pretrained weights it can start from (random is always possible).")


class ArchitectureList(APIView):
    """The network topologies a run can use, with the pretrained weights each can start from and whether their
    files are on this server."""

    @extend_schema(responses=ArchitectureSerializer(many=True))
    def get(self, request):
        return Response(zoo.architectures())


def bounded(minimum: int, maximum: int, rule: str, **options) -> serializers.IntegerField:
    """A whole-number query parameter whose every refusal states the rule (DRF's own say only "Ensure this value ...")."""
    messages = {"min_value": rule, "max_value": rule, "invalid": f"{rule} Give a whole number.",
                "max_string_length": rule}
    return serializers.IntegerField(min_value=minimum, max_value=maximum, error_messages=messages, **options)


class SummaryQuerySerializer(serializers.Serializer):
    dataset = bounded(1, LARGEST_ID, "A dataset is named by its id, a whole number from 1.", required=False,
                      help_text="Take channels, image size and classes from this dataset (one you can read).")
    channels = bounded(1, MAX_CHANNELS, f"Images have 1 to {MAX_CHANNELS} channels (1 for CT, MR or X-ray, 3 for colour).",
                       required=False, help_text="Image channels (default 3).")
    height = bounded(1, MAX_SIDE, f"Images of 1 to {MAX_SIDE} pixels a side can be summarised; larger ones are resized "
                                  "inside the network (input_size).", required=False,
                     help_text="Image height in pixels (default: the network's usual size; the width when only it is given).")
    width = bounded(1, MAX_SIDE, f"Images of 1 to {MAX_SIDE} pixels a side can be summarised; larger ones are resized "
                                 "inside the network (input_size).", required=False,
                    help_text="Image width in pixels (the height when only it is given).")
    classes = bounded(MIN_CLASSES, MAX_CLASSES, f"A classifier has {MIN_CLASSES} to {MAX_CLASSES} classes.", required=False,
                      help_text="Classes (default 2).")
    depth = bounded(1, MAX_SIDE, f"Volumes of 1 to {MAX_SIDE} slices can be summarised; larger ones are resized inside the "
                                 "network (input_size).", required=False,
                    help_text="A 3D network's volumes: their depth in slices (default: the height, a cube). Also with a "
                              "dataset. Not for a 2D network.")
    input_size = bounded(0, MAX_SIDE, f"The input size is 0 (the images' own size) or 1 to {MAX_SIDE} pixels.", default=0,
                         help_text="Resize the images to this side inside the network (the run's model.input_size); "
                                   "0: their own size.")
    train = serializers.ChoiceField(choices=zoo.TRAIN_CHOICES, default="all", error_messages={
                                        "invalid_choice": "train is all (the whole network) or head (the head only, the rest frozen)."},
                                    help_text="A phase's `train`: all, or head (everything else frozen).")
    frozen_blocks = bounded(0, 1000, "The frozen blocks are counted from the input: 0 or more.", default=0,
                            help_text="A phase's `frozen_blocks`: freeze the first n blocks.")

    TYPED = ("channels", "height", "width", "classes")

    def validate(self, values):
        if "dataset" in values and any(name in values for name in self.TYPED):
            raise ServiceError("Give a dataset or channels, height, width and classes, not both.", field="dataset")
        for side, other in (("height", "width"), ("width", "height")):
            if side in values and other not in values:
                values[other] = values[side]  # one side given: square images
        return values


class LayerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The module's path in the network, e.g. layer4.1.conv2.")
    type = serializers.CharField(help_text="PyTorch's class, e.g. Conv2d.")
    detail = serializers.CharField(help_text="Kernel, stride, sizes: what tells two layers of a type apart.")
    output_shape = serializers.ListField(child=serializers.IntegerField(), allow_null=True,
                                         help_text="Channels × (depth ×) height × width (or features) of one image's output.")
    parameters = serializers.IntegerField()
    multiply_accumulates = serializers.IntegerField(help_text="For one image (convolutions and dense layers).")
    block = serializers.IntegerField(help_text="The index of its block.")
    frozen = serializers.BooleanField(help_text="In a block the phase freezes.")
    trainable = serializers.BooleanField(help_text="Has parameters, and the phase trains them.")


class BlockSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    title = serializers.CharField()
    modules = serializers.ListField(child=serializers.CharField())
    parameters = serializers.IntegerField()
    output_shape = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    frozen = serializers.BooleanField()


class SummaryDatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SummaryInputSerializer(serializers.Serializer):
    channels = serializers.IntegerField()
    depth = serializers.IntegerField(required=False, help_text="A 3D network's volumes only: their slices.")
    height = serializers.IntegerField()
    width = serializers.IntegerField()
    classes = serializers.IntegerField()
    dataset = SummaryDatasetSerializer(allow_null=True)
    input_size = serializers.IntegerField()
    network_input = serializers.ListField(child=serializers.IntegerField(), help_text="What the network's first layer sees: "
                                          "channels × height × width, or channels × depth × height × width.")
    accepted_sizes = serializers.CharField()


class SummaryPhaseSerializer(serializers.Serializer):
    train = serializers.CharField()
    frozen_blocks = serializers.IntegerField()
    frozen_block_count = serializers.IntegerField()


class SummaryTotalsSerializer(serializers.Serializer):
    parameters = serializers.IntegerField()
    trainable_parameters = serializers.IntegerField()
    frozen_parameters = serializers.IntegerField()
    multiply_accumulates = serializers.IntegerField()
    layers = serializers.IntegerField()


class LayerSummarySerializer(serializers.Serializer):
    architecture = serializers.CharField()
    title = serializers.CharField()
    input = SummaryInputSerializer()
    phase = SummaryPhaseSerializer()
    blocks = BlockSerializer(many=True)
    layers = LayerSerializer(many=True)
    totals = SummaryTotalsSerializer()
    output_shape = serializers.ListField(child=serializers.IntegerField())


class LayerSummary(APIView):
    """A network's layers for your images: each layer's type, output shape and parameters, the block it belongs to,
    and whether a phase with these settings trains or freezes it. Images a network cannot take (below its smallest
    size, LeNet-5 above 32 pixels) are a 400 naming the sizes it accepts."""

    @extend_schema(parameters=[SummaryQuerySerializer, OpenApiParameter("name", str, OpenApiParameter.PATH,
                                                                        description="An architecture's name, e.g. resnet18.")],
                   responses=LayerSummarySerializer)
    def get(self, request, name):
        entry = zoo.architecture_entry(name)
        query = SummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        images = zoo.dataset_input(request.user, values["dataset"]) if "dataset" in values else {
            **zoo.usual_input(entry), **{key: values[key] for key in SummaryQuerySerializer.TYPED if key in values}}
        if "depth" in values or entry.dims == 3:  # a 2D network's depth is refused by the summary, saying why
            images["depth"] = values.get("depth", images["height"])
        return Response(zoo.layer_summary(name, images, values["input_size"], values["train"], values["frozen_blocks"]))


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
