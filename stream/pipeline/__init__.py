"""The streamed run: stages joined by bounded memory object streams (see `graph` for the picture).

```
setup      what the run decides before it starts (tasks, selection, prices, request shape)
session    one run: open the checkpoint and outputs, run the graph, close under a shield
graph      the stages wired in one task group
feed       the walk thread handed to the planner in batches
planner    per file: one checkpoint look-up, then reuse, share, or a job (dry: `dry`, a route of its own)
workers    N tasks: gates (`gates`: --max-cost, --max-failures), then the asker
asker      one job's attempts: context gate, structured re-ask, truncation, 400 negotiation, the pool
writer     commit, then write, then mark emitted
ledger     what is in flight, shared by planner and writer
control    stop, grace, signals
summary    the counters; `messages` the typed values between the stages; `counting` tokens
```
"""

from __future__ import annotations

from ..record import SCHEMA_VERSION
from .session import run
from .summary import Summary

__all__ = ["run", "Summary", "SCHEMA_VERSION"]
