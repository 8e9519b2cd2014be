"""Stat fingerprints: when a file's ``stat`` proves it unchanged since its content was hashed.

A run records the content hash of each medium as it was sent, and loading compares it with the file
to flag media changed while in annotation. Hashing at load reads every medium again (43 MB for
1000 photos, the whole file for every video); git's index avoids the same reread with the file's
stat. ``[size, mtime_ns, ctime_ns, inode]`` taken around the read that hashed a file is
recorded beside the hash; a file whose stat still equals it has not been written since (any
write, truncate or ``touch -d`` moves its ctime, which no program sets short of changing the
system clock; a file renamed over it has another inode), so its hash still holds and loading
need not read it. Any other stat falls back to hashing.

The race git calls "racily clean": timestamps come from a clock that ticks (a jiffy, up to
10 ms, on Linux filesystems with nanosecond timestamps; a second or two on FAT, HFS+ and some
network filesystems), so a write landing in the same tick as the one before our read leaves
the same mtime and ctime. A fingerprint is therefore kept only when the file's last change is
at least ``settle_ns`` older than the read: such a file cannot be given the same timestamps by
a later write.
"""
from __future__ import annotations

import os
import time

# Older than this, a change on a filesystem with sub-second timestamps cannot share a later
# write's tick (jiffies are 1-10 ms); whole-second timestamps get WHOLE_SECONDS_SETTLE_NS.
FINE_SETTLE_NS = 50_000_000
WHOLE_SECONDS_SETTLE_NS = 3_000_000_000


def of(st: os.stat_result) -> list[int]:
    """``[size, mtime_ns, ctime_ns, inode]``: the JSON form a run records."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def settle_ns(st: os.stat_result) -> int:
    """How old a change must be before this file's timestamps identify it (see the module note)."""
    if st.st_mtime_ns % 1_000_000_000 or st.st_ctime_ns % 1_000_000_000:
        return FINE_SETTLE_NS
    return WHOLE_SECONDS_SETTLE_NS


def settled(before: os.stat_result, after: os.stat_result, now_ns: int | None = None) -> list[int] | None:
    """The fingerprint of bytes read between the ``fstat``s ``before`` and ``after``, or None
    when the file changed during the read or too recently for its timestamps to tell."""
    fp = of(before)
    if of(after) != fp:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    if now_ns - max(before.st_mtime_ns, before.st_ctime_ns) < settle_ns(before):
        return None  # also a file "from the future" (a clock set back, a server's clock ahead)
    return fp

