"""The dry run's set of counted ids, kept on disk: what was added is found, nothing else is."""

from __future__ import annotations

from sinks.idset import DiskIdSet


def test_added_ids_are_found_and_no_others_even_past_the_page_cache() -> None:
    added = [f"{i:032x}" for i in range(0, 200_000, 2)]  # 100k ids, several MB: more than the page cache
    with DiskIdSet() as ids:
        for start in range(0, len(added), 1000):
            ids.add(added[start : start + 1000])
        ids.add(added[:10])  # adding again changes nothing
        probe = [f"{i:032x}" for i in range(199_000, 200_000)] + [added[0]]
        assert ids.which(probe) == {p for p in probe if int(p, 16) % 2 == 0}
        assert ids.which([]) == set()
