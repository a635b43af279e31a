"""The pool of network topologies, by name, in the manner of torchvision's `get_model(name, weights=...)`.

Everything here is plain data the web tier reads (the zoo page, the run form, GET /api/architectures/)
without importing torch: importing it costs a web worker about 500 MB (tests/integration/test_web_imports.py
keeps it out). The networks themselves are built in the worker (networks.py). Figures that come from
torchvision (parameter counts, weight files and their hashes, preprocessing) are checked against it by
tests/unit/test_zoo.py, so they cannot drift.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Networks without pretrained weights see images mapped from [0, 1] to [-1, 1]: centred inputs keep a new
# BatchNorm's running statistics (started at mean 0, variance 1) near the truth from the first steps, which
# short runs on small sets need (on 80 demo images, 5 epochs: validation accuracy 0.5 for [0, 1] inputs, see
# the commit that chose this).
PLAIN_MEAN, PLAIN_STD = (0.5,), (0.5,)
# Volumes reach a 3D network already normalised by the data path (by modality: HU windows, z-scores), so the network
# takes them as they are.
VOLUME_MEAN, VOLUME_STD = (0.0,), (1.0,)
HASH_IN_FILENAME = re.compile(r"-([a-f0-9]{8,})\.")  # torchvision's (torch.hub's) convention: name-<sha256 prefix>.pth


@dataclass(frozen=True)
class WeightsEntry:
    """Weights a network can start from: where the file comes from, how to check it, how images were prepared.

    Two kinds are published: torchvision's ImageNet files (a state dict, a SHA-256 prefix in the name, ImageNet's
    statistics, crop size and top-1) and MedicalNet's 3D ResNets (`layout` "medicalnet": {"state_dict": {"module.…"}},
    no hash in the name, no ImageNet figures: their content is checked against the network when they are read)."""
    name: str                 # what the spec's model.weights names: "imagenet", "medicalnet"
    title: str
    filename: str             # as its publisher names it, in the toolkit's weights folder (or torchvision's cache)
    url: str                  # where it is published (for the offline message): a download address or a project page
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int | None = None        # the crop size the weights were trained at (None: volumes of many sizes)
    accuracy: float | None = None  # ImageNet top-1, as torchvision reports it (None: not an ImageNet classifier)
    sha256: str | None = None      # a prefix of the file's SHA-256, when its name does not carry one (None: from the name)
    layout: str = "torchvision"    # how the file holds the weights: "torchvision" or "medicalnet"
    description: str = ""

    @property
    def sha256_prefix(self) -> str | None:
        """The hash the file is checked against: given, or in its name (torch.hub's convention); None: no hash known."""
        if self.sha256:
            return self.sha256
        found = HASH_IN_FILENAME.search(self.filename)
        return found.group(1) if found else None

    @property
    def in_torch_cache(self) -> bool:
        """Whether torchvision's own cache may hold the file (its files only)."""
        return self.layout == "torchvision"

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "filename": self.filename, "url": self.url, "mean": list(self.mean),
                "std": list(self.std), "size": self.size, "imagenet_top1": self.accuracy, "sha256_prefix": self.sha256_prefix,
                "description": self.description}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    title: str
    description: str
    task: str                          # what it learns: "classification" (a vector of scores) or "segmentation" (a map)
    dims: int                          # 2 (images) or 3 (volumes)
    parameters: int                    # for 3 channels and 1000 classes, as built here (Inception: without its auxiliary head)
    min_size: int                      # the smallest input side it can take (a volume's: the smallest cube)
    max_size: int | None               # the largest, where the network is built for one size (LeNet-5)
    head: str                          # the classifier layer replaced for new classes (a segmentation network's output
                                       # stage); what a "head only" phase trains
    gradcam_layer: str                 # the last convolutional stage: where Grad-CAM looks
    blocks: tuple[tuple[str, ...], ...]  # parameter groups in input-to-output order (module name prefixes), head last
    source: str                        # "torchvision", "monai" or "toolkit"
    weights: tuple[WeightsEntry, ...] = ()
    # Training settings (a partial spec) that make a first run with this network a good one; see docs/training.md.
    defaults: dict = field(default_factory=dict)
    divisor: int = 1                   # each input side a multiple of this (a U-Net halves it and doubles it back)
    # Built from the run's plan (its patch size and spacing: DynUNet's depth and kernels, UNETR's input size); without
    # a plan, for a cube of its smallest side.
    planned: bool = False
    fixed_size: bool = False           # takes only the size it was built for (UNETR: the plan's patch)
    # Trains with deep supervision (nnU-Net's): in training the network gives its coarser decoder stages' outputs too,
    # each scored against the mask at its size (losses.py); in eval mode, the full-resolution output alone.
    deep_supervision: bool = False

    @property
    def weight_choices(self) -> tuple[str, ...]:
        return ("random", *(w.name for w in self.weights))

    def weights_named(self, name: str) -> WeightsEntry | None:
        return next((w for w in self.weights if w.name == name), None)

    def size_problem(self, height: int, width: int, depth: int | None = None) -> str:
        """Why images (volumes, with `depth`) of this size cannot go through the network ("" when they can)."""
        sides = (height, width) if depth is None else (depth, height, width)
        things, units = ("volumes", "voxels") if self.dims == 3 else ("images", "pixels")
        if min(sides) < self.min_size:
            return f"{self.title} takes {things} of at least {self.side(self.min_size)} {units}"
        if self.max_size and max(sides) > self.max_size:
            return f"{self.title} is built for {things} of {self.side(self.max_size)} {units} at most"
        if self.divisor > 1 and any(side % self.divisor for side in sides):
            return f"{self.title} takes {things} whose sides are multiples of {self.divisor} {units}"
        return ""

    def side(self, length: int) -> str:
        """A square (a cube, for a 3D network) of this side: "32×32", "16×16×16"."""
        return "×".join([str(length)] * self.dims)

    def accepted_sizes(self) -> str:
        smallest, largest = self.side(self.min_size), self.max_size and self.side(self.max_size)
        if self.max_size == self.min_size:
            return smallest
        sizes = f"{smallest} to {largest}" if largest else f"{smallest} or larger"
        return sizes + (f", sides in multiples of {self.divisor}" if self.divisor > 1 else "")

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description, "task": self.task, "dims": self.dims,
                "channels": "any", "parameters": self.parameters, "min_size": self.min_size, "max_size": self.max_size,
                "accepted_sizes": self.accepted_sizes(), "head": self.head, "gradcam_layer": self.gradcam_layer,
                "blocks": len(self.blocks), "source": self.source, "weights": [w.describe() for w in self.weights],
                "divisor": self.divisor, "planned": self.planned, "fixed_size": self.fixed_size,
                "deep_supervision": self.deep_supervision}


