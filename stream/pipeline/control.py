"""Stopping a run: why it stops, its exit code, the grace period of requests in flight, and signals.

The first stop (a signal, a budget, an aborting API error, a closed pipe) cancels the feed at once and gives
the workers a deadline; the writer is never cancelled, it drains what arrived. A second Ctrl-C cancels
everything at once (the checkpoint stays consistent: each of its writes is one transaction).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio

from ..errors import ExitCode
from .summary import Summary

__all__ = ["Control"]


class Control:
    """The run's stop switch, shared by every stage."""

    def __init__(self, summary: Summary, *, grace: float, err: Callable[[str], None]) -> None:
        self.summary = summary
        self.grace = grace
        self.err = err
        self.stopping = False
        self.feed_scope = anyio.CancelScope()
        self.work_scope = anyio.CancelScope()
        self.deadline: float | None = None

    def stop(self, why: str, *, exit_code: ExitCode, grace: float | None = None) -> None:
        """Stop taking new work; in-flight requests get `grace` seconds (default --grace) to finish.
        The first reason given is the one the summary keeps."""
        if self.summary.stopped is None:
            self.summary.stopped = why
            self.summary.exit_code = int(exit_code)
        self.stopping = True
        self.feed_scope.cancel()
        deadline = anyio.current_time() + (self.grace if grace is None else grace)
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.work_scope.deadline = self.deadline

    def next_pass(self) -> None:
        """A new feed scope for the run's next pass over the tree (a scope is entered once)."""
        self.feed_scope = anyio.CancelScope()
        if self.stopping:
            self.feed_scope.cancel()

    def bind_workers(self, scope: anyio.CancelScope) -> None:
        """The workers' scope: `stop` moves its deadline."""
        self.work_scope = scope
        if self.deadline is not None:
            scope.deadline = self.deadline

    async def watch_signals(self, outer: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.stopping and self.summary.stopped == "interrupted":
                    self.err("second interrupt: stopping now")
                    outer.cancel()
                    return
                name = signal.Signals(signum).name
                self.err(
                    f"{name}: finishing in-flight requests (up to {self.grace:g}s); interrupt again to stop now"
                )
                self.stop("interrupted", exit_code=ExitCode.INTERRUPTED)
