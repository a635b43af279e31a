"""Typed parameters of operations: one schema for the browser form, the API's validation and the docs."""
from __future__ import annotations

from dataclasses import dataclass, field

PARAM_KINDS = ("float", "int", "bool", "choice", "range", "text")  # "range": a [low, high] pair of floats
# What a form shows for names that do not read well once capitalised; the others become "Per channel" etc.
LABELS = {"std": "Standard deviation", "lam": "Mean count (λ)", "pixel_mm": "Pixel spacing (mm)",
          "slice_mm": "Slice spacing (mm)", "from_file": "Use the file's window", "center": "Centre",
          "grid": "Control points", "sigma": "Sigma (pixels)", "degrees": "Angle (degrees)"}


class ParamError(ValueError):
    """A parameter value is wrong; the message says what is allowed."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                # one of PARAM_KINDS
    default: object
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return LABELS.get(self.name) or self.name.replace("_", " ").capitalize()

    def schema(self) -> dict:
        described = {"name": self.name, "label": self.label, "kind": self.kind,
                     "default": list(self.default) if isinstance(self.default, tuple) else self.default, "help": self.help}
        if self.minimum is not None:
            described["minimum"] = self.minimum
        if self.maximum is not None:
            described["maximum"] = self.maximum
        if self.choices:
            described["choices"] = list(self.choices)
        return described

    def clean(self, value):
        """The value converted to its type, or ParamError saying what is allowed."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ParamError(self.name, f"{self.name} must be true or false.")
        if self.kind == "choice":
            if value in self.choices:
                return value
            raise ParamError(self.name, f"{self.name} must be one of {', '.join(self.choices)}.")
        if self.kind == "text":
            if isinstance(value, str) and value.strip():
                return value.strip()
            raise ParamError(self.name, f"{self.name} must be a non-empty text.")
        if self.kind == "range":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ParamError(self.name, f"{self.name} must be a pair [low, high].")
            low, high = (self.number(v, float) for v in value)
            if low > high:
                raise ParamError(self.name, f"{self.name}: low ({low}) must not be above high ({high}).")
            return (low, high)
        return self.number(value, int if self.kind == "int" else float)

    def number(self, value, kind):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ParamError(self.name, f"{self.name} must be {'a whole number' if kind is int else 'a number'}.")
        value = kind(value)
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise ParamError(self.name, f"{self.name} must be between {self.minimum} and {self.maximum}; it is {value}.")
        return value
