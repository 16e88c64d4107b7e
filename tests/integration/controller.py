"""Run real controllers (`python -m agent controller`) as processes against the test control
plane; each test gives them a Lease in its own namespace, so a controller left from another
test never leads."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client

from agent.controller.main import Controller, ControllerIO, api_io, build_controller
from agent.controller.settings import add_controller_arguments, build_controller_settings
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import ServedProcess

# Short periods so that takeovers happen within a test's patience; the relation the elector
# requires (retry < renew deadline < lease) holds as in production.
FAST_LEASE = ("--lease-seconds", "4", "--renew-deadline", "3", "--retry-seconds", "0.5")


class ControllerProcess(ServedProcess):
    def __init__(
        self,
        cluster: Cluster,
        lease_namespace: str,
        log_path: Path,
        *extra: str,
        identity: str | None = None,
    ) -> None:
        super().__init__(cluster, log_path, extra)
        self.lease_namespace = lease_namespace
        self.identity = identity or f"controller-{uuid.uuid4().hex[:6]}"
        self.what = f"controller {self.identity}"

    def command(self) -> list[str]:
        return [
            "controller",
            "--identity",
            self.identity,
            "--lease-namespace",
            self.lease_namespace,
            *FAST_LEASE,
        ]

    def metric(self, name: str) -> float | None:
        """The sum of a metric's samples, or None when the port does not answer."""
        return self.scrape(name)

    def leading(self) -> bool:
        return self.metric("seccomp_sync_status_leader") == 1.0


@contextmanager
def running_controller(
    cluster: Cluster, lease_namespace: str, log_path: Path, *extra: str
) -> Iterator[ControllerProcess]:
    """One controller, ready (its watches have listed everything), stopped afterwards."""
    controller = ControllerProcess(cluster, lease_namespace, log_path, *extra).start()
    try:
        controller.wait_ready()
        yield controller
    finally:
        controller.stop()


def controller_parts(api: client.ApiClient, io: ControllerIO | None = None) -> Controller:
    """A controller in this process, built as the runner builds it and not started: a test
    runs the parts it is about. What it writes goes to the API unless `io` says otherwise."""
    parser = argparse.ArgumentParser()
    add_controller_arguments(parser)
    settings = build_controller_settings(parser.parse_args(["--identity", "test-controller"]), {})
    return build_controller(
        settings, api, io or api_io(api, settings.identity, settings.lease_namespace)
    )
