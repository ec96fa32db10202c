"""The sink example in the README, taken from the README itself, loads with --sink module:Class and works.

A plug-in author's first lines are `import sinks` / `from sinks import Sink` in a fresh interpreter; the
test runs the example module on its own first, then as a sink of a real run against the fake server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.helpers import REPO, read_ndjson, run_args, snipstream


def _readme_sink() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Writing a sink", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def test_the_readme_sink_imports_alone_in_a_fresh_interpreter(tmp_path):
    (tmp_path / "qualname_counter.py").write_text(_readme_sink())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import qualname_counter, sys; print(sorted(m for m in sys.modules if m == 'httpx'))",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # a sink module pulls in no HTTP client


def test_the_readme_sink_receives_every_record_of_a_run(tree, server, tmp_path):
    (tmp_path / "qualname_counter.py").write_text(_readme_sink())
    out = tmp_path / "out.ndjson"
    args = run_args(server, tree, "-o", out, "--sink", "qualname_counter:QualnameCounter")
    r = snipstream(*args, cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    counts = json.loads((tmp_path / "qualnames.json").read_text())
    expected: dict[str, int] = {}
    for rec in records:
        expected[rec["qualname"]] = expected.get(rec["qualname"], 0) + 1
    assert records and counts == expected
