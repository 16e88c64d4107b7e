"""The work queue that makes the disk match the catalog, one profile key at a time.

Semantics follow client-go's workqueue: a key is queued at most once, never processed by two
workers at once (a key changed while in flight is processed again afterwards), and failures are
retried with per-key exponential backoff, because kopf does not retry on.event handlers.
Disk I/O runs in threads; the catalog is only changed on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.catalog import ProfileCatalog, ProfileKey, ProfileRecord
from agent.metrics import Metrics
from agent.reconcile import Action, Keep, Remove, Write, decide
from agent.store import ProfileStore, StoreError, UnsafePathError, WriteOutcome

log = logging.getLogger(__name__)

MIN_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class SyncResult:
    action: Action
    drift: bool


class Syncer:
    def __init__(
        self,
        catalog: ProfileCatalog,
        store: ProfileStore,
        metrics: Metrics,
        *,
        workers: int = 4,
        on_failure: Callable[[ProfileKey, StoreError], None] | None = None,
        on_change: Callable[[], None] | None = None,
        in_use: Callable[[ProfileKey], bool] = lambda _: False,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._metrics = metrics
        self._workers = workers
        self._on_failure = on_failure
        self._on_change = on_change
        self._in_use = in_use
        self._queue: asyncio.Queue[ProfileKey] = asyncio.Queue()
        self._queued: set[ProfileKey] = set()
        self._processing: set[ProfileKey] = set()
        self._dirty: set[ProfileKey] = set()
        self._received_at: dict[ProfileKey, float] = {}
        self._retry_delay: dict[ProfileKey, float] = {}
        self.errors: dict[ProfileKey, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def enqueue(self, key: ProfileKey, received_at: float | None = None) -> None:
        """Ask for `key` to be reconciled; `received_at` starts the latency clock."""
        if received_at is not None:
            self._received_at.setdefault(key, received_at)
        self._idle.clear()
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def wait_idle(self) -> None:
        """Until nothing is queued or in flight (scheduled retries do not count)."""
        await self._idle.wait()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(self._workers):
                group.create_task(self._work(), name=f"syncer-{index}")

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await self._sync(key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue(key)
                if not self._queued and not self._processing:
                    self._idle.set()

    async def _sync(self, key: ProfileKey) -> None:
        record = self._catalog.records.get(key)
        believed_sha = self._catalog.installed.get(key)
        in_use = record is None and self._in_use(key)
        try:
            result = await asyncio.to_thread(self._apply, key, record, believed_sha, in_use)
        except StoreError as exc:
            self._failed(key, exc)
            return
        self._succeeded(key, result)

    def _apply(
        self,
        key: ProfileKey,
        record: ProfileRecord | None,
        believed_sha: str | None,
        in_use: bool,
    ) -> SyncResult:
        """In a worker thread: read what is on disk, decide, act. Only the store touches disk."""
        on_disk = self._store.read(key.namespace, key.name)
        current_sha = hashlib.sha256(on_disk).hexdigest() if on_disk is not None else None
        action = decide(record, on_disk, current_sha, in_use)
        # We believed the right bytes were there and they are not: someone changed the host.
        drift = (
            believed_sha is not None
            and believed_sha != current_sha
            and isinstance(action, Write)
            and action.sha256 == believed_sha
        )
        if isinstance(action, Write):
            outcome = self._store.write(key.namespace, key.name, action.content)
            if outcome is WriteOutcome.UNCHANGED:  # raced with another writer of the same bytes
                action = Keep(action.sha256)
        elif isinstance(action, Remove):
            self._store.remove(key.namespace, key.name)
        return SyncResult(action, drift)

    def _succeeded(self, key: ProfileKey, result: SyncResult) -> None:
        action = result.action
        if isinstance(action, Write):
            self._catalog.mark_installed(key, action.sha256)
            self._metrics.files_written.inc()
            log.info("profile written", extra={"profile": str(key), "sha256": action.sha256[:12]})
        elif isinstance(action, Remove):
            self._catalog.mark_removed(key)
            self._metrics.files_removed.inc()
            log.info("profile removed", extra={"profile": str(key)})
        elif action.sha256 is None:
            self._catalog.mark_removed(key)
        else:
            self._catalog.mark_installed(key, action.sha256)
        if result.drift:
            self._metrics.drift_repairs.inc()
            log.warning("restored a profile changed on the host", extra={"profile": str(key)})
        received = self._received_at.pop(key, None)
        if received is not None:
            self._metrics.sync_duration.observe(time.monotonic() - received)
        self._retry_delay.pop(key, None)
        self.errors.pop(key, None)
        if self._on_change is not None:
            self._on_change()

    def _failed(self, key: ProfileKey, exc: StoreError) -> None:
        delay = min(self._retry_delay.get(key, MIN_RETRY_SECONDS / 2) * 2, MAX_RETRY_SECONDS)
        self._retry_delay[key] = delay
        self.errors[key] = str(exc)
        if isinstance(exc, UnsafePathError):
            self._metrics.unsafe_paths.inc()
        log.error(
            "cannot sync profile; retrying",
            extra={"profile": str(key), "error": str(exc), "retry_seconds": delay},
        )
        if self._on_failure is not None:
            self._on_failure(key, exc)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)
        if self._on_change is not None:
            self._on_change()
