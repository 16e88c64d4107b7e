"""`seccomp-agent run`: settings, the API clients, the node agent (built by `NodeAgent`), the
profile watch, kopf (pods) and the HTTP port, put together."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf
from kopf._core.engines.peering import Identity  # not re-exported; a NewType of str
from kubernetes import client

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, KIND, OciSeccomp
from agent.api.recording import RECORDING_DIR_NAME
from agent.kube.client import api_client, api_unavailable, kopf_connection, load_configuration
from agent.kube.events import EventRecorder
from agent.kube.program import run_program
from agent.node.agent import NodeAgent
from agent.node.catalog import ProfileCatalog
from agent.node.fleet_form import FleetForm, PublishedDigests, node_report
from agent.node.fleet_watch import fleet_watch
from agent.node.kopf_handlers import build_registry, quiet_kopf_loggers
from agent.node.listing import get_profile, list_pod_profiles, list_profile_versions
from agent.node.metrics import Metrics, RecorderMetrics
from agent.node.profile_watch import profile_watches
from agent.node.recorder import Observations, Recorder
from agent.node.recording_watch import NodePartPublisher, RecordingWatch
from agent.node.recordings import Admissions, Recordings, parse_base
from agent.node.report_writer import NodeStatusPublisher
from agent.node.settings import Settings, build_settings
from agent.node.store import ProfileStore, StoreError
from agent.node.taint import remove_startup_taint
from agent.runtime.health import probe_server
from agent.runtime.supervisor import Supervisor
from agent.seccomp.compiler import Compiler
from agent.seccomp.syscalls import native_architecture

log = logging.getLogger("agent")


def run_agent(args: argparse.Namespace) -> int:
    # A root that is missing or unsafe: nothing sensible can run. Said once, plainly.
    return run_program(
        lambda: build_settings(args), serve, fatal={StoreError: "cannot use the seccomp root"}
    )


async def serve(settings: Settings) -> None:
    quiet_kopf_loggers()
    configuration = load_configuration(settings.kubeconfig)
    api = api_client(configuration)
    store = ProfileStore(settings.root)
    await asyncio.to_thread(store.ensure_managed_dir)
    metrics = Metrics()
    supervisor = Supervisor(
        metrics.process.component_failed,
        expected=api_unavailable,
    )
    catalog = ProfileCatalog()
    architecture = native_architecture()
    published = PublishedDigests()
    form = FleetForm(published, architecture)
    publisher = NodeStatusPublisher(
        api,
        settings.node_name,
        lambda: node_report(catalog, form, settings.node_name, time.monotonic),
    )

    def fleet_digests(data: Mapping[str, Any] | None) -> None:
        # Before the initial sync the report stays as the announce left it (see announce()).
        if published.replace(data) and catalog.complete:
            publisher.changed()

    background: set[asyncio.Task[None]] = set()

    def untaint() -> None:
        task = asyncio.create_task(_untaint(api, settings))
        background.add(task)
        task.add_done_callback(background.discard)

    recording = _recording(
        api, settings, store.root, architecture, metrics, catalog, report_lost=publisher.lost
    )
    with Compiler() as compiler:
        agent = NodeAgent(
            node_name=settings.node_name,
            architectures=[architecture],
            catalog=catalog,
            store=store,
            metrics=metrics,
            compile_profile=compiler.compile,
            events=EventRecorder(
                api,
                api_version=f"{API_GROUP}/{API_VERSION}",
                kind=KIND,
                instance=settings.node_name,
                role="node",
                component="seccomp-sync-agent",
            ),
            list_profiles=lambda: list_profile_versions(api, settings.namespaces),
            get_profile=lambda key: get_profile(api, key),
            list_pods=lambda: list_pod_profiles(api, settings.node_name),
            status=publisher,
            on_ready=untaint if settings.remove_startup_taint else lambda: None,
            resync_seconds=settings.resync_seconds,
            recordings=recording.recordings if recording else None,
        )
        agent.supervise(supervisor)
        if recording is not None:
            supervisor.add("recorder", recording.recorder.run)
            supervisor.add("watch-recordings", recording.watch.run)
            supervisor.add("recording-report", recording.publisher.run)
        for watch in profile_watches(api, settings.namespaces, agent):
            supervisor.add(f"watch-{watch.name}", watch.run)
        supervisor.add("keep-report", functools.partial(publisher.keep, settings.resync_seconds))
        digests = fleet_watch(api, settings.fleet_namespace, fleet_digests)
        supervisor.add(f"watch-{digests.name}", digests.run)
        metrics.process.watch_components([*supervisor.components, "profile-events", "pod-events"])
        http = probe_server(metrics.registry, agent.readiness.not_ready_reason, supervisor.problems)
        port = await http.start(settings.http_host, settings.http_port)
        parts = asyncio.create_task(supervisor.run(), name="supervisor")

        publisher.announce()  # from now on this node counts as expected
        log.info(
            "seccomp-sync agent starting",
            extra={
                "node": settings.node_name,
                "root": str(settings.root),
                "http_port": port,
                "namespaces": list(settings.namespaces) or "all",
                "resync_seconds": settings.resync_seconds,
            },
        )
        try:
            # kopf turns SIGTERM/SIGINT into a graceful stop; every file write is atomic, so
            # stopping at any point (even SIGKILL) leaves only complete files behind.
            await kopf.operator(
                registry=build_registry(agent, kopf_connection(configuration)),
                # kopf would derive an identity from getpass.getuser(), which fails for a UID
                # with no passwd entry (any runAsUser in a minimal image).
                identity=Identity(f"seccomp-sync-agent@{settings.node_name}"),
                standalone=True,
                clusterwide=settings.watches_all_namespaces,
                namespaces=settings.namespaces,
            )
        finally:
            parts.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(parts, *background, return_exceptions=True)
            if recording is not None:  # after the recorder stopped: no part says ready again
                await recording.publisher.withdraw()
            await http.stop()
            api.close()  # type: ignore[no-untyped-call]
            log.info("seccomp-sync agent stopped")


class _Recording:
    """The node's part of in-cluster recording, built once (see docs/recording.md)."""

    def __init__(
        self,
        recorder: Recorder,
        recordings: Recordings,
        watch: RecordingWatch,
        publisher: NodePartPublisher,
    ) -> None:
        self.recorder = recorder
        self.recordings = recordings
        self.watch = watch
        self.publisher = publisher


