"""The names of a segmentation dataset's label values, as typed on the dataset page (or sent by PATCH).

An upload's own label file (dataset.json, an ITK-SNAP description, labels.csv) names them at ingest
(workers/engine/ingest/label_names.py); here the user names or renames them, against the values the masks hold.
"""
from __future__ import annotations

from collections import Counter

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.projects.access import require_owner
from workers.engine.label_names import looks_whole, names_problem

from .models import Dataset

FIELD = "label_names"


def set_label_names(actor, dataset: Dataset, names: dict[str, str]) -> Dataset:
    """Replaces the dataset's label names with `names` ({value as text: name}); refused whole (nothing saved) when
    a key is no whole number, names a value no mask holds (0, the background, may always be named), or a name is
    empty, too long or given twice."""
    require_owner(actor, dataset.project)
    if dataset.task != Dataset.Task.SEGMENTATION:
        raise ServiceError("This dataset has no masks; label names name the values that segmentation masks hold.", field=FIELD)
    if dataset.status != Dataset.Status.READY:
        raise ServiceError("This dataset is not ready yet; wait for its ingest to finish, then name its labels.", field=FIELD)
    by_value = label_values(names)
    held = sorted({0, *(int(v) for v in dataset.mask_values)})
    absent = [value for value in by_value if value not in held]
    if absent:
        raise ServiceError(f"value {absent[0]} is in no mask; the masks hold {', '.join(map(str, held))}. "
                           "Name only these values.", field=FIELD)
    problem = names_problem(by_value)
    if problem:
        raise ServiceError(problem[0].upper() + problem[1:] + ".", field=FIELD)
    dataset.label_names = {str(value): name.strip() for value, name in sorted(by_value.items())}
    dataset.save(update_fields=["label_names"])
    record(actor, dataset.project, Action.CHANGE, dataset, name=f"{dataset.name}: label names")
    return dataset


def label_values(names: dict[str, str]) -> dict[int, str]:
    """{value: name} from the keys as sent (text); refused when a key is not a whole number or two keys are one value."""
    by_value: dict[int, str] = {}
    for key, name in names.items():
        if not looks_whole(str(key)) or int(key) < 0:
            raise ServiceError(f"'{str(key)[:40]}' is not a label value; label values are whole numbers from 0 "
                               "(background), such as 1 or 2.", field=FIELD)
        if int(key) in by_value:
            raise ServiceError(f"Label {int(key)} is given twice ('{by_value[int(key)]}' and '{name}'); give it once.", field=FIELD)
        by_value[int(key)] = name
    return by_value


def masks_per_value(dataset: Dataset) -> dict[int, int]:
    """How many masks hold each label value (from each sample's mask_values, kept at ingest)."""
    held = dataset.samples.exclude(mask="").values_list("meta__mask_values", flat=True)
    return dict(Counter(int(value) for values in held.iterator(chunk_size=5000) for value in values or []))


def label_rows(dataset: Dataset) -> list[dict]:
    """The Labels card's rows: each value the masks hold (0 first), its name as stored ('' when unnamed), the name
    it goes by, and how many masks hold it."""
    counts = masks_per_value(dataset)
    return [{"value": value, "name": dataset.label_names.get(str(value), ""), "shown": shown, "masks": counts.get(value, 0),
             "unnamed": value in dataset.unnamed_label_values}
            for value, shown in dataset.segmentation_labels]
