"""The workers that make the disk match the catalog, one profile key at a time.

Keys wait in a `KeyQueue` (each once, never two workers on one key, a key changed in flight is
done again), are taken in batches, and failures are retried with per-key exponential backoff.
Disk I/O runs in threads; the catalog is only changed on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.api.keys import ProfileKey
from agent.node.catalog import ProfileCatalog, ProfileRecord, WriteFailure
from agent.node.metrics import Metrics
from agent.node.reconcile import Action, Keep, Remove, Write, decide
from agent.node.store import Store, StoreError, UnsafePathError, WriteOutcome
from agent.node.work_queue import KeyQueue

log = logging.getLogger(__name__)

MIN_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 30.0
# A batch of disk work in flight this long is stuck (a hung filesystem): liveness fails, so the
# kubelet restarts the pod rather than the node silently never syncing again.
STALL_SECONDS = 120.0
BATCH_MAX = 256
# Below this many writes, per-file fsyncs beat syncing the whole filesystem (which on a busy
# node also flushes everyone else's dirty pages).
BATCH_THRESHOLD = 8


@dataclass(frozen=True)
class SyncResult:
    action: Action
    drift: bool


@dataclass(frozen=True)
class _Job:
    key: ProfileKey
    record: ProfileRecord | None
    believed_sha: str | None
    in_use: bool


def _drifted(job: _Job, current_sha: str | None, action: Write) -> bool:
    """We believed the right bytes were there and they are not: someone changed the host."""
    return (
        job.believed_sha is not None
        and job.believed_sha != current_sha
        and action.sha256 == job.believed_sha
    )


class Syncer:
    def __init__(
        self,
        catalog: ProfileCatalog,
        store: Store,
        metrics: Metrics,
        *,
        in_use: Callable[[ProfileKey], bool],
        on_failure: Callable[[ProfileKey, WriteFailure], None],
        on_change: Callable[[], None],
        workers: int = 4,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._metrics = metrics
        self._workers = workers
        # Called when a profile starts failing, or fails for another reason: one Event per
        # profile and kind of fault (EROFS, ENOSPC...), not one per retry.
        self._on_failure = on_failure
        self._on_change = on_change
        self._in_use = in_use
        self._stall_seconds = stall_seconds
        self._queue: KeyQueue[ProfileKey] = KeyQueue()
        self._received_at: dict[ProfileKey, float] = {}
        self._retry_delay: dict[ProfileKey, float] = {}
        self._in_flight_since: dict[int, float] = {}

    def enqueue(self, key: ProfileKey, received_at: float | None = None) -> None:
        """Ask for `key` to be reconciled; `received_at` starts the latency clock."""
        if not key.is_valid:
            # Never a path on the host: callers validate keys, this is the last line of defence.
            log.warning("ignoring a profile key that cannot name a file", extra={"key": str(key)})
            return
        if received_at is not None:
            self._received_at.setdefault(key, received_at)
        self._queue.add(key)

    def check_all(self) -> None:
        """Compare every file the catalog knows with what it should hold."""
        for key in self._catalog.known_keys():
            self.enqueue(key)

    async def wait_idle(self) -> None:
        """Until nothing is queued or in flight (scheduled retries do not count)."""
        await self._queue.wait_idle()

    def stalled(self) -> str | None:
        """Liveness: why the syncer is stuck, or None."""
        if not self._in_flight_since:
            return None
        age = time.monotonic() - min(self._in_flight_since.values())
        if age < self._stall_seconds:
            return None
        return f"disk work has been in flight for {age:.0f} s (hung filesystem?)"

    def __len__(self) -> int:
        """Profiles with a retry delay or a latency clock (none once their file is settled)."""
        return len(self._retry_delay.keys() | self._received_at.keys())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(self._workers):
                group.create_task(self._work(index), name=f"syncer-{index}")

    async def _work(self, worker: int) -> None:
        while True:
            # Take whatever else is waiting: a cold start queues thousands of keys, and writing
            # them as one batch costs two filesystem syncs instead of two fsyncs per file.
            keys = await self._queue.take(BATCH_MAX)
            self._in_flight_since[worker] = time.monotonic()
            try:
                await self._sync(keys)
            except Exception as exc:
                # A bug, not a disk fault (those come back per profile): say so loudly, and
                # retry these profiles like any failure instead of losing the worker.
                log.exception("unexpected error while syncing; retrying", extra={"keys": len(keys)})
                for key in keys:
                    self._failed(
                        key, StoreError(Path(str(key)), f"internal error: {exc}", "Internal")
                    )
            finally:
                self._in_flight_since.pop(worker, None)
                self._queue.done(keys)

    async def _sync(self, keys: list[ProfileKey]) -> None:
        jobs = []
        for key in keys:
            record = self._catalog.records.get(key)
            in_use = record is None and self._in_use(key)
            jobs.append(_Job(key, record, self._catalog.installed.get(key), in_use))
        outcomes = await asyncio.to_thread(self._apply, jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                self._failed(job.key, outcome)
            else:
                self._succeeded(job.key, outcome)

    def _apply(self, jobs: list[_Job]) -> list[SyncResult | StoreError]:
        """In a worker thread: read what is on disk, decide, act. Only the store touches disk."""
        results: list[SyncResult | StoreError] = []
        writes: list[tuple[int, _Job, Write, bool]] = []
        for job in jobs:
            try:
                on_disk = self._store.read(job.key.namespace, job.key.name)
                current_sha = hashlib.sha256(on_disk).hexdigest() if on_disk is not None else None
                action = decide(job.record, on_disk, current_sha, job.in_use)
                if isinstance(action, Write):
                    writes.append((len(results), job, action, _drifted(job, current_sha, action)))
                elif isinstance(action, Remove):
                    self._store.remove(job.key.namespace, job.key.name)
                results.append(SyncResult(action, drift=False))
            except StoreError as exc:
                results.append(exc)
            except Exception as exc:
                log.exception("unexpected error while syncing", extra={"profile": str(job.key)})
                results.append(StoreError(Path(str(job.key)), f"internal error: {exc}", "Internal"))
        for (index, _, action, drift), outcome in zip(
            writes, self._write([(j.key, a) for _, j, a, _ in writes]), strict=True
        ):
            if isinstance(outcome, StoreError):
                results[index] = outcome
            elif outcome is WriteOutcome.UNCHANGED:  # raced with a writer of the same bytes
                results[index] = SyncResult(Keep(action.sha256), drift)
            else:
                results[index] = SyncResult(action, drift)
        return results

    def _write(self, writes: list[tuple[ProfileKey, Write]]) -> list[WriteOutcome | StoreError]:
        if len(writes) >= BATCH_THRESHOLD:
            return self._store.write_many([(k.namespace, k.name, a.content) for k, a in writes])
        outcomes: list[WriteOutcome | StoreError] = []
        for key, action in writes:
            try:
                outcomes.append(self._store.write(key.namespace, key.name, action.content))
            except StoreError as exc:
                outcomes.append(exc)
        return outcomes

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
        self._on_change()

    def _failed(self, key: ProfileKey, exc: StoreError) -> None:
        delay = min(self._retry_delay.get(key, MIN_RETRY_SECONDS / 2) * 2, MAX_RETRY_SECONDS)
        self._retry_delay[key] = delay
        failure, before = WriteFailure(exc.reason, str(exc)), self._catalog.failures.get(key)
        self._catalog.mark_failed(key, failure)
        if isinstance(exc, UnsafePathError):
            self._metrics.unsafe_paths.inc()
        log.error(
            "cannot sync profile; retrying",
            extra={
                "profile": str(key),
                "reason": exc.reason,
                "error": str(exc),
                "retry_seconds": delay,
            },
        )
        if before is None or before.reason != failure.reason:
            self._on_failure(key, failure)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)
        self._on_change()
