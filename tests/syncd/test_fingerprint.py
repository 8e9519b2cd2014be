"""Stat fingerprints (``syncd.fingerprint``): kept only when the file's timestamps can tell a
later write apart (the racily-clean guard), never when the file changed while it was read."""
import os
import time

import pytest

from syncd import dataset, fingerprint
from syncd.errors import MediaError
from syncd.ops import hashing

SECOND = 1_000_000_000


def test_a_settled_file_gets_its_stat_and_a_fresh_one_none(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    st = os.stat(path)
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    assert fingerprint.settled(st, st, now_ns=changed + 10_000_000) is None  # within a few ticks
    assert fingerprint.settled(st, st, now_ns=changed + SECOND) == \
        [100, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    assert fingerprint.settled(st, st, now_ns=changed - SECOND) is None  # "from the future"


def test_a_file_written_during_the_read_gets_none(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    before = os.stat(path)
    time.sleep(0.02)
    path.write_bytes(b"y" * 100)  # same size, written between the two fstats
    after = os.stat(path)
    assert fingerprint.settled(before, after, now_ns=time.time_ns() + 10 * SECOND) is None


def test_whole_second_timestamps_must_be_older(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x")
    os.utime(path, ns=(1_700_000_000 * SECOND, 1_700_000_000 * SECOND))
    real = os.stat(path)
    # as a filesystem with one-second timestamps (FAT, HFS+, some NFS servers) reports them
    coarse = os.stat_result((real.st_mode, real.st_ino, real.st_dev, real.st_nlink, real.st_uid,
                             real.st_gid, real.st_size, 1_700_000_000, 1_700_000_000, 1_700_000_000,
                             1_700_000_000.0, 1_700_000_000.0, 1_700_000_000.0,
                             1_700_000_000 * SECOND, 1_700_000_000 * SECOND, 1_700_000_000 * SECOND))
    assert fingerprint.settle_ns(coarse) == fingerprint.WHOLE_SECONDS_SETTLE_NS
    assert fingerprint.settled(coarse, coarse, now_ns=1_700_000_001 * SECOND) is None
    assert fingerprint.settled(coarse, coarse, now_ns=1_700_000_004 * SECOND) is not None


def test_background_hashing_records_what_it_read(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"a" * 5000)
    time.sleep(0.2)  # settled
    (tmp_path / "b.jpg").write_bytes(b"b" * 5000)  # just written: hashed, no fingerprint
    got = hashing.collect(tmp_path, "k", ["a.jpg", "b.jpg"])
    assert got["a.jpg"][1] == fingerprint.of(os.stat(tmp_path / "a.jpg"))
    assert got["b.jpg"][1] is None and got["b.jpg"][0] == dataset.content_hash(tmp_path / "b.jpg")


def test_small_files_read_whole_and_big_ones_streamed_hash_alike(tmp_path, monkeypatch):
    import xxhash

    from syncd import media_metadata
    monkeypatch.setattr(media_metadata, "WHOLE_READ_BYTES", 4096)  # the streamed path, on small files
    for size in (0, 1, 4096, 4097, 200_000):
        data = os.urandom(size)
        path = tmp_path / f"{size}.bin"
        path.write_bytes(data)
        expected = media_metadata.HASH_PREFIX + xxhash.xxh3_128_hexdigest(data)
        assert media_metadata.hash_file(path)[0] == expected, size
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(MediaError, match="dir.jpg: cannot read"):
        media_metadata.hash_file(tmp_path / "dir.jpg")

