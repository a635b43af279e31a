"""The pool of network topologies, by name, in the manner of torchvision's get_model.

Names, titles and descriptions are all the web tier reads (the run form, GET /api/architectures/),
so torch is imported by the builders, in the worker that trains: importing it costs a web
worker about 500 MB (tests/integration/test_web_imports.py keeps it out).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    description: str
    build: Callable[[int, int], nn.Module]
    head: str                # the module holding the classifier: what a "head only" phase trains
    # Training settings (a partial spec) that make a first run with this network a good one; see docs/training.md.
    defaults: dict = field(default_factory=dict)


def small_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """Three conv blocks and global pooling: trains in seconds on a CPU, any input size >= 8."""
    from collections import OrderedDict

    from torch import nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(OrderedDict([
        ("block1", block(in_channels, 16)),
        ("block2", block(16, 32)),
        ("block3", block(32, 64)),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("dropout", nn.Dropout(0.2)),
        ("head", nn.Linear(64, num_classes)),
    ]))


def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from torch import nn
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


ARCHITECTURES = {
    arch.name: arch
    for arch in (
        Architecture("small_cnn", "Small CNN", "Three convolution blocks; fast, for small images and first tries.", small_cnn,
                     head="head", defaults={"optimizer": {"name": "adamw", "learning_rate": 3e-3}}),
        Architecture("resnet18", "ResNet-18", "torchvision's ResNet-18 from random initialisation; slower, stronger.", resnet18,
                     head="fc", defaults={"optimizer": {"name": "adamw", "learning_rate": 1e-3}}),
    )
}


def build_model(name: str, in_channels: int, num_classes: int, seed: int = 0) -> nn.Module:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    import torch

    torch.manual_seed(seed)
    return ARCHITECTURES[name].build(in_channels, num_classes)
