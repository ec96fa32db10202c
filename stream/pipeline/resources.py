"""What a run takes from the system: open files for its sockets, and the HTTP client pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Config, is_loopback
from ..endpoints import auth_headers, endpoint_url
from ..limits import Limits

if TYPE_CHECKING:
    from ..client import ClientPool

__all__ = ["client_pool", "raise_file_limit"]


def client_pool(cfg: Config) -> ClientPool:
    """The run's HTTP clients (httpx is imported here, when the first request is about to go)."""
    from ..breaker import Breaker
    from ..client import ClientPool, RetryPolicy

    return ClientPool(
        base_url=cfg.base_url or "",
        api_key=cfg.api_key,
        api_key_env=cfg.api_key_env,
        api=cfg.api,
        concurrency=cfg.concurrency,
        clients=cfg.clients,
        limits=Limits(rpm=cfg.rpm, tpm=cfg.tpm),
        retry=RetryPolicy(max_attempts=cfg.max_attempts, base=cfg.backoff),
        connect_timeout=cfg.connect_timeout,
        stall_timeout=cfg.stall_timeout,
        request_timeout=cfg.request_timeout,
        trust_env=not is_loopback(cfg.base_url or ""),
        url=endpoint_url(cfg.endpoint_kind, cfg.base_url or "", cfg.api, cfg.model, cfg.api_version),
        auth=auth_headers(cfg.endpoint_kind, cfg.api_key),
        breaker=Breaker(cfg.base_url or ""),
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
