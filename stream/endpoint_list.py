"""The run's endpoints: ``--endpoint`` specs and ``--endpoints`` files read, checked and resolved to `Endpoint`s.

A spec is comma-separated ``field=value`` pairs, e.g.
``name=east,url=https://east.example/v1,key-env=EAST_KEY,rpm=500,tpm=200000,weight=2`` (a bare URL may stand
first, without ``url=``); a file is TOML with one ``[[endpoint]]`` table per endpoint and the same fields
(``key-env`` or ``key_env``). Keys are never given inline: an endpoint names the environment variable that
holds its key, and the key is read from it here and kept out of every repr and of `Endpoint.public`.

Without ``--endpoint`` or ``--endpoints`` the run has one endpoint, made from ``--base-url``, the key,
``--endpoint-kind``, ``--rpm`` and ``--tpm`` as before (`settings`). Its name, like that of an endpoint
given without ``name=``, is the URL's ``host[:port]``: it says which server answered and holds no secret.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .endpoints import KINDS, detect_kind
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "DEFAULT_BASE_URL",
    "Endpoint",
    "Defaults",
    "FIELDS",
    "is_loopback",
    "default_name",
    "parse_spec",
    "read_file",
    "resolve",
    "settings",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: Every field an endpoint may give, in the order the help lists them.
FIELDS = ("name", "url", "key-env", "kind", "model", "rpm", "tpm", "weight", "api-version")
_INLINE_KEYS = ("key", "api-key", "api_key", "token")


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_name(url: str) -> str:
    """An endpoint's name when none is given: the URL's host, with its port when it names one."""
    parts = urlsplit(url)
    host = parts.hostname or "endpoint"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the run, resolved: its kind detected, its key read (never shown), its model known."""

    name: str
    url: str
    kind: str
    key_env: str
    key: str | None = field(default=None, repr=False)
    model: str = ""
    rpm: float | None = None
    tpm: float | None = None
    weight: float = 1.0
    api_version: str | None = None

    def public(self) -> dict[str, Any]:
        """As stored with the run: everything but the key (and any credentials in the URL)."""
        parts = urlsplit(self.url)
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        return {
            "name": self.name,
            "url": url,
            "kind": self.kind,
            "key_env": self.key_env,
            "key_set": bool(self.key),
            "model": self.model,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "weight": self.weight,
            "api_version": self.api_version,
        }


def parse_spec(spec: str, where: str) -> dict[str, Any]:
    """One ``--endpoint`` spec as fields (values not yet checked). Values are never echoed in errors: a
    pasted key must not end up on the screen."""
    fields: dict[str, Any] = {}
    for number, part in enumerate((p.strip() for p in spec.split(",")), 1):
        if not part:
            continue
        if part.startswith(("http://", "https://")) and "url" not in fields:
            fields["url"] = part
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(
                f"{where}: part {number} is not field=value (fields: {', '.join(FIELDS)}; a URL with a comma "
                "goes in an --endpoints file)"
            )
        fields[name.strip()] = value.strip()
    return fields


