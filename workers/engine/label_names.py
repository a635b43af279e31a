"""Names of the label values of segmentation masks: the files that datasets ship them in, and the rules a set of
names keeps (shared by ingest and the dataset page, which is why this sits outside ingest/: the web process
imports it without the image readers).

- A Medical Segmentation Decathlon / nnU-Net v1 `dataset.json`: "labels": {"0": "background", "1": "liver"};
  nnU-Net v2 turned it round: "labels": {"background": 0, "liver": 1}, where a list of values is a region
  (several labels trained as one), which names no single value and is left out.
- An ITK-SNAP label description file (`*.txt`): lines `IDX -R- -G- -B- -A- VIS MSH "LABEL"` after `#` comments.
- A two-column table (`*label*.csv` or `.tsv`): value, name; a header row is optional.

Each reader returns {value: name} or raises LabelFileProblem with what is wrong and where. A file that turns
out not to name labels at all (a dataset.json without "labels", a README.txt, a table of one row per image)
gives None: it stays a document or a table, as before.
"""
from __future__ import annotations

import csv
import io
import json
import re

MAX_LABEL_FILE_BYTES = 1024**2
MAX_NAME_LENGTH = 100
MAX_LABEL_VALUE = 65535  # masks are stored as uint8 or uint16 (masks.py)
DATASET_JSON = "dataset.json"
ITK_SNAP_HEADER = "itk-snap label description file"
# IDX R G B A VIS MSH "LABEL" (ITK-SNAP writes the alpha as 0..1; other tools as 0..255).
ITK_SNAP_LINE = re.compile(r'^\s*(-?\d+)\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+"(.*)"\s*$')


class LabelFileProblem(ValueError):
    """A file that names labels but cannot be used; the message says what is wrong and how to fix it."""


def may_name_labels(path: str, size: int) -> bool:
    """Whether a file's name and size make it a candidate (its content decides): dataset.json, a .txt, a table with
    'label' in its name, of at most 1 MB (a file of names is a few lines; a larger one is something else)."""
    base = path.rsplit("/", 1)[-1].lower()
    stem = base.rsplit(".", 1)[0]
    named = base == DATASET_JSON or base.endswith(".txt") or (base.endswith((".csv", ".tsv")) and "label" in stem)
    return named and size <= MAX_LABEL_FILE_BYTES


def read_label_file(path: str, data: bytes) -> dict[int, str] | None:
    """{value: name} from a file that names labels; None when the file names none (it is something else)."""
    base = path.rsplit("/", 1)[-1].lower()
    text = as_text(data)
    if base == DATASET_JSON:
        return names_from_dataset_json(text)
    if base.endswith(".txt"):
        return names_from_itk_snap(text, named_as_labels="label" in base)
    return names_from_table(text, "\t" if base.endswith(".tsv") else None)


