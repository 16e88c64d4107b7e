"""Run real agents (`python -m agent run`) as processes against the test control plane; the
process handling is shared with the controller's (tests/integration/controller.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from tests.cluster.pytest_plugin import Cluster
from tests.integration.nodes import delete_node, register_node

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


class ServedProcess:
    """One `python -m agent COMMAND` process serving its HTTP port on 127.0.0.1, logging JSON
    to `log_path`; subclasses say which command and arguments."""

    what = "process"

    def __init__(self, cluster: Cluster, log_path: Path, extra: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.log_path = log_path
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                *self.command(),
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.port),
                "--log-format",
                "json",
                *self.extra,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def scrape(self, name: str) -> float | None:
        """The sum of a metric's samples (all label sets), or None when the port does not
        answer."""
        status, text = self.http("/metrics")
        if status != 200:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_ready(self, timeout: float = 30.0) -> Self:
        def ready() -> bool:
            self.assert_running()
            return self.http("/readyz")[0] == 200

        try:
            wait_for(ready, timeout, what=f"{self.what} /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.what} exited {self.process.returncode}\n{self.log_tail()}")

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

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"msg": raw})
        return lines

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class AgentProcess(ServedProcess):
    def __init__(
        self, cluster: Cluster, node: str, root: Path, log_path: Path, *extra: str
    ) -> None:
        super().__init__(cluster, log_path, extra)
        self.node = node
        self.root = root
        self.what = f"agent {node}"

    @property
    def managed_dir(self) -> Path:
        return self.root / "seccomp-sync"

    def profile_path(self, namespace: str, name: str) -> Path:
        return self.managed_dir / namespace / f"{name}.json"

    def command(self) -> list[str]:
        return ["run", "--node-name", self.node, "--root", str(self.root)]

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        return super().start()

    def metric(self, name: str) -> float:
        """Sum of a metric's samples on /metrics (all label sets); 0 when it does not answer."""
        return self.scrape(name) or 0.0


@contextmanager
def running_agent(
    cluster: Cluster, node: str, root: Path, log_path: Path, *extra: str, ready: bool = True
) -> Iterator[AgentProcess]:
    """An agent for a fake Node of that name, which is deleted afterwards (so its
    SeccompNodeStatus is garbage-collected and does not count in later tests)."""
    register_node(cluster, node)
    agent = AgentProcess(cluster, node, root, log_path, *extra).start()
    try:
        if ready:
            agent.wait_ready()
        yield agent
    finally:
        agent.stop()
        delete_node(cluster, node)
