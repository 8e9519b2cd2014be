"""The bad-input corpus (fixtures/bad): every hostile input gives one line naming the file and
the cause, touches no user file, and leaves syncd/fakecvat running.

Cases are generated into tmp dirs at test time. A case with a ``gap`` is a known, reported
shortcoming: it runs as xfail(strict), so fixing the gap turns it into a failure to update.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds fixtures/

from fixtures.bad import cases  # noqa: E402
from fixtures.bad import outcome as oc  # noqa: E402
from fixtures.bad.corpus import image_bytes  # noqa: E402
from syncd import dataset  # noqa: E402
from syncd.errors import ConfigError, MediaError, SampleFileError  # noqa: E402

CASES = cases()


def by_kind(kind: str):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.gap)] if c.gap else [])
            for c in CASES if c.kind == kind]


def snapshot(top: Path) -> dict:
    """Every entry below ``top`` (not following links) -> content hash / link target / 'dir'.
    ``.syncd/`` is syncd's own state, not a user file."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".syncd"]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[p] = ("dir", os.stat(p).st_mode)
            else:
                with open(p, "rb") as f:
                    out[p] = ("file", hashlib.sha256(f.read()).hexdigest(), os.stat(p).st_mode)
    return out


def check_message(msg: str, names: str, expected) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg, f"not one line: {msg!r}"
    assert len(msg) < 1000, f"message too long ({len(msg)} chars): {msg[:200]}..."
    assert names in msg, f"message does not name {names!r}: {msg}"
    for part in expected:
        assert part in msg, f"message lacks {part!r}: {msg}"


def test_corpus_is_large_and_covers_every_kind():
    assert len(CASES) >= 50
    assert {c.kind for c in CASES} == {"media", "sample", "path", "symlink", "config", "upload"}


def test_corpus_is_deterministic(tmp_path):
    for c in CASES:
        if c.kind in ("media", "sample", "config"):
            a, b = tmp_path / f"{c.name}-a", tmp_path / f"{c.name}-b"
            a.mkdir(), b.mkdir()
            c.make(a), c.make(b)
            assert [p.read_bytes() for p in sorted(a.iterdir())] == [p.read_bytes() for p in sorted(b.iterdir())]


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


# ---- media -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", by_kind("media"))
def test_bad_media(case, root):
    rel = case.make(root)
    (root / "good.jpg").write_bytes(image_bytes("JPEG"))
    before = snapshot(root.parent)
    media = root / rel

    with pytest.raises(MediaError) as err:
        dataset.compute_metadata(media)
    check_message(str(err.value), str(media), case.expected)
    with pytest.raises(MediaError) as err:  # no sample file yet: reading computes the metadata
        dataset.read_sample(root, rel)
    check_message(str(err.value), str(media), case.expected)

    run = oc.plan(root, [rel, "good.jpg"])  # the bad one is skipped, the run goes on
    assert run["samples"] == ["good.jpg"]
    check_message(run["skipped"][rel], str(media), case.expected)
    assert snapshot(root.parent) == before


# ---- sample files ------------------------------------------------------------------------------

# FiftyOne has label classes syncd does not convert (GeoLocation, Heatmap, ...): a sample holding
# one is a fine sample file; it is only refused by a run that would send that field to CVAT.
READABLE_BUT_NOT_SENDABLE = {"unknown_cls"}


@pytest.mark.parametrize("case", by_kind("sample"))
def test_bad_sample_file(case, root):
    rel = case.make(root)
    (root / "good.jpg").write_bytes(image_bytes("JPEG"))
    before = snapshot(root.parent)
    sample = str(root / (rel + ".json"))

    check_message(oc.sample_outcome(root, rel), sample, case.expected)
    if case.name in READABLE_BUT_NOT_SENDABLE:
        dataset.read_sample(root, rel)
    else:
        with pytest.raises(SampleFileError):
            dataset.read_sample(root, rel)
    run = oc.plan(root, [rel, "good.jpg"])
    assert run["samples"] == ["good.jpg"]
    check_message(run["skipped"][rel], sample, case.expected)
    msg = oc.sample_outcome(root, rel)
    if "invalid sample file" in msg:  # unparsable: a read-modify-write must refuse, not rewrite
        with pytest.raises(SampleFileError):
            dataset.set_tags(root, rel, add=["x"])
    assert snapshot(root.parent) == before


# ---- paths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", by_kind("path"))
def test_hostile_path(case, root):
    value = case.make(root)
    before = snapshot(root.parent)
    shown = repr(value)[:20]
    check_message(oc.path_outcome(root, value), shown, case.expected)
    with pytest.raises(SampleFileError) as err:
        dataset.read_sample(root, value)
    check_message(str(err.value), shown, case.expected)
    with pytest.raises(SampleFileError):
        dataset.update_sample(root, value, lambda s: s.update(tags=["x"]))
    assert snapshot(root.parent) == before


# ---- symlinks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", by_kind("symlink"))
def test_hostile_symlink(case, root):
    rel = case.make(root)
    before = snapshot(root.parent)
    found = oc.discover_bounded(root)
    assert found is not None, "discover did not terminate"
    assert all(os.path.realpath(root / f).startswith(str(root.resolve()) + os.sep) for f in found)
    assert len(found) == len(set(os.path.realpath(root / f) for f in found))
    check_message(oc.symlink_outcome(root, rel), os.path.basename(rel), case.expected)
    with pytest.raises((SampleFileError, MediaError)):
        dataset.update_sample(root, rel, lambda s: s.update(tags=["x"]))
    assert snapshot(root.parent) == before


# ---- configs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", by_kind("config"))
def test_bad_config(case, root):
    case.make(root)
    before = snapshot(root.parent)
    msg = oc.config_outcome(root)
    check_message(msg, "syncd.toml", case.expected)
    from syncd.config import load_config
    with pytest.raises(ConfigError):
        load_config(root, env={})
    assert snapshot(root.parent) == before


# ---- uploads to fakecvat -----------------------------------------------------------------------

def _has_task_data(server) -> bool:
    return any(r.rule == "/api/tasks/<int:task_id>/data" and "POST" in r.methods
               for r in server.app.url_map.iter_rules())


@pytest.mark.parametrize("case", by_kind("upload"))
def test_bad_upload(case, tmp_path, fakecvat_factory):
    data_dir = tmp_path / "fc"
    (tmp_path / "share").mkdir()
    server = fakecvat_factory(data_dir=data_dir, share_dir=tmp_path / "share")
    if not _has_task_data(server):
        pytest.skip("fakecvat has no POST /api/tasks/{id}/data yet")
    src = tmp_path / "src"
    src.mkdir()
    media_dir = str(data_dir / "media")
    before = snapshot(tmp_path)

    status, msg = oc.upload_outcome(case, src, server.url)
    assert status < 500, msg
    check_message(msg, "", case.expected)
    if not msg.startswith("accepted"):
        assert msg.startswith(("HTTP 4", "failed: ")), msg
    assert requests.get(f"{server.url}/api/server/about", timeout=10).status_code == 200  # still up
    after = snapshot(tmp_path)
    # Outside its data dir nothing changed; inside it, only the media dir gained entries
    # (the store's own files already existed and may change).
    assert {p: v for p, v in after.items() if not p.startswith(str(data_dir))} == \
        {p: v for p, v in before.items() if not p.startswith(str(data_dir))}
    new = [p for p in after if p not in before and not p.startswith(media_dir)]
    assert not new, f"fakecvat created files outside its media dir: {new}"
