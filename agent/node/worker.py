"""Profiles as a queue of keys: the intake marks a key dirty, a worker reads the newest and decides.

The intake keeps the newest body the watch delivered per profile (nothing is numbered: it simply
replaces the one before), or marks the key to be read from the API, or validated again. A worker,
like a controller-runtime reconciler, takes the key, reads what is newest, validates it against
its current base, accepts the record, hands the key to the syncer, reports it if newly invalid
and marks the profiles built on it dirty. One worker per key at a time, many keys in flight. A
result stands only if nothing newer came meanwhile: a newer body runs next; a changed base makes
the worker validate the same body again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from agent.api.keys import ProfileKey, profile_key
from agent.node.catalog import ProfileCatalog, ProfileRecord
from agent.node.compile_retry import CompileRetries
from agent.node.syncer import Syncer
from agent.node.validator import Validator
from agent.node.warning_events import WarningEvents
from agent.node.work_queue import KeyQueue, Touches
from agent.seccomp.compiler import TransientCompileError

log = logging.getLogger(__name__)

# As many keys in flight as kopf ran handlers at once before: each holds at most one body.
WORKERS: Final = 128
# A read the API did not answer is tried again after this long (the resync retries too).
READ_RETRY_SECONDS: Final = 2.0


class ObjectVersion(NamedTuple):
    """Enough of a listed object to tell whether the agent has seen its latest version."""

    uid: str
    resource_version: str


def version_of(body: Mapping[str, Any]) -> ObjectVersion:
    meta = body.get("metadata", {})
    return ObjectVersion(str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))


@dataclass(frozen=True)
class Delivered:
    body: Mapping[str, Any] | None  # None: the object was deleted
    received: float  # monotonic: the sync-latency clock starts when the event arrives


class Fetch(enum.Enum):
    FROM_API = "read it from the API"


class Intake:
    """Per key: what waits for the worker, the version last seen; the queue of dirty keys."""

    def __init__(self) -> None:
        self.queue: KeyQueue[ProfileKey] = KeyQueue()
        # The version of every object this agent believes exists, as last delivered or read.
        self.versions: dict[ProfileKey, ObjectVersion] = {}
        self.touches: Touches[ProfileKey] = Touches()
        self._entries: dict[ProfileKey, Delivered | Fetch] = {}
        self._revalidate: set[ProfileKey] = set()

    def deliver(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event (type None: an item of a listing). On the event loop: cheap."""
        key = profile_key(body)
        if event_type == "DELETED":
            self.versions.pop(key, None)
            self._entries[key] = Delivered(None, time.monotonic())
        else:
            self.versions[key] = version_of(body)
            self._entries[key] = Delivered(body, time.monotonic())
        self.touches.touch(key)
        self.queue.add(key)

    def fetch(self, key: ProfileKey) -> None:
        """Read `key` from the API: whatever waits for it is older than that read will be."""
        self._entries[key] = Fetch.FROM_API
        self.queue.add(key)

    def revalidate(self, key: ProfileKey) -> None:
        """Validate `key`'s current body again (its base changed, a compile is retried)."""
        self._revalidate.add(key)
        self.queue.add(key)

    def take(self, key: ProfileKey) -> tuple[Delivered | Fetch | None, bool]:
        """What waits for `key`, and whether to validate it again; both are cleared."""
        return self._entries.pop(key, None), self.take_revalidation(key)

    def take_revalidation(self, key: ProfileKey) -> bool:
        asked = key in self._revalidate
        self._revalidate.discard(key)
        return asked

    def newer(self, key: ProfileKey) -> bool:
        """A body or a read for `key` came since it was taken: that one supersedes."""
        return key in self._entries

    def __len__(self) -> int:
        """Keys with something held for them (none once their objects are gone)."""
        return len(self._entries.keys() | self._revalidate | self.versions.keys())


