"""The ids of a run's live events say where a client is (the newest point and log line it has), and the
events are Server-Sent Events' text format."""
import json

import pytest

from backend.core import sse
from backend.runs.events import Cursor


@pytest.mark.parametrize("text, cursor", [
    ("p123.l45", Cursor(123, 45)),
    ("p0.l0", Cursor()),
    (" p7.l0\n", Cursor(7, 0)),
    ("", Cursor()),
    (None, Cursor()),
    ("p9223372036854775807.l1", Cursor(2**63 - 1, 1)),
])
def test_an_event_id_names_the_newest_point_and_log_line(text, cursor):
    assert Cursor.parse(text) == cursor


@pytest.mark.parametrize("text", ["12", "p12", "l3.p4", "p1.l", "p-1.l2", "p1.l2.x", "p1,l2", "P1.L2", "p1.l2 p3.l4", "p" + "9" * 20 + ".l0"])
def test_anything_else_is_refused_with_what_an_id_looks_like(text):
    with pytest.raises(ValueError, match="looks like 'p123.l45'"):
        Cursor.parse(text)


def test_an_id_reads_back_as_the_cursor_it_was_written_from():
    for cursor in (Cursor(), Cursor(1, 0), Cursor(0, 1), Cursor(10**12, 77)):
        assert Cursor.parse(str(cursor)) == cursor
    assert str(Cursor(123, 45)) == "p123.l45"


def test_events_are_written_in_the_text_format():
    assert sse.event("point", {"id": 3, "value": 0.5}, "p3.l0") == 'event: point\nid: p3.l0\ndata: {"id":3,"value":0.5}\n\n'
    assert sse.event("end", None) == "event: end\ndata: null\n\n"
    assert sse.comment("keep-alive") == ": keep-alive\n\n"
    assert sse.retry(2000) == "retry: 2000\n\n"


def test_data_stays_on_one_line_whatever_the_text_holds():
    text = "line one\nline two\r\n\n: not a comment\ndata: not a field"
    written = sse.event("log", {"text": text}, "p0.l1")
    assert written.count("\n") == 4 and written.endswith("\n\n")
    assert json.loads(written.splitlines()[2].removeprefix("data: ")) == {"text": text}