def imagenet(filename: str, accuracy: float, size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> WeightsEntry:
    return WeightsEntry("imagenet", "ImageNet (torchvision)", filename, f"https://download.pytorch.org/models/{filename}",
                        mean, std, size, accuracy)


MEDICALNET_URL = "https://github.com/Tencent/MedicalNet"


def medicalnet(depth: int) -> WeightsEntry:
    """MedicalNet's published 3D ResNet (Chen, Ma, Zheng 2019, "Med3D"), trained on 23 segmentation datasets."""
    return WeightsEntry(
        "medicalnet", "MedicalNet (Tencent, 23 datasets)", f"resnet_{depth}_23dataset.pth", MEDICALNET_URL, VOLUME_MEAN,
        VOLUME_STD, layout="medicalnet",
        description=f"Med3D (Chen, Ma and Zheng 2019): a 3D ResNet-{depth} trained to segment 23 medical datasets (CT and MR "
                    "volumes, one channel); its segmentation head is dropped and a new head made for the classes. MedicalNet "
                    "z-scored each volume over its non-zero voxels; here the volume path normalises volumes (z-scores, HU "
                    "windows, by modality) before the network, which takes them as they are.")


def prefixed(prefix: str, count: int, start: int = 0) -> tuple[tuple[str, ...], ...]:
    return tuple((f"{prefix}.{i}",) for i in range(start, start + count))


FAST = {"optimizer": {"name": "adamw", "learning_rate": 3e-3}}
BACKBONE = {"optimizer": {"name": "adamw", "learning_rate": 1e-3}}
# Volumes: a few per batch fill a CPU's memory (or a GPU's) long before 32 images would.
FAST_3D = {**FAST, "batch_size": 8}
BACKBONE_3D = {**BACKBONE, "batch_size": 4}
# Segmentation networks learn from patches of the plan: a batch of 2D patches, a few 3D ones (nnU-Net trains 3D on 2).
# An outline takes more steps to learn than a class: on 42 generated 64x64 images of discs and squares, the 2D U-Net's
# test mean Dice was 0.82 after 20 epochs and 0.95 after 50 (2.5 minutes on two CPU cores;
# tests/unit/test_segmentation_training.py). Volumes hold more voxels a step: 20 epochs reached 0.95 there.
SEGMENT_2D = {"optimizer": {"name": "adamw", "learning_rate": 3e-3}, "batch_size": 8, "epochs": 50}
SEGMENT_3D = {"optimizer": {"name": "adamw", "learning_rate": 3e-3}, "batch_size": 4}
SEGMENT_HEAVY_3D = {"optimizer": {"name": "adamw", "learning_rate": 1e-3}, "batch_size": 2}

MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in (
    ModelEntry("small_cnn", "Small CNN", "Three convolution blocks; trains in seconds on a CPU, for small images and first tries.",
               "classification", 2, 88_696, 8, None, "head", "block3",
               (("block1",), ("block2",), ("block3",), ("head",)), "toolkit", defaults=FAST),
    ModelEntry("lenet5", "LeNet-5", "LeCun's 1998 digit reader: two convolutions, three dense layers, 32×32 images.",
               "classification", 2, 146_156, 32, 32, "head", "conv2",
               (("conv1",), ("conv2",), ("fc1",), ("fc2",), ("head",)), "toolkit", defaults=FAST),
    ModelEntry("alexnet", "AlexNet", "Krizhevsky's 2012 ImageNet winner: five convolutions, three large dense layers.",
               "classification", 2, 61_100_840, 63, None, "classifier.6", "features.10",
               (*prefixed("features", 1), ("features.3",), ("features.6", "features.8", "features.10"),
                ("classifier.1", "classifier.4"), ("classifier.6",)), "torchvision",
               (imagenet("alexnet-owt-7be5be79.pth", 56.522),), defaults=BACKBONE),
    ModelEntry("vgg16", "VGG-16", "Thirteen 3×3 convolutions in five stages; large and slow, a classic transfer baseline.",
               "classification", 2, 138_357_544, 32, None, "classifier.6", "features.29",
               (("features.0", "features.2"), ("features.5", "features.7"), ("features.10", "features.12", "features.14"),
                ("features.17", "features.19", "features.21"), ("features.24", "features.26", "features.28"),
                ("classifier.0", "classifier.3"), ("classifier.6",)), "torchvision",
               (imagenet("vgg16-397923af.pth", 71.592),), defaults=BACKBONE),
    ModelEntry("resnet18", "ResNet-18", "Residual network, 18 layers: a strong, quick default for transfer learning.",
               "classification", 2, 11_689_512, 1, None, "fc", "layer4",
               (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",)), "torchvision",
               (imagenet("resnet18-f37072fd.pth", 69.758),), defaults=BACKBONE),
    ModelEntry("resnet50", "ResNet-50", "Residual network with bottlenecks, 50 layers: stronger than ResNet-18, about 2.3× the compute.",
               "classification", 2, 25_557_032, 1, None, "fc", "layer4",
               (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",)), "torchvision",
               (imagenet("resnet50-0676ba61.pth", 76.13),), defaults=BACKBONE),
    ModelEntry("densenet121", "DenseNet-121", "Each layer sees all earlier ones: few parameters, used by CheXNet for chest X-rays.",
               "classification", 2, 7_978_856, 29, None, "classifier", "features.norm5",
               (("features.conv0", "features.norm0"), ("features.denseblock1", "features.transition1"),
                ("features.denseblock2", "features.transition2"), ("features.denseblock3", "features.transition3"),
                ("features.denseblock4", "features.norm5"), ("classifier",)), "torchvision",
               (imagenet("densenet121-a639ec97.pth", 74.434),), defaults=BACKBONE),
    ModelEntry("inception_v3", "Inception-v3", "Parallel filters of several sizes; built for 299×299 images, takes 75×75 and up.",
               "classification", 2, 23_834_568, 75, None, "fc", "Mixed_7c",
               (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"), ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
                ("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                ("Mixed_7a", "Mixed_7b", "Mixed_7c"), ("fc",)), "torchvision",
               # Google's weights expect images scaled to [-1, 1] (torchvision's transform_input gets there from ImageNet's
               # normalisation, for RGB only): normalising so directly works for any channel count.
               (imagenet("inception_v3_google-0cc3c7bd.pth", 77.294, 299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),), defaults=BACKBONE),
    ModelEntry("efficientnet_b0", "EfficientNet-B0", "Depth, width and resolution scaled together: accurate for its small size.",
               "classification", 2, 5_288_548, 1, None, "classifier.1", "features.8",
               (*prefixed("features", 9), ("classifier.1",)), "torchvision",
               (imagenet("efficientnet_b0_rwightman-7f5810bc.pth", 77.692),), defaults=BACKBONE),
    ModelEntry("mobilenet_v2", "MobileNet-V2", "Inverted residual blocks built for phones: light, quick to fine-tune on a CPU.",
               "classification", 2, 3_504_872, 1, None, "classifier.1", "features.18",
               (*prefixed("features", 19), ("classifier.1",)), "torchvision",
               (imagenet("mobilenet_v2-b0353104.pth", 71.878),), defaults=BACKBONE),
    ModelEntry("mobilenet_v3_large", "MobileNet-V3 (large)", "Built for phones: fast on a CPU, good accuracy for its cost.",
               "classification", 2, 5_483_032, 1, None, "classifier.3", "features.16",
               (*prefixed("features", 17), ("classifier.0",), ("classifier.3",)), "torchvision",
               (imagenet("mobilenet_v3_large-8738ca79.pth", 74.042),), defaults=BACKBONE),
    ModelEntry("mobilenet_v3_small", "MobileNet-V3 (small)", "The smallest network here with ImageNet weights: fastest on a CPU.",
               "classification", 2, 2_542_856, 1, None, "classifier.3", "features.12",
               (*prefixed("features", 13), ("classifier.0",), ("classifier.3",)), "torchvision",
               (imagenet("mobilenet_v3_small-047dcff4.pth", 67.668),), defaults=BACKBONE),
    # Volumes (3D): MONAI's networks and a small one of our own; the ResNets can start from MedicalNet's weights.
    ModelEntry("small_cnn_3d", "Small 3D CNN", "Three 3D convolution blocks; trains in seconds on a CPU on 32³ volumes, for first tries.",
               "classification", 3, 135_640, 8, None, "head", "block3",
               (("block1",), ("block2",), ("block3",), ("head",)), "toolkit", defaults=FAST_3D),
    ModelEntry("resnet18_3d", "ResNet-18 (3D)", "MONAI's residual network for volumes, 18 layers, in MedicalNet's layout: a quick 3D baseline.",
               "classification", 3, 33_543_080, 1, None, "fc", "layer4",
               (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",)), "monai", (medicalnet(18),),
               defaults=BACKBONE_3D),
    ModelEntry("resnet50_3d", "ResNet-50 (3D)", "MONAI's 3D residual network with bottlenecks, 50 layers, in MedicalNet's layout.",
               "classification", 3, 48_247_976, 1, None, "fc", "layer4",
               (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",)), "monai", (medicalnet(50),),
               defaults=BACKBONE_3D),
    ModelEntry("seresnet50_3d", "SE-ResNet-50 (3D)", "MONAI's 3D ResNet-50 whose blocks reweight their channels (squeeze and excitation).",
               "classification", 3, 50_778_968, 3, None, "last_linear", "layer4",
               (("layer0",), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("last_linear",)), "monai", defaults=BACKBONE_3D),
    ModelEntry("densenet121_3d", "DenseNet-121 (3D)", "MONAI's DenseNet for volumes: each layer sees all earlier ones; few parameters for 3D.",
               "classification", 3, 12_311_528, 29, None, "class_layers.out", "features.norm5",
               (("features.conv0", "features.norm0"), ("features.denseblock1", "features.transition1"),
                ("features.denseblock2", "features.transition2"), ("features.denseblock3", "features.transition3"),
                ("features.denseblock4", "features.norm5"), ("class_layers.out",)), "monai", defaults=BACKBONE_3D),
    # Segmentation (a label per pixel or voxel), MONAI's networks: parameters for 3 channels and 1000 labels, as above
    # (DynUNet and UNETR built without a plan: for a cube of their smallest side at 1 mm).
    ModelEntry("unet_2d", "U-Net (2D)", "Ronneberger's encoder-decoder with skip connections (MONAI's, residual units, "
               "four levels): the standard for outlining structures in 2D images.",
               "segmentation", 2, 9_691_565, 16, None, "model.2", "model.1",
               (("model.0",), ("model.1",), ("model.2",)), "monai", defaults=SEGMENT_2D, divisor=8),
    ModelEntry("unet_3d", "U-Net (3D)", "The U-Net for volumes (Çiçek et al. 2016; MONAI's, residual units, four levels): "
               "quick enough to train on a CPU.",
               "segmentation", 3, 29_052_653, 16, None, "model.2", "model.1",
               (("model.0",), ("model.1",), ("model.2",)), "monai", defaults=SEGMENT_3D, divisor=8),
    ModelEntry("vnet_3d", "V-Net", "Milletari's fully convolutional volume network with residual stages (MONAI's), the "
               "first trained with a Dice loss.",
               "segmentation", 3, 50_596_904, 16, None, "out_tr", "down_tr256",
               (("in_tr",), ("down_tr32",), ("down_tr64",), ("down_tr128",), ("down_tr256",), ("up_tr256",), ("up_tr128",),
                ("up_tr64",), ("up_tr32",), ("out_tr",)), "monai", defaults=SEGMENT_HEAVY_3D, divisor=16),
    ModelEntry("segresnet_2d", "SegResNet (2D)", "Myronenko's residual encoder with a light decoder (MONAI's; BraTS 2018 "
               "winner, without its variational branch).",
               "segmentation", 2, 1_593_656, 8, None, "conv_final", "down_layers.3",
               (("convInit", "down_layers.0"), ("down_layers.1",), ("down_layers.2",), ("down_layers.3",),
                ("up_layers", "up_samples"), ("conv_final",)), "monai", defaults=SEGMENT_2D, divisor=8),
    ModelEntry("segresnet_3d", "SegResNet (3D)", "Myronenko's residual encoder with a light decoder for volumes (MONAI's; "
               "BraTS 2018 winner, without its variational branch).",
               "segmentation", 3, 4_718_744, 8, None, "conv_final", "down_layers.3",
               (("convInit", "down_layers.0"), ("down_layers.1",), ("down_layers.2",), ("down_layers.3",),
                ("up_layers", "up_samples"), ("conv_final",)), "monai", defaults=SEGMENT_3D, divisor=8),
    ModelEntry("dynunet_2d", "DynUNet (2D, nnU-Net's)", "nnU-Net's U-Net (MONAI's DynUNet): its depth, kernels and "
               "strides chosen from the plan's patch and spacing, as nnU-Net chooses them.",
               "segmentation", 2, 563_760, 16, None, "output_block", "bottleneck",
               (("input_block",), ("downsamples",), ("bottleneck",), ("upsamples",),
                ("output_block", "deep_supervision_heads")), "monai",
               defaults=SEGMENT_2D, planned=True, deep_supervision=True),
    ModelEntry("dynunet_3d", "DynUNet (3D, nnU-Net's)", "nnU-Net's U-Net for volumes (MONAI's DynUNet): its depth, kernels "
               "and strides chosen from the plan's patch and spacing (a thick-sliced axis halved later, with flat kernels "
               "until it catches up), as nnU-Net chooses them.",
               "segmentation", 3, 1_454_320, 16, None, "output_block", "bottleneck",
               (("input_block",), ("downsamples",), ("bottleneck",), ("upsamples",),
                ("output_block", "deep_supervision_heads")), "monai",
               defaults=SEGMENT_HEAVY_3D, planned=True, deep_supervision=True),
    ModelEntry("unetr_3d", "UNETR", "Hatamizadeh's transformer encoder (a ViT on 16³ patches) with a convolutional decoder "
               "(MONAI's), built for the plan's patch size only; large and slow on a CPU, for comparison.",
               "segmentation", 3, 98_946_472, 16, None, "out", "decoder2",
               (("vit",), ("encoder1", "encoder2", "encoder3", "encoder4"), ("decoder5", "decoder4", "decoder3", "decoder2"),
                ("out",)), "monai", defaults=SEGMENT_HEAVY_3D, divisor=16, planned=True, fixed_size=True),
)}


def model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise KeyError(f"There is no architecture '{name}'; choose one of {', '.join(MODELS)}.")
    return MODELS[name]
