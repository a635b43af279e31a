"""De-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

The profile's table (which attribute gets which action) comes from the
dicom-anonymizer package, which tracks the current edition of the standard. Its
replacement values are not used: they are random per process, and a project
needs the same patient, date offset and UID to come out every time, so that two
uploads of one patient still group together in a patient-level split. Every
replacement here is an HMAC of the original under the project's secret key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag

PROFILE_EDITION = "dicomfields_2026c"
METHOD = "PS3.15 Annex E Basic Profile; Retain Longitudinal With Modified Dates; consistent pseudonyms"
DUMMY_TEXT = "REMOVED"
DATE_VRS = {"DA", "DT"}
NUMBER_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "UV", "SV"}
TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"}
# Repeating groups (curves 50xx, overlays 60xx) hold drawings and text that may name the patient.
REPEATING_GROUPS_REMOVED = (0x5000, 0x6000)


def profile_actions() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    """{tag: action} for plain tags and (group, element, group mask, element mask, action) for repeating ones."""
    table = dicom_anonymization_database_selector(PROFILE_EDITION)
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, tags in table.items():
        if category == "ALL_TAGS":
            continue
        action = category.removesuffix("_TAGS")
        for tag in tags:
            if len(tag) == 2:
                exact[Tag(*tag)] = action
            else:
                masked.append((*tag, action))
    return exact, masked


EXACT_ACTIONS, MASKED_ACTIONS = profile_actions()


def action_for(tag: int) -> str:
    if tag in EXACT_ACTIONS:
        return EXACT_ACTIONS[tag]
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gmask, emask, action in MASKED_ACTIONS:
        if group & gmask == g and element & emask == e:
            return action
    return ""


class Deidentifier:
    """Applies the profile with replacements that are consistent within one project."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}:{value.strip()}".encode(), hashlib.sha256).digest()

    def patient_pseudonym(self, key: str) -> str:
        return "P-" + self.digest("patient", key).hex()[:12].upper()

    def pseudonym_for_value(self, column_kind: str, value: str) -> str:
        """Identifier columns of tables: the same mapping as the images' tags, so tables still join."""
        if column_kind == "patient":
            return self.patient_pseudonym(f"PatientID:{value.strip()}")
        if column_kind == "uid":
            return self.uid(value)
        return "ID-" + self.digest(column_kind, value).hex()[:12].upper()

    def uid(self, original: str) -> str:
        # 2.25 is the UUID-derived root: no organisation root needed and always under 64 characters.
        return "2.25." + str(int.from_bytes(self.digest("uid", original)[:16], "big"))

    def date_offset(self, patient_key: str) -> dt.timedelta:
        days = 365 + int.from_bytes(self.digest("dates", patient_key)[:4], "big") % 3650
        return dt.timedelta(days=days)

    def deidentify(self, ds: Dataset) -> str:
        """Clean ds in place; returns the patient pseudonym."""
        key = patient_key(ds)
        pseudonym = self.patient_pseudonym(key)
        offset = self.date_offset(key)
        ds.remove_private_tags()
        self.clean(ds, offset)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "SOPInstanceUID" in ds:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                            "ReceivingApplicationEntityTitle", "PrivateInformation"):
                if keyword in meta:
                    delattr(meta, keyword)
        return pseudonym

    def clean(self, ds: Dataset, offset: dt.timedelta) -> None:
        for tag in list(ds.keys()):
            element = ds[tag]
            if tag.group in (0x0002, 0x7FE0):
                continue
            if (tag.group & 0xFF00) in REPEATING_GROUPS_REMOVED:
                del ds[tag]
                continue
            action = action_for(int(tag))
            if not action:
                if element.VR == "SQ":
                    self.clean_items(element.value, offset)
                continue
            self.apply(ds, tag, element, action, offset)

    def clean_items(self, sequence: Sequence, offset: dt.timedelta) -> None:
        for item in sequence:
            item.remove_private_tags()
            self.clean(item, offset)

    def apply(self, ds: Dataset, tag, element, action: str, offset: dt.timedelta) -> None:
        vr = element.VR
        if action == "U" and vr == "UI":
            element.value = self.map_values(element.value, self.uid)
            return
        # Sequences named by the profile go whole: their items can hold any text (X/Z/U* included:
        # removing references is the strict reading and costs a training set nothing).
        if action.startswith("X") or vr == "SQ":
            del ds[tag]
            return
        if vr in DATE_VRS:
            element.value = self.map_values(element.value, lambda v: shift_date(v, vr, offset))
        elif action == "Z" or vr == "UN" or vr not in TEXT_VRS | NUMBER_VRS | {"TM"}:
            element.value = None
        elif vr == "TM":
            element.value = "000000"
        elif vr in NUMBER_VRS:
            element.value = 0
        else:
            element.value = DUMMY_TEXT

    @staticmethod
    def map_values(value, function):
        if value in (None, ""):
            return value
        if isinstance(value, MultiValue | list):
            return [function(str(v)) for v in value]
        return function(str(value))


def patient_key(ds: Dataset) -> str:
    """The value that identifies the patient: ID, else name, else the study (one pseudonym per study)."""
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return f"{keyword}:{value}"
    return "unknown"


def shift_date(value: str, vr: str, offset: dt.timedelta) -> str:
    text = value.strip()
    try:
        shifted = dt.datetime.strptime(text[:8], "%Y%m%d") - offset
    except ValueError:
        return ""
    # DT keeps its time of day; dates alone say nothing about a patient once shifted.
    return shifted.strftime("%Y%m%d") + (text[8:] if vr == "DT" else "")
