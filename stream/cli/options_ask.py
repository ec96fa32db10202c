"""Option groups for what is asked and of whom: the tasks, the API endpoint, the generation parameters."""

from __future__ import annotations

import argparse

from ..config import (
    APIS,
    DEFAULT_BASE_URL,
    DEFAULT_CONTEXT,
    MAX_TOKENS,
    REASONING_EFFORTS,
    REASONING_MAX_TOKENS,
    RESPONSE_FORMATS,
)
from ..embeddings import EMBED_TEXTS, MAX_INPUT_TOKENS, MAX_INPUTS, MAX_REQUEST_TOKENS
from ..endpoints import DEFAULT_AZURE_API_VERSION, KINDS
from ..prompt import CONTEXT_MODES, DEFAULT_TASKS, TASKS
from .options import add_option

__all__ = ["add_tasks", "add_embedding", "add_embed_model", "add_endpoint", "add_generation"]


def add_tasks(parser: argparse.ArgumentParser) -> None:
    """The tasks (built-in or from TOML templates) and how structured ones ask for JSON."""
    g = parser.add_argument_group("tasks")
    g.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME",
        help=f"built-in task (repeatable or comma-separated): {', '.join(TASKS)}; annotate, docstring and "
        "instruct ask about code, summarize and explain about doc sections, qa about both; structured tasks "
        "(summarize, qa, docstring, instruct) get JSON checked against a schema; judge is no task of its "
        "own: each new answer of the other tasks is scored 1-5 by the same model against its prompt; embed "
        "makes a vector of each snippet after the other tasks (see embeddings; alone, no other task is asked) "
        f"(default: {' + '.join(DEFAULT_TASKS)}, unless --template is given)",
    )
    add_option(
        g,
        "judge_reask_below",
        help="with --task judge: an answer the judge scores below N is asked once more with the judge's "
        "finding, and the new answer judged; 0 never asks again (default: %(default)s)",
    )
    add_option(
        g,
        "judge_reasks",
        help="with --task judge: how many times, at most, one answer is asked again (default: %(default)s)",
    )
    g.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="FILE",
        help="a task from a TOML file (repeatable): user = '...' (required), system, name, applies_to = "
        "['code', 'doc'], schema = {JSON schema as a table}; placeholders {code} {language} {path} "
        "{qualname} {kind} {docstring} {context}",
    )
    add_option(
        g,
        "context",
        choices=CONTEXT_MODES,
        help="what each prompt is told about where its snippet lives, put first so that providers' prompt "
        "caches apply: file = the file's docstring and imports, a method's class (header, docstring, "
        "attributes, methods), the signatures of the file's own functions it calls, a doc section's file "
        "and heading path; project = the same, with the callees found anywhere in the walked tree (one "
        "more pass over it first); none = the code alone, as before. Default: the mode of the checkpoint's "
        f"last run (none for a checkpoint made before contexts existed, so a rerun pays for nothing already "
        f"done), else {DEFAULT_CONTEXT}",
    )
    add_option(
        g,
        "context_tokens",
        help="the context's bound, in tokens (counted as characters / 3) (default: %(default)s)",
    )
    add_option(
        g,
        "response_format",
        choices=RESPONSE_FORMATS,
        help="how structured tasks ask for JSON: auto sends a JSON schema and steps down to json_object, "
        "then to the prompt alone, if the server refuses it; a reply that does not validate is asked for "
        "once more, then failed (default: %(default)s)",
    )


def add_embedding(parser: argparse.ArgumentParser) -> None:
    """--task embed: what is embedded, with which model, how many texts per request."""
    g = parser.add_argument_group("embeddings (--task embed)")
    add_option(
        g,
        "embed_text",
        choices=EMBED_TEXTS,
        help="what each snippet's vector is made of: both (its annotation, a blank line, then the code; the "
        "code alone while it has no annotation), code, or annotation (snippets without one get none); the "
        "annotation is the answer of the run's first task that applies (with embed alone: of the default "
        "tasks, as asked with --model) (default: %(default)s)",
    )
    add_embed_model(g)
    add_option(
        g,
        "embed_batch",
        metavar="N",
        help=f"texts per embeddings request, at most (OpenAI takes up to {MAX_INPUTS}) (default: %(default)s)",
    )
    add_option(
        g,
        "embed_batch_tokens",
        metavar="TOKENS",
        help=f"tokens per embeddings request, at most (OpenAI takes up to {MAX_REQUEST_TOKENS:,}; a text "
        f"over {MAX_INPUT_TOKENS:,} tokens is cut to fit) (default: %(default)s)",
    )


