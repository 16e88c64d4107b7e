"""`seccomp-agent controller`: the one builder of a controller from its parts, and its runner.

Every replica watches profiles, node reports and unscheduled pods (a warm standby takes over
in one Lease period); only the replica holding the Lease writes profile status and releases
gated pods. Every long-lived part runs under the supervisor. The runner, the tests and the
benchmarks build a controller with `build_controller`; what it writes goes through
`ControllerIO` (the API, or fakes).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes import client

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import (
    API_GROUP,
    API_VERSION,
    KIND,
    NODE_STATUS_KIND,
    NODE_STATUS_PLURAL,
    PLURAL,
)
from agent.api.node_report import NodeReport, parse_status
from agent.api.recording import (
    RECORDING_KIND,
    RECORDING_PLURAL,
    NodeRecording,
    parse_node_recordings,
)
from agent.controller.aggregator import PARALLEL_WRITES as STATUS_WRITES
from agent.controller.aggregator import DirtyProfiles, ProfileStatuses, StatusAggregator
from agent.controller.fleet_publisher import ApiFleetConfigMap, FleetConfigMap, FleetPublisher
from agent.controller.gated_pods import GatedPod, gated_pod
from agent.controller.gates import PARALLEL_WRITES as RELEASE_WRITES
from agent.controller.gates import GateHandler, PodGates
from agent.controller.metrics import ControllerMetrics
from agent.controller.nodeless import NodelessReports
from agent.controller.pod_gates import COMPONENT, ApiPodGates
from agent.controller.policy_report import PolicyReporter, read_policies
from agent.controller.profile_status import ProfileView
from agent.controller.profile_statuses import ApiProfileStatuses
from agent.controller.profiles import ProfileViews
from agent.controller.recording_handler import (
    RecordingBoard,
    RecordingHandler,
    RecordingWrites,
    recording_entry,
)
from agent.controller.recording_writes import ApiRecordingWrites, RecordedRecordingWrites
from agent.controller.settings import ControllerSettings, build_controller_settings
from agent.controller.state import ClusterState
from agent.kube.client import api_client, api_unavailable, load_configuration
from agent.kube.events import EventRecorder
from agent.kube.leader import LeaderElector
from agent.kube.list_watch import ListWatch
from agent.kube.program import run_program
from agent.profiles.tenancy.compliance import PolicyContext
from agent.runtime.events import EventSink, RecordedEvents
from agent.runtime.health import probe_server
from agent.runtime.http_server import HttpServer
from agent.runtime.supervisor import Supervisor

log = logging.getLogger("agent.controller")

# Requests this process can have open to the API server at once: one per watch (each holds its
# connection for as long as it streams), the Lease, the status writes, the gate releases, the
# tenant policies' read, the fleet digests' write and the recordings' writes (one at a time).
# urllib3 keeps at most this many connections to a host; above it, it opens one more for each
# request and closes it after (a TCP and TLS handshake each time), and the client's own default
# is five per CPU the process sees: 10 on two cores, 320 on a 64-core node, neither of them ours
# to pick.
WATCHES: Final = 5  # `_watches`: profiles, node reports, unscheduled pods, Nodes, recordings
CONNECTIONS: Final = WATCHES + 1 + STATUS_WRITES + RELEASE_WRITES + 1 + 1 + 1


@dataclass(frozen=True)
class ControllerIO:
    """What the controller writes, and the policies it reads: each a narrow interface whose
    real implementation and in-memory fake sit side by side in its module (the policies: a
    function; `PolicyContext` itself is the fake that reads none)."""

    statuses: ProfileStatuses
    pods: PodGates
    policies: Callable[[], PolicyContext]  # read: the tenant policies and namespace labels
    profile_events: EventSink  # policy violations, on the profile
    report_events: EventSink  # a node report without a Node, on the SeccompNodeStatus
    fleet: FleetConfigMap  # the fleet digests the agents match their reports against
    # In-cluster recording: finalizer, status and results; Events on the recording.
    recordings: RecordingWrites = field(default_factory=RecordedRecordingWrites)
    recording_events: EventSink = field(default_factory=RecordedEvents)


def api_io(api: client.ApiClient, identity: str, namespace: str) -> ControllerIO:
    """`namespace`: the controller's own (its Lease's), where it publishes the fleet digests."""
    return ControllerIO(
        statuses=ApiProfileStatuses(api),
        pods=ApiPodGates(api, identity),
        policies=functools.partial(read_policies, api),
        profile_events=EventRecorder(
            api,
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind=KIND,
            instance=identity,
            component=COMPONENT,
            role="controller",
        ),
        report_events=EventRecorder(
            api,
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind=NODE_STATUS_KIND,
            instance=identity,
            component=COMPONENT,
            role="controller",
        ),
        fleet=ApiFleetConfigMap(api, namespace),
        recordings=ApiRecordingWrites(api),
        recording_events=EventRecorder(
            api,
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind=RECORDING_KIND,
            instance=identity,
            component=COMPONENT,
        ),
    )


@dataclass(frozen=True)
class Controller:
    """One controller, built and not started: `await controller.supervisor.run()` runs it."""

    state: ClusterState
    aggregator: StatusAggregator
    gates: GateHandler
    policies: PolicyReporter
    metrics: ControllerMetrics
    supervisor: Supervisor
    recordings: RecordingHandler


def build_controller(
    settings: ControllerSettings, api: client.ApiClient, io: ControllerIO
) -> Controller:
    """Every part, each handed what it needs at construction; `api` serves the watches and
    the Lease, `io` everything else."""
    metrics = ControllerMetrics()
    # What the state's changes wake, made before the state: the status aggregator's dirty
    # profiles (the gate handler's waiting counts and the policy report mark them too), and
    # the gate handler's wake-up.
    dirty = DirtyProfiles()
    gates_wake = asyncio.Event()
    fleet_wake = asyncio.Event()
    synced = _SyncedOnce(lambda: state)
    # The recordings' status says on which nodes a recorded pod may start: nodes come and go
    # through the state too.
    recordings_wake = asyncio.Event()
    state = ClusterState(
        listeners=(
            dirty.mark,
            lambda _: gates_wake.set(),
            lambda _: fleet_wake.set(),
            synced,
            lambda _: recordings_wake.set(),
        )
    )

    def recordings_changed() -> None:
        # A recording's readiness decides where its gated pods may start, too.
        recordings_wake.set()
        gates_wake.set()

    board = RecordingBoard(on_change=recordings_changed)
    policies = PolicyReporter(
        io.policies, io.profile_events, metrics, on_change=functools.partial(dirty.mark, None)
    )
    gates = GateHandler(
        state,
        gates_wake,
        io.pods,
        metrics,
        settings.grace_seconds,
        on_waiting_change=dirty.mark,
        recordings=board.readiness,
    )
    recordings = RecordingHandler(
        board,
        recordings_wake,
        io.recordings,
        io.recording_events,
        nodes=lambda: frozenset(state.counted_reports()),
    )
    aggregator = StatusAggregator(
        state, dirty, io.statuses, metrics, waiting=gates.waiting_counts, report=policies.report
    )
    nodeless = NodelessReports(state, io.report_events, metrics)
    fleet = FleetPublisher(state, io.fleet, fleet_wake)

    async def lead() -> None:
        # Both or neither: if one fails, the group cancels the other and the elector steps down.
        async with asyncio.TaskGroup() as group:
            group.create_task(aggregator.run(), name="aggregator")
            group.create_task(gates.run(), name="gates")
            group.create_task(policies.run(), name="tenant-policies")
            group.create_task(nodeless.run(), name="nodeless-reports")
            group.create_task(fleet.run(), name="fleet-digests")
            group.create_task(recordings.run(), name="recordings")

    elector = LeaderElector(
        api,
        settings.lease_namespace,
        settings.lease_name,
        settings.identity,
        lead,
        on_change=lambda leading: metrics.leader.set(1 if leading else 0),
        lease_seconds=settings.lease_seconds,
        renew_deadline=settings.renew_deadline,
        retry_seconds=settings.retry_seconds,
    )
    supervisor = Supervisor(
        on_failure=metrics.process.component_failed,
        # An unreachable API is waited out, never held against liveness (as in the agent).
        expected=api_unavailable,
    )
    for watch in _watches(api, state, board):
        supervisor.add(f"watch-{watch.name}", watch.run)
    supervisor.add("elector", elector.run)
    http = probe_server(
        metrics.registry,
        lambda: None if state.synced else "the watches have not listed everything yet",
        supervisor.problems,
    )
    supervisor.add("http", functools.partial(_serve_http, http, settings))
    metrics.process.watch_components(supervisor.components)
    return Controller(state, aggregator, gates, policies, metrics, supervisor, recordings)


class _SyncedOnce:
    """Says once when every listing is in (start-up time, read off the log by operators and
    the fleet bench): until then the controller decides nothing."""

    def __init__(self, state: Callable[[], ClusterState]) -> None:
        self._state = state
        self._said = False

    def __call__(self, _: object) -> None:
        state = self._state()
        if self._said or not state.synced:
            return
        self._said = True
        log.info(
            "every listing is in",
            extra={
                "profiles": len(state.profiles),
                "node_reports": len(state.reports),
                "gated_pods": len(state.pods),
            },
        )


def run_controller(args: argparse.Namespace) -> int:
    return run_program(lambda: build_controller_settings(args), _main)


async def _main(settings: ControllerSettings) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await serve(settings)
    except asyncio.CancelledError:
        log.info("seccomp-sync controller stopped")


async def serve(settings: ControllerSettings) -> None:
    configuration = load_configuration(settings.kubeconfig)
    # urllib3 would silently retry a timed-out request three times, turning a 5 s request
    # timeout into 20 s: longer than the Lease. Our own loops retry, with backoff and a log line.
    configuration.retries = 0
    configuration.connection_pool_maxsize = CONNECTIONS
    api = api_client(configuration)
    controller = build_controller(
        settings, api, api_io(api, settings.identity, settings.lease_namespace)
    )
    log.info(
        "seccomp-sync controller starting",
        extra={
            "identity": settings.identity,
            "lease": f"{settings.lease_namespace}/{settings.lease_name}",
            "grace_seconds": settings.grace_seconds,
        },
    )
    try:
        await controller.supervisor.run()
    finally:
        api.close()  # type: ignore[no-untyped-call]


async def _serve_http(http: HttpServer, settings: ControllerSettings) -> None:
    port = await http.start(settings.http_host, settings.http_port)
    log.info("serving /healthz, /readyz, /metrics", extra={"http_port": port})
    try:
        await asyncio.Event().wait()
    finally:
        await http.stop()


def _watches(api: client.ApiClient, state: ClusterState, board: RecordingBoard) -> list[ListWatch]:
    custom = client.CustomObjectsApi(api)
    profiles = _ProfileFeed(state)
    reports = _ReportFeed(state, profiles, board)
    return [
        ListWatch(
            "profiles",
            functools.partial(custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL),
            on_list=profiles.listed,
            on_event=profiles.event,
        ),
        ListWatch(
            "node-statuses",
            functools.partial(
                custom.list_cluster_custom_object, API_GROUP, API_VERSION, NODE_STATUS_PLURAL
            ),
            on_list=reports.listed,
            on_event=reports.event,
            transform=_report,
        ),
        ListWatch(
            "nodes",
            client.CoreV1Api(api).list_node,
            # Names only: which Nodes exist is all the controller asks of them, and a Node's
            # full body (images, conditions) is kilobytes, rewritten by its kubelet.
            metadata_only=True,
            on_list=state.replace_nodes,
            on_event=lambda kind, name: (
                state.drop_node(name) if kind == "DELETED" else state.put_node(name)
            ),
            transform=_name,
        ),
        ListWatch(
            "pods",
            client.CoreV1Api(api).list_pod_for_all_namespaces,
            # Unscheduled pods only: gated pods are never bound, and this keeps the controller's
            # memory with the pods that wait, not with every pod in the cluster.
            field_selector="spec.nodeName=",
            on_list=lambda items: state.replace_pods(p for _, p in items if p is not None),
            on_event=lambda kind, item: _pod_event(state, kind, item),
            transform=_pod,
        ),
        ListWatch(
            "recordings",
            functools.partial(
                custom.list_cluster_custom_object, API_GROUP, API_VERSION, RECORDING_PLURAL
            ),
            on_list=board.replace_recordings,
            on_event=lambda kind, entry: (
                board.drop_recording(entry[0].key)
                if kind == "DELETED"
                else board.put_recording(*entry)
            ),
            transform=recording_entry,
        ),
    ]


class _ProfileFeed:
    """Profile bodies from the watch -> views in the cluster state.

    Rendering takes about a millisecond a profile (10 s for a listing of 10,000), and a change
    to a base renders everything built on it again, so it runs off the event loop, on one thread
    of its own: one thread keeps the watch's order, and the state is only changed on the loop.
    """

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self._views = ProfileViews()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="profile-views")
        self._architectures = {self._views.native}  # asked for so far (on the loop)

    def architectures(self, seen: set[str]) -> None:
        """Reports name these architectures: render the views for the new ones. Until done,
        the state counts nothing (a node would look Outdated for a moment)."""
        new = seen - self._architectures
        if not new:
            return
        self._architectures |= new
        self._state.expect_architectures(new)

        def render() -> list[ProfileView]:
            try:
                return self._views.add_architectures(new)
            except Exception:  # a bug: say so, and count the nodes rather than wait forever
                log.exception("could not render profiles for new architectures")
                return []

        def rendered(views: list[ProfileView]) -> None:
            self._put_all(views)
            self._state.rendered_architectures(new)

        self._run(render, rendered)

    def listed(self, bodies: list[Mapping[str, Any]]) -> None:
        self._run(lambda: self._views.replace(bodies), self._state.replace_profiles)

    def event(self, kind: str, body: Mapping[str, Any]) -> None:
        key = profile_key(body)
        if kind == "DELETED":
            self._run(lambda: self._views.drop(key), self._put_all, dropped=key)
        else:
            self._run(lambda: self._views.put(body), self._put_all)

    def _put_all(self, views: list[ProfileView]) -> None:
        for view in views:
            self._state.put_profile(view)

    def _run(
        self,
        work: Callable[[], list[ProfileView]],
        apply: Callable[[list[ProfileView]], None],
        dropped: ProfileKey | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()  # the watch calls in on the loop

        def done(views: list[ProfileView]) -> None:
            if dropped is not None:
                self._state.drop_profile(dropped)
            apply(views)

        def in_thread() -> None:
            try:
                views = work()
            except Exception:  # a bug: say so, and let the next listing repair the state
                log.exception("could not render profiles")
                return
            loop.call_soon_threadsafe(done, views)

        self._thread.submit(in_thread)


class _ReportFeed:
    """Node reports from the watch -> the cluster state, and their architectures -> the
    profile views, which must be rendered for each architecture a node has; their parts of the
    in-cluster recordings -> the recordings' board."""

    def __init__(self, state: ClusterState, profiles: _ProfileFeed, board: RecordingBoard) -> None:
        self._state = state
        self._profiles = profiles
        self._board = board

    def listed(self, items: list[tuple[NodeReport, list[NodeRecording]]]) -> None:
        reports = [report for report, _ in items]
        self._board.replace_parts({report.node: parts for report, parts in items})
        self._profiles.architectures({r.architecture for r in reports if r.architecture})
        self._state.replace_reports(reports)

    def event(self, kind: str, item: tuple[NodeReport, list[NodeRecording]]) -> None:
        report, parts = item
        if kind == "DELETED":
            self._board.drop_parts(report.node)
            self._state.drop_report(report.node)
            return
        self._board.put_parts(report.node, parts)
        if report.architecture:
            self._profiles.architectures({report.architecture})
        self._state.put_report(report)


def _report(obj: Mapping[str, Any]) -> tuple[NodeReport, list[NodeRecording]]:
    meta = obj.get("metadata") or {}
    status = obj.get("status")
    report = parse_status(str(meta.get("name", "")), status, str(meta.get("uid", "")))
    return report, parse_node_recordings((status or {}).get("recordings"))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _pod(obj: Mapping[str, Any]) -> tuple[str, GatedPod | None]:
    return str((obj.get("metadata") or {}).get("uid", "")), gated_pod(obj)


def _pod_event(state: ClusterState, kind: str, item: tuple[str, GatedPod | None]) -> None:
    uid, pod = item
    if kind == "DELETED" or pod is None:
        state.drop_pod(uid)
    else:
        state.put_pod(pod)