def as_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileProblem(f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def names_from_dataset_json(text: str) -> dict[int, str] | None:
    """MSD / nnU-Net v1 {"0": "background"} or nnU-Net v2 {"background": 0}; None without "labels"."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFileProblem(f"dataset.json is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(document, dict) or "labels" not in document:
        return None
    labels = document["labels"]
    if not isinstance(labels, dict) or not labels:
        raise LabelFileProblem('"labels" in dataset.json must be an object such as {"0": "background", "1": "liver"}')
    if all(isinstance(name, str) for name in labels.values()):
        pairs = [(whole_number(key, f'label "{key}"'), name) for key, name in labels.items()]
    elif all(is_value(value) or is_region(value) for value in labels.values()):
        # nnU-Net v2: a list of values is a region (several labels trained as one), not the name of one value.
        pairs = [(int(value), name) for name, value in labels.items() if is_value(value)]
    else:
        raise LabelFileProblem('"labels" in dataset.json mixes forms; write {"0": "background", "1": "liver"} '
                               '(Decathlon) or {"background": 0, "liver": 1} (nnU-Net v2)')
    return checked(pairs, "dataset.json")


def is_value(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_region(value) -> bool:
    return isinstance(value, list) and all(is_value(v) for v in value)


def names_from_itk_snap(text: str, named_as_labels: bool) -> dict[int, str] | None:
    """ITK-SNAP's label description lines. A .txt that neither carries ITK-SNAP's header, nor has 'label' in its
    name, nor holds only such lines is a document (a README), and gives None."""
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    declared = named_as_labels or any(ITK_SNAP_HEADER in line.lower() for _, line in lines if line.lstrip().startswith("#"))
    rows = [(number, line) for number, line in lines if not line.lstrip().startswith("#")]
    matches = [(number, ITK_SNAP_LINE.match(line)) for number, line in rows]
    if not declared and (not rows or not all(match for _, match in matches)):
        return None
    pairs = []
    for (number, match), (_, line) in zip(matches, rows):
        if not match:
            raise LabelFileProblem(f'line {number} is not a label description: "{line.strip()[:60]}"; ITK-SNAP '
                                   'writes IDX R G B A VIS MSH "LABEL", e.g. 1 255 0 0 1 1 1 "liver"')
        pairs.append((whole_number(match.group(1), f"line {number}"), match.group(2)))
    if not pairs:
        raise LabelFileProblem('the file names no labels; ITK-SNAP writes a line IDX R G B A VIS MSH "LABEL" per label')
    return checked(pairs, "the file")


def names_from_table(text: str, delimiter: str | None) -> dict[int, str] | None:
    """Two columns, value and name, with an optional header row. A table whose rows do not start with whole
    numbers (one row per image, say) names no labels and gives None."""
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    rows = [(number, [cell.strip() for cell in row]) for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1)
            if any(cell.strip() for cell in row)]
    if rows and not looks_whole(rows[0][1][0]):
        rows = rows[1:]  # a header row (value, name)
    if not rows or not any(looks_whole(row[0]) for _, row in rows):
        return None
    pairs = []
    for number, row in rows:
        if len(row) != 2:
            columns = f"{len(row)} column{'' if len(row) == 1 else 's'}"
            raise LabelFileProblem(f"row {number} has {columns}; a table of label names has two: value, name")
        pairs.append((whole_number(row[0], f"row {number}"), row[1]))
    return checked(pairs, "the table")


def looks_whole(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", text.strip()))


def whole_number(text, where: str) -> int:
    if not looks_whole(str(text)):
        raise LabelFileProblem(f'{where}: "{str(text)[:40]}" is not a label value; label values are whole numbers, '
                               "0 for background")
    return int(str(text).strip())


def checked(pairs: list[tuple[int, str]], what: str) -> dict[int, str]:
    """{value: name} once every value is in range and given once, and every name is usable."""
    names: dict[int, str] = {}
    for value, name in pairs:
        if not 0 <= value <= MAX_LABEL_VALUE:
            raise LabelFileProblem(f"{what} names label {value}; label values go from 0 to {MAX_LABEL_VALUE}")
        if value in names:
            raise LabelFileProblem(f"{what} names label {value} twice ('{names[value]}' and '{name}'); give each value one name")
        names[value] = name.strip()
    problem = names_problem(names)
    if problem:
        raise LabelFileProblem(f"{what}: {problem}")
    return dict(sorted(names.items()))


def names_problem(names: dict[int, str]) -> str:
    """What makes a set of label names unusable ('' when nothing): an empty or over-long name, or one name
    given to two values (the legend and the per-class metrics would not tell them apart). Shared by the files
    read at ingest and the names typed on the dataset page."""
    seen: dict[str, int] = {}
    for value, name in sorted(names.items()):
        if not name.strip():
            return f"label {value} has an empty name; give it a name, or leave it out"
        if not name.isprintable():
            return f"the name of label {value} holds control characters (a tab, a line break); use plain text"
        if len(name) > MAX_NAME_LENGTH:
            return f"the name of label {value} is {len(name)} characters long; names are at most {MAX_NAME_LENGTH}"
        key = name.strip().casefold()
        if key in seen:
            return f"labels {seen[key]} and {value} are both named '{name.strip()}'; give each label its own name"
        seen[key] = value
    return ""


def in_words(names: dict[int, str]) -> str:
    """'0 background, 1 liver, 2 tumour' (the first 12)."""
    shown = ", ".join(f"{value} {name}" for value, name in list(names.items())[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")
