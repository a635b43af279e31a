"""Image operations and pipelines: augmentation (P3) and medical preprocessing (P4).

Importing the package registers every operation (`OPERATIONS`, name -> class).
"""
from ..params import Param, ParamError
from . import geometry, intensity, preprocessing  # noqa: F401  (registration)
from .operations import AUGMENTATION, OPERATIONS, PREPROCESSING, Context, Operation, UnsupportedInput
from .pipeline import Pipeline, PipelineError, Statistics, StepError, fit_statistics

__all__ = ["AUGMENTATION", "OPERATIONS", "PREPROCESSING", "Context", "Operation", "Param", "ParamError", "Pipeline",
           "PipelineError", "Statistics", "StepError", "UnsupportedInput", "fit_statistics"]
