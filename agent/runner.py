"""`seccomp-agent run`: wire settings, store, validation, kopf and the HTTP port together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

import kopf
from kopf._core.engines.peering import Identity  # not re-exported; a NewType of str
from kubernetes import client
from kubernetes.config.config_exception import ConfigException

from agent.catalog import ProfileCatalog
from agent.drift import DriftWatcher
from agent.health import build_app, start_server
from agent.kube.client import api_client, kopf_connection, load_configuration
from agent.kube.events import EventRecorder
from agent.kube.handlers import build_registry, quiet_kopf_loggers
from agent.kube.listing import list_pinned_profiles, list_profile_keys
from agent.kube.node_status import NodeStatusPublisher
from agent.kube.node_taint import remove_startup_taint
from agent.logs import configure_logging
from agent.metrics import Metrics
from agent.node_agent import NodeAgent
from agent.settings import Settings, SettingsError, build_settings
from agent.store import ProfileStore, StoreError
from agent.validation.compiler import Compiler
from agent.validation.syscall_names import native_architecture

log = logging.getLogger("agent")


def run_agent(args: argparse.Namespace) -> int:
    try:
        settings = build_settings(args)
    except SettingsError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    quiet_kopf_loggers()
    try:
        asyncio.run(serve(settings))
    except StoreError as exc:
        # The root is missing or unsafe: nothing sensible can run. Say so once, plainly.
        log.error(
            "cannot use the seccomp root", extra={"root": str(settings.root), "error": str(exc)}
        )
        return 1
    except ConfigException as exc:
        log.error("cannot load Kubernetes credentials", extra={"error": str(exc)})
        return 1
    return 0


async def serve(settings: Settings) -> None:
    configuration = load_configuration(settings.kubeconfig)
    api = api_client(configuration)
    store = ProfileStore(settings.root)
    await asyncio.to_thread(store.ensure_managed_dir)
    metrics = Metrics()
    background: list[asyncio.Task[None]] = []
    with Compiler() as compiler:
        agent = NodeAgent(
            node_name=settings.node_name,
            architectures=[native_architecture()],
            catalog=ProfileCatalog(),
            store=store,
            metrics=metrics,
            compile_profile=compiler.compile,
            events=EventRecorder(api, settings.node_name),
            list_keys=lambda: list_profile_keys(api, settings.namespaces),
            list_pinned=lambda: list_pinned_profiles(api, settings.node_name),
        )
        publisher = NodeStatusPublisher(api, settings.node_name, agent.node_status)
        agent.on_state_change.append(publisher.changed)
        if settings.remove_startup_taint:
            agent.on_synced.append(lambda: _spawn(background, _untaint(api, settings)))

        app = build_app(metrics.registry, lambda: None if agent.ready else "initial sync not done")
        http, port = await start_server(app, settings.http_host, settings.http_port)
        drift = DriftWatcher(settings.managed_dir, agent.on_disk_changed)
        drift.start(asyncio.get_running_loop())
        background.append(asyncio.create_task(agent.syncer.run(), name="syncer"))
        background.append(asyncio.create_task(agent.initial_sync(), name="initial-sync"))
        publisher.changed()  # report at once: from now on this node counts as expected
        log.info(
            "seccomp-sync agent starting",
            extra={
                "node": settings.node_name,
                "root": str(settings.root),
                "http_port": port,
                "namespaces": list(settings.namespaces) or "all",
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
            drift.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await http.cleanup()
            api.close()  # type: ignore[no-untyped-call]
            log.info("seccomp-sync agent stopped")


async def _untaint(api: client.ApiClient, settings: Settings) -> None:
    try:
        await asyncio.to_thread(remove_startup_taint, api, settings.node_name)
    except Exception:
        # The node stays tainted (no pods land there): visible, and safe. Say why.
        log.exception("could not remove the startup taint", extra={"node": settings.node_name})


def _spawn(tasks: list[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    tasks.append(asyncio.create_task(work))
