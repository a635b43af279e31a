"""Transfer learning on a zoo model: its layer groups ("blocks", input to output, head last), freezing the
first n of them, and discriminative learning rates (each group's rate a share of the head's, as fastai's
`fine_tune` does with `slice(lr / 100, lr)`)."""
from __future__ import annotations

from torch import nn

from .networks import NETWORK
from .registry import MODELS


def block_prefixes(model: nn.Module, architecture: str) -> list[tuple[str, ...]]:
    """The model's parameter groups as module-name prefixes. A network the registry does not know (an
    imported, converted one) is grouped by its top-level children, the last one holding parameters as its head."""
    if architecture in MODELS:
        return [tuple(f"{NETWORK}.{prefix}" for prefix in block) for block in MODELS[architecture].blocks]
    network = model.get_submodule(NETWORK)
    return [(f"{NETWORK}.{name}",) for name, child in network.named_children() if any(True for _ in child.parameters())]


def in_block(name: str, block: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in block)


def parameter_groups(model: nn.Module, architecture: str) -> list[dict]:
    """One optimizer group per block (parameters no block names join the head's), each with its block index."""
    blocks = block_prefixes(model, architecture)
    groups = [{"params": [], "block": index} for index in range(len(blocks))]
    for name, parameter in model.named_parameters():
        index = next((i for i, block in enumerate(blocks) if in_block(name, block)), len(blocks) - 1)
        groups[index]["params"].append(parameter)
    return [group for group in groups if group["params"]]


def rate_scales(block_count: int, ratio: float) -> list[float]:
    """Each block's share of the head's learning rate: from 1/ratio for the first block up to 1 for the head, evenly
    spaced on a log scale (ratio 1: the same rate everywhere)."""
    if block_count == 1:
        return [1.0]
    return [ratio ** -((block_count - 1 - index) / (block_count - 1)) for index in range(block_count)]


def frozen_prefixes(model: nn.Module, architecture: str, train: str, frozen_blocks: int) -> list[tuple[str, ...]]:
    """The blocks a phase leaves untouched: all but the head ("head"), or the first `frozen_blocks`."""
    blocks = block_prefixes(model, architecture)
    if train == "head":
        return blocks[:-1]
    return blocks[:min(frozen_blocks, len(blocks) - 1)]


def freeze(model: nn.Module, frozen: list[tuple[str, ...]], train_batchnorm: bool = False) -> None:
    """Frozen parameters get no gradient; frozen BatchNorm layers stay in eval mode, so their running statistics do
    not move either (unless `train_batchnorm`, which keeps them learning inside frozen blocks)."""
    for name, parameter in model.named_parameters():
        is_frozen = any(in_block(name, block) for block in frozen)
        is_norm_parameter = train_batchnorm and isinstance(model.get_submodule(name.rpartition(".")[0]), nn.modules.batchnorm._BatchNorm)
        parameter.requires_grad = not is_frozen or is_norm_parameter
    if not train_batchnorm:
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(in_block(name, block) for block in frozen):
                module.eval()
