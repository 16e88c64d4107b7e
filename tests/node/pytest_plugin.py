"""Pytest plugin: real nodes (containerd + kubelet) joined to the session's control plane.

Registered next to the cluster plugin (tests/conftest.py). Fixtures:

- ``node`` (session): one node for every test of the session that wants a real kubelet (under
  pytest-xdist those tests all run on one worker: one node per run);
- ``start_node`` (session): a function that starts another node (``--taint`` and extra images
  allowed) and tears it down at the end of the session, or earlier with ``Node.down()``;
- ``agent_image`` (session): the agent image built from the Dockerfile by scripts/build-image
  (cached by a hash of its inputs), as an OCI archive. A cold build takes minutes: it runs
  after collection, outside any per-test timeout, when a selected test uses the fixture.

A node that cannot start fails the tests that use it, with the script's output: never a skip.
``SECCOMP_SYNC_NODE_DIR=/some/dir`` keeps the session's node across runs during development
(start the cluster the same way with ``SECCOMP_SYNC_CLUSTER_DIR``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.pytest_plugin import Cluster

SCRIPTS_DIR = Path(__file__).resolve().parent
BUILD_IMAGE = SCRIPTS_DIR.parents[1] / "scripts" / "build-image"
STATE_DIR_ENV = "SECCOMP_SYNC_NODE_DIR"
_OUTPUT_TAIL_LINES = 60


# The fixtures that start a node. Every test that uses one runs on the same xdist worker
# (tests/parallel.py), so a run starts one session node (a containerd, a kubelet and the agent
# image imported: about 30 s), not one per worker.
NODE_FIXTURES = ("node", "start_node")


def needs_node(item: pytest.Item) -> bool:
    """Whether the test runs on a real node (uses a node fixture or is marked ``node``)."""
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker("node") is not None or any(n in names for n in NODE_FIXTURES)


class NodeError(RuntimeError):
    """tests/node/up or down failed."""


def _script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(SCRIPTS_DIR / args[0]), *args[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-_OUTPUT_TAIL_LINES:])
        raise NodeError(f"tests/node/{' '.join(args)} exited with {result.returncode}\n{tail}")
    return result


@dataclasses.dataclass
class Node:
    """A running node: its name (also its address) and where its state lives."""

    name: str
    node_dir: Path
    cluster: Cluster

    @property
    def seccomp_root(self) -> Path:
        """The kubelet's seccomp root on this node (``/var/lib/kubelet/seccomp`` inside it)."""
        return self.node_dir / "kubelet" / "seccomp"

    @property
    def containerd_socket(self) -> Path:
        return self.node_dir / "containerd" / "containerd.sock"

    def import_image(self, archive: Path) -> float:
        """``ctr images import`` an OCI archive into this node; returns the seconds it took."""
        started = time.monotonic()
        self.ctr("images", "import", "--all-platforms", str(archive), timeout=600)
        return time.monotonic() - started

    def ctr(self, *args: str, timeout: float = 120) -> str:
        """ctr on this node's containerd, in the Kubernetes namespace."""
        cmd = ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise NodeError(f"{' '.join(cmd)} exited with {result.returncode}: {result.stderr}")
        return result.stdout

    def kubelet_pid(self) -> int:
        return int(json.loads((self.node_dir / "node.json").read_text())["kubelet_pid"])

    def down(self) -> None:
        _script("down", str(self.node_dir))


def start(
    cluster: Cluster,
    node_dir: Path,
    *,
    name: str | None = None,
    taints: tuple[str, ...] = (),
    images: tuple[Path, ...] = (),
) -> Node:
    """tests/node/up; on failure, tests/node/down and NodeError with the output."""
    args = ["up", str(cluster.state_dir), str(node_dir)]
    if name:
        args += ["--name", name]
    for taint in taints:
        args += ["--taint", taint]
    for image in images:
        args += ["--image", str(image)]
    try:
        result = _script(*args)
    except NodeError:
        with contextlib.suppress(NodeError):
            _script("down", str(node_dir))
        raise
    sys.stderr.write(result.stderr)
    return Node(name=result.stdout.strip(), node_dir=node_dir, cluster=cluster)


@dataclasses.dataclass(frozen=True)
class AgentImage:
    """The agent image as scripts/build-image wrote it."""

    archive: Path
    name: str  # localhost/seccomp-sync/agent:<hash of the inputs>

    @property
    def tag(self) -> str:
        return self.name.rsplit(":", 1)[1]


_image_key = pytest.StashKey["AgentImage | str"]()


def build_agent_image() -> AgentImage:
    """scripts/build-image (a no-op when cached); raises NodeError with its output."""
    result = subprocess.run(
        [str(BUILD_IMAGE)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-_OUTPUT_TAIL_LINES:])
        raise NodeError(f"scripts/build-image exited with {result.returncode}\n{tail}")
    names = [line[6:] for line in result.stderr.splitlines() if line.startswith("IMAGE=")]
    return AgentImage(archive=Path(result.stdout.strip()), name=names[-1])


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any("agent_image" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("build-image: building the agent image unless cached (cold: minutes)")
    started = time.monotonic()
    try:
        session.config.stash[_image_key] = build_agent_image()
    except (NodeError, subprocess.TimeoutExpired) as err:
        session.config.stash[_image_key] = str(err)
    if reporter is not None:
        reporter.write_line(f"build-image: {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="session")
def agent_image(request: pytest.FixtureRequest) -> AgentImage:
    built = request.config.stash.get(_image_key, None)
    if built is None:  # collected without the hook (e.g. the fixture requested dynamically)
        try:
            built = build_agent_image()
        except NodeError as err:
            built = str(err)
    if isinstance(built, str):
        pytest.fail(f"the agent image could not be built:\n{built}", pytrace=False)
    return built


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: needs a real node (tests/node: containerd + kubelet); never skipped"
    )


@pytest.fixture(scope="session")
def start_node(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def _start(
        *, name: str | None = None, taints: tuple[str, ...] = (), images: tuple[Path, ...] = ()
    ) -> Node:
        node_dir = tmp_path_factory.mktemp("node")
        try:
            node = start(cluster, node_dir, name=name, taints=taints, images=images)
        except NodeError as err:
            pytest.fail(f"test node did not start:\n{err}", pytrace=False)
        started.append(node)
        return node

    yield _start
    for node in started:
        node.down()  # a no-op for a node a test already took down


@pytest.fixture(scope="session")
def node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    env_dir = os.environ.get(STATE_DIR_ENV)
    node_dir = Path(env_dir).resolve() if env_dir else tmp_path_factory.mktemp("node")
    try:
        instance = start(cluster, node_dir)
    except NodeError as err:
        pytest.fail(f"test node did not start:\n{err}", pytrace=False)
    try:
        yield instance
    finally:
        if not env_dir:
            instance.down()
