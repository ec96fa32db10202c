"""The command line's shape: each option declared once, its default Config's, and flags → Config field by field.

These read the real parser (`stream.cli.build_parser`), so a flag re-declared with its own default, a flag
whose value never reaches the Config, or an exit code the help forgets fails here.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from stream.cli import build_parser, config_from_args
from stream.cli.epilogs import RUN_EXITS
from stream.config import Config
from stream.errors import ConfigError, ExitCode

DEFAULTS = Config()
FIELDS = {f.name for f in fields(Config)}
# flags that feed a Config field through a conversion (task names and template files → tasks)
CONVERTED = {"task", "template"}
# Config fields no flag sets: the key comes from the environment, the tasks from --task/--template, the
# resolved endpoints from --endpoint/--endpoints (or --base-url), batch mode from `snipstream batch`, the
# judge and the embed pass from --task judge and --task embed
NO_FLAG = {"api_key", "tasks", "endpoints", "batch", "judge", "embed"}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def options(command: str) -> dict[str, argparse.Action]:
    """The command's actions by dest (help and the subcommand name left out)."""
    return {a.dest: a for a in subparsers()[command]._actions if a.dest not in ("help", "command")}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_db_is_one_definition_shared_by_every_command() -> None:
    dbs = [options(command)["db"] for command in ("run", "plan", "status", "export")]
    assert {(a.default, a.metavar, a.help, tuple(a.option_strings)) for a in dbs} == {
        (DEFAULTS.db, "FILE", dbs[0].help, ("--db",))
    }
    assert parse("run", "src").db == parse("plan", "src").db == parse("status").db == DEFAULTS.db
    assert parse("export", "--format", "jsonl", "-o", "x").db == DEFAULTS.db


def batch_submit_options() -> dict[str, argparse.Action]:
    (steps,) = [a for a in subparsers()["batch"]._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a for a in steps.choices["submit"]._actions if a.dest != "help"}


def test_every_run_flag_sets_a_config_field_and_every_field_has_a_flag() -> None:
    dests = set(options("run")) - {"paths"}
    assert dests - CONVERTED <= FIELDS, f"flags whose dest is no Config field: {dests - CONVERTED - FIELDS}"
    batch = set(batch_submit_options()) - {"paths"}
    assert batch - CONVERTED <= FIELDS, (
        f"batch flags whose dest is no Config field: {batch - CONVERTED - FIELDS}"
    )
    # what only batch mode takes is declared on `batch submit`
    covered = dests | batch
    assert FIELDS - NO_FLAG - {"paths"} <= covered, (
        f"Config fields without a flag: {FIELDS - NO_FLAG - covered}"
    )


@pytest.mark.parametrize("command", ["run", "plan"])
def test_every_default_is_the_config_default(command: str) -> None:
    for dest, action in options(command).items():
        if dest in FIELDS and dest != "paths":
            default = tuple(action.default) if isinstance(action.default, list) else action.default
            assert default == getattr(DEFAULTS, dest), f"--{dest}: {default!r} is not Config's"


def test_run_flags_reach_the_config() -> None:
    config = config_from_args(
        parse(
            "run", "a", "b", "--exclude", "x", "--exclude", "y", "--no-default-excludes", "--lang", "python,go",
            "--lang", "rust", "--on-secret", "skip", "--max-lines", "9", "--endpoint-kind", "azure",
            "--model", "m", "--max-tokens", "7", "--stop", "s", "--no-stream", "--task", "qa,docstring",
            "--task", "summarize", "--rpm", "10", "--max-cost", "1.5", "--stall-timeout", "2", "-o", "out",
            "--db", "d.db", "--sink", "s1", "--sink", "s2", "--dry-run", "--progress", "plain", "--jobs", "3",
        )
    )  # fmt: skip
    assert config.paths == ("a", "b") and config.excludes == ("x", "y") and config.default_excludes is False
    assert (
        config.languages == ("python", "go", "rust") and config.on_secret == "skip" and config.max_lines == 9
    )
    assert (config.endpoint_kind, config.model, config.max_tokens, config.stop) == ("azure", "m", 7, ("s",))
    assert config.stream is False and [t.name for t in config.tasks] == ["qa", "docstring", "summarize"]
    assert (config.rpm, config.max_cost, config.stall_timeout, config.jobs) == (10, 1.5, 2, 3)
    assert (config.output, config.db, config.sinks, config.dry_run) == ("out", "d.db", ("s1", "s2"), True)
    assert config.progress == "plain"
    assert config_from_args(parse("run", "a", "-q")).progress == "off"
    with pytest.raises(ConfigError, match="no such task"):
        config_from_args(parse("run", "a", "--task", "nope"))


def test_plan_gets_config_defaults_for_what_it_does_not_ask() -> None:
    plan = config_from_args(parse("plan", "src", "--model", "m", "--db", "x.db"))
    run = config_from_args(parse("run", "src", "--model", "m", "--db", "x.db"))
    assert not {"concurrency", "max_cost", "sinks", "output", "grace", "quiet"} & set(options("plan"))
    assert (plan.output, plan.dry_run) == ("/dev/null", True)  # a plan sends nothing and writes no records
    differs = {f.name for f in fields(Config) if getattr(plan, f.name) != getattr(run, f.name)}
    assert differs == {"output", "dry_run"}


def test_every_exit_code_is_explained_in_run_help() -> None:
    assert set(RUN_EXITS) == set(ExitCode)
    text = subparsers()["run"].format_help()
    for code in ExitCode:
        assert f"\n  {int(code):<4} " in text, f"exit code {int(code)} missing from run --help"
