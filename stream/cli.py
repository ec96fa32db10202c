"""The command line: parses flags into a Config and calls the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

import anyio

from . import __version__
from .config import DEFAULT_BASE_URL, REASONING_EFFORTS, Config
from .endpoints import DEFAULT_AZURE_API_VERSION, KINDS
from .errors import ConfigError, SnipstreamError
from .prompt import DEFAULT_TASKS, TASKS, load_template

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130

_EPILOG = f"""\
environment:
  OPENAI_API_KEY    the API key (or the variable named by --api-key-env); not needed for loopback URLs
  OPENAI_BASE_URL   the API base URL when --base-url is not given (default {DEFAULT_BASE_URL})

exit codes:
  0    every snippet annotated (or already done); also when the output pipe was closed early
  1    finished, but some snippets failed (stored with their reasons; a rerun retries them)
  2    usage or configuration error, found before any request
  3    run aborted: the API refused the key (401/403) or the model/URL (404), the account is out of
       quota, every request so far failed the same way (nothing listening, the same 400: see the
       message), or the checkpoint or output could not be written
  70   internal error (a bug: please report it with the traceback)
  130  interrupted (Ctrl-C / SIGTERM); everything answered so far is kept, a rerun continues

examples:
  snipstream run src/ -o annotations.ndjson
  snipstream run src/ | jq -r .annotation
  snipstream run src/ --dry-run -o /dev/null          # count prompts and tokens, estimate the cost
  snipstream run src/ --base-url http://127.0.0.1:8000/v1 --model qwen2.5-coder
  snipstream run src/ docs/ --task qa --task docstring -o dataset.ndjson
  snipstream plan src/ --model gpt-4o-mini           # what a run would cost, by language and kind
  snipstream status                                  # what the checkpoint holds
  snipstream export --format openai-chat --split 0.9/0.1 -o train.jsonl
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snipstream",
        description="Turn a codebase into an LLM-annotated dataset: walk a source tree, cut it into snippets, "
        "annotate each through an OpenAI-compatible API and stream NDJSON records, resumably.",
    )
    parser.add_argument("--version", action="version", version=f"snipstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="annotate every function, class, method and doc section under PATHs",
        description="Annotate every function, class, method and doc section under PATHs and write one NDJSON "
        "record per snippet and task. Records go to stdout (or -o FILE); progress and the summary go to "
        "stderr. A SQLite checkpoint (--db) makes reruns resume: nothing already answered is requested again.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_job_options(run, plan=False)
    plan = commands.add_parser(
        "plan",
        help="what a run would send and cost, by task, language and kind (sends nothing)",
        description="Walk and extract as a run would, render every prompt and count its tokens, and print "
        "a table to stderr: requests, prompt tokens, expected output tokens and cost by task, language and "
        "kind. Expected output tokens come from the answers in the checkpoint (--db) when it has some for "
        "the task, else half of --max-tokens. Work the checkpoint has done already is left out. With "
        "--json, the same figures go to stdout as one JSON object.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_job_options(plan, plan=True)
    d = Config()
    plan.set_defaults(  # what a plan does not ask for: it sends nothing and writes no records
        concurrency=d.concurrency,
        clients=d.clients,
        rpm=None,
        tpm=None,
        max_attempts=d.max_attempts,
        backoff=d.backoff,
        retry_truncated=False,
        max_failures=None,
        connect_timeout=d.connect_timeout,
        stall_timeout=d.stall_timeout,
        request_timeout=d.request_timeout,
        max_cost=None,
        output="/dev/null",
        sink=[],
        emit_all=False,
        dry_run=True,
        grace=d.grace,
        progress=d.progress,
        progress_interval=d.progress_interval,
        quiet=False,
    )
    from . import export, status

    status.add_parser(commands)
    export.add_parser(commands)
    return parser


def _add_job_options(run: argparse.ArgumentParser, *, plan: bool) -> None:
    d = Config()
    run.add_argument("paths", nargs="+", metavar="PATH", help="directories or files to walk")

    g = run.add_argument_group("sources")
    g.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip paths matching this gitignore-style pattern (repeatable); .gitignore files and "
        ".git/info/exclude are always honoured",
    )
    g.add_argument(
        "--no-default-excludes",
        action="store_true",
        help="also walk node_modules, .venv, venv, __pycache__, build, dist, .tox, site-packages",
    )
    g.add_argument(
        "--max-file-bytes",
        type=int,
        default=d.max_file_bytes,
        metavar="N",
        help="skip files larger than this (default: %(default)s)",
    )
    g.add_argument(
        "--jobs",
        type=int,
        default=d.jobs,
        metavar="N",
        help="processes parsing files; 1 parses in a thread beside the requests (default: %(default)s)",
    )
    from .extract import LANGUAGES

    g.add_argument(
        "--lang",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only these languages (repeatable or comma-separated): {', '.join(sorted(LANGUAGES))}; "
        "a file's language comes from its suffix, or its shebang when it has none (default: all)",
    )

    g = run.add_argument_group("filters and secrets")
    g.add_argument(
        "--min-lines",
        type=int,
        default=d.min_lines,
        metavar="N",
        help="leave out snippets shorter than N lines",
    )
    g.add_argument(
        "--max-lines", type=int, default=None, metavar="N", help="leave out snippets longer than N lines"
    )
    g.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        metavar="N",
        help="leave out requests whose prompt has more tokens (doc sections are first cut at paragraphs to fit)",
    )
    g.add_argument(
        "--skip-tests",
        action="store_true",
        help="leave out test files (tests/, test_*.py, *_test.go, *.spec.ts, ...) and test functions",
    )
    g.add_argument(
        "--keep-trivial",
        action="store_true",
        help="also send trivial bodies (pass, ..., a docstring alone, {}, raise NotImplementedError, todo!())",
    )
    g.add_argument(
        "--keep-generated",
        action="store_true",
        help="also read files marked generated (DO NOT EDIT, @generated, auto-generated) and minified code",
    )
    g.add_argument(
        "--on-secret",
        choices=("redact", "skip", "allow"),
        default=d.on_secret,
        help="a snippet holding a credential (detect-secrets' detectors, private keys, high-entropy "
        "strings): redact replaces the value with <REDACTED:kind> in the prompt and the stored code, skip "
        "leaves the snippet out, allow sends it as is; every hit is counted by kind (default: %(default)s)",
    )

    g = run.add_argument_group("API")
    g.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help=f"OpenAI-compatible base URL (default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL})",
    )
    g.add_argument(
        "--endpoint-kind",
        choices=("auto", *KINDS),
        default=d.endpoint_kind,
        help="what serves --base-url: decides the key header, the URL and the token-limit field; auto "
        "tells OpenAI, Azure, Anthropic and Gemini by host, Ollama by its port, and treats the rest as "
        "generic (every kind also learns from the 400s it gets) (default: %(default)s)",
    )
    g.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="environment variable holding the API key (default: OPENAI_API_KEY; AZURE_OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY or GEMINI_API_KEY for those kinds)",
    )
    g.add_argument(
        "--api-version",
        default=None,
        metavar="DATE",
        help=f"Azure OpenAI's api-version query parameter (default: $OPENAI_API_VERSION, else "
        f"{DEFAULT_AZURE_API_VERSION}); not sent to Azure's v1 API (a base URL ending in /openai/v1)",
    )
    g.add_argument(
        "--api",
        choices=("chat", "completions"),
        default=d.api,
        help="chat: /chat/completions with messages; completions: legacy /completions with a "
        "prompt (default: %(default)s)",
    )
    g.add_argument("--model", default=d.model, help="model name (default: %(default)s)")
    g.add_argument(
        "--max-tokens",
        type=int,
        default=d.max_tokens,
        metavar="N",
        help="most tokens per answer, a reasoning model's hidden reasoning included; sent as max_tokens, "
        "or max_completion_tokens where the endpoint or model wants it (default: 512; 4096 for reasoning "
        "models: o1, o3, o4-mini, gpt-5)",
    )
    g.add_argument(
        "--reasoning-effort",
        choices=REASONING_EFFORTS,
        default=None,
        help="how much a reasoning model thinks before answering (not sent unless given)",
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sampling temperature (not sent unless given: the server's default applies)",
    )
    g.add_argument(
        "--top-p", type=float, default=None, metavar="P", help="nucleus sampling mass (not sent unless given)"
    )
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop sequence (repeatable)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed, for servers that honour it")
    g.add_argument(
        "--no-stream",
        action="store_true",
        help="ask for one JSON response instead of streaming server-sent events",
    )
    g.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME",
        help=f"built-in task (repeatable or comma-separated): {', '.join(TASKS)}; annotate, docstring and "
        "instruct ask about code, summarize and explain about doc sections, qa about both; structured tasks "
        "(summarize, qa, docstring, instruct) get JSON checked against a schema "
        f"(default: {' + '.join(DEFAULT_TASKS)}, unless --template is given)",
    )
    g.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="FILE",
        help="a task from a TOML file (repeatable): user = '...' (required), system, name, applies_to = "
        "['code', 'doc'], schema = {JSON schema as a table}; placeholders {code} {language} {path} "
        "{qualname} {kind} {docstring}",
    )
    g.add_argument(
        "--response-format",
        choices=("auto", "json_schema", "json_object", "off"),
        default=d.response_format,
        help="how structured tasks ask for JSON: auto sends a JSON schema and steps down to json_object, "
        "then to the prompt alone, if the server refuses it; a reply that does not validate is asked for "
        "once more, then failed (default: %(default)s)",
    )

    g = run.add_argument_group("cost")
    g.add_argument(
        "--prices",
        metavar="FILE",
        help='TOML price table overriding the built-in one: date = "...", [models] "name" = '
        "{ input = USD, output = USD } per million tokens",
    )
    if plan:
        g.add_argument("--json", action="store_true", help="print the plan to stdout as one JSON object")
        g.add_argument("--db", default=d.db, metavar="FILE", help="checkpoint to read (default: %(default)s)")
        return
    g.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop taking new requests once the spend so far plus what requests in flight may cost "
        "(prompt + --max-tokens each) would pass USD; finishes cleanly, a rerun goes on",
    )

    g = run.add_argument_group("throughput and retries")
    g.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        metavar="N",
        help="requests in flight at once (default: %(default)s)",
    )
    g.add_argument(
        "--clients",
        type=int,
        default=d.clients,
        metavar="N",
        help="HTTP clients in the pool; 0 = one per 8 concurrent requests (default: %(default)s)",
    )
    g.add_argument("--rpm", type=float, default=None, metavar="N", help="most requests per minute")
    g.add_argument(
        "--tpm",
        type=float,
        default=None,
        metavar="N",
        help="most tokens per minute (a request reserves its prompt tokens + --max-tokens)",
    )
    g.add_argument(
        "--max-attempts",
        type=int,
        default=d.max_attempts,
        metavar="N",
        help="attempts per snippet for retryable errors: 408, 409, 429, 5xx, timeouts, broken "
        "connections or streams (default: %(default)s)",
    )
    g.add_argument(
        "--backoff",
        type=float,
        default=d.backoff,
        metavar="S",
        help="first retry delay in seconds, doubled each attempt, with jitter; a server's "
        "retry-after wins (default: %(default)s)",
    )
    g.add_argument(
        "--retry-truncated",
        action="store_true",
        help="when an answer stops at --max-tokens (finish_reason length), ask once more with twice "
        "the tokens",
    )
    g.add_argument(
        "--max-failures",
        type=int,
        default=None,
        metavar="N",
        help="stop cleanly (resumable) once N snippets have failed in this run",
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=d.connect_timeout,
        metavar="S",
        help="seconds to connect (default: %(default)s)",
    )
    g.add_argument(
        "--stall-timeout",
        type=float,
        default=d.stall_timeout,
        metavar="S",
        help="seconds without a byte from the server before the attempt is abandoned and retried "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout,
        metavar="S",
        help="seconds for one whole attempt (default: %(default)s)",
    )

    g = run.add_argument_group("output")
    g.add_argument(
        "-o",
        "--output",
        default=d.output,
        metavar="FILE",
        help="NDJSON output file, appended to across runs; - for stdout (default: -)",
    )
    g.add_argument("--db", default=d.db, metavar="FILE", help="SQLite checkpoint (default: %(default)s)")
    g.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="SPEC",
        help="also send records to this sink: a registered name, an entry point in the "
        "'snipstream.sinks' group, or module:Class (repeatable)",
    )
    g.add_argument(
        "--emit-all", action="store_true", help="first write every record already in the checkpoint again"
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="walk, extract, render and count tokens; send nothing, write the requests that would "
        "be sent as NDJSON and estimate the cost",
    )

    g = run.add_argument_group("behaviour")
    g.add_argument(
        "--grace",
        type=float,
        default=d.grace,
        metavar="S",
        help="on Ctrl-C/SIGTERM, seconds in-flight requests get to finish (default: %(default)s)",
    )
    g.add_argument(
        "--progress",
        choices=("auto", "tty", "plain", "off"),
        default=d.progress,
        help="progress on stderr: a live line on a terminal, plain periodic lines otherwise "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--progress-interval",
        type=float,
        default=d.progress_interval,
        metavar="S",
        help="seconds between plain progress lines (default: %(default)s)",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="no progress, notes or summary; errors only")


