"""Memory: peak RSS of snipstream as the tree grows.

Trees: the first K files of the largest tree at hand (the Python installation's lib directory with
site-packages, in the walker's order: depth-first, names sorted), K chosen so the tree holds about 10k,
50k and 100k snippets (hard links in a temporary directory), and the whole tree (~250k snippets). Each is
run with ``--no-default-excludes``:

* ``--dry-run -o /dev/null`` (walk, extract, render, count tokens): at ~10k, ~50k and the whole tree;
* against the fake server (its own process, answering at once) with ``--concurrency 256`` and
  ``-o /dev/null`` and a fresh --db: at ~10k, ~50k and ~100k snippets (FAKE_SIZES; the whole tree, 233k
  requests, takes ~25 minutes of client CPU on the 2-core machine, most of the suite's time budget).

Peak RSS is ru_maxrss of the snipstream process (wait4), its own: it is spawned by a bare launcher
(bench/_exec.py), not by the runner, whose peak it would otherwise inherit. Quick mode: ~1k and ~3k
snippets only. Targets: <= 150 MB at the largest; flat, i.e. the largest tree's peak at most 1.1x the
smallest's (a 25x larger tree).

    python -m bench memory [--quick]
"""

from __future__ import annotations

from bench._common import (
    STDLIB,
    Row,
    Server,
    db_count,
    dry_run_counts,
    first_files_for,
    fnum,
    fratio,
    link_tree,
    python_files,
    rate,
    run_proc,
    snipstream,
    workdir,
)

NAME = "memory"
TITLE = "4 memory"
FAKE_SIZES = (10_000, 50_000, 100_000)  # the fake-server runs (None would be the whole tree)


def run(quick: bool) -> list[Row]:
    sizes: list[int | None] = [1_000, 3_000] if quick else [10_000, 50_000, 100_000, None]
    dry_sizes = set(sizes) - ({100_000} if not quick else set())
    fake_sizes = set(sizes) if quick else set(FAKE_SIZES)
    largest = {
        "dry": [x for x in sizes if x in dry_sizes][-1],
        "fake": [x for x in sizes if x in fake_sizes][-1],
    }
    timeout = 300 if quick else 3600
    files = python_files(STDLIB, default_excludes=False)
    rows: list[Row] = []
    rss: dict[str, list[tuple[str, int]]] = {"dry": [], "fake": []}
    with workdir(NAME) as work, Server(chunks=20) as server:
        for size in sizes:
            if size is None:
                tree, label = STDLIB, f"full tree ({len(files):,} files)"
            else:
                subset = first_files_for(files, size)
                tree = link_tree(subset, STDLIB, work / f"tree-{size}")
                label = f"~{size // 1000}k snippets (first {len(subset):,} files)"
            if size in dry_sizes:
                dry = run_proc(
                    snipstream(
                        [tree],
                        db=work / f"dry-{size or 'full'}.db",
                        extra=["--dry-run", "--no-default-excludes"],
                    ),
                    timeout=timeout,
                    cwd=work,
                )
                snippets, nfiles = dry_run_counts(dry.stderr)
                note = (
                    f"{fnum(snippets)} snippets in {fnum(nfiles)} files; wall {dry.wall:.1f} s "
                    f"({fnum(rate(snippets or 0, dry.wall))} snippets/s), CPU {dry.cpu:.1f} s"
                )
                if dry.timed_out or dry.returncode != 0:
                    note += f"; exit {dry.returncode}: {dry.tail(200)}"
                rows.append(
                    Row(
                        TITLE,
                        f"--dry-run -o /dev/null, {label}",
                        f"RSS {dry.maxrss_kb / 1024:.0f} MB",
                        "≤ 150 MB" if size == largest["dry"] else "",
                        note,
                    )
                )
                ok = dry.returncode == 0 and not dry.timed_out
                rss["dry"].append((label, dry.maxrss_kb if ok else 0))

            if size not in fake_sizes:
                continue
            server.reset()
            db = work / f"run-{size or 'full'}.db"
            res = run_proc(
                snipstream(
                    [tree],
                    db=db,
                    url=server.url,
                    extra=["--concurrency", "256", "--no-default-excludes", "-q"],
                ),
                timeout=timeout,
                cwd=work,
            )
            st = server.stats()
            occ = db_count(db, "SELECT count(*) FROM occurrences")
            done = db_count(db, "SELECT count(*) FROM records WHERE status = 'done'")
            failed = db_count(db, "SELECT count(*) FROM records WHERE status = 'failed'")
            note = (
                f"{fnum(occ)} snippets written, {fnum(st['arrived'])} requests ({fnum(done)} done, "
                f"{fnum(failed)} failed); wall {res.wall:.1f} s ({fnum(rate(st['arrived'], res.wall))} "
                f"requests/s), CPU {res.cpu:.1f} s"
            )
            if res.timed_out or res.returncode not in (0, 1):
                note += f"; exit {res.returncode}{' (timed out)' if res.timed_out else ''}: {res.tail(200)}"
            rows.append(
                Row(
                    TITLE,
                    f"fake-server run, --concurrency 256, {label}",
                    f"RSS {res.maxrss_kb / 1024:.0f} MB",
                    "≤ 150 MB" if size == largest["fake"] else "",
                    note,
                )
            )
            ok = res.returncode in (0, 1) and not res.timed_out and bool(done)
            rss["fake"].append((label, res.maxrss_kb if ok else 0))
            db.unlink(missing_ok=True)
    for kind, what in (("dry", "--dry-run"), ("fake", "fake-server run")):
        points = rss[kind]
        if len(points) >= 2:
            failed = not all(kb for _, kb in points)  # a run that failed measured nothing
            rows.append(
                Row(
                    TITLE,
                    f"{what}: RSS at the largest ÷ RSS at the smallest tree",
                    "n/a (a run failed)" if failed else fratio(points[-1][1] / points[0][1]),
                    "≤ 1.1 (flat)",
                    note=" → ".join(f"{kb / 1024:.0f} MB ({label.split(' (')[0]})" for label, kb in points),
                )
            )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
