"""What the daemon knows about each media file's sample file, indexed for the questions a pass asks.

A pass asks two things of the whole root: which media carry a rule's trigger tag (to gather a
batch), and which have no sample file yet (to auto-tag). Answering them by looking at every
entry made an idle pass cost time in proportion to the root: ~0.5 s per poll at 1M media, 8 %
of a core with nothing to do. The index keeps those two answers up to date as entries change,
so an idle pass touches only the few paths that carry a trigger tag or lack a sample file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator


@dataclass(frozen=True, slots=True)
class SampleInfo:
    """A sample file's state as last read: ``sig`` = (mtime_ns, size, inode) of the file, None
    when there is no sample file; ``tags`` its string tags (use ``tag_set``: shared sets)."""
    sig: tuple | None
    tags: frozenset = field(default_factory=frozenset)


_TAG_SETS: dict[frozenset, frozenset] = {}


def tag_set(tags) -> frozenset:
    """The frozenset of ``tags``, one shared object per distinct set: a million samples carry
    a handful of distinct tag sets, and each frozenset costs ~200 bytes (~20 % of the daemon's
    memory per sample at 1M media)."""
    key = frozenset(tags)
    if len(_TAG_SETS) > 10_000:
        _TAG_SETS.clear()  # pathological variety (a unique tag per sample): stop sharing
    return _TAG_SETS.setdefault(key, key)


class SampleIndex:
    """``{media path: SampleInfo}`` plus tag → paths and the paths without a sample file.

    Only the tags in ``indexed`` get a path set (the rules' trigger tags): a done tag carried
    by a million archived samples would otherwise cost a million-entry set for nothing."""

    def __init__(self, indexed: Iterable[str] = ()) -> None:
        self._indexed = frozenset(indexed)
        self._info: dict[str, SampleInfo] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._bare: set[str] = set()

    def __len__(self) -> int:
        return len(self._info)

    def __contains__(self, rel: str) -> bool:
        return rel in self._info

    def __iter__(self) -> Iterator[str]:
        return iter(self._info)

    def get(self, rel: str) -> SampleInfo | None:
        return self._info.get(rel)

    def set(self, rel: str, info: SampleInfo) -> None:
        old = self._info.get(rel)
        if old is info:
            return
        if old is not None:
            self._unindex(rel, old)
        self._info[rel] = info
        if info.sig is None:
            self._bare.add(rel)
        for tag in info.tags & self._indexed:
            self._by_tag.setdefault(tag, set()).add(rel)

    def pop(self, rel: str) -> None:
        old = self._info.pop(rel, None)
        if old is not None:
            self._unindex(rel, old)

    def replace(self, entries: dict[str, SampleInfo]) -> None:
        """Everything at once, after a walk of the whole root."""
        self._info, self._by_tag, self._bare = {}, {}, set()
        for rel, info in entries.items():
            self.set(rel, info)

    def tagged(self, tag: str) -> list[str]:
        """Paths whose sample file carries ``tag``, one of the indexed tags (a copy: callers may
        change the index)."""
        if tag not in self._indexed:
            raise KeyError(f"tag {tag!r} is not indexed")
        return list(self._by_tag.get(tag, ()))

    def bare(self) -> list[str]:
        """Paths with no sample file yet (a copy)."""
        return list(self._bare)

    def _unindex(self, rel: str, info: SampleInfo) -> None:
        if info.sig is None:
            self._bare.discard(rel)
        for tag in info.tags & self._indexed:
            paths = self._by_tag.get(tag)
            if paths is not None:
                paths.discard(rel)
                if not paths:
                    del self._by_tag[tag]