def _names(values: list[str]) -> tuple[str, ...]:
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def config_from_args(args: argparse.Namespace) -> Config:
    plan = args.command == "plan"
    tasks = []
    for name in _names(args.task):
        if name not in TASKS:
            raise ConfigError(f"--task {name!r}: no such task; built-in tasks: {', '.join(TASKS)}")
        tasks.append(TASKS[name])
    tasks += [load_template(path) for path in args.template]
    if not tasks:
        tasks = [TASKS[name] for name in DEFAULT_TASKS]
    return Config(
        paths=tuple(args.paths),
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        endpoint_kind=args.endpoint_kind,
        api_version=args.api_version,
        reasoning_effort=args.reasoning_effort,
        api=args.api,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        stop=tuple(args.stop),
        seed=args.seed,
        stream=not args.no_stream,
        tasks=tuple(tasks),
        response_format=args.response_format,
        languages=_names(args.lang),
        min_lines=args.min_lines,
        max_lines=args.max_lines,
        max_prompt_tokens=args.max_prompt_tokens,
        skip_tests=args.skip_tests,
        keep_trivial=args.keep_trivial,
        keep_generated=args.keep_generated,
        on_secret=args.on_secret,
        max_cost=None if plan else args.max_cost,
        prices=args.prices,
        concurrency=args.concurrency,
        clients=args.clients,
        rpm=args.rpm,
        tpm=args.tpm,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        connect_timeout=args.connect_timeout,
        stall_timeout=args.stall_timeout,
        retry_truncated=args.retry_truncated,
        max_failures=args.max_failures,
        request_timeout=args.request_timeout,
        excludes=tuple(args.exclude),
        default_excludes=not args.no_default_excludes,
        max_file_bytes=args.max_file_bytes,
        jobs=args.jobs,
        output="/dev/null" if plan else args.output,
        db=args.db,
        sinks=() if plan else tuple(args.sink),
        emit_all=False if plan else args.emit_all,
        dry_run=True if plan else args.dry_run,
        grace=args.grace,
        progress="off" if args.quiet else args.progress,
        progress_interval=args.progress_interval,
        quiet=args.quiet,
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("status", "export"):
        from . import export, status

        return (status if args.command == "status" else export).run(args)
    from .pipeline import run
    from .progress import format_summary

    try:
        config = config_from_args(args).resolve()
        if args.command == "plan":
            from .plan import plan

            return anyio.run(plan, config, args.json)
        summary = anyio.run(run, config)
    except ConfigError as exc:
        _say(f"snipstream: error: {exc}")
        return EXIT_USAGE
    except SnipstreamError as exc:
        _say(f"snipstream: {type(exc).__name__}: {exc}")
        return EXIT_ABORTED
    except KeyboardInterrupt:
        _say("snipstream: interrupted")
        return EXIT_INTERRUPTED
    except Exception:
        _say("snipstream: internal error, please report this:\n" + traceback.format_exc())
        return EXIT_INTERNAL
    if not config.quiet:
        from .tokens import load_prices

        prices = load_prices(config.prices)
        _say(format_summary(summary, model=config.model, dry_run=config.dry_run, prices_date=prices.date))
    return summary.exit_code


def entry() -> None:
    sys.exit(main())
