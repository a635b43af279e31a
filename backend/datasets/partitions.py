"""What a split gives before it is stored, in figures and in words.

The preview (POST /api/partitions/preview/) and the creation (services.create_partition, the k-fold and
column partitions) run the same split and read it with the same functions, so what the form shows beside
its fields is what gets stored: samples and patients per subset, the warnings a person should read before
training on it, the refusals (a subset asked for that whole patients leave empty) and the partition
already made the same way.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from workers.engine.splits import SUBSETS, subset_sizes

from .models import Partition

# Percentage points between what a split reaches and what was asked before the preview warns: a large
# dataset lands within a point or two; whole patients of a small one can miss by a patient's share.
FAR_FROM_ASKED = 5.0

# What makes two partitions of a dataset "the same" besides their members, per method.
IDENTITY = {
    Partition.Method.PERCENTAGES: ("train_percent", "validation_percent", "test_percent", "seed"),
    Partition.Method.KFOLD: ("folds", "fold", "seed"),
    Partition.Method.COLUMN: ("column",),
}
# (what is the same, what to change for another partition)
IDENTITY_WORDS = {
    Partition.Method.PERCENTAGES: ("percentages and seed", "the seed or the percentages"),
    Partition.Method.KFOLD: ("number of folds and seed", "the seed or the number of folds"),
    Partition.Method.COLUMN: ("table column", "the column's values"),
}


def split_facts(samples, assignment: list[str], asked: dict[str, float] | None = None) -> dict:
    """Samples, patients, labels and shares per subset of one split, its one-line summary and its warnings.

    samples: (id, label, patient, meta) as services.partition_samples gives them; asked: the percentages
    asked for, when the split was made from percentages (the warnings then compare).
    """
    patients = [patient for _, _, patient, _ in samples]
    total = len(samples)
    sizes = subset_sizes(assignment, patients)
    labels: dict[str, Counter] = defaultdict(Counter)
    for (_, label, _, _), subset in zip(samples, assignment):
        labels[subset][label] += 1
    without = sum(1 for patient in patients if not patient)
    known = len({patient for patient in patients if patient})
    subsets = {
        name: {**sizes[name], "percent": round(100.0 * sizes[name]["samples"] / total, 1) if total else 0.0,
               "asked": None if asked is None else float(asked[name]), "labels": dict(sorted(labels[name].items()))}
        for name in SUBSETS
    }
    facts = {
        "samples": total, "patients": known, "samples_without_patient": without,
        "grouped_by": "image" if not known else "patient" if not without else "patient where known",
        "subsets": subsets,
    }
    facts["summary"] = summary(facts)
    facts["warnings"] = warnings(facts, asked)
    return facts


def summary(facts: dict) -> str:
    """'train 48 · validation 24 · test 0 samples (6 patients: 4/2/0)'."""
    subsets = facts["subsets"]
    counts = " · ".join(f"{name} {subsets[name]['samples']}" for name in SUBSETS) + " samples"
    if not facts["patients"]:
        return f"{counts} (no patient IDs: split by image)"
    spread = "/".join(str(subsets[name]["patients"]) for name in SUBSETS)
    without = facts["samples_without_patient"]
    rest = f"; {without} sample{'s' if without != 1 else ''} without a patient ID" if without else ""
    return f"{counts} ({facts['patients']} patient{'s' if facts['patients'] != 1 else ''}: {spread}{rest})"


def percentages(values) -> str:
    return "/".join(f"{value:.0f}" if abs(value - round(value)) < 0.05 or value >= 10 else f"{value:.1f}" for value in values) + " %"


def patient_share(facts: dict) -> str:
    """'each of the 6 patients holds about 17 % of the samples' (on average), or '' without patients."""
    known = facts["patients"]
    if not known:
        return ""
    share = 100.0 * (facts["samples"] - facts["samples_without_patient"]) / known / facts["samples"]
    return f"patients are kept whole, and each of the {known} holds about {share:.0f} % of the samples"


def warnings(facts: dict, asked: dict[str, float] | None) -> list[str]:
    found = []
    if facts["grouped_by"] == "image":
        found.append("No sample has a patient ID, so the split is by image: images of one patient may be in both "
                     "training and test, and the test figures may then be optimistic.")
    elif facts["samples_without_patient"]:
        without = facts["samples_without_patient"]
        found.append(f"{without} of {facts['samples']} samples have no patient ID and are split image by image: if some "
                     "come from one patient, that patient's images may be in two subsets, and the test figures may then "
                     "be optimistic.")
    if asked is not None:
        reached = [facts["subsets"][name]["percent"] for name in SUBSETS]
        wanted = [asked[name] for name in SUBSETS]
        if any(abs(got - want) > FAR_FROM_ASKED for got, want in zip(reached, wanted)):
            why = patient_share(facts)
            found.append(f"This split gives {percentages(reached)} of the samples where {percentages(wanted)} was asked"
                         + (f": {why}." if why else f": {facts['samples']} samples cannot be shared out more closely by label."))
    return found


def empty_subsets(facts: dict, asked: dict[str, float]) -> list[dict]:
    """An error (code, message, field, counts, patients) for each subset asked for (above 0 %) that the split leaves empty."""
    refusals = []
    for name in SUBSETS:
        if asked[name] <= 0 or facts["subsets"][name]["samples"]:
            continue
        why = patient_share(facts)
        advice = "Raise its percentage." if name == "train" else f"Set {name} to 0 % for no {name} subset, or change the percentages."
        refusals.append({
            "code": "empty_subset", "field": f"{name}_percent",
            "message": f"The {name} subset would be empty: {facts['summary']}. " + (f"{why[0].upper()}{why[1:]}. " if why else "") + advice,
            "counts": {subset: facts["subsets"][subset]["samples"] for subset in SUBSETS},
            "patients": {subset: facts["subsets"][subset]["patients"] for subset in SUBSETS},
        })
    return refusals


def same_partition(dataset, samples, assignment: list[str], fields: dict) -> Partition | None:
    """The dataset's partition made the same way (method and its parameters) with the same samples in each subset.

    The members are compared too: labels joined from a table since then change a stratified split, and what
    was made before is then a different partition, not this one.
    """
    method = fields.get("method", Partition.Method.PERCENTAGES)
    wanted = {pk: subset for (pk, _, _, _), subset in zip(samples, assignment)}
    candidates = dataset.partitions.filter(method=method, **{key: fields[key] for key in IDENTITY[method]}).order_by("created_at")
    for candidate in candidates:
        if dict(candidate.members.values_list("sample_id", "subset")) == wanted:
            return candidate
    return None


def duplicate_error(existing: Partition) -> dict:
    same, change = IDENTITY_WORDS[existing.method]
    return {
        "code": "duplicate", "field": None,
        "message": f"This partition exists already: '{existing.name}' (id {existing.pk}), made from this dataset with the same "
                   f"{same}, holds the same samples in each subset. Use it, or change {change}.",
        "existing": {"id": existing.pk, "name": existing.name},
    }
