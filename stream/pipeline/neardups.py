"""Near-duplicates in the plan: each file's snippets placed in their groups; with ask-once, later members out.

Before a file is planned, its snippets that are big enough to group (band keys from `stream.neardup`, made
by the scan) are looked up: one query for those already grouped, by snippet id (a rerun finds each in the
group it had, so a group keeps its first member), one for the band keys of the others. A snippet sharing at
least `MIN_BANDS` band keys with a group's first snippet joins that group (the one with most shared keys,
then the oldest); any other becomes the first of a new group. With ``--near-dup ask-once`` the later members
are not planned at all: they are counted as filtered (``near_duplicate``) and stay in the checkpoint as
members. With ``keep`` every snippet is planned and the groups are only recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from sinks.neardup import GroupCounts, SnippetRow

from ..model import Snippet
from ..neardup import file_band_keys
from ..scan import Scanned
from .summary import Summary

__all__ = ["NearDups", "Groups", "MIN_BANDS"]

#: Band keys (of `stream.neardup.BANDS`) a snippet must share with a group's first to join it. The share of
#: bands matched estimates s^ROWS for Jaccard similarity s: 4 of 16 is s of about 0.84 (0.95 is found in
#: 99.9% of cases, 0.7 in 1.3%); code differing only in names, literals and layout has s = 1 (every band).
MIN_BANDS = 4


class Groups(Protocol):
    """Where the groups are kept: `sinks.neardup.CheckpointGroups` (a run) or `ScratchGroups` (a dry run)."""

    async def start(self) -> tuple[int, GroupCounts]: ...

    async def known(self, snippet_ids: Collection[str]) -> dict[str, tuple[int, bool]]: ...

    async def bands(self, keys: Collection[int]) -> dict[int, int]: ...

    async def members(self, groups: Collection[int]) -> dict[int, int]: ...

    async def add(self, snippets: Sequence[SnippetRow], bands: Sequence[tuple[int, int]]) -> None: ...


@dataclass(eq=False)
class NearDups:
    """Made with `open`, which reads the counts so far (a rerun that plans nothing still shows them)."""

    groups: Groups
    ask_once: bool
    summary: Summary
    _last: int = 0  # the last group number given out

    @classmethod
    async def open(cls, groups: Groups, *, ask_once: bool, summary: Summary) -> NearDups:
        self = cls(groups, ask_once, summary)
        self._last, counts = await groups.start()
        summary.near_dup_groups, summary.near_dup_members = counts
        return self

    async def select(self, item: Scanned) -> list[Snippet]:
        """The file's snippets to plan: every one with keep; with ask-once, none that is a later member."""
        snippets = item.snippets
        keys = item.near
        if keys is None:  # (a Scanned made without the scan's keys)
            keys = file_band_keys(snippets)
        grouped = [(s, k) for s, k in zip(snippets, keys, strict=True) if k is not None]
        if not grouped:
            return snippets
        roles = await self.groups.known({s.id for s, _ in grouped})
        new = [(s, k) for s, k in grouped if s.id not in roles]
        if new:
            await self._place(new, roles)
        later = {s.id for s, _ in grouped if not roles[s.id][1]}
        if not later or not self.ask_once:
            return snippets
        kept = [s for s in snippets if s.id not in later]
        self.summary.filtered["near_duplicate"] += len(snippets) - len(kept)
        return kept

    async def _place(
        self, new: list[tuple[Snippet, tuple[int, ...]]], roles: dict[str, tuple[int, bool]]
    ) -> None:
        """Put each snippet not grouped before into a group (`roles`: snippet id → (group, first)), in order."""
        found = await self.groups.bands({key for _, keys in new for key in keys})
        members = await self.groups.members(set(found.values())) if found else {}
        rows: list[SnippetRow] = []
        bands: list[tuple[int, int]] = []
        for snippet, keys in new:
            if snippet.id in roles:  # the same code twice in this file
                continue
            grp = _best(keys, found)
            first = grp is None
            if grp is None:
                self._last += 1
                grp = self._last
                # (a key another group's first holds stays that group's: the older group answers for it)
                bands += [(key, grp) for key in keys if key not in found]
                found.update(dict.fromkeys((key for key in keys if key not in found), grp))
            else:
                self.summary.near_dup_groups += members.get(grp, 0) == 0
                self.summary.near_dup_members += 1
                self.summary.near_dup_found += 1
                members[grp] = members.get(grp, 0) + 1
            roles[snippet.id] = (grp, first)
            rows.append(SnippetRow(snippet.id, grp, first, snippet.path, snippet.qualname))
        await self.groups.add(rows, bands)


def _best(keys: tuple[int, ...], found: dict[int, int]) -> int | None:
    """The group sharing most of `keys` (the oldest of equals), if it shares at least MIN_BANDS."""
    shared = Counter(found[key] for key in keys if key in found)
    if not shared:
        return None
    grp, count = min(shared.items(), key=lambda item: (-item[1], item[0]))
    return grp if count >= MIN_BANDS else None