def read_file(path: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``[[endpoint]]`` tables of a TOML file, each with where it is (for messages)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--endpoints {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--endpoints {path}: not valid TOML ({exc})") from None
    tables = data.get("endpoint")
    other = sorted(set(data) - {"endpoint"})
    if other:
        raise ConfigError(f"--endpoints {path}: unknown table or key {other[0]!r} (only [[endpoint]] tables)")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"--endpoints {path}: no [[endpoint]] tables")
    return [(f"--endpoints {path}, endpoint {i}", dict(t)) for i, t in enumerate(tables, 1)]


@dataclass(frozen=True)
class Defaults:
    """What an endpoint takes from the run's flags when it does not say."""

    model: str
    kind: str  # --endpoint-kind (auto: from each URL)
    key_env: str | None  # --api-key-env
    rpm: float | None
    tpm: float | None
    api_version: str | None
    dry_run: bool


def _number(fields: dict[str, Any], name: str, where: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{where}: {name} must be a positive number, got {value!r}")
    return number


def _url(fields: dict[str, Any], where: str) -> str:
    url = fields.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: no url (give url=https://host/v1)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: url must be an http(s) URL with a host")
    if "@" in parts.netloc:
        raise ConfigError(
            f"{where}: the url holds credentials; put the key in a variable and name it with key-env="
        )
    return url.rstrip("/")


def _one(fields: dict[str, Any], where: str, defaults: Defaults, env: Mapping[str, str]) -> Endpoint:
    """One endpoint's fields checked and resolved."""
    fields = {k.replace("_", "-"): v for k, v in fields.items()}
    if isinstance(fields.get("name"), str) and fields["name"]:
        where = f"{where} ({fields['name']})"
    inline = next((k for k in fields if k in _INLINE_KEYS), None)
    if inline is not None:
        raise ConfigError(
            f"{where}: keys are never given inline ({inline}=); put it in an environment variable and name "
            "that with key-env="
        )
    unknown = next((k for k in fields if k not in FIELDS), None)
    if unknown is not None:
        raise ConfigError(f"{where}: unknown field {unknown!r} (fields: {', '.join(FIELDS)})")
    for name in ("name", "url", "key-env", "kind", "model", "api-version"):
        if name in fields and (not isinstance(fields[name], str) or not fields[name]):
            raise ConfigError(f"{where}: {name} must be a non-empty string")
    url = _url(fields, where)
    name = fields.get("name") or default_name(url)
    kind = fields.get("kind") or defaults.kind
    kind = detect_kind(url) if kind == "auto" else kind
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be auto or one of {', '.join(KINDS)}, got {kind!r}")
    key_env = fields.get("key-env") or defaults.key_env or KINDS[kind].key_env
    key = env.get(key_env) or None
    if key is None and not defaults.dry_run and ("key-env" in fields or not is_loopback(url)):
        why = "key-env names it" if "key-env" in fields else f"a key is needed for {url}"
        raise ConfigError(f"{where}: no API key: ${key_env} is not set ({why})")
    rpm, tpm = _number(fields, "rpm", where), _number(fields, "tpm", where)
    return Endpoint(
        name=name,
        url=url,
        kind=kind,
        key_env=key_env,
        key=key,
        model=fields.get("model") or defaults.model,
        rpm=rpm if rpm is not None else defaults.rpm,
        tpm=tpm if tpm is not None else defaults.tpm,
        weight=_number(fields, "weight", where) or 1.0,
        api_version=fields.get("api-version") or defaults.api_version,
    )


def resolve(
    specs: tuple[str, ...],
    path: str | None,
    defaults: Defaults,
    env: Mapping[str, str],
    *,
    mixed_models: bool,
) -> tuple[Endpoint, ...]:
    """Every endpoint the file (first) and the specs give, checked: names unique, one model unless
    `mixed_models`."""
    given = read_file(path) if path else []
    given += [(f"--endpoint {i}", parse_spec(spec, f"--endpoint {i}")) for i, spec in enumerate(specs, 1)]
    endpoints = tuple(_one(fields, where, defaults, env) for where, fields in given)
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.name in seen:
            raise ConfigError(f"two endpoints are named {endpoint.name!r}: give each its own name=")
        seen.add(endpoint.name)
    models = {e.model for e in endpoints}
    if len(models) > 1 and not mixed_models:
        served = ", ".join(f"{e.name}: {e.model}" for e in endpoints)
        raise ConfigError(
            f"the endpoints serve different models ({served}); every endpoint must serve the same model, "
            "or give --mixed-models to treat them as one (the tasks' fingerprints then name --model)"
        )
    return endpoints


def settings(cfg: Config, env: Mapping[str, str]) -> dict[str, Any]:
    """The Config fields its endpoints decide: ``endpoints``, and ``base_url``, ``api_key``, ``api_key_env``
    and ``endpoint_kind`` (the first endpoint's; with one endpoint, exactly as before there were several)."""
    if cfg.endpoint_kind != "auto" and cfg.endpoint_kind not in KINDS:
        raise ConfigError(
            f"--endpoint-kind must be auto or one of {', '.join(KINDS)}, got {cfg.endpoint_kind!r}"
        )
    defaults = Defaults(
        model=cfg.model,
        kind=cfg.endpoint_kind,
        key_env=cfg.api_key_env,
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        api_version=cfg.api_version,
        dry_run=cfg.dry_run,
    )
    if cfg.several_endpoints:
        if cfg.base_url is not None:
            raise ConfigError("--base-url and --endpoint both given: give that URL as one more --endpoint")
        endpoints = resolve(
            cfg.endpoint_specs, cfg.endpoints_file, defaults, env, mixed_models=cfg.mixed_models
        )
        first = endpoints[0]
        return {
            "base_url": first.url,
            "api_key": None,
            "api_key_env": first.key_env,
            "endpoint_kind": first.kind,
            "endpoints": endpoints,
        }
    base_url = (cfg.base_url or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    kind = detect_kind(base_url) if cfg.endpoint_kind == "auto" else cfg.endpoint_kind
    key_env = cfg.api_key_env or KINDS[kind].key_env
    key = cfg.api_key if cfg.api_key is not None else (env.get(key_env) or None)
    endpoint = Endpoint(
        name=default_name(base_url),
        url=base_url,
        kind=kind,
        key_env=key_env,
        key=key,
        model=cfg.model,
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        api_version=cfg.api_version,
    )
    return {
        "base_url": base_url,
        "api_key": key,
        "api_key_env": key_env,
        "endpoint_kind": kind,
        "endpoints": (endpoint,),
    }
