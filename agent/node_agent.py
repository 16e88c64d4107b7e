"""The agent's behaviour on one node: turn profile events into desired state and disk work.

Handlers in `agent.kube.handlers` call in here; this module decides, the syncer acts on disk,
and the only API calls go through the callables handed in (events, listings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from agent.catalog import ProfileCatalog, ProfileKey, ProfileRecord
from agent.compile_retry import CompileRetries
from agent.metrics import Metrics
from agent.pod_refs import profiles_used_by
from agent.readiness.node_report import build_status
from agent.readiness.profile_status import ProfileView
from agent.render import render
from agent.store import ProfileStore, StoreError
from agent.syncer import Syncer
from agent.validation.compiler import TransientCompileError
from agent.validation.lanes import ValidationLanes
from agent.validation.validate import CompileFn, validate_resource

log = logging.getLogger(__name__)
T = TypeVar("T")

RELIST_DEBOUNCE_SECONDS = 1.0
RELIST_WHILE_WAITING_SECONDS = 5.0
STATE_REFRESH_SECONDS = 0.25


class EventSink(Protocol):
    """Where the agent reports problems on an object (Kubernetes Events in production)."""

    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None: ...


@dataclass
class NodeAgent:
    node_name: str
    architectures: Sequence[str]
    catalog: ProfileCatalog
    store: ProfileStore
    metrics: Metrics
    compile_profile: CompileFn
    events: EventSink
    list_keys: Callable[[], set[ProfileKey]]
    list_pinned: Callable[[], frozenset[ProfileKey]]
    on_synced: list[Callable[[], None]] = field(default_factory=list)
    # Called with a key whenever what this node knows of that profile changes (status readers).
    on_profile_change: list[Callable[[ProfileKey], None]] = field(default_factory=list)
    # Called whenever this node's per-profile state may have changed (the node-status writer).
    on_state_change: list[Callable[[], None]] = field(default_factory=list)
    # Cheap profiles validate on threads of their own, never queued behind expensive ones.
    validation_lanes: ValidationLanes = field(default_factory=ValidationLanes)
    syncer: Syncer = field(init=False)
    compile_retries: CompileRetries = field(init=False)
    synced: bool = field(default=False, init=False)
    _seen: set[ProfileKey] = field(default_factory=set, init=False)
    _uids: dict[ProfileKey, str] = field(default_factory=dict, init=False)
    _relist: asyncio.TimerHandle | None = field(default=None, init=False)
    _refresh: asyncio.TimerHandle | None = field(default=None, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _reported_failures: dict[ProfileKey, str] = field(default_factory=dict, init=False)
    _pod_refs: dict[str, frozenset[ProfileKey]] = field(default_factory=dict, init=False)
    _pinned_at_start: frozenset[ProfileKey] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        self.syncer = Syncer(
            self.catalog,
            self.store,
            self.metrics,
            on_failure=self._report_store_failure,
            on_change=self._state_changed,
            in_use=self.in_use,
        )
        self.compile_retries = CompileRetries(self._retry_compile)

    @property
    def ready(self) -> bool:
        return self.synced

    async def on_profile_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event for a SeccompProfile (type None: from a listing)."""
        received = time.monotonic()
        meta = body.get("metadata", {})
        key = ProfileKey(str(meta.get("namespace")), str(meta.get("name")))
        self.compile_retries.supersede(key)  # this event is newer than any pending retry
        if event_type is None and self.synced:
            self._schedule_relist_check()
        if event_type == "DELETED":
            self.compile_retries.forget({key})
            self.catalog.forget(key)
            self._uids.pop(key, None)
            self.syncer.enqueue(key, received)
            self._profile_changed(key)
            self._seen.add(key)
            return
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        self._uids[key] = uid
        known = self.catalog.records.get(key)
        if known is None or known.uid != uid or known.generation != generation:
            spec = body.get("spec")
            architectures = spec.get("architectures") if isinstance(spec, Mapping) else None
            try:
                record = await self.validation_lanes.run(
                    spec,
                    len(architectures or self.architectures),
                    # plain() copies the body: in the thread too, not on the event loop.
                    lambda: self._validate(key, uid, generation, plain(body)),
                )
            except TransientCompileError as exc:
                # No verdict on the profile: cache nothing, blame nobody, try again later.
                self.compile_retries.failed(key, body, str(exc))
                return
            self.compile_retries.succeeded(key)
            latest = self.catalog.records.get(key)
            if self._uids.get(key) != uid or (
                latest is not None and latest.uid == uid and latest.generation > generation
            ):
                return  # a retry raced a newer event or a deletion: the newer one stands
            record = self.catalog.accept(record)
            if not record.valid:
                self._report_invalid(record)
            self._profile_changed(key)
        self.syncer.enqueue(key, received)
        # Seen only now: the initial sync's garbage collection relies on the record being there.
        self._seen.add(key)

    def on_pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """A pod on this node changed: track which profiles it pins (in-use protection)."""
        uid = str(pod.get("metadata", {}).get("uid", ""))
        before = self._pod_refs.get(uid, frozenset())
        after = frozenset() if event_type == "DELETED" else profiles_used_by(pod)
        if after:
            self._pod_refs[uid] = after
        else:
            self._pod_refs.pop(uid, None)
        for key in before ^ after:
            self.syncer.enqueue(key)  # a deleted profile may now be removable, or must stay

    def in_use(self, key: ProfileKey) -> bool:
        if not self.synced and key in self._pinned_at_start:
            return True
        return any(key in refs for refs in self._pod_refs.values())

    def profile_views(self) -> dict[ProfileKey, ProfileView]:
        """What the status aggregator needs of each profile this agent knows."""
        return {
            key: ProfileView(
                key,
                record.generation,
                record.rendered.sha256 if record.valid and record.rendered else None,
            )
            for key, record in self.catalog.records.items()
        }

    def node_status(self) -> dict[str, Any]:
        return build_status(self.node_name, self.synced, self.catalog.statuses())

    def on_disk_changed(self, key: ProfileKey) -> None:
        """A managed file changed on the host: let the syncer compare and repair it."""
        self.syncer.enqueue(key, time.monotonic())

    async def initial_sync(self) -> None:
        """Write every profile that exists now, then remove what no object or pod wants.

        Garbage collection must never work from a partial view: it waits until the watch has
        delivered every object of a complete listing (or its deletion), and until this node's
        pods are known, so a deleted profile that a pod still uses survives a restart.
        """
        listed = await self._retrying(self.list_keys, "list SeccompProfiles")
        listed_at = time.monotonic()
        while not listed <= self._seen:
            await asyncio.sleep(0.02)
            if time.monotonic() - listed_at > RELIST_WHILE_WAITING_SECONDS:
                # Something listed was deleted before the watch saw it: list again.
                listed = await self._retrying(self.list_keys, "list SeccompProfiles")
                listed_at = time.monotonic()
        self._pinned_at_start = await self._retrying(self.list_pinned, "list this node's pods")
        await self.syncer.wait_idle()
        # Every existing object, valid or not (an invalid one keeps its last valid file), and
        # every profile a pod on this node still uses (in-use protection).
        wanted = set(self.catalog.records) | self._pinned_at_start | self._pods_pin()
        result = await asyncio.to_thread(self.store.collect_garbage, wanted)
        for path in result.removed_profiles:
            self.catalog.mark_removed(ProfileKey(path.parent.name, path.stem))
        self.synced = True
        self.metrics.last_full_sync.set(time.time())
        self.metrics.ready.set(1)
        self._state_changed()
        log.info(
            "initial sync complete",
            extra={
                "profiles": len(self.catalog.records),
                "listed": len(listed),
                "orphans_removed": len(result.removed_profiles),
                "temp_files_removed": len(result.removed_temp_files),
                "unexpected_entries": [str(p) for p in result.unexpected],
            },
        )
        for callback in self.on_synced:
            callback()

    async def _retrying(self, call: Callable[[], T], what: str) -> T:
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(call)
            except Exception as exc:  # the API may not be reachable yet: keep trying
                log.warning(f"could not {what}; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _schedule_relist_check(self) -> None:
        if self._relist is None:
            loop = asyncio.get_running_loop()
            self._relist = loop.call_later(RELIST_DEBOUNCE_SECONDS, self._start_relist_check)

    def _start_relist_check(self) -> None:
        self._relist = None
        task = asyncio.create_task(self._relist_check())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relist_check(self) -> None:
        """After a watch restart, a DELETED event may have been lost: confirm by listing."""
        self.metrics.watch_restarts.inc()
        try:
            present = await asyncio.to_thread(self.list_keys)
        except Exception as exc:
            log.warning("listing after watch restart failed; retrying", extra={"error": str(exc)})
            self._schedule_relist_check()
            return
        self.compile_retries.forget(self.compile_retries.pending() - present)
        for key in set(self.catalog.records) - present:
            log.info("profile deleted while the watch was down", extra={"profile": str(key)})
            self.catalog.forget(key)
            self.syncer.enqueue(key)

    async def _retry_compile(self, key: ProfileKey, body: Mapping[str, Any]) -> None:
        await self.on_profile_event("MODIFIED", body)

    def _validate(
        self, key: ProfileKey, uid: str, generation: int, body: dict[str, Any]
    ) -> ProfileRecord:
        result = validate_resource(
            body,
            default_architectures=self.architectures,
            compile_profile=self.compile_profile,
            node_architectures=self.architectures,
        )
        report = result.report
        rendered = render(report.profile) if report.valid and report.profile else None
        return ProfileRecord(key, uid, generation, rendered, report.errors, report.warnings)

    def _report_invalid(self, record: ProfileRecord) -> None:
        first = record.errors[0]
        self.metrics.validation_failures.labels(reason=first.reason).inc()
        kept = "; the last valid version stays on disk" if record.rendered else ""
        message = "; ".join(f"{f.field}: {f.message}" for f in record.errors[:3]) + kept
        log.warning(
            "invalid profile",
            extra={
                "profile": str(record.key),
                "generation": record.generation,
                "field": first.field,
                "reason": first.reason,
            },
        )
        self._spawn_thread(
            self.events.warn,
            record.key.namespace,
            record.key.name,
            record.uid,
            "InvalidProfile",
            message,
        )

    def _report_store_failure(self, key: ProfileKey, exc: StoreError) -> None:
        message = str(exc)
        if self._reported_failures.get(key) == message or key not in self._uids:
            return
        self._reported_failures[key] = message
        self._spawn_thread(
            self.events.warn, key.namespace, key.name, self._uids[key], "WriteFailed", message
        )

    def _spawn_thread(self, func: Callable[..., None], *args: Any) -> None:
        task = asyncio.create_task(asyncio.to_thread(func, *args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pods_pin(self) -> set[ProfileKey]:
        return {key for refs in self._pod_refs.values() for key in refs}

    def _profile_changed(self, key: ProfileKey) -> None:
        for callback in self.on_profile_change:
            callback(key)
        self._state_changed()

    def _state_changed(self) -> None:
        # Coalesced: counting states walks every profile, and a cold start syncs thousands.
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().call_later(
                STATE_REFRESH_SECONDS, self._refresh_state
            )

    def _refresh_state(self) -> None:
        self._refresh = None
        self.metrics.set_profile_counts(dict(self.catalog.count_by_state()))
        # Until the initial sync is done the node reports only that it is not synced yet:
        # publishing thousands of intermediate states would cost writes and tell nobody more.
        if self.synced:
            for callback in self.on_state_change:
                callback()


def plain(value: Any) -> Any:
    """kopf hands out mapping views; validation wants plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
