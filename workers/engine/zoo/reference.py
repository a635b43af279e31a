"""The model zoo's tables in docs/models.md, written from the registry by `make schema` (so they cannot drift from
it; tests/integration/test_openapi.py fails until they are regenerated). Plain data: no torch."""
from __future__ import annotations

from .registry import MODELS

# docs/models.md is written by hand around these markers; only what lies between them is regenerated.
BEGIN = "<!-- zoo tables: generated from workers/engine/zoo/registry.py by `make schema`; do not edit by hand -->"
END = "<!-- end of the generated zoo tables -->"


def millions(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 1e6 else f"{count:,}"


def statistics(values: tuple[float, ...]) -> str:
    return ", ".join(f"{value:g}" for value in values)


def zoo_tables() -> str:
    """The networks (what each takes, its size, its blocks) and the published weight files, ImageNet's and MedicalNet's
    (name, hash, preprocessing)."""
    lines = ["| network | name | task | images | sizes it takes | parameters | blocks | head | Grad-CAM layer | implementation |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for entry in MODELS.values():
        lines.append(f"| {entry.title} | `{entry.name}` | {entry.task} | {entry.dims}D, any channels | {entry.accepted_sizes()} | "
                     f"{millions(entry.parameters)} | {len(entry.blocks)} | `{entry.head}` | `{entry.gradcam_layer}` | {entry.source} |")
    lines += ["", "Parameters are counted for 3 channels and 1000 classes (Inception-v3 without its auxiliary classifier, "
                  "which the toolkit drops); the zoo page counts them for your images.", "",
              "| network | weights | file | SHA-256 begins | ImageNet top-1 | trained at | mean | std |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for entry in MODELS.values():
        for weights in entry.weights:
            lines.append(f"| {entry.title} | `{weights.name}` | [`{weights.filename}`]({weights.url}) | "
                         f"{f'`{weights.sha256_prefix}`' if weights.sha256_prefix else 'none published'} | "
                         f"{f'{weights.accuracy:g} %' if weights.accuracy is not None else '—'} | "
                         f"{f'{weights.size}×{weights.size}' if weights.size else 'volumes'} | {statistics(weights.mean)} | "
                         f"{statistics(weights.std)} |")
    return "\n".join(lines)


def with_zoo_tables(page: str) -> str:
    """docs/models.md with the text between the markers replaced by today's tables."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"docs/models.md has lost the markers of its generated zoo tables; put back\n{BEGIN}\n{END}")
    before, rest = page.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{BEGIN}\n{zoo_tables()}\n{END}{after}"
