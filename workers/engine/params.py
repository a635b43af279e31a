"""Typed parameters of operations: one schema for the browser form, the API's validation and the docs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

PARAM_KINDS = ("float", "int", "bool", "choice", "range", "text")  # "range": a [low, high] pair of floats
# What a form shows for names that do not read well once capitalised; the others become "Per channel" etc.
LABELS = {"std": "Standard deviation", "lam": "Mean count (λ)", "pixel_mm": "Pixel spacing (mm)",
          "slice_mm": "Slice spacing (mm)", "from_file": "Use the file's window", "center": "Centre",
          "grid": "Control points", "sigma": "Sigma (pixels)", "degrees": "Angle (degrees)",
          "every_minutes": "Minutes between checkpoints", "min_delta": "Smallest improvement",
          "warmup_epochs": "Warm-up epochs"}


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
    above: float | None = None  # an exclusive lower bound (a learning rate above 0), where `minimum` is inclusive
    typical: str = ""            # shown with a refusal: "typical values are 0.0001 to 0.01"

    @property
    def label(self) -> str:
        return LABELS.get(self.name) or self.name.replace("_", " ").capitalize()

    def schema(self) -> dict:
        described = {"name": self.name, "label": self.label, "kind": self.kind,
                     "default": list(self.default) if isinstance(self.default, tuple) else self.default, "help": self.help}
        if self.minimum is not None:
            described["minimum"] = self.minimum
        if self.above is not None:
            described["above"] = self.above
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
            raise ParamError(self.name, f"{self.label} must be true or false.")
        if self.kind == "choice":
            if value in self.choices:
                return value
            raise ParamError(self.name, f"{self.label} must be one of {', '.join(self.choices)}.")
        if self.kind == "text":
            if isinstance(value, str) and value.strip():
                return value.strip()
            raise ParamError(self.name, f"{self.label} must be a non-empty text.")
        if self.kind == "range":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ParamError(self.name, f"{self.label} must be a pair [low, high].")
            low, high = (self.number(v, float) for v in value)
            if low > high:
                raise ParamError(self.name, f"{self.label}: low ({low}) must not be above high ({high}).")
            return (low, high)
        return self.number(value, int if self.kind == "int" else float)

    def number(self, value, kind):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ParamError(self.name, f"{self.label} must be {'a whole number' if kind is int else 'a number'}.")
        value = kind(value)
        if self.above is not None and not value > self.above:
            upper = f" and at most {self.maximum:g}" if self.maximum is not None else ""
            raise ParamError(self.name, self.refusal(f"must be greater than {self.above:g}{upper}", value))
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            if self.maximum is None:
                raise ParamError(self.name, self.refusal(f"must be at least {self.minimum:g}", value))
            if self.minimum is None:  # bounded below by `above` (checked first) or not at all
                lower = f"greater than {self.above:g} and " if self.above is not None else ""
                raise ParamError(self.name, self.refusal(f"must be {lower}at most {self.maximum:g}", value))
            raise ParamError(self.name, self.refusal(f"must be between {self.minimum:g} and {self.maximum:g}", value))
        return value

    def refusal(self, rule: str, value) -> str:
        typical = f"; {self.typical}" if self.typical else ""
        return f"{self.label} {rule}; it is {value:g}{typical}."


class Configurable:
    """A small class with typed parameters, picked by name from a registry: a pipeline operation,
    an optimizer, a loss, a learning-rate schedule. Its schema builds the browser's form, checks the
    API and writes the reference in docs/."""

    name: ClassVar[str]
    title: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    help: ClassVar[str] = ""

    def __init__(self, **values):
        known = {p.name: p for p in self.params}
        unknown = set(values) - set(known)
        if unknown:
            name = sorted(unknown)[0]
            raise ParamError(name, f"{self.title} has no parameter '{name}'; it has: {', '.join(known) or 'none'}.")
        for param in self.params:
            setattr(self, param.name, param.clean(values[param.name]) if param.name in values else param.default)
        self.check()

    def check(self) -> None:
        """Checks across parameters; raise ParamError."""

    def values(self) -> dict:
        return {p.name: getattr(self, p.name) for p in self.params}

    @classmethod
    def schema(cls) -> dict:
        return {"name": cls.name, "title": cls.title, "help": cls.help or (cls.__doc__ or "").strip(),
                "params": [p.schema() for p in cls.params]}


def registry_of(kind: str) -> tuple[dict, Callable]:
    """An empty registry and the decorator that fills it, refusing two entries of one name."""
    entries: dict[str, type] = {}

    def register(cls):
        if cls.name in entries:
            raise RuntimeError(f"two {kind}s are called {cls.name}")
        entries[cls.name] = cls
        return cls

    return entries, register
