"""A DICOM series whose slices share positions (two echoes, dynamics, or copies of one instance) never becomes one
stack with zero spacing: copies are dropped, echoes split into volumes of their own, and slices nothing tells apart
are refused with the reason; the report says which."""
import io

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from tests.medical import ROOT, dicom_bytes
from tests.unit.test_ingest import ingest, outcome_of
from workers.engine.ingest import ACCEPTED, REJECTED


def interleaved(echoes=2, places=4, extra_of=lambda echo: {"EchoNumbers": echo}, study=None):
    """One series: `places` slice positions 3 mm apart, each acquired once per echo; echo e's slice k holds e*1000+k."""
    series_uid, study_uid = generate_uid(ROOT), study or generate_uid(ROOT)
    return {f"mr/s_{echo}_{k}.dcm": dicom_bytes(np.full((16, 16), echo * 1000 + k, np.int16), series_uid=series_uid,
                                                study_uid=study_uid, position=(0.0, 0.0, 3.0 * k), instance=echo * 10 + k,
                                                modality="MR", extra=extra_of(echo))
            for echo in range(1, echoes + 1) for k in range(places)}


def volumes(result, root):
    return {s.source_path: np.load(root / s.array) for s in result.summary.samples}


def test_two_echoes_at_the_same_places_become_two_volumes_with_the_right_spacing(tmp_path):
    result = ingest(tmp_path, interleaved())
    found = volumes(result, tmp_path / "dataset")
    assert sorted(found) == ["mr (EchoNumbers 1)", "mr (EchoNumbers 2)"]
    for echo, volume in ((1, found["mr (EchoNumbers 1)"]), (2, found["mr (EchoNumbers 2)"])):
        assert volume.shape == (4, 16, 16) and volume[:, 0, 0].tolist() == [echo * 1000 + k for k in range(4)]
    assert all(s.spacing[0] == 3.0 for s in result.summary.samples), "not zero: each echo's slices are 3 mm apart"
    assert "split into 2 volumes by EchoNumbers" in result.summary.notes["mr/s_1_0.dcm"]


def test_copies_of_one_instance_are_dropped_and_reported(tmp_path):
    entries = interleaved(echoes=1)
    first = pydicom.dcmread(io.BytesIO(entries["mr/s_1_2.dcm"]))  # the copy is of the same series and study
    # The same slice sent again under a new instance UID and number (as a PACS re-send does): other bytes, same pixels.
    entries["mr/s_1_2_again.dcm"] = dicom_bytes(np.full((16, 16), 1002, np.int16), series_uid=first.SeriesInstanceUID,
                                                study_uid=first.StudyInstanceUID, position=(0.0, 0.0, 6.0), instance=99,
                                                modality="MR", extra={"EchoNumbers": 1})
    result = ingest(tmp_path, entries)
    [volume] = volumes(result, tmp_path / "dataset").values()
    assert volume[:, 0, 0].tolist() == [1000, 1001, 1002, 1003]
    dropped = [o for o in result.outcomes if o.status == REJECTED]
    assert len(dropped) == 1 and "a copy of another slice of its series" in dropped[0].reason


def test_slices_that_nothing_tells_apart_are_refused_with_the_reason(tmp_path):
    result = ingest(tmp_path, interleaved(extra_of=lambda echo: {}))
    assert not result.summary.samples
    refused = outcome_of(result, "mr/s_2_3.dcm")
    assert refused.status == REJECTED and "share a position with another" in refused.reason
    assert "upload each acquisition as its own series" in refused.reason
    assert all(o.status != ACCEPTED for o in result.outcomes)


def test_a_plain_series_is_stacked_as_before(tmp_path):
    result = ingest(tmp_path, interleaved(echoes=1))
    [sample] = result.summary.samples
    assert sample.source_path == "mr" and sample.shape == [4, 16, 16] and sample.spacing[0] == 3.0
