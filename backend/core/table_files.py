"""Tables as files a researcher takes to a spreadsheet or a statistics package: CSV, XLSX and JSON.

A table is a header (column names) and rows (lists of cells, None for an empty cell). Every export of the toolkit
(tables of measures, evaluations, metric points) writes its tables through these functions, so a CSV, a workbook or
a JSON file looks the same whichever page it came from."""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable

from django.http import HttpResponse
from django.utils.http import content_disposition_header

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
REPORT_CONTENT_TYPE = "text/html; charset=utf-8"


def as_csv(rows: Iterable[list]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return text.getvalue().encode("utf-8")


def as_xlsx(sheets: Iterable[tuple[str, Iterable[list]]]) -> bytes:
    """One workbook, a sheet per (title, rows), each sheet's first row its header."""
    from openpyxl import Workbook  # ~30 MB resident: only the processes that export XLSX pay for it

    book = Workbook(write_only=True)
    for title, rows in sheets:
        sheet = book.create_sheet(title[:31])  # Excel's limit on a sheet's name
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def as_json(rows: Iterable[list]) -> bytes:
    """A list of objects, one per row, keyed by the header's names; an undefined number (NaN) is null, as JSON has none."""
    header, *body = list(rows)
    objects = [{name: None if isinstance(cell, float) and not math.isfinite(cell) else cell
                for name, cell in zip(header, row, strict=True)} for row in body]
    return json.dumps(objects, indent=1).encode("utf-8")


def table_file(rows: Iterable[list], file_format: str, title: str = "Table", about: Iterable[list] | None = None) -> bytes:
    """The table in one of CONTENT_TYPES' formats; a workbook also gets an About sheet when one is given."""
    if file_format == "xlsx":
        return as_xlsx([(title, rows), *([("About", about)] if about is not None else [])])
    return as_json(rows) if file_format == "json" else as_csv(rows)


def safe_name(text: str, fallback: str = "table") -> str:
    """A file name's part from a user's name: letters, digits, dots and dashes only."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-")[:80] or fallback


def download(content: bytes, file_format: str, filename: str) -> HttpResponse:
    """A file as an attachment; file_format one of CONTENT_TYPES, or "html" (a report)."""
    response = HttpResponse(content, content_type=REPORT_CONTENT_TYPE if file_format == "html" else CONTENT_TYPES[file_format])
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