def _recording(
    api: client.ApiClient,
    settings: Settings,
    root: Path,
    architecture: str,
    metrics: Metrics,
    catalog: ProfileCatalog,
    report_lost: Callable[[], None],
) -> _Recording | None:
    if settings.recorder_socket is None:
        return None
    socket_path = settings.recorder_socket
    loop = asyncio.get_running_loop()
    observations = Observations()
    admissions = Admissions()

    def changed() -> None:
        publisher.changed()

    def changed_elsewhere() -> None:  # from the recorder's thread
        loop.call_soon_threadsafe(changed)

    recorder = Recorder(
        socket_path,
        observations,
        admissions.admit,
        counters=RecorderMetrics(metrics),
        on_change=changed_elsewhere,
    )

    def lookup_base(key: ProfileKey) -> OciSeccomp | None:
        record = catalog.records.get(key)
        return parse_base(record.rendered.content) if record and record.rendered else None

    recordings = Recordings(
        store=ProfileStore(root, subdir=RECORDING_DIR_NAME),
        native=architecture,
        listener_path=str(socket_path),
        observations=observations,
        admissions=admissions,
        recorder=recorder,
        lookup_base=lookup_base,
        changed=changed,
    )
    publisher = NodePartPublisher(
        api, settings.node_name, recordings.parts, recordings.restore, report_lost=report_lost
    )
    return _Recording(recorder, recordings, RecordingWatch(api, recordings), publisher)


async def _untaint(api: client.ApiClient, settings: Settings) -> None:
    """Retry until the taint is gone: while it stays, no pod lands on this node (safe, but a
    node the scheduler cannot use), so every failure is logged and tried again."""
    delay = 1.0
    while True:
        try:
            await asyncio.to_thread(remove_startup_taint, api, settings.node_name)
        except Exception as exc:
            log.warning(
                "could not remove the startup taint; retrying",
                extra={"node": settings.node_name, "error": str(exc)[:200], "retry": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        else:
            return
