"""Building the zoo's segmentation networks (torch; in the worker): MONAI's U-Net, V-Net, SegResNet, DynUNet and UNETR,
each for the images' channels and one output per label, some shaped by the dataset's plan (its patch size and target
spacing), as nnU-Net shapes its network.

`plan` is the run's plan (planning.py: `patch_size`, `target_spacing`); without one (a layer summary, a test) a network
that needs it is built for a cube of the smallest side it takes, at 1 mm."""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn

SMALLEST_MAP = 4          # nnU-Net: no axis is halved below 4 voxels at the bottom of the network
MOST_DOWNSAMPLINGS = 5    # nnU-Net's 3D plans go as deep as 5-6; on a CPU 5 is plenty
FILTERS_3D, FILTERS_2D = 320, 512  # nnU-Net's cap on a stage's channels


def patch_and_spacing(plan: dict | None, dims: int, side: int) -> tuple[list[int], list[float]]:
    """The plan's patch and target spacing, or a cube of `side` at 1 mm without a plan."""
    if plan and plan.get("patch_size") and len(plan["patch_size"]) == dims:
        return [int(v) for v in plan["patch_size"]], [float(v) for v in plan.get("target_spacing") or [1.0] * dims]
    return [side] * dims, [1.0] * dims


def dynunet_topology(patch: Sequence[int], spacing: Sequence[float]) -> tuple[list[list[int]], list[list[int]]]:
    """(kernel sizes, strides) of each stage of a DynUNet, as nnU-Net chooses them from the patch and the spacing: an
    axis is halved at a stage only while its spacing is at most twice the finest (so a coarse axis waits until the
    others have caught up) and its size stays even and at least 2 x SMALLEST_MAP; an axis that coarse gets kernel 1
    (no mixing across thick slices) until it has caught up. The first stage keeps the resolution."""
    sizes, spacings = list(patch), [float(s) for s in spacing]
    kernels, strides = [], [[1] * len(sizes)]
    while len(strides) <= MOST_DOWNSAMPLINGS:
        ratios = [s / min(spacings) for s in spacings]
        stride = [2 if ratio <= 2 and size >= 2 * SMALLEST_MAP and size % 2 == 0 else 1 for ratio, size in zip(ratios, sizes)]
        if all(s == 1 for s in stride):
            break
        kernels.append([3 if ratio <= 2 else 1 for ratio in ratios])
        sizes = [size // s for size, s in zip(sizes, stride)]
        spacings = [sp * s for sp, s in zip(spacings, stride)]
        strides.append(stride)
    kernels.append([3] * len(sizes))
    return kernels, strides


def divisor_of(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per axis, what an input side must be a multiple of: the product of that axis's strides."""
    return [math.prod(stride[axis] for stride in strides) for axis in range(len(strides[0]))]


def unet(dims: int):
    def build(in_channels: int, num_classes: int, plan: dict | None = None) -> nn.Module:
        from monai.networks.nets import UNet

        # Residual units, instance norm (MONAI's default): steady with the small batches of volumes.
        # Three halvings: any patch of the plan (its sides are multiples of 8) fits; 16 and up, so that the bottom is
        # 2 voxels a side at least (instance norm needs more than one).
        channels, strides = (16, 32, 64, 128), (2, 2, 2)
        return UNet(dims, in_channels, num_classes, channels=channels, strides=strides, num_res_units=2)
    return build


class AnyChannelInput(nn.Module):
    """V-Net's input stage (MONAI's InputTransition) for any channel count: its 5×5×5 convolution to 16 channels plus
    the input itself repeated to 16 channels as the residual (MONAI's takes only counts that divide 16; here the
    repeats are cut at 16)."""

    def __init__(self, in_channels: int):
        super().__init__()
        from monai.networks.blocks import Convolution
        from monai.networks.layers.factories import Act

        self.in_channels = in_channels
        self.conv_block = Convolution(3, in_channels, 16, kernel_size=5, act=None, norm="batch")
        self.act_function = Act["elu"](inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        repeated = x.repeat(1, -(-16 // self.in_channels), *([1] * (x.dim() - 2)))[:, :16]
        return self.act_function(out + repeated)


def vnet(in_channels: int, num_classes: int, plan: dict | None = None) -> nn.Module:
    from monai.networks.nets import VNet

    network = VNet(3, 1, num_classes)
    network.in_tr = AnyChannelInput(in_channels)
    return network


def segresnet(dims: int):
    def build(in_channels: int, num_classes: int, plan: dict | None = None) -> nn.Module:
        from monai.networks.nets import SegResNet

        return SegResNet(dims, init_filters=16, in_channels=in_channels, out_channels=num_classes,
                         blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))
    return build


def supervised_levels(strides: Sequence[Sequence[int]]) -> int:
    """How many of a DynUNet's coarser decoder stages get an output of their own under deep supervision: all but the
    coarsest (nnU-Net gives the coarsest a weight of 0; MONAI takes fewer than the upsamplings)."""
    return max(len(strides) - 2, 0)


@functools.cache
def deeply_supervised_dynunet() -> type[nn.Module]:
    """MONAI's DynUNet whose training output is the list of its decoder's outputs, finest first, each at its own
    resolution (MONAI's stacks them upsampled to the finest; nnU-Net compares each with the mask downsampled to it,
    losses.py's DeepSupervision does). In eval mode it gives the finest alone, as MONAI's does."""
    from monai.networks.nets import DynUNet

    class DeeplySupervisedDynUNet(DynUNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
            out = self.output_block(self.skip_layers(x))
            if self.training and self.deep_supervision:
                return [out, *self.heads]  # the heads were filled, coarser stage last, by the pass just made
            return out

    return DeeplySupervisedDynUNet


def dynunet(dims: int):
    def build(in_channels: int, num_classes: int, plan: dict | None = None, deep_supervision: bool = False) -> nn.Module:
        kernels, strides = dynunet_topology(*patch_and_spacing(plan, dims, 16))
        cap = FILTERS_3D if dims == 3 else FILTERS_2D
        filters = [min(32 * 2 ** stage, cap) for stage in range(len(strides))]
        levels = supervised_levels(strides) if deep_supervision else 0
        return deeply_supervised_dynunet()(
            dims, in_channels, num_classes, kernel_size=kernels, strides=strides, upsample_kernel_size=strides[1:],
            filters=filters, norm_name="instance", res_block=False, deep_supervision=levels > 0,
            deep_supr_num=max(levels, 1))
    return build


def unetr(in_channels: int, num_classes: int, plan: dict | None = None) -> nn.Module:
    from monai.networks.nets import UNETR

    patch, _ = patch_and_spacing(plan, 3, 16)
    return UNETR(in_channels, num_classes, img_size=tuple(patch), feature_size=16)


SEGMENTATION_NETWORKS = {"unet_2d": unet(2), "unet_3d": unet(3), "vnet_3d": vnet, "segresnet_2d": segresnet(2),
                         "segresnet_3d": segresnet(3), "dynunet_2d": dynunet(2), "dynunet_3d": dynunet(3), "unetr_3d": unetr}
