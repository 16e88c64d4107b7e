"""Pytest plugin: one real Kubernetes control plane per test session.

Register with ``pytest_plugins = ["tests.cluster.pytest_plugin"]`` (or
``-p tests.cluster.pytest_plugin``). Tests take the session-scoped ``cluster``
fixture and are marked ``@pytest.mark.cluster``.

The control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) is built and started by ``tests/cluster/up``; see
tests/cluster/README.md. If it cannot be built or started, every test that
uses the fixture fails with the build/start output: it is never skipped.

Set ``SECCOMP_SYNC_CLUSTER_DIR=/some/dir`` to use (and keep) a state dir
across runs during development; otherwise a temporary one is created and torn
down with ``tests/cluster/down`` at the end of the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import kubernetes.client

SCRIPTS_DIR = Path(__file__).resolve().parent
STATE_DIR_ENV = "SECCOMP_SYNC_CLUSTER_DIR"

# Lines of script output included in a failure message: enough to show a
# compiler error or a component's last complaint without flooding the report.
_OUTPUT_TAIL_LINES = 80


class ClusterError(RuntimeError):
    """The control plane scripts failed."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; unlike CalledProcessError, shows its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def _tail(text: str, lines: int = _OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run_script(name: str, state_dir: Path) -> str:
    """Run tests/cluster/<name> DIR; return its stderr, raise ClusterError on failure."""
    result = subprocess.run(
        [str(SCRIPTS_DIR / name), str(state_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ClusterError(
            f"tests/cluster/{name} {state_dir} exited with {result.returncode}\n"
            f"{_tail(result.stdout + result.stderr)}"
        )
    return result.stderr


@dataclasses.dataclass
class Cluster:
    """A running control plane and the means to talk to it."""

    state_dir: Path
    kubeconfig: Path
    kubectl_path: Path

    @classmethod
    def in_dir(cls, state_dir: Path) -> Cluster:
        return cls(
            state_dir=state_dir,
            kubeconfig=state_dir / "kubeconfig",
            kubectl_path=state_dir / "bin" / "kubectl",
        )

    def up(self) -> str:
        """Build if needed and start; no-op if already running. Returns the script's log."""
        return _run_script("up", self.state_dir)

    def stop(self) -> None:
        """Stop the control plane, keeping its state."""
        _run_script("stop", self.state_dir)

    def down(self) -> None:
        """Stop the control plane and delete its state."""
        _run_script("down", self.state_dir)

    def restart(self) -> None:
        """Stop the control plane and start it again on the same ports with
        the same etcd data and certificates; returns once it is ready.

        Watches and pooled connections of existing clients break; build a new
        ``api_client()`` afterwards if a test keeps one across the restart.
        """
        self.stop()
        self.up()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl as cluster-admin; raises KubectlError if check and it fails."""
        cmd = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new cluster-admin ``kubernetes.client.ApiClient`` from the kubeconfig."""
        from kubernetes import config

        # The kubernetes package's config loader is untyped.
        api: kubernetes.client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api


_build_error_key = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before any test runs, when a test needs them.

    A cold build takes minutes; done here it is not counted against a
    per-test timeout (pytest-timeout) of whichever test first uses the
    fixture. A failure is reported by the fixture, so tests fail, not skip.
    """
    if not any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "testcluster: building the control plane unless cached (a cold build takes minutes)"
        )
    result = subprocess.run(
        [str(SCRIPTS_DIR / "build")], stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0:
        session.config.stash[_build_error_key] = (
            f"tests/cluster/build exited with {result.returncode}\n{_tail(result.stderr)}"
        )
    elif reporter is not None and "build took" in result.stderr:
        reporter.write_line(result.stderr.strip().splitlines()[-1])


def pytest_configure(config: pytest.Config) -> None:
    # Harmless if pyproject registers it too; keeps --strict-markers happy
    # when the plugin is loaded on its own.
    config.addinivalue_line(
        "markers", "cluster: needs the real Kubernetes control plane (tests/cluster)"
    )


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    build_error = request.config.stash.get(_build_error_key, None)
    if build_error is not None:
        pytest.fail(f"test control plane could not be built:\n{build_error}", pytrace=False)
    env_dir = os.environ.get(STATE_DIR_ENV)
    keep = bool(env_dir)
    state_dir = Path(env_dir).resolve() if env_dir else tmp_path_factory.mktemp("testcluster")
    instance = Cluster.in_dir(state_dir)
    try:
        log = instance.up()
    except ClusterError as err:
        # Never skip: a broken control plane must be seen as a failure.
        if not keep:
            with contextlib.suppress(ClusterError):
                instance.down()
        pytest.fail(f"test control plane did not start:\n{err}", pytrace=False)
    # Build/start timings; visible with -s or in the captured setup output.
    sys.stderr.write(log)
    try:
        yield instance
    finally:
        if not keep:
            instance.down()
