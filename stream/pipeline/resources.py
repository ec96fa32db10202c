"""What a run takes from the system: open files for its sockets, and the HTTP client pool of each endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Config, is_loopback
from ..endpoint_list import Endpoint
from ..endpoints import auth_headers, endpoint_url
from ..limits import Limits

if TYPE_CHECKING:
    from ..client import ClientPool
    from ..pool import EndpointPool

__all__ = ["client_pool", "endpoint_client", "raise_file_limit"]


def client_pool(cfg: Config, note: Callable[[str], None] | None = None) -> EndpointPool:
    """The run's endpoints, each with its own HTTP clients, limits and breaker, as one pool (httpx is
    imported here, when the first request is about to go). `note` hears of endpoints taken out."""
    from ..pool import EndpointPool, Member

    members = [
        Member(e.name, endpoint_client(cfg, e), e.weight, model=e.model if e.model != cfg.model else None)
        for e in cfg.endpoints
    ]
    return EndpointPool(members, note=note)


def endpoint_client(cfg: Config, e: Endpoint) -> ClientPool:
    """One endpoint's HTTP clients. Its breaker names the URL (and, among several, the endpoint)."""
    from ..breaker import Breaker
    from ..client import ClientPool, RetryPolicy

    return ClientPool(
        base_url=e.url,
        api_key=e.key,
        api_key_env=e.key_env,
        api=cfg.api,
        concurrency=cfg.concurrency,
        clients=cfg.clients,
        limits=Limits(rpm=e.rpm, tpm=e.tpm),
        retry=RetryPolicy(max_attempts=cfg.max_attempts, base=cfg.backoff),
        connect_timeout=cfg.connect_timeout,
        stall_timeout=cfg.stall_timeout,
        request_timeout=cfg.request_timeout,
        trust_env=not is_loopback(e.url),
        url=endpoint_url(e.kind, e.url, cfg.api, e.model, e.api_version),
        embed_url=endpoint_url(e.kind, e.url, "embeddings", cfg.embed_model, e.api_version),
        auth=auth_headers(e.kind, e.key),
        breaker=Breaker(f"{e.url} (endpoint {e.name})" if cfg.several_endpoints else e.url),
        transport_kind=cfg.transport,
    )


def raise_file_limit(needed: int, err: Callable[[str], None]) -> None:
    """Each request in flight holds a socket: lift the soft open-files limit (often 1024) if it is short."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        err(
            f"warning: only {target} files may be open at once; --concurrency {needed - 256} may hit that limit"
        )
