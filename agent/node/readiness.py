"""Readiness (every valid profile is on this disk), and the one refresh of what depends on it:
metrics, `on_ready` (the startup taint comes off) and the node report. Every part that may change
them sets one event; the refresh follows a moment later, coalesced, because counting states walks
every profile and a cold start changes thousands.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from agent.node.catalog import ProfileCatalog
from agent.node.compile_retry import CompileRetries
from agent.node.metrics import Metrics
from agent.node.store import StoreError

log = logging.getLogger(__name__)

REFRESH_AFTER_SECONDS: Final = 0.25
# Until the initial sync is done nothing can be ready and no report is published: only the
# metrics' counts move, and counting every 0.25 s walked all 10,000 profiles of a cold start
# about 200 times (a tenth of its CPU). They are counted this often meanwhile.
REFRESH_WHILE_SYNCING_SECONDS: Final = 2.0


class StatusWriter(Protocol):
    """Publishes this node's report (`NodeStatusPublisher`); `changed()`: it may differ now."""

    def changed(self) -> None: ...


@dataclass(kw_only=True)
class Readiness:
    """`not_ready_reason()` for /readyz; supervised, `run()` refreshes what depends on it."""

    catalog: ProfileCatalog
    retries: CompileRetries
    disk_problem: Callable[[], StoreError | None]  # from the drift watcher
    metrics: Metrics
    changed: asyncio.Event  # set by every part that may change what this shows
    status: StatusWriter
    on_ready: Callable[[], None]
    was_ready: bool = field(default=False, init=False)

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Readiness means every valid profile is on this disk: None then, else why not."""
        if not self.catalog.complete:
            return "initial sync not done"
        problem = self.disk_problem()
        if problem is not None:
            return f"managed directory unusable ({problem.reason}): {problem}"
        waiting = self.retries.pending()
        if waiting:
            return (
                f"{len(waiting)} profile(s) wait for a compile retry (the compiler failed for a "
                f"reason unrelated to them), e.g. {min(waiting)}"
            )
        failing = self.catalog.failures
        if failing:
            reasons = Counter(failure.reason for failure in failing.values())
            summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
            key, failure = min(failing.items())
            return (
                f"{len(failing)} profile(s) cannot be synced ({summary}); {key}: {failure.message}"
            )
        return None

    async def run(self) -> None:
        """Supervised: refresh shortly after each burst of changes."""
        loop = asyncio.get_running_loop()
        while True:
            await self.changed.wait()
            syncing_until = loop.time() + REFRESH_WHILE_SYNCING_SECONDS
            await asyncio.sleep(REFRESH_AFTER_SECONDS)
            # The initial sync's end is seen within REFRESH_AFTER_SECONDS: readiness is not
            # delayed by the longer wait.
            while not self.catalog.complete and loop.time() < syncing_until:
                await asyncio.sleep(REFRESH_AFTER_SECONDS)
            self.changed.clear()
            self.refresh()

    def refresh(self) -> None:
        """Recompute what readiness, metrics and the node report show."""
        self.metrics.set_profile_counts(dict(self.catalog.count_by_state()))
        self.metrics.set_write_failures(Counter(f.reason for f in self.catalog.failures.values()))
        ready = self.ready
        self.metrics.ready.set(1 if ready else 0)
        if ready and not self.was_ready:
            self.was_ready = True
            log.info("every valid profile is on disk: ready")
            self.on_ready()
        # Until the initial sync is done the node reports only that it is not synced yet:
        # publishing thousands of intermediate states would cost writes and tell nobody more.
        if self.catalog.complete:
            self.status.changed()
