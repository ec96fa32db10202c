"""First request: how long after ``snipstream run`` starts does the first request reach the server?

The tree is the largest at hand: the Python installation's lib directory with its site-packages
(``sysconfig.get_paths()["stdlib"]``, ``--no-default-excludes``, ~13k files). The fake server (its own
process) holds every answer back for a long time, so the run cannot finish first; it records when the
first request has been read (``time.monotonic()``, the clock this process read just before forking the
client). Then the client gets SIGINT, and SIGKILL a few seconds later. Full mode: 3 runs, the median
counts. For scale, the same is measured for an empty interpreter (``python -c pass``) and for importing
the command's modules. Target: < 1 s.

    python -m bench first_request [--quick]
"""

from __future__ import annotations

import signal
import statistics
import time

from bench._common import PY, REPO, STDLIB, Proc, Row, Server, python_files, run_proc, snipstream, workdir

NAME = "first_request"
TITLE = "3 first request"


def run(quick: bool) -> list[Row]:
    reps = 1 if quick else 3
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
    for label, code in (
        ("python -c pass", "pass"),
        ("import stream.cli, stream.pipeline", "import stream.cli, stream.pipeline"),
    ):
        walls = [run_proc([PY, "-c", code], timeout=60, cwd=REPO).check().wall for _ in range(reps)]
        floors[label] = statistics.median(walls)
    rows = [
        Row(
            TITLE,
            f"process start → first request at the server, `snipstream run` on {STDLIB} "
            f"--no-default-excludes ({nfiles:,} .py files)",
            f"{statistics.median(firsts):.3f} s" if firsts else "n/a",
            "< 1 s",
            note=(f"median of {len(firsts)}: " + ", ".join(f"{x:.3f}" for x in firsts) if firsts else "")
            + ("; " + "; ".join(problems) if problems else ""),
        )
    ]
    rows.append(
        Row(
            TITLE,
            "for scale: process start → exit of `python -c pass` / of importing stream.cli and "
            "stream.pipeline",
            " / ".join(f"{v:.3f} s" for v in floors.values()),
            note=f"median of {reps}",
        )
    )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
