"""Run real controllers (`python -m agent controller`) as processes against the test control
plane; each test gives them a Lease in its own namespace, so a controller left from another
test never leads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import free_port, wait_for

# Short periods so that takeovers happen within a test's patience; the relation the elector
# requires (retry < renew deadline < lease) holds as in production.
FAST_LEASE = ("--lease-seconds", "4", "--renew-deadline", "3", "--retry-seconds", "0.5")


class ControllerProcess:
    def __init__(
        self,
        cluster: Cluster,
        lease_namespace: str,
        log_path: Path,
        *extra: str,
        identity: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.lease_namespace = lease_namespace
        self.identity = identity or f"controller-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.log_path = log_path
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ControllerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "controller",
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--identity",
                self.identity,
                "--lease-namespace",
                self.lease_namespace,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.port),
                "--log-format",
                "json",
                *FAST_LEASE,
                *self.extra,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def http(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float | None:
        """The sum of a metric's samples, or None when the port does not answer."""
        status, text = self.http("/metrics")
        if status != 200:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def leading(self) -> bool:
        return self.metric("seccomp_sync_status_leader") == 1.0

    def wait_ready(self, timeout: float = 30.0) -> ControllerProcess:
        def ready() -> bool:
            self.assert_running()
            return self.http("/readyz")[0] == 200

        try:
            wait_for(ready, timeout, what=f"controller {self.identity} /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"controller {self.identity} exited {self.process.returncode}\n{self.log_tail()}"
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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
