"""`seccomp-agent controller`: wire the watches, the elected work and the HTTP port together.

Every replica watches profiles, node reports and unscheduled pods (a warm standby takes over
in one Lease period); only the replica holding the Lease writes profile status and releases
gated pods. Every long-lived part runs under the supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.config.config_exception import ConfigException

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, KIND, NODE_STATUS_PLURAL, PLURAL
from agent.api.node_report import NodeReport, parse_status
from agent.controller.aggregator import StatusAggregator
from agent.controller.gated_pods import GatedPod, gated_pod
from agent.controller.gates import GateHandler
from agent.controller.metrics import ControllerMetrics
from agent.controller.pod_gates import PodGates
from agent.controller.policy_report import PolicyReporter
from agent.controller.profile_status import ProfileView
from agent.controller.profiles import ProfileViews, profile_key
from agent.controller.settings import ControllerSettings, build_controller_settings
from agent.controller.state import ClusterState
from agent.kube.client import api_client, api_unavailable, load_configuration
from agent.kube.events import EventRecorder
from agent.kube.leader import LeaderElector
from agent.kube.list_watch import ListWatch
from agent.runtime.health import probe_server
from agent.runtime.logs import configure_logging
from agent.runtime.settings import SettingsError
from agent.runtime.supervisor import Supervisor

log = logging.getLogger("agent.controller")


def run_controller(args: argparse.Namespace) -> int:
    try:
        settings = build_controller_settings(args)
    except SettingsError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(_main(settings))
    except ConfigException as exc:
        log.error("cannot load Kubernetes credentials", extra={"error": str(exc)})
        return 1
    return 0


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
    api = api_client(configuration)
    metrics = ControllerMetrics()
    state = ClusterState()
    supervisor = Supervisor(
        on_failure=metrics.process.component_failed,
        # An unreachable API is waited out, never held against liveness (as in the agent).
        expected=api_unavailable,
    )
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    pods = PodGates(api, settings.identity)

    gates: GateHandler | None = None
    policies = PolicyReporter(
        api,
        metrics,
        EventRecorder(
            api,
            api_version=f"{API_GROUP}/{API_VERSION}",
            kind=KIND,
            instance=settings.identity,
            role="controller",
            component="seccomp-sync-controller",
        ),
    )
    aggregator = StatusAggregator(
        api,
        state,
        metrics,
        waiting=lambda: gates.waiting_counts() if gates else {},
        report=policies.report,
    )
    policies.on_change = aggregator.refresh_all
    gates = GateHandler(
        state, pods.patch, pods.warn, metrics, settings.grace_seconds, aggregator.changed
    )

    async def lead() -> None:
        # Both or neither: if one fails, the group cancels the other and the elector steps down.
        async with asyncio.TaskGroup() as group:
            group.create_task(aggregator.run(), name="aggregator")
            group.create_task(gates.run(), name="gates")
            group.create_task(policies.run(), name="tenant-policies")

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
    profiles = _ProfileFeed(state, asyncio.get_running_loop())
    watches = [
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
            on_list=lambda reports: state.replace_reports(reports),
            on_event=lambda kind, report: _report_event(state, kind, report),
            transform=_report,
        ),
        ListWatch(
            "pods",
            core.list_pod_for_all_namespaces,
            # Unscheduled pods only: gated pods are never bound, and this keeps the controller's
            # memory with the pods that wait, not with every pod in the cluster.
            field_selector="spec.nodeName=",
            on_list=lambda items: state.replace_pods(p for _, p in items if p is not None),
            on_event=lambda kind, item: _pod_event(state, kind, item),
            transform=_pod,
        ),
    ]
    for watch in watches:
        supervisor.add(f"watch-{watch.name}", watch.run)
    supervisor.add("elector", elector.run)

    http = probe_server(
        metrics.registry,
        lambda: None if state.synced else "the watches have not listed everything yet",
        supervisor.problems,
    )

    async def serve_http() -> None:
        port = await http.start(settings.http_host, settings.http_port)
        log.info("serving /healthz, /readyz, /metrics", extra={"http_port": port})
        try:
            await asyncio.Event().wait()
        finally:
            await http.stop()

    supervisor.add("http", serve_http)
    metrics.process.watch_components(supervisor.components)
    log.info(
        "seccomp-sync controller starting",
        extra={
            "identity": settings.identity,
            "lease": f"{settings.lease_namespace}/{settings.lease_name}",
            "grace_seconds": settings.grace_seconds,
        },
    )
    try:
        await supervisor.run()
    finally:
        api.close()  # type: ignore[no-untyped-call]


class _ProfileFeed:
    """Profile bodies from the watch -> views in the cluster state.

    Rendering takes about a millisecond a profile (10 s for a listing of 10,000), and a change
    to a base renders everything built on it again, so it runs off the event loop, on one thread
    of its own: one thread keeps the watch's order, and the state is only changed on the loop.
    """

    def __init__(self, state: ClusterState, loop: asyncio.AbstractEventLoop) -> None:
        self._state = state
        self._loop = loop
        self._views = ProfileViews()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="profile-views")

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
            self._loop.call_soon_threadsafe(done, views)

        self._thread.submit(in_thread)


def _report(obj: Mapping[str, Any]) -> NodeReport:
    name = str((obj.get("metadata") or {}).get("name", ""))
    return parse_status(name, obj.get("status"))


def _report_event(state: ClusterState, kind: str, report: NodeReport) -> None:
    if kind == "DELETED":
        state.drop_report(report.node)
    else:
        state.put_report(report)


def _pod(obj: Mapping[str, Any]) -> tuple[str, GatedPod | None]:
    return str((obj.get("metadata") or {}).get("uid", "")), gated_pod(obj)


def _pod_event(state: ClusterState, kind: str, item: tuple[str, GatedPod | None]) -> None:
    uid, pod = item
    if kind == "DELETED" or pod is None:
        state.drop_pod(uid)
    else:
        state.put_pod(pod)
