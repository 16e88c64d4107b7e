"""The node's part of recording, end to end without a kubelet: the real agent process against
the real API server writes the recording profile, Debian's runc runs a container under that
file and hands the agent its listener, and the node's SeccompNodeStatus lists what the
container called, beside the node report, and still after the agent was killed."""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import running_agent, wait_for
from tests.integration.nodes import node_report, recorded_names, recording_part
from tests.integration.tools import require_tool
from tests.runc_bundle import RuncBundle, cri_annotations

pytestmark = [pytest.mark.cluster, pytest.mark.runc]

CRD = "seccompprofilerecordings.seccompsync.io"


@pytest.fixture(scope="module")
def recording_crd(crd: Cluster) -> Cluster:
    """The `crd` fixture installs every CRD of crds/, the recording's among them."""
    crd.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    return crd


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(f"/tmp/rec-{uuid.uuid4().hex[:8]}")  # a socket path must stay short
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> RuncBundle:
    runc = require_tool("runc", "runc")
    busybox = require_tool("busybox", "busybox-static")
    bundle = RuncBundle.create(tmp_path_factory.mktemp("bundle"), runc=runc)
    bundle.add(busybox, "/bin/busybox")
    return bundle


def run_pod_container(bundle: RuncBundle, profile_file: Path, namespace: str, script: str) -> str:
    """What containerd does with a pod's Localhost profile: the file's content becomes the
    spec's linux.seccomp, and the CRI's annotations name the pod and the container."""
    bundle.configure(
        ["/bin/busybox", "sh", "-c", script],
        json.loads(profile_file.read_text()),
        annotations=cri_annotations(namespace, "web-1", "0b5c", "web"),
        writable_root=True,
    )
    result = bundle.run("rec")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_agent_records_a_container_and_publishes_it_across_a_restart(
    recording_crd: Cluster, namespace: str, tmp_path: Path, socket_dir: Path, bundle: RuncBundle
) -> None:
    cluster = recording_crd
    node = f"rec-{uuid.uuid4().hex[:6]}"
    key = ProfileKey(namespace, "web")
    root = tmp_path / "root"
    socket_path = socket_dir / "recorder.sock"
    recording = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "recorded"}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(recording))
    profile = root / recording_localhost_profile(key)
    extra = ("--recorder-socket", str(socket_path))

    with running_agent(cluster, node, root, tmp_path / "agent.log", *extra) as agent:
        wait_for(profile.exists, 30, what="the recording profile on disk")
        assert json.loads(profile.read_text())["listenerPath"] == str(socket_path)
        wait_for(
            lambda: (recording_part(cluster, node, key) or {}).get("ready") is True,
            30,
            what="the node part to say ready",
        )
        out = run_pod_container(bundle, profile, namespace, "mkdir /tmp/r && echo made")
        assert "made" in out
        wait_for(
            lambda: {"mkdir", "execve"} <= recorded_names(recording_part(cluster, node, key)),
            30,
            what="the recorded container's calls in the node part",
        )
        part = recording_part(cluster, node, key)
        assert part is not None
        assert part["pods"] == [f"{namespace}/web-1"]
        (container,) = part["containers"]
        assert container["name"] == "web"
        assert {"mkdir", "execve"} <= set(container["syscalls"])
        # The node report and the node part share the object; neither removed the other.
        assert (node_report(cluster, node) or {})["status"]["synced"] is True
        assert agent.metric("seccomp_sync_recorder_notifications_total") > 0
        assert agent.metric("seccomp_sync_recorder_errors_total") == 0

        # Killed: the next agent starts from what this one published.
        agent.stop(signal.SIGKILL)
        recorded = set(container["syscalls"])
        agent.start().wait_ready()
        wait_for(
            lambda: (recording_part(cluster, node, key) or {}).get("ready") is True,
            30,
            what="the restarted agent's node part",
        )
        again = recording_part(cluster, node, key)
        assert again is not None
        assert set(again["containers"][0]["syscalls"]) == recorded

        # Stopped: the profile goes, the part stays (the controller still needs it).
        stopped = {
            **recording,
            "spec": {"podSelector": {"matchLabels": {"app": "recorded"}}, "active": False},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(stopped))
        wait_for(lambda: not profile.exists(), 30, what="the recording profile to go")
        wait_for(
            lambda: (recording_part(cluster, node, key) or {}).get("ready") is False,
            30,
            what="the node part to say not ready",
        )
        final = recording_part(cluster, node, key)
        assert final is not None and set(final["containers"][0]["syscalls"]) == recorded