def add_embed_model(g: argparse._ActionsContainer) -> None:
    """--embed-model and --dimensions: the vectors' model and size (run, search and ask share them)."""
    add_option(g, "embed_model", metavar="MODEL", help="the embedding model (default: %(default)s)")
    add_option(
        g,
        "dimensions",
        metavar="N",
        help="the vectors' size, sent as `dimensions` (text-embedding-3 and later models take it; default: "
        "the model's own)",
    )


def add_endpoint(parser: argparse.ArgumentParser) -> None:
    """Where requests go: the URL, what serves it, the key, the API flavour and the model."""
    g = parser.add_argument_group("API")
    add_option(
        g,
        "base_url",
        metavar="URL",
        help=f"OpenAI-compatible base URL (default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL})",
    )
    add_option(
        g,
        "endpoint_kind",
        choices=("auto", *KINDS),
        help="what serves --base-url: decides the key header, the URL and the token-limit field; auto "
        "tells OpenAI, Azure, Anthropic and Gemini by host, Ollama by its port, and treats the rest as "
        "generic (every kind also learns from the 400s it gets) (default: %(default)s)",
    )
    add_option(
        g,
        "api_key_env",
        metavar="NAME",
        help="environment variable holding the API key (default: OPENAI_API_KEY; AZURE_OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY or GEMINI_API_KEY for those kinds)",
    )
    add_option(
        g,
        "api_version",
        metavar="DATE",
        help=f"Azure OpenAI's api-version query parameter (default: $OPENAI_API_VERSION, else "
        f"{DEFAULT_AZURE_API_VERSION}); not sent to Azure's v1 API (a base URL ending in /openai/v1)",
    )
    add_option(
        g,
        "api",
        choices=APIS,
        help="chat: /chat/completions with messages; completions: legacy /completions with a "
        "prompt (default: %(default)s)",
    )
    add_option(g, "model", help="model name (default: %(default)s)")
    _several(g)


def _several(g: argparse._ArgumentGroup) -> None:
    """Several endpoints in place of --base-url (`stream.endpoint_list`, `stream.pool`)."""
    add_option(
        g,
        "endpoint_specs",
        "--endpoint",
        metavar="SPEC",
        help="one endpoint of several, instead of --base-url (repeatable): comma-separated "
        "field=value pairs, e.g. name=east,url=https://east.example/v1,key-env=EAST_KEY,rpm=500,"
        "tpm=200000,weight=2 (also kind=, model=, api-version=); the key is read from the variable "
        "key-env names (default: --api-key-env's, or the kind's); unset rpm/tpm/kind take --rpm/--tpm/"
        "--endpoint-kind; requests go to endpoints with budget, weighted, and move when one fails",
    )
    add_option(
        g,
        "endpoints_file",
        "--endpoints",
        metavar="FILE",
        help="endpoints from a TOML file: one [[endpoint]] table each, with --endpoint's fields",
    )
    add_option(
        g,
        "mixed_models",
        help="let endpoints serve different models (model=); the tasks' fingerprints then name --model only",
    )


def add_generation(parser: argparse.ArgumentParser) -> None:
    """The parameters sent with every request (part of each task's fingerprint), and streaming."""
    g = parser.add_argument_group("generation")
    add_option(
        g,
        "max_tokens",
        help="most tokens per answer, a reasoning model's hidden reasoning included; sent as max_tokens, "
        f"or max_completion_tokens where the endpoint or model wants it (default: {MAX_TOKENS}; "
        f"{REASONING_MAX_TOKENS} for reasoning models: o1, o3, o4-mini, gpt-5)",
    )
    add_option(
        g,
        "reasoning_effort",
        choices=REASONING_EFFORTS,
        help="how much a reasoning model thinks before answering (not sent unless given)",
    )
    add_option(
        g,
        "temperature",
        metavar="T",
        help="sampling temperature (not sent unless given: the server's default applies)",
    )
    add_option(g, "top_p", metavar="P", help="nucleus sampling mass (not sent unless given)")
    add_option(g, "stop", metavar="TEXT", help="stop sequence (repeatable)")
    add_option(g, "seed", metavar="SEED", help="sampling seed, for servers that honour it")
    add_option(g, "stream", help="ask for one JSON response instead of streaming server-sent events")
