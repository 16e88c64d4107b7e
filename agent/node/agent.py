"""The node agent, wired from its parts in one place: `NodeAgent(...)`, used by the entry point,
the tests and the benchmarks alike.

The intake marks keys dirty, the profile worker fills the catalog, the syncer makes the disk
match, the drift watcher hears the host, pod pins protect files in use, the resync compares with
the API, readiness says when every valid profile is on disk. The watches only record events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.api.keys import ProfileKey
from agent.node.catalog import ProfileCatalog
from agent.node.compile_retry import CompileRetries
from agent.node.drift import CHECK_SECONDS, DriftWatcher
from agent.node.lanes import ValidationLanes
from agent.node.metrics import Metrics
from agent.node.readiness import Readiness, StatusWriter
from agent.node.recordings import Recordings
from agent.node.resync import DEFAULT_RESYNC_SECONDS, PodPins, PodRefs, Resync
from agent.node.store import ProfileStore
from agent.node.syncer import STALL_SECONDS, Syncer
from agent.node.validator import Validator
from agent.node.warning_events import WarningEvents
from agent.node.worker import Intake, ObjectVersion, ProfileWorker
from agent.runtime.events import EventSink
from agent.runtime.supervisor import Supervisor
from agent.validation.validate import CompileFn


class NodeAgent:
    """This node's agent: its parts, and the two entry points for watch events."""

    def __init__(
        self,
        *,
        node_name: str,
        architectures: Sequence[str],
        catalog: ProfileCatalog,
        store: ProfileStore,
        metrics: Metrics,
        compile_profile: CompileFn | None,
        events: EventSink,
        list_profiles: Callable[[], dict[ProfileKey, ObjectVersion]],
        get_profile: Callable[[ProfileKey], Mapping[str, Any] | None],
        list_pods: Callable[[], PodRefs],
        status: StatusWriter,
        on_ready: Callable[[], None] = lambda: None,
        lanes: ValidationLanes | None = None,
        resync_seconds: float = DEFAULT_RESYNC_SECONDS,
        stall_seconds: float = STALL_SECONDS,
        drift_check_seconds: float = CHECK_SECONDS,
        recordings: Recordings | None = None,
    ) -> None:
        """Reads the API through the three callables (each bounded by a request timeout),
        tells `status` when this node's report may have changed, and calls `on_ready` the first
        time every valid profile is on disk (the startup taint comes off)."""
        # Set by every part that may change what readiness, metrics and the node report show.
        changed = asyncio.Event()
        self.node_name = node_name
        self.catalog = catalog
        self.recordings = recordings
        self.intake = Intake()
        self.pods = PodPins()
        self.validation_lanes = lanes or ValidationLanes()
        self.compile_retries = CompileRetries(self.intake.revalidate)
        warnings = WarningEvents(events, catalog, metrics)
        self.syncer = Syncer(
            catalog,
            store,
            metrics,
            in_use=self.pods.in_use,
            on_failure=warnings.write_failed,
            on_change=changed.set,
            stall_seconds=stall_seconds,
        )
        self.drift = DriftWatcher(
            store,
            self.syncer.enqueue,
            self.syncer.check_all,
            on_status_change=changed.set,
            check_seconds=drift_check_seconds,
        )
        self.resync = Resync(
            intake=self.intake,
            pods=self.pods,
            list_profiles=list_profiles,
            list_pods=list_pods,
            catalog=catalog,
            syncer=self.syncer,
            store=store,
            changed=changed.set,
            warnings=warnings,
            metrics=metrics,
            period=resync_seconds,
        )
        self.profiles = ProfileWorker(
            intake=self.intake,
            validator=Validator(
                catalog,
                architectures,
                compile_profile,
                self.validation_lanes,
                # A key that cannot name a file is never read (it comes back Invalid).
                on_disk=lambda key: store.read(key.namespace, key.name) if key.is_valid else None,
            ),
            catalog=catalog,
            get_profile=get_profile,
            retries=self.compile_retries,
            syncer=self.syncer,
            warnings=warnings,
            changed=changed.set,
            saw=self.resync.saw,
            failed=self.resync.handling_failed,
        )
        self.readiness = Readiness(
            catalog=catalog,
            retries=self.compile_retries,
            disk_problem=lambda: self.drift.unavailable,
            metrics=metrics,
            changed=changed,
            status=status,
            on_ready=on_ready,
        )

    def on_profile_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event for a SeccompProfile (type None: an item of a listing)."""
        self.intake.deliver(event_type, body)
        if event_type is None:
            self.resync.relisted()

    def on_pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """A pod on this node changed: track which profiles it pins (in-use protection)."""
        for key in self.pods.on_event(event_type, pod):
            self.syncer.enqueue(key)  # a deleted profile may now be removable, or must stay
        if self.recordings is not None:
            self.recordings.on_pod_event(event_type, pod)  # a recording cut short?

    def event_handling_failed(self, component: str) -> None:
        """Call from an `except` block: an event was lost to a bug or a transient fault."""
        self.resync.handling_failed(component)

    def supervise(self, supervisor: Supervisor) -> None:
        """Every long-lived part, restarted on failure; /healthz fails for a part that keeps
        failing or is stuck, so the kubelet restarts the pod instead of it staying broken."""
        supervisor.add("profiles", self.profiles.run)
        supervisor.add("syncer", self.syncer.run, liveness=self.syncer.stalled)
        supervisor.add("initial-sync", self.resync.initial, oneshot=True)
        supervisor.add("drift-watcher", self.drift.run, liveness=lambda: self.drift.needs_restart)
        supervisor.add("resync", self.resync.run)
        supervisor.add("readiness", self.readiness.run)
        if self.recordings is not None:
            supervisor.add("recording-profiles", self.recordings.run)
