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
import functools
import hashlib
import hmac

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_sequence
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from .decoded import Rejected
from .guard import exception_text

PROFILE_EDITION = "dicomfields_2026c"
METHOD = "PS3.15 Annex E Basic Profile, modified dates"  # LO: at most 64 characters
# The same, coded (CID 7050): the Basic Profile and its Retain Longitudinal With Modified Dates option.
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
DUMMY_TEXT = "REMOVED"
DATE_VRS = {"DA", "DT"}
NUMBER_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "UV", "SV"}
BINARY_ZERO_BYTES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"}
# Repeating groups (curves 50xx, overlays 60xx) hold drawings and text that may name the patient.
REPEATING_GROUPS_REMOVED = (0x5000, 0x6000)
# PatientName, PatientID, PatientIdentityRemoved, DeidentificationMethod (and its code sequence),
# LongitudinalTemporalInformationModified
METHOD_CODES_TAG = 0x00120064
MEDIA_INSTANCE_TAG = 0x00020003  # MediaStorageSOPInstanceUID
WRITTEN_TAGS = frozenset({0x00100010, 0x00100020, 0x00120062, 0x00120063, 0x00120064, 0x00280303})


def profile_actions() -> dict[int, str]:
    """{tag: action}. The table's repeating-group entries (50xx, 60xx) are covered by removing
    those groups whole; an edition that names another repeating group must not pass silently."""
    table = dicom_anonymization_database_selector(PROFILE_EDITION)
    exact: dict[int, str] = {}
    for category, tags in table.items():
        if category == "ALL_TAGS":
            continue
        action = category.removesuffix("_TAGS")
        for tag in tags:
            if len(tag) == 2:
                exact[Tag(*tag)] = action
            elif tag[0] & tag[2] not in REPEATING_GROUPS_REMOVED:
                raise RuntimeError(f"{PROFILE_EDITION} names repeating group {tag[0]:04X}, which the de-identifier does not remove")
    return exact


EXACT_ACTIONS = profile_actions()


def raw_vr(ds: Dataset, tag: int) -> str:
    """The VR without decoding the value; implicit-VR files carry none, so the dictionary says."""
    vr = ds.get_item(tag).VR
    if vr:
        return vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


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

    def deidentify(self, ds: Dataset) -> tuple[str, set[int]]:
        """Clean ds in place; returns the patient pseudonym and the top-level tags it changed,
        added or removed (the writer copies every other element's bytes as they came)."""
        key = patient_key(ds)
        pseudonym = self.patient_pseudonym(key)
        offset = self.date_offset(key)
        touched = self.clean(ds, offset)
        for keyword, value in (("PatientID", pseudonym), ("PatientName", pseudonym), ("PatientIdentityRemoved", "YES"),
                               ("DeidentificationMethod", METHOD), ("LongitudinalTemporalInformationModified", "MODIFIED")):
            tag = tag_for_keyword(keyword)  # a new element, not a new value: the file's may carry a wrong VR
            ds[tag] = DataElement(tag, dictionary_VR(tag), value)
        ds[METHOD_CODES_TAG] = method_codes_element(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None))
        touched |= WRITTEN_TAGS
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "SOPInstanceUID" in ds:
                meta[MEDIA_INSTANCE_TAG] = DataElement(MEDIA_INSTANCE_TAG, "UI", ds.SOPInstanceUID)
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                            "ReceivingApplicationEntityTitle", "PrivateInformation"):
                meta.pop(tag_for_keyword(keyword), None)
        return pseudonym, touched

    def clean(self, ds: Dataset, offset: dt.timedelta) -> set[int]:
        # Elements are looked at raw and only decoded when the profile acts on them or they
        # are sequences to descend into: decoding every value is most of pydicom's cost.
        touched = set()
        for tag in list(ds.keys()):
            group = tag >> 16
            if group in (0x0002, 0x7FE0):
                continue
            if group & 1 or (group & 0xFF00) in REPEATING_GROUPS_REMOVED:
                del ds[tag]  # private tags, curves and overlays
                touched.add(tag)
                continue
            try:
                if self.clean_element(ds, tag, offset):
                    touched.add(tag)
            except Exception:
                # The element the profile acts on (or a sequence to look into) cannot be read or take
                # its replacement: pydicom raises many kinds for a value that does not fit its VR.
                # Removing it is always safe, and the rest of the file can still come in.
                del ds[tag]
                touched.add(tag)
        return touched

    def clean_element(self, ds: Dataset, tag: int, offset: dt.timedelta) -> bool:
        """Applies the profile to one element; True when it changed (or may have changed) it."""
        action = EXACT_ACTIONS.get(tag, "")
        if action:
            if not self.apply_raw(ds, tag, action, offset):
                self.apply(ds, tag, ds[tag], action, offset)
            return True
        if raw_vr(ds, tag) == "SQ":
            self.clean_items(ds[tag].value, offset)
            return True
        return False

    def clean_items(self, sequence: Sequence, offset: dt.timedelta) -> None:
        for item in sequence:
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

    def apply_raw(self, ds: Dataset, tag, action: str, offset: dt.timedelta) -> bool:
        """apply() on the undecoded bytes, which every replacement allows (UIDs and dates are
        ASCII by definition, the rest is replaced whole); False when apply() must decode."""
        raw = ds.get_item(tag)
        vr = raw_vr(ds, tag)
        if not getattr(raw, "is_raw", False) or " or " in vr:
            return False
        if action.startswith("X") or vr == "SQ":
            del ds[tag]
            return True
        if action == "U" and vr == "UI":
            value = map_raw_text(raw.value, self.uid, b"\0")
        elif vr in DATE_VRS:
            value = map_raw_text(raw.value, lambda v: shift_date(v, vr, offset), b" ")
        elif action == "Z" or vr == "UN" or vr not in TEXT_VRS | NUMBER_VRS | {"TM"}:
            value = b""
        elif vr == "TM":
            value = b"000000"
        elif vr in BINARY_ZERO_BYTES:
            value = bytes(BINARY_ZERO_BYTES[vr])
        elif vr in NUMBER_VRS:
            value = b"0 "
        else:
            value = DUMMY_TEXT.encode() + b" " * (len(DUMMY_TEXT) % 2)
        ds[tag] = raw._replace(value=value, length=len(value))
        return True

    @staticmethod
    def map_values(value, function):
        if value in (None, ""):
            return value
        if isinstance(value, MultiValue | list):
            return [function(str(v)) for v in value]
        return function(str(value))


