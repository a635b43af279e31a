"""docs/operations.md, written from the registry: the same schema as the editor's forms and the API's checks."""
from __future__ import annotations

from .batched import BATCHED
from .measures import schemas as measure_schemas
from .operations import AUGMENTATION, OPERATIONS, SPATIAL


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parameter_line(param: dict) -> str:
    bounds = ""
    if "choices" in param:
        bounds = f"one of {', '.join(f'`{c}`' for c in param['choices'])}"
    elif "minimum" in param:
        bounds = f"{number(param['minimum'])} to {number(param['maximum'])}" if "maximum" in param else f"at least {number(param['minimum'])}"
    elif "above" in param:
        bounds = f"above {number(param['above'])}" + (f", at most {number(param['maximum'])}" if "maximum" in param else "")
    default = param["default"]
    shown = f"{default[0]:g} to {default[1]:g}" if param["kind"] == "range" else f"{default}"
    return f"| `{param['name']}` ({param['label']}) | {param['kind']} | {bounds} | {shown} | {param['help']} |"


def operation_section(schema: dict) -> list[str]:
    dims = " and ".join(f"{d}D" for d in schema["dims"])
    batched = " Applied to whole batches on the training device while a model trains." if schema["name"] in BATCHED else ""
    moves = (" Spatial: a sample's mask moves with the image, with the same draw, by nearest neighbour."
             if schema["acts_on"] == SPATIAL else " Intensity: changes the image only, never a mask.")
    lines = [f"### {schema['title']} (`{schema['name']}`)", "",
             f"{schema['help']} Takes {dims} input; {'random (reproducible from a seed)' if schema['random'] else 'not random'}.{moves}{batched}",
             ""]
    if schema["params"]:
        lines += ["| parameter | kind | allowed | default | meaning |", "| --- | --- | --- | --- | --- |"]
        lines += [parameter_line(p) for p in schema["params"]]
        lines.append("")
    return lines


def reference_markdown() -> str:
    schemas = [kind.schema() for kind in OPERATIONS.values()]
    lines = ["# Operations and measures", "",
             "Generated from the operation registry (`workers/engine/pipelines/`) by `make schema`; do not edit by hand.",
             "The same schema builds the pipeline editor's forms and checks the API (`GET /api/operations/`, `GET /api/measures/`).",
             ""]
    for category, heading in ((AUGMENTATION, "Augmentation"), ("preprocessing", "Preprocessing")):
        lines += [f"## {heading}", ""]
        for schema in schemas:
            if schema["category"] == category:
                lines += operation_section(schema)
    lines += ["## Measures (aggregation pipelines)", "", "| measure | title | unit | needs a mask |", "| --- | --- | --- | --- |"]
    lines += [f"| `{m['name']}` | {m['title']} | {m['unit'] or 'image units'} | {'yes' if m['needs_mask'] else 'no'} |" for m in measure_schemas()]
    return "\n".join(lines) + "\n"
