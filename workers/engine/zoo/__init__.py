"""The model zoo: which networks there are and what they start from (registry.py, weights.py: plain data,
read by the web tier) and, in the worker, building them (networks.py), their starting weights (start.py)
and transfer learning's groups (transfer.py)."""
from .registry import MODELS, ModelEntry, WeightsEntry, model_entry

__all__ = ["MODELS", "ModelEntry", "WeightsEntry", "model_entry"]