def method_codes_element(syntax) -> DataElement | RawDataElement:
    """DeidentificationMethodCodeSequence, encoded once per transfer syntax: building and
    encoding a sequence for every file costs more than the rest of the de-identification."""
    if syntax is None or syntax.is_deflated or syntax.is_private:
        return DataElement(METHOD_CODES_TAG, "SQ", method_codes())
    return encoded_method_codes(syntax.is_implicit_VR, syntax.is_little_endian)


@functools.lru_cache(maxsize=4)
def encoded_method_codes(implicit: bool, little_endian: bool) -> RawDataElement:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little_endian
    write_sequence(fp, DataElement(METHOD_CODES_TAG, "SQ", method_codes()), [default_encoding])
    value = fp.getvalue()
    return RawDataElement(Tag(METHOD_CODES_TAG), "SQ", len(value), value, 0, implicit, little_endian)


def method_codes() -> Sequence:
    items = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    return Sequence(items)


def patient_key(ds: Dataset) -> str:
    """The value that identifies the patient: ID, else name, else the study (one pseudonym per study)."""
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        try:
            value = str(ds.get(keyword, "") or "").strip()
        except Exception as exc:  # pydicom raises many kinds for a value that does not fit its VR
            # Going on to the next attribute could give this patient another pseudonym than their other files get.
            raise Rejected(f"the file could not be de-identified: its {keyword} cannot be read, so it cannot be given "
                           f"its patient's pseudonym ({exception_text(exc)})") from exc
        if value:
            return f"{keyword}:{value}"
    return "unknown"


def shift_date(value: str, vr: str, offset: dt.timedelta) -> str:
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return ""
    try:
        shifted = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) - offset
    except (ValueError, OverflowError):
        return ""
    # DT keeps its time of day; dates alone say nothing about a patient once shifted.
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}" + (text[8:] if vr == "DT" else "")


def map_raw_text(value: bytes | None, function, padding: bytes) -> bytes:
    """Each backslash-separated value of an ASCII element through function, padded to even length."""
    text = (value or b"").decode("ascii", "replace").rstrip(" \0")
    if not text:
        return b""
    mapped = "\\".join(function(part) for part in text.split("\\")).encode("ascii", "replace")
    return mapped + padding * (len(mapped) % 2)
