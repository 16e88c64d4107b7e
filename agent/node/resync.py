"""The listings: the initial sync, the periodic resync, and which profiles this node's pods pin.

The resync lists names and versions only; a key listed with a version not seen here, or known
here but not listed, is marked to be read from the API, unless an event touched it since the
listing began: a listing never overrules a later event. Pods are merged the same way. A pinned
profile's file stays while a pod may start a container; until the first pod listing, any may.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from agent.api.keys import ProfileKey
from agent.api.pod_refs import profiles_used_by
from agent.node.catalog import ProfileCatalog
from agent.node.metrics import Metrics
from agent.node.store import Store
from agent.node.syncer import Syncer
from agent.node.warning_events import WarningEvents
from agent.node.work_queue import Touches
from agent.node.worker import Intake, ObjectVersion
from agent.runtime.waiting import event_within

# Level-triggered safety net: every few minutes compare with the API and the disk, whatever the
# event streams said. Jittered, so a fleet of agents restarted together does not list together.
DEFAULT_RESYNC_SECONDS: Final = 300.0
RESYNC_JITTER: Final = 0.1
RELIST_DEBOUNCE_SECONDS: Final = 1.0
RELIST_WHILE_WAITING_SECONDS: Final = 5.0
AFTER_FAILURE_SECONDS: Final = 5.0

log = logging.getLogger(__name__)
T = TypeVar("T")


PodRefs = dict[str, frozenset[ProfileKey]]
"""pod uid -> the profiles that pod uses (only pods that use any)."""


class PodPins:
    def __init__(self) -> None:
        self._refs: PodRefs = {}
        self._listed = False
        self.touches: Touches[str] = Touches()

    def on_event(self, event_type: str | None, pod: Mapping[str, Any]) -> frozenset[ProfileKey]:
        """One watch event; returns the profiles whose pinning changed."""
        uid = str(pod.get("metadata", {}).get("uid", ""))
        self.touches.touch(uid)
        return self._set(uid, frozenset() if event_type == "DELETED" else profiles_used_by(pod))

    def merge(self, listed: PodRefs, touched: set[str]) -> set[ProfileKey]:
        """Take a listing as the truth, except for pods in `touched`; returns the profiles whose
        pinning changed."""
        changed: set[ProfileKey] = set()
        for uid in (set(self._refs) | set(listed)) - touched:
            changed |= self._set(uid, listed.get(uid, frozenset()))
        self._listed = True
        return changed

    def in_use(self, key: ProfileKey) -> bool:
        return not self._listed or any(key in refs for refs in self._refs.values())

    def pinned(self) -> set[ProfileKey]:
        return {key for refs in self._refs.values() for key in refs}

    def _set(self, uid: str, refs: frozenset[ProfileKey]) -> frozenset[ProfileKey]:
        before = self._refs.get(uid, frozenset())
        if refs:
            self._refs[uid] = refs
        else:
            self._refs.pop(uid, None)
        return before ^ refs


@dataclass(kw_only=True)
class Resync:
    """Supervised twice: `initial()` once, `run()` for the periodic resync."""

    intake: Intake
    pods: PodPins
    list_profiles: Callable[[], dict[ProfileKey, ObjectVersion]]
    list_pods: Callable[[], PodRefs]
    catalog: ProfileCatalog
    syncer: Syncer
    store: Store
    changed: Callable[[], None]
    warnings: WarningEvents
    metrics: Metrics
    period: float = DEFAULT_RESYNC_SECONDS
    count: int = field(default=0, init=False)
    # Keys whose object is in the catalog or known gone; kept only until the initial sync.
    _seen: set[ProfileKey] = field(default_factory=set, init=False)
    # Listed by the initial sync and not seen yet: it waits until this is empty.
    _waiting_for: set[ProfileKey] = field(default_factory=set, init=False)
    _now: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _due: bool = field(default=False, init=False)
    _relist: asyncio.TimerHandle | None = field(default=None, init=False)
    _after_failure: asyncio.TimerHandle | None = field(default=None, init=False)

    def saw(self, key: ProfileKey) -> None:
        """The profile worker put `key`'s object into the catalog, or found it gone."""
        if not self.catalog.complete:
            self._seen.add(key)
            self._waiting_for.discard(key)

    def request(self) -> None:
        """Resync at once instead of at the next period."""
        self._now.set()

    def relisted(self) -> None:
        """The watch listed again (410 Gone, an API server restart): a DELETED event may have
        been lost in between, so resync once its listing is through."""
        if self.catalog.complete and self._relist is None:
            self._relist = asyncio.get_running_loop().call_later(
                RELIST_DEBOUNCE_SECONDS, self._watch_restarted
            )

    def handling_failed(self, component: str, what: str = "an event") -> None:
        """Call from an `except` block: an event was lost to a bug or a transient fault."""
        log.exception(f"could not handle {what}; resyncing soon", extra={"component": component})
        self.metrics.process.component_failed(component)
        if self._after_failure is None:
            self._after_failure = asyncio.get_running_loop().call_later(
                AFTER_FAILURE_SECONDS, self._resync_after_failure
            )

    async def run(self) -> None:
        """Supervised: a periodic, jittered, level-triggered comparison with the API and disk."""
        while True:
            # Restarted by the supervisor after a failed resync, the due one runs at once.
            if not self._due:
                delay = self.period * random.uniform(1 - RESYNC_JITTER, 1 + RESYNC_JITTER)
                await event_within(self._now, delay)
                self._now.clear()
                self._due = True
            if self.catalog.complete:
                await self.once()
            self._due = False

    async def once(self) -> None:
        """Repair whatever the event streams missed: profiles created, changed or deleted
        unseen, pods gone without a DELETE event, and files changed on disk unnoticed.

        Cheap: the listing carries only names and versions; the profile worker reads an object
        only when its version differs from the last one seen. Raises when the API cannot be
        listed (the supervisor retries with backoff).
        """
        started = time.monotonic()
        with self.intake.touches.since() as touched, self.pods.touches.since() as pods:
            listed = await asyncio.to_thread(self.list_profiles)
            versions = self.intake.versions
            stale = {key for key, version in listed.items() if versions.get(key) != version}
            gone = versions.keys() - listed.keys()
            for key in (stale | gone) - touched:
                self.intake.fetch(key)
            self._merge_pods(await asyncio.to_thread(self.list_pods), pods)
        # Compare every file with what it should hold: repairs drift inotify did not report.
        self.syncer.check_all()
        self.count += 1
        self.metrics.last_full_sync.set(time.time())
        self.metrics.resync_duration.observe(time.monotonic() - started)
        if stale or gone:
            log.info("resync read missed changes", extra={"changed": len(stale), "gone": len(gone)})

    async def initial(self) -> None:
        """Write every profile that exists now, then remove what no object or pod wants.

        Garbage collection must never work from a partial view: it waits until the watch has
        delivered every object of a complete listing (or its deletion), and until this node's
        pods are known, so a deleted profile that a pod still uses survives a restart.
        """
        with self.pods.touches.since() as pods:
            listed = set(await self._retrying(self.list_profiles, "list SeccompProfiles"))
            self._waiting_for = listed - self._seen
            progress_at, waiting = time.monotonic(), len(self._waiting_for)
            while self._waiting_for:
                await asyncio.sleep(0.02)
                if len(self._waiting_for) != waiting:
                    progress_at, waiting = time.monotonic(), len(self._waiting_for)
                elif time.monotonic() - progress_at > RELIST_WHILE_WAITING_SECONDS:
                    # Nothing listed has arrived for a while: something listed was deleted
                    # before the watch saw it. List again. (Not while listed objects still
                    # arrive: a cold start with thousands would list them all every few seconds.)
                    listed = set(await self._retrying(self.list_profiles, "list SeccompProfiles"))
                    self._waiting_for = listed - self._seen
                    progress_at = time.monotonic()
            self._merge_pods(await self._retrying(self.list_pods, "list this node's pods"), pods)
        await self.syncer.wait_idle()
        # Every existing object, valid or not (an invalid one keeps its last valid file), and
        # every profile a pod on this node still uses (in-use protection).
        wanted = set(self.catalog.records) | self.pods.pinned()
        result = await asyncio.to_thread(self.store.collect_garbage, wanted)
        for path in result.removed_profiles:
            self.catalog.mark_removed(ProfileKey(path.parent.name, path.stem))
        self.catalog.complete = True
        self._seen.clear()
        self._waiting_for.clear()
        self.warnings.listing_complete()
        self.metrics.last_full_sync.set(time.time())
        self.changed()
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

    def __len__(self) -> int:
        """Keys held (only during the initial sync)."""
        return len(self._seen)

    def _merge_pods(self, listed: PodRefs, touched: set[str]) -> None:
        for key in self.pods.merge(listed, touched):
            self.syncer.enqueue(key)  # a deleted profile may now be removable, or must stay

    async def _retrying(self, call: Callable[[], T], what: str) -> T:
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(call)
            except Exception as exc:  # the API may not be reachable yet: keep trying
                log.warning(f"could not {what}; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _watch_restarted(self) -> None:
        self._relist = None
        self.metrics.watch_restarts.inc()
        self.request()

    def _resync_after_failure(self) -> None:
        self._after_failure = None
        self.request()