@dataclass(kw_only=True)
class ProfileWorker:
    """Supervised: `run()` keeps the workers taking keys from the intake's queue."""

    intake: Intake
    validator: Validator
    catalog: ProfileCatalog
    get_profile: Callable[[ProfileKey], Mapping[str, Any] | None]
    retries: CompileRetries
    syncer: Syncer
    warnings: WarningEvents
    changed: Callable[[], None]
    # Told when a key's object is in the catalog or known gone (the initial sync waits for it).
    saw: Callable[[ProfileKey], None]
    # Called in an `except` block: logs, counts and resyncs soon.
    failed: Callable[[str, str], None]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(WORKERS):
                group.create_task(self._work(), name=f"profile-worker-{index}")

    async def settled(self, key: ProfileKey) -> None:
        """Until everything that came for `key` so far has been handled."""
        await self.intake.queue.settled(key)

    async def _work(self) -> None:
        while True:
            [key] = await self.intake.queue.take()
            try:
                await self._handle(key)
            except Exception:  # a bug, or a read the API did not answer: the worker goes on
                self.failed("profile-events", f"profile {key}")
            finally:
                self.intake.queue.done([key])

    async def _handle(self, key: ProfileKey) -> None:
        entry, revalidate = self.intake.take(key)
        received = entry.received if isinstance(entry, Delivered) else time.monotonic()
        body: Mapping[str, Any] | None
        if isinstance(entry, Delivered):
            body = entry.body
        elif entry is Fetch.FROM_API:
            # Never older than an event received before it; an event received during it wins.
            try:
                body = await asyncio.to_thread(self.get_profile, key)
            except Exception as exc:  # the API is down or refused: I/O, not a bug; read again
                log.warning(
                    "could not read a profile from the API; retrying",
                    extra={"profile": str(key), "error": str(exc)[:200]},
                )
                asyncio.get_running_loop().call_later(READ_RETRY_SECONDS, self.intake.fetch, key)
                return
            if self.intake.newer(key):
                return
            if body is None:
                log.info("profile deleted while the watch missed it", extra={"profile": str(key)})
            else:
                self.intake.versions[key] = version_of(body)
        elif revalidate:
            body = self.retries.take(key) or self.catalog.bases.body_of(key)
            if body is None:
                return
        else:
            return  # marked to validate again while in flight, and so it was (see _validated)
        if entry is not None:
            self.retries.take(key)  # the newest body replaces a pending retry
        if body is None:
            self._gone(key, received)
            return
        before = self.catalog.records.get(key)
        meta = body.get("metadata", {})
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        if revalidate or before is None or (before.uid, before.generation) != (uid, generation):
            # A name that cannot be a file name (stored under an older, looser CRD) comes back
            # Invalid from validation; the syncer never turns such a key into a path.
            record = await self._validated(key, body)
            if record is None:
                return
            self._accept(record, before)
        self.syncer.enqueue(key, received)
        # Seen only now: the initial sync's garbage collection relies on the record being there.
        self.saw(key)

    async def _validated(self, key: ProfileKey, body: Mapping[str, Any]) -> ProfileRecord | None:
        """The record for `body`, or None: no verdict (a compile retry is due), or a newer body
        arrived meanwhile (it runs next). A base that changed meanwhile means: validate again."""
        while True:
            try:
                record = await self.validator.validate(key, body)
            except TransientCompileError as exc:
                # No verdict on the profile: cache nothing, blame nobody, try again later.
                self.retries.failed(key, body, str(exc))
                return None
            if self.intake.newer(key):
                return None
            if not self.intake.take_revalidation(key):
                self.retries.clear(key)
                return record

    def _accept(self, validated: ProfileRecord, before: ProfileRecord | None) -> None:
        record = self.catalog.accept(validated)
        self.warnings.judged(record, before)
        self.changed()
        if record != before:
            self._mark_dependents(record.key)

    def _gone(self, key: ProfileKey, received: float) -> None:
        """The object is gone: drop everything kept for it (its file follows via the syncer)."""
        self.catalog.forget(key)
        self.intake.versions.pop(key, None)
        self.retries.clear(key)
        self.syncer.enqueue(key, received)
        self.changed()
        self.saw(key)
        self._mark_dependents(key)

    def _mark_dependents(self, key: ProfileKey) -> None:
        for child in self.catalog.bases.dependents(key):
            self.intake.revalidate(child)
