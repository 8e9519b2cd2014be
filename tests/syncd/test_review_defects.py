"""Defects found in a review of the run steps and the daemon, each pinned by the scenario a user
hits: an entry that is not a regular file where a sample file belongs (a directory named
``x.jpg.json``) must cost that sample, with a one-line error, never the whole daemon pass or a
traceback."""
from __future__ import annotations

import os

import pytest
from test_watch import _real_jpeg, _reconciler

import syncd
from syncd.errors import SampleFileError


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_directory_named_like_a_sample_file_does_not_stall_the_daemon(tmp_path):
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "a.jpg").write_bytes(_real_jpeg())
    (tmp_path / "incoming" / "a.jpg.json").mkdir()          # not a file: a directory
    (tmp_path / "incoming" / "b.jpg").write_bytes(_real_jpeg())
    rec = _reconciler(tmp_path, quiet=0.0)
    rec.pass_once()                                          # must not raise
    before = _open_fds()
    for _ in range(5):
        rec.pass_once()
    rec.hint(None)
    rec.pass_once()
    assert _open_fds() <= before                             # no descriptor left open per pass
    # the other media was auto-tagged as usual
    assert "requires_annotation" in (tmp_path / "incoming" / "b.jpg.json").read_text()


def test_tagging_a_sample_whose_file_is_a_directory_is_a_one_line_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_real_jpeg())
    (tmp_path / "a.jpg.json").mkdir()
    with pytest.raises(SampleFileError, match="a.jpg.json"):
        syncd.tag(tmp_path, ["a.jpg"], add=["x"])


# ---- load: a dest_field the run cannot take ----------------------------------------------------

@pytest.fixture
def client(fakecvat):
    from syncd.cvat import CVATClient
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def test_a_single_dest_field_for_a_multi_field_run_is_a_one_line_error(tmp_path, client):
    from sample_helpers import make_images

    from syncd.errors import SyncdError
    from syncd.runs import RunStore

    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "a.jpg.json").write_text('{"filepath": "a.jpg", "tags": ["todo"]}')
    schema = {"boxes": {"type": "detections", "classes": ["cat"]},
              "scene": {"type": "classification", "classes": ["day", "night"]}}
    syncd.annotate(tmp_path, "two", ["a.jpg"], client=client, label_schema=schema)
    before = (tmp_path / "a.jpg.json").read_bytes()
    with pytest.raises(SyncdError, match="dest_field"):
        syncd.load_annotations(tmp_path, "two", client=client, dest_field="other")
    assert (tmp_path / "a.jpg.json").read_bytes() == before
    assert RunStore(tmp_path).get("two")["status"] == "annotating"   # nothing started
    syncd.load_annotations(tmp_path, "two", client=client)           # the right call still works
    assert RunStore(tmp_path).get("two")["status"] == "loaded"
