"""The agent's behaviour on one node: turn profile events into desired state and disk work.

Handlers in `agent.node.kopf_handlers` call in here; this module decides, the syncer acts on disk,
and the only API calls go through the callables handed in (events, listings).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from agent.api.keys import ProfileKey
from agent.api.node_report import build_status
from agent.api.pod_refs import profiles_used_by
from agent.node.catalog import ProfileCatalog, ProfileRecord, catalog_lookup, kept
from agent.node.compile_retry import CompileRetries
from agent.node.lanes import ValidationLanes
from agent.node.metrics import Metrics
from agent.node.store import ProfileStore, StoreError
from agent.node.syncer import Syncer
from agent.profiles.base_graph import BaseGraph
from agent.profiles.base_resolution import resolve_base
from agent.profiles.compose import BASE_NOT_FOUND, ResolvedBase
from agent.profiles.render import render
from agent.runtime.waiting import event_within
from agent.seccomp.compiler import TransientCompileError
from agent.validation.size import LARGE_SPEC_BYTES, json_size, size_findings
from agent.validation.validate import CompileFn, validate_resource

log = logging.getLogger(__name__)
T = TypeVar("T")

RELIST_DEBOUNCE_SECONDS = 1.0
RELIST_WHILE_WAITING_SECONDS = 5.0
STATE_REFRESH_SECONDS = 0.25
# Level-triggered safety net: every few minutes compare with the API and the disk, whatever the
# event streams said. Jittered, so a fleet of agents restarted together does not list together.
DEFAULT_RESYNC_SECONDS = 300.0
RESYNC_JITTER = 0.1
EVENT_FAILURE_RESYNC_SECONDS = 5.0


class ObjectVersion(NamedTuple):
    """Enough of a listed object to tell whether the agent has seen its latest version."""

    uid: str
    resource_version: str


PodRefs = dict[str, frozenset[ProfileKey]]
"""pod uid -> the profiles that pod uses (only pods that use any)."""
LARGE_VALIDATIONS_AT_ONCE = 2


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
    # The three reads of the API the agent needs (each bounded by a request timeout).
    list_profiles: Callable[[], dict[ProfileKey, ObjectVersion]]
    get_profile: Callable[[ProfileKey], Mapping[str, Any] | None]
    list_pods: Callable[[], PodRefs]
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    # Why the managed directory cannot be used right now (from the drift watcher), or None.
    disk_problem: Callable[[], StoreError | None] = lambda: None
    # Called once, the first time every valid profile is on disk (the startup taint comes off).
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    # Called whenever this node's per-profile state may have changed (the node-status writer).
    on_state_change: list[Callable[[], None]] = field(default_factory=list)
    # Cheap profiles validate on threads of their own, never queued behind expensive ones.
    validation_lanes: ValidationLanes = field(default_factory=ValidationLanes)
    syncer: Syncer = field(init=False)
    compile_retries: CompileRetries = field(init=False)
    synced: bool = field(default=False, init=False)
    was_ready: bool = field(default=False, init=False)
    resyncs: int = field(default=0, init=False)
    # Keys delivered by the watch; only needed (and only kept) until the initial sync is done.
    _seen: set[ProfileKey] = field(default_factory=set, init=False)
    _versions: dict[ProfileKey, ObjectVersion] = field(default_factory=dict, init=False)
    # Every event gets a number; a listing taken at number N cannot overrule a later event.
    _seq: int = field(default=0, init=False)
    _profile_seq: dict[ProfileKey, int] = field(default_factory=dict, init=False)
    _pod_seq: dict[str, int] = field(default_factory=dict, init=False)
    _resync_now: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _resync_due: bool = field(default=False, init=False)
    _relist: asyncio.TimerHandle | None = field(default=None, init=False)
    _retry_resync: asyncio.TimerHandle | None = field(default=None, init=False)
    _refresh: asyncio.TimerHandle | None = field(default=None, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _reported_failures: dict[ProfileKey, str] = field(default_factory=dict, init=False)
    _pod_refs: PodRefs = field(default_factory=dict, init=False)
    # Large specs are validated a few at a time, so memory does not grow with a burst of them.
    _large_validations: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(LARGE_VALIDATIONS_AT_ONCE), init=False
    )
    # Base profiles: who is built on whom, and a counter per key so that only the newest
    # validation of a profile is kept when its own edit and its base's edit race.
    bases: BaseGraph = field(default_factory=BaseGraph, init=False)
    _validations: dict[ProfileKey, int] = field(default_factory=dict, init=False)
    # Children seen before their base during the initial listing: reported only if the base is
    # still missing once the listing is complete (listing order is arbitrary).
    _missing_base_at_start: set[ProfileKey] = field(default_factory=set, init=False)

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
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Readiness means every valid profile is on this disk: None then, else why not."""
        if not self.synced:
            return "initial sync not done"
        problem = self.disk_problem()
        if problem is not None:
            return f"managed directory unusable ({problem.reason}): {problem}"
        waiting = self.compile_retries.pending()
        if waiting:
            return (
                f"{len(waiting)} profile(s) wait for a compile retry (the compiler failed for a "
                f"reason unrelated to them), e.g. {min(waiting)}"
            )
        failing = self.syncer.errors
        if failing:
            reasons = Counter(exc.reason for exc in failing.values())
            summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
            key, exc = min(failing.items())
            return f"{len(failing)} profile(s) cannot be synced ({summary}); {key}: {exc}"
        return None

    async def on_profile_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event for a SeccompProfile (type None: from a listing)."""
        received = time.monotonic()
        meta = body.get("metadata", {})
        key = ProfileKey(str(meta.get("namespace")), str(meta.get("name")))
        self.compile_retries.supersede(key)  # this event is newer than any pending retry
        self._seq += 1
        self._profile_seq[key] = self._seq
        if event_type is None and self.synced:
            self._schedule_relist_check()
        if event_type == "DELETED":
            self._forget(key)
            self.syncer.enqueue(key, received)
            self._profile_changed(key)
            self._mark_seen(key)
            await self._rerender_dependents(key)
            return
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        self._versions[key] = ObjectVersion(uid, str(meta.get("resourceVersion", "")))
        known = self.catalog.records.get(key)
        if known is None or known.uid != uid or known.generation != generation:
            # A name that cannot be a file name (stored under an older, looser CRD) comes back
            # Invalid from validation; the syncer never turns such a key into a path.
            try:
                validated = await self._validate_latest(key, uid, generation, body)
            except TransientCompileError as exc:
                # No verdict on the profile: cache nothing, blame nobody, try again later.
                self.compile_retries.failed(key, body, str(exc))
                return
            self.compile_retries.succeeded(key)
            latest = self.catalog.records.get(key)
            version = self._versions.get(key)
            if (version is None or version.uid != uid) or (
                latest is not None and latest.uid == uid and latest.generation > generation
            ):
                return  # a retry raced a newer event or a deletion: the newer one stands
            # None: its base changed meanwhile and a newer validation of it already landed.
            if validated is not None:
                record = self.catalog.accept(validated)
                if not record.valid and not self._base_may_still_come(record):
                    self._report_invalid(record)
                self._profile_changed(key)
                await self._rerender_dependents(key)
        self.syncer.enqueue(key, received)
        # Seen only now: the initial sync's garbage collection relies on the record being there.
        self._mark_seen(key)

    def on_pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """A pod on this node changed: track which profiles it pins (in-use protection)."""
        uid = str(pod.get("metadata", {}).get("uid", ""))
        self._seq += 1
        self._pod_seq[uid] = self._seq
        after = frozenset() if event_type == "DELETED" else profiles_used_by(pod)
        self._set_pod_refs(uid, after)

    def in_use(self, key: ProfileKey) -> bool:
        # Until this node's pods are known, any file may be in use: remove nothing.
        return not self.synced or any(key in refs for refs in self._pod_refs.values())

    def node_status(self) -> dict[str, Any]:
        failures = {key: (exc.reason, str(exc)) for key, exc in self.syncer.errors.items()}
        return build_status(self.node_name, self.synced, self.catalog.statuses(failures))

    def on_disk_changed(self, key: ProfileKey) -> None:
        """A managed file changed on the host: let the syncer compare and repair it."""
        self.syncer.enqueue(key, time.monotonic())

    def on_disk_replaced(self) -> None:
        """The managed directory was recreated: every file must be written again."""
        for key in self.catalog.known_keys():
            self.syncer.enqueue(key, time.monotonic())
        self._state_changed()

    def event_handling_failed(self, component: str) -> None:
        """Call from an `except` block: an event was lost to a bug or a transient fault."""
        log.exception("could not handle an event; resyncing soon", extra={"component": component})
        self.metrics.process.component_failed(component)
        if self._retry_resync is None:
            self._retry_resync = asyncio.get_running_loop().call_later(
                EVENT_FAILURE_RESYNC_SECONDS, self._resync_after_failure
            )

    def _resync_after_failure(self) -> None:
        self._retry_resync = None
        self.request_resync()

    def request_resync(self) -> None:
        """Resync at once (after a watch restart) instead of at the next period."""
        self._resync_now.set()

    async def resync_forever(self) -> None:
        """Supervised: a periodic, jittered, level-triggered comparison with the API and disk."""
        while True:
            # Restarted by the supervisor after a failed resync, the due one runs at once.
            if not self._resync_due:
                delay = self.resync_seconds * random.uniform(1 - RESYNC_JITTER, 1 + RESYNC_JITTER)
                await event_within(self._resync_now, delay)
                self._resync_now.clear()
                self._resync_due = True
            if self.synced:
                await self.resync()
            self._resync_due = False

    async def resync(self) -> None:
        """Repair whatever the event streams missed: profiles created, changed or deleted
        unseen, pods gone without a DELETE event, and files changed on disk unnoticed.

        Cheap: the listing carries only names and versions; objects are fetched one by one
        only when their version differs from the last one seen. Raises when the API cannot be
        read (the supervisor retries with backoff).
        """
        started = time.monotonic()
        snapshot = self._seq
        listed = await asyncio.to_thread(self.list_profiles)
        fetched = 0
        for key, version in listed.items():
            if self._versions.get(key) == version or self._profile_seq.get(key, 0) > snapshot:
                continue
            body = await asyncio.to_thread(self.get_profile, key)
            if body is not None and self._profile_seq.get(key, 0) <= snapshot:
                fetched += 1
                await self.on_profile_event("RESYNC", body)
        gone = [
            key
            for key in (set(self.catalog.records) | self.compile_retries.pending()) - set(listed)
            if self._profile_seq.get(key, 0) <= snapshot
        ]
        for key in gone:
            log.info("profile deleted while the watch missed it", extra={"profile": str(key)})
            self._forget(key)
            self._profile_changed(key)
            await self._rerender_dependents(key)
        self._merge_pods(await asyncio.to_thread(self.list_pods), snapshot)
        # Compare every file with what it should hold: repairs drift inotify did not report.
        for key in self.catalog.known_keys() | set(gone):
            self.syncer.enqueue(key)
        self._profile_seq = {k: n for k, n in self._profile_seq.items() if n > snapshot}
        self.resyncs += 1
        self.metrics.last_full_sync.set(time.time())
        self.metrics.resync_duration.observe(time.monotonic() - started)
        if fetched or gone:
            log.info("resync repaired missed events", extra={"fetched": fetched, "gone": len(gone)})

    async def initial_sync(self) -> None:
        """Write every profile that exists now, then remove what no object or pod wants.

        Garbage collection must never work from a partial view: it waits until the watch has
        delivered every object of a complete listing (or its deletion), and until this node's
        pods are known, so a deleted profile that a pod still uses survives a restart.
        """
        snapshot = self._seq
        listed = set(await self._retrying(self.list_profiles, "list SeccompProfiles"))
        listed_at = time.monotonic()
        while not listed <= self._seen:
            await asyncio.sleep(0.02)
            if time.monotonic() - listed_at > RELIST_WHILE_WAITING_SECONDS:
                # Something listed was deleted before the watch saw it: list again.
                listed = set(await self._retrying(self.list_profiles, "list SeccompProfiles"))
                listed_at = time.monotonic()
        pods = await self._retrying(self.list_pods, "list this node's pods")
        self._merge_pods(pods, snapshot)
        await self.syncer.wait_idle()
        # Every existing object, valid or not (an invalid one keeps its last valid file), and
        # every profile a pod on this node still uses (in-use protection).
        wanted = set(self.catalog.records) | self._pods_pin()
        result = await asyncio.to_thread(self.store.collect_garbage, wanted)
        for path in result.removed_profiles:
            self.catalog.mark_removed(ProfileKey(path.parent.name, path.stem))
        self.synced = True
        self._seen.clear()
        for key in sorted(self._missing_base_at_start):
            record = self.catalog.records.get(key)
            if record is not None and not record.valid:
                self._report_invalid(record)
        self._missing_base_at_start.clear()
        self.metrics.last_full_sync.set(time.time())
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
        # After a watch restart a DELETED event may have been lost: the resync confirms.
        self._relist = None
        self.metrics.watch_restarts.inc()
        self.request_resync()

    def _mark_seen(self, key: ProfileKey) -> None:
        if not self.synced:
            self._seen.add(key)

    def _forget(self, key: ProfileKey) -> None:
        """The object is gone: drop everything kept for it (its file follows via the syncer)."""
        self.catalog.forget(key)
        self.bases.forget(key)
        self._versions.pop(key, None)
        self._reported_failures.pop(key, None)
        self.compile_retries.forget({key})
        self.syncer.forget(key)

    def _set_pod_refs(self, uid: str, refs: frozenset[ProfileKey]) -> None:
        before = self._pod_refs.get(uid, frozenset())
        if refs:
            self._pod_refs[uid] = refs
        else:
            self._pod_refs.pop(uid, None)
        for key in before ^ refs:
            self.syncer.enqueue(key)  # a deleted profile may now be removable, or must stay

    def _merge_pods(self, listed: PodRefs, snapshot: int) -> None:
        """Take a listing of this node's pods as the truth, except where an event came later."""
        for uid in set(self._pod_refs) | set(listed):
            if self._pod_seq.get(uid, 0) <= snapshot:
                self._set_pod_refs(uid, listed.get(uid, frozenset()))
        self._pod_seq = {uid: n for uid, n in self._pod_seq.items() if n > snapshot}

    async def _retry_compile(self, key: ProfileKey, body: Mapping[str, Any]) -> None:
        await self.on_profile_event("MODIFIED", body)

    async def _validate_within_budget(
        self,
        key: ProfileKey,
        uid: str,
        generation: int,
        body: Mapping[str, Any],
        base: ResolvedBase | None = None,
    ) -> ProfileRecord:
        """Validate without letting object size drive memory, or one profile's cost delay
        another's: an oversize spec is refused by its size alone (nothing copied, modelled or
        checked), large ones take turns, and cheap ones compile in a lane of their own."""
        spec = body.get("spec")
        too_large = size_findings(spec)
        if too_large:
            return ProfileRecord(key, uid, generation, None, tuple(too_large))
        architectures = spec.get("architectures") if isinstance(spec, Mapping) else None

        # essentials() copies the spec: in the thread, not on the event loop.
        def validate() -> ProfileRecord:
            return self._validate(key, uid, generation, essentials(body), base)

        lanes = self.validation_lanes
        if base is not None and base.profile is not None:
            # What is compiled is the composition: about the base's size, not the child's.
            spec = base.profile.model_dump(mode="json", exclude_none=True)
            architectures = spec.get("architectures") or architectures
        arch_count = len(architectures or self.architectures)
        if json_size(spec, stop_after=LARGE_SPEC_BYTES) <= LARGE_SPEC_BYTES:
            return await lanes.run(spec, arch_count, validate)
        async with self._large_validations:
            return await lanes.run(spec, arch_count, validate)

    def _validate(
        self,
        key: ProfileKey,
        uid: str,
        generation: int,
        body: dict[str, Any],
        base: ResolvedBase | None = None,
    ) -> ProfileRecord:
        result = validate_resource(
            body,
            default_architectures=self.architectures,
            compile_profile=self.compile_profile,
            node_architectures=self.architectures,
            resolve_base=None if base is None else lambda _name: base,
        )
        report = result.report
        # With a base, report.profile is the flattened composition: the file and its hash.
        rendered = render(report.profile) if report.valid and report.profile else None
        # Keep only what status and Events show: a bad profile can have thousands of findings.
        return ProfileRecord(
            key,
            uid,
            generation,
            rendered,
            kept(report.errors),
            kept(report.warnings),
            result.base_chain,
        )

    async def _validate_latest(
        self, key: ProfileKey, uid: str, generation: int, body: Mapping[str, Any]
    ) -> ProfileRecord | None:
        """Validate with the current base; None when a newer validation of `key` started
        meanwhile (its own edit and its base's edit raced: the newer one is the truth).
        Raises `TransientCompileError` like the lanes do."""
        ticket = self._validations[key] = self._validations.get(key, 0) + 1
        base = self._resolve_base(key, body)
        record = await self._validate_within_budget(key, uid, generation, body, base)
        return record if self._validations.get(key) == ticket else None

    def _resolve_base(self, key: ProfileKey, body: Mapping[str, Any]) -> ResolvedBase | None:
        spec = body.get("spec")
        name = spec.get("baseProfileName") if isinstance(spec, Mapping) else None
        if not isinstance(name, str):
            self.bases.set(key, None, {})
            return None
        # Kept to validate the child again when its base changes (children only).
        self.bases.set(key, name, essentials(body))
        chain = self.bases.chain(key)
        lookup = catalog_lookup(self.catalog)
        return resolve_base(key, name, chain, lookup, self.architectures[0])

    def _spawn_rerender(self, key: ProfileKey) -> None:
        task = asyncio.create_task(self._rerender_dependents(key))
        self._tasks.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self._tasks.discard)

    def _base_may_still_come(self, record: ProfileRecord) -> bool:
        if self.synced or record.errors[0].reason != BASE_NOT_FOUND:
            return False
        self._missing_base_at_start.add(record.key)
        return True

    async def _rerender_dependents(self, key: ProfileKey) -> None:
        """`key` changed or went away: validate and render every profile built on it again,
        bases before their children, without touching the children's objects."""
        for child in self.bases.dependents(key):
            body, known = self.bases.body_of(child), self.catalog.records.get(child)
            if body is None:
                continue
            # A child with no record yet is being validated against the old base right now:
            # validate it again, so that the newer validation is the one that lands.
            meta = body.get("metadata", {})
            uid = known.uid if known else str(meta.get("uid", ""))
            generation = known.generation if known else int(meta.get("generation") or 0)
            try:
                validated = await self._validate_latest(child, uid, generation, dict(body))
            except TransientCompileError:
                # No verdict: try the whole fan-out again shortly (the children keep their files).
                log.warning(
                    "compile failed transiently; re-rendering again", extra={"base": str(key)}
                )
                asyncio.get_running_loop().call_later(
                    EVENT_FAILURE_RESYNC_SECONDS, self._spawn_rerender, key
                )
                return
            if validated is None:
                continue
            record = self.catalog.accept(validated)
            changed_errors = not record.valid and (known is None or record.errors != known.errors)
            if changed_errors and not self._base_may_still_come(record):
                self._report_invalid(record)
            if record != known:
                self._profile_changed(child)
                self.syncer.enqueue(child, time.monotonic())

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
        # One Event per profile and kind of fault (EROFS, ENOSPC...), not one per retry.
        version = self._versions.get(key)
        if self._reported_failures.get(key) == exc.reason or version is None:
            return
        self._reported_failures[key] = exc.reason
        self._spawn_thread(
            self.events.warn, key.namespace, key.name, version.uid, "WriteFailed", str(exc)
        )

    def _spawn_thread(self, func: Callable[..., None], *args: Any) -> None:
        task = asyncio.create_task(asyncio.to_thread(func, *args))
        self._tasks.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self._tasks.discard)

    def _pods_pin(self) -> set[ProfileKey]:
        return {key for refs in self._pod_refs.values() for key in refs}

    def _profile_changed(self, key: ProfileKey) -> None:
        self._state_changed()

    def _state_changed(self) -> None:
        # Coalesced: counting states walks every profile, and a cold start syncs thousands.
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().call_later(
                STATE_REFRESH_SECONDS, self._refresh_state
            )

    def refresh_state(self) -> None:
        """Recompute what readiness, metrics and the node report show (cheap, coalesced)."""
        self._state_changed()

    def _refresh_state(self) -> None:
        self._refresh = None
        failing = self.syncer.errors
        self.metrics.set_profile_counts(dict(self.catalog.count_by_state()))
        self.metrics.set_write_failures(Counter(exc.reason for exc in failing.values()))
        # A fault that cleared may be reported again if it comes back.
        for key in set(self._reported_failures) - set(failing):
            del self._reported_failures[key]
        ready = self.ready
        self.metrics.ready.set(1 if ready else 0)
        if ready and not self.was_ready:
            self.was_ready = True
            log.info("every valid profile is on disk: ready")
            for callback in self.on_ready:
                callback()
        # Until the initial sync is done the node reports only that it is not synced yet:
        # publishing thousands of intermediate states would cost writes and tell nobody more.
        if self.synced:
            for callback in self.on_state_change:
                callback()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background call failed", exc_info=task.exception())


def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object validation reads, as plain data: not status, annotations or
    managedFields, which can be as large as the spec and are of no use here."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta},
        "spec": plain(body.get("spec")),
    }


def plain(value: Any) -> Any:
    """kopf hands out mapping views; validation wants plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
