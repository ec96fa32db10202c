"""What is in flight, shared by the planner and the writer: records being asked and files awaiting lines.

- `inflight`: record id → the places (snippet, occurrence id) waiting for its answer. The planner attaches
  another place of the same code to a record in flight instead of asking twice; the writer takes the entry
  out only once the answer is committed, so from then on the planner finds it in the checkpoint.
- Files: a file joins the checkpoint's file index (and is not parsed again by a rerun) once every place it
  holds is written. The writer marks places written; a failure drops its file (the next run parses it).
"""

from __future__ import annotations

from sinks.schema import FileRow, KnownFile

from ..model import Snippet, SourceFile

__all__ = ["Ledger", "PLANNING"]

PLANNING = "<planning>"  # in a file's pending set while its snippets are still being planned

Place = tuple[Snippet, str]


class Ledger:
    def __init__(self, file_task: str) -> None:
        self.file_task = file_task
        self.inflight: dict[str, list[Place]] = {}
        # Records committed since the planner's look-up for the file it is planning began (it may have
        # missed them): bounded by the work in flight, not by the tree.
        self.committed_since: set[str] = set()
        # files whose lines are not all written yet: key -> (occurrence ids still to write, index row)
        self._pending: dict[str, tuple[set[str], FileRow]] = {}
        self._file_of: dict[str, str] = {}
        self._ready: list[FileRow] = []

    def file_row(
        self,
        file: SourceFile,
        digest: str,
        snippets: int,
        reason: str | None = None,
        detail: str | None = None,
    ) -> FileRow:
        """The file index's row for `file` under this run's tasks and selection (a skip's reason, if any)."""
        known = KnownFile(file.size, file.mtime_ns, digest, snippets, reason, detail)
        return FileRow(str(file.path), self.file_task, known)

    # --- the planner's side ----------------------------------------------------------------------------

    def open_file(self, key: str, row: FileRow) -> tuple[set[str], FileRow]:
        """Register a file before its first request goes out (answers can come back while later snippets
        are still being planned); the `PLANNING` marker keeps it from counting as finished until then."""
        entry: tuple[set[str], FileRow] = ({PLANNING}, row)
        self._pending[key] = entry
        return entry

    def expect(self, entry: tuple[set[str], FileRow], key: str, occurrence_id: str) -> None:
        entry[0].add(occurrence_id)
        self._file_of[occurrence_id] = key

    def unexpect(self, entry: tuple[set[str], FileRow], occurrence_id: str) -> None:
        entry[0].discard(occurrence_id)
        self._file_of.pop(occurrence_id, None)

    def close_file(self, key: str, entry: tuple[set[str], FileRow]) -> FileRow | None:
        """Planning is over: the file's row if nothing of it is left to write (and no failure dropped it)."""
        entry[0].discard(PLANNING)
        if not entry[0] and self._pending.get(key) is entry:
            del self._pending[key]
            return entry[1]
        return None

    # --- the writer's side -----------------------------------------------------------------------------

    def failed(self, record_id: str, default: Place) -> list[Place]:
        """A record failed: its places leave flight and their files are not finished (parsed again next run)."""
        places = self.inflight.pop(record_id, None) or [default]
        for _, oid in places:
            self._pending.pop(self._file_of.pop(oid, ""), None)
        return places

    def written(self, occurrence_ids: list[str]) -> None:
        """Files whose last line was just written join the index with the next commit."""
        for oid in occurrence_ids:
            key = self._file_of.pop(oid, "")
            entry = self._pending.get(key)
            if entry is None:
                continue
            entry[0].discard(oid)
            if not entry[0]:
                del self._pending[key]
                self._ready.append(entry[1])

    def take_ready(self) -> list[FileRow]:
        ready, self._ready = self._ready, []
        return ready
