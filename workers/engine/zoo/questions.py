"""The zoo's answers to the web tier's questions (see workers/engine/call.py)."""
from __future__ import annotations

from ..call import question


@question
def parameter_count(architecture: str, channels: int, classes: int) -> dict:
    """How many parameters the network has for these channels and classes (also the bridge's own test)."""
    from .networks import build_network
    from .networks import parameter_count as count

    return {"parameters": count(build_network(architecture, channels, classes))}
