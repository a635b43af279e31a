"""A table of measures as CSV or XLSX: what a researcher takes to a statistics package."""
from __future__ import annotations

import json

from backend.core.table_files import CONTENT_TYPES, as_csv, as_xlsx
from workers.engine.pipelines.measures import HISTOGRAM, MEASURES

from .models import Aggregation

TABLES = ("values", "histogram")
FORMATS = {name: CONTENT_TYPES[name] for name in ("csv", "xlsx")}


def column_title(name: str) -> str:
    unit = MEASURES[name].unit
    return f"{name} ({unit})" if unit else name


def values_table(aggregation: Aggregation):
    """Header and rows: one row per sample; empty cells where a measure could not be taken, with the reason at the end."""
    names = [n for n in aggregation.measures if n != HISTOGRAM]
    yield ["sample", "label", "patient", *[column_title(n) for n in names], "problems"]
    for row in aggregation.rows.order_by("index").iterator(chunk_size=2000):
        problems = "; ".join(f"{'steps' if name == '*' else name}: {reason}" for name, reason in row.problems.items())
        yield [row.sample_id, row.label, row.patient, *[row.values.get(n) for n in names], problems]


def histogram_table(aggregation: Aggregation):
    """Bins down, labels across: how many voxels of each label's samples fall in each bin."""
    labels = sorted(aggregation.histograms)
    edges = aggregation.histogram_edges
    yield ["bin start", "bin end", *labels]
    for k in range(max(len(edges) - 1, 0)):
        yield [edges[k], edges[k + 1], *[aggregation.histograms[label][k] for label in labels]]


def about_table(aggregation: Aggregation):
    version = aggregation.pipeline_version
    yield ["what", "value"]
    yield ["table", aggregation.name]
    yield ["dataset", f"{aggregation.dataset.name} (id {aggregation.dataset_id})"]
    yield ["pipeline", f"{version.pipeline.name} v{version.number}"]
    yield ["steps", json.dumps(version.steps)]
    for name in aggregation.measures:
        yield ["measure", f"{name}: {MEASURES[name].title}" if name in MEASURES else f"{name}: intensity histogram"]
    yield ["samples measured", aggregation.measured_count]
    yield ["finished", aggregation.finished_at.isoformat() if aggregation.finished_at else ""]


def aggregation_xlsx(aggregation: Aggregation) -> bytes:
    """Every table in one workbook: Values, Histogram (when measured), About."""
    sheets = [("Values", values_table(aggregation))]
    if aggregation.histogram_edges:
        sheets.append(("Histogram", histogram_table(aggregation)))
    sheets.append(("About", about_table(aggregation)))
    return as_xlsx(sheets)


def export(aggregation: Aggregation, file_format: str, table: str) -> bytes:
    if file_format == "xlsx":
        return aggregation_xlsx(aggregation)
    return as_csv(histogram_table(aggregation) if table == "histogram" else values_table(aggregation))
