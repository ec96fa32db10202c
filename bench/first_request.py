"""First request: how long after ``snipstream run`` starts does the first request reach the server?

The tree is the largest at hand: the Python installation's lib directory with its site-packages
(``sysconfig.get_paths()["stdlib"]``, ``--no-default-excludes``, ~13k files). The fake server (its own
process) holds every answer back for a long time, so the run cannot finish first; it records when the
first request has been read (``time.monotonic()``, the clock this process read just before forking the
client). Then the client gets SIGINT, and SIGKILL a few seconds later. Full mode: 5 runs, the median
counts (IQR and range printed). For scale, the same is measured for an empty interpreter (``python -c
pass``) and for importing the command's modules, with their peak RSS (the floor of every RSS figure in
the suite: each child is spawned by a bare launcher, bench/_exec.py, and its peak is its own). Target:
< 1 s.

    python -m bench first_request [--quick]
"""

from __future__ import annotations

import signal
import statistics
import time

from bench._common import (
    PY,
    REPO,
    STDLIB,
    Proc,
    Row,
    Server,
    fspread,
    python_files,
    run_proc,
    snipstream,
    workdir,
)

NAME = "first_request"
TITLE = "3 first request"


def run(quick: bool) -> list[Row]:
    reps = 1 if quick else 5
    firsts: list[float] = []
    problems: list[str] = []
    nfiles = len(python_files(STDLIB, default_excludes=False))
    with workdir(NAME) as work, Server(latency=3600.0, chunks=20) as server:
        for rep in range(reps):
            server.reset()
            argv = snipstream(
                [STDLIB],
                db=work / f"first-{rep}.db",
                url=server.url,
                extra=["--no-default-excludes", "--grace", "0.5", "-q"],
            )
            proc = Proc(argv, cwd=work).start()
            first = None
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline and proc.running():
                    st = server.stats()
                    if st["first"] is not None:
                        first = st["first"] - proc.started_mono
                        break
                    time.sleep(0.005)
            finally:
                res = proc.stop(sig=signal.SIGINT, grace=3)
            if first is None:
                problems.append(
                    f"run {rep + 1}: no request within 60 s (exit {res.returncode}: {res.tail(200)})"
                )
            else:
                firsts.append(first)
    floors = {}
    rss = {}
    for label, code in (
        ("python -c pass", "pass"),
        ("import stream.cli, stream.pipeline", "import stream.cli, stream.pipeline"),
    ):
        runs = [run_proc([PY, "-c", code], timeout=60, cwd=REPO).check() for _ in range(reps)]
        floors[label] = statistics.median(r.wall for r in runs)
        rss[label] = max(r.maxrss_kb for r in runs)
    rows = [
        Row(
            TITLE,
            f"process start → first request at the server, `snipstream run` on {STDLIB} "
            f"--no-default-excludes ({nfiles:,} .py files)",
            fspread(firsts, lambda x: f"{x:.3f}", " s"),
            "< 1 s",
            note=(", ".join(f"{x:.3f}" for x in firsts) if firsts else "")
            + ("; " + "; ".join(problems) if problems else ""),
        )
    ]
    rows.append(
        Row(
            TITLE,
            "for scale: process start → exit of `python -c pass` / of importing stream.cli and "
            "stream.pipeline",
            " / ".join(f"{v:.3f} s" for v in floors.values()),
            note=f"median of {reps}; peak RSS "
            + " / ".join(f"{v / 1024:.1f} MB" for v in rss.values())
            + " (the floor of the suite's RSS figures)",
        )
    )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
