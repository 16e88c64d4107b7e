"""`seccomp-agent run`: wire settings, store, validation, kopf and the HTTP port together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf

from agent.catalog import ProfileCatalog
from agent.drift import DriftWatcher
from agent.health import build_app, start_server
from agent.kube.client import api_client, kopf_connection, load_configuration
from agent.kube.events import EventRecorder
from agent.kube.handlers import build_registry, quiet_kopf_loggers
from agent.kube.listing import list_profile_keys
from agent.logs import configure_logging
from agent.metrics import Metrics
from agent.node_agent import NodeAgent
from agent.settings import Settings, SettingsError, build_settings
from agent.store import ProfileStore
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
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    configuration = load_configuration(settings.kubeconfig)
    api = api_client(configuration)
    store = ProfileStore(settings.root)
    await asyncio.to_thread(store.ensure_managed_dir)
    metrics = Metrics()
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
        )
        registry = build_registry(agent, kopf_connection(configuration))
        app = build_app(
            metrics.registry, lambda: None if agent.ready else "initial sync not complete"
        )
        http, port = await start_server(app, settings.http_host, settings.http_port)
        drift = DriftWatcher(settings.managed_dir, agent.on_disk_changed)
        drift.start(asyncio.get_running_loop())
        syncer = asyncio.create_task(agent.syncer.run(), name="syncer")
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
                registry=registry,
                standalone=True,
                clusterwide=settings.watches_all_namespaces,
                namespaces=settings.namespaces,
            )
        finally:
            drift.stop()
            syncer.cancel()
            await http.cleanup()
            api.close()  # type: ignore[no-untyped-call]
            log.info("seccomp-sync agent stopped")
