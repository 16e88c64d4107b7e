"""The Helm chart on a real node: installed with values only (no patch of its output), a pod
runs under a profile, and an upgrade that rolls the agent, a rollback and an uninstall never take
the profile's file from the node nor disturb the pod.

Prints the wall-clock time of install, upgrade and rollback, each until its rollout completed
(`helm --wait`).
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.pytest_plugin import Cluster
from tests.e2e import pods
from tests.e2e.test_node_seccomp import (
    agent_pods,
    ready_agent,
    remove_agent,
    running_probe,
)
from tests.helm import release
from tests.helm.pytest_plugin import Helm
from tests.integration.crds import install_crds
from tests.node import agent_deploy
from tests.node.pytest_plugin import AgentImage, Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def node_values(cluster: Cluster, image: AgentImage, pod_annotation: str) -> dict[str, Any]:
    """What a test node needs (tests/node/overlay says why), as values: the local image never
    pulled, the host's network with the HTTP ports on the node's own address, the API server on
    127.0.0.1, one controller replica."""
    api = agent_deploy.api_port(cluster.kubeconfig, cluster.kubectl_path)
    env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(api)},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    repository, tag = image.name.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "hostNetwork": True,
        "agent": {
            "httpHost": "$(POD_IP)",
            "httpPort": agent_deploy.free_port(),
            "extraEnv": env,
            "podAnnotations": {"test.seccompsync.io/revision": pod_annotation},
        },
        "controller": {
            "replicas": 1,
            "httpHost": "$(POD_IP)",
            "httpPort": agent_deploy.free_port(),
            "extraEnv": env,
        },
    }


def profile_ready(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl("get", "seccompprofile", name, "-n", namespace, "-o", "json").stdout
    conditions = json.loads(out).get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "missing")


class Watch:
    """Samples, while a helm command runs, the profile's Ready condition and the probe pod
    (uid, restarts, phase): every value seen, in order of first sight."""

    def __init__(self, cluster: Cluster, namespace: str, profile: str, pod: str) -> None:
        self.cluster, self.namespace, self.profile, self.pod = cluster, namespace, profile, pod
        self.ready: list[str] = []
        self.pods: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        ready = profile_ready(self.cluster, self.namespace, self.profile)
        if ready not in self.ready:
            self.ready.append(ready)
        pod = pods.get(self.cluster, self.namespace, self.pod)
        seen = (
            pod["metadata"]["uid"],
            pods.container_status(pod)["restartCount"],
            pod["status"]["phase"],
        )
        if seen not in self.pods:
            self.pods.append(seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.5)

    def __enter__(self) -> Watch:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._sample()


@pytest.fixture
def no_installation(
    crd: Cluster, node_with_image: Node, helm: Helm, tmp_path: Path
) -> Iterator[str]:
    """Neither deploy/ nor a release before or after (the CRDs stay, as crds/ defines them);
    the CRDs handed to the release. Yields a namespace for the profile and the pod."""
    remove_agent(crd)
    # A report left by an earlier agent would hold gated pods for the grace period (see the
    # `agent` fixture of test_node_seccomp).
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    release.adopt_crds(crd)
    namespace = f"e-helm-{uuid.uuid4().hex[:6]}"
    crd.kubectl("create", "namespace", namespace)
    try:
        yield namespace
    finally:
        release.uninstall(helm, crd, check=False)
        remove_agent(crd)
        crd.kubectl(
            "delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False,
            timeout=150,
        )  # fmt: skip
        crd.kubectl(
            "delete", "seccompnodestatus", node_with_image.name, "--ignore-not-found",
            check=False,
        )  # fmt: skip
        install_crds(crd)
        # The file the uninstalled agent left on the session's node, as designed.
        shutil.rmtree(node_with_image.seccomp_root / "seccomp-sync" / namespace, ignore_errors=True)


def test_helm_install_upgrade_rollback_uninstall_keep_the_pod_and_its_file(
    crd: Cluster,
    node_with_image: Node,
    agent_image: AgentImage,
    helm: Helm,
    no_installation: str,
    tmp_path: Path,
) -> None:
    node, namespace = node_with_image, no_installation
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(node_values(crd, agent_image, "1")))
    # Install: the chart runs on the node with nothing but these values.
    installed = release.install(helm, crd, "--values", str(values), "--wait")
    first_agent = ready_agent(crd, node.name, agent_image.name)
    ready_agent(crd, node.name, agent_image.name, label=agent_deploy.CONTROLLER_LABEL)
    path = running_probe(crd, node, namespace, "user")
    content = path.read_bytes()
    pods.poll(
        lambda: profile_ready(crd, namespace, "deny-mkdir") == "True", 60, "the profile Ready"
    )
    probe = pods.get(crd, namespace, "user")

    def unchanged(watch: Watch, what: str) -> None:
        assert path.read_bytes() == content, f"{what} changed the profile's file"
        assert watch.ready == ["True"], f"the profile's Ready during {what}: {watch.ready}"
        assert watch.pods == [(probe["metadata"]["uid"], 0, "Running")], watch.pods

    # Upgrade: a changed value that rolls the agent's pods.
    values.write_text(yaml.safe_dump(node_values(crd, agent_image, "2")))
    with Watch(crd, namespace, "deny-mkdir", "user") as watch:
        upgraded = release.upgrade(helm, crd, "--values", str(values), "--wait")
        second_agent = ready_agent(crd, node.name, agent_image.name)
    assert second_agent["metadata"]["uid"] != first_agent["metadata"]["uid"]
    assert release.status(helm, crd) == (2, "deployed")
    unchanged(watch, "helm upgrade")

    with Watch(crd, namespace, "deny-mkdir", "user") as watch:
        rolled_back = release.helm(helm, crd, "rollback", "1", "--wait")
        third_agent = ready_agent(crd, node.name, agent_image.name)
    assert third_agent["metadata"]["uid"] != second_agent["metadata"]["uid"]
    annotations = third_agent["metadata"].get("annotations", {})
    assert annotations.get("test.seccompsync.io/revision") == "1"
    assert release.status(helm, crd) == (3, "deployed")
    unchanged(watch, "helm rollback")

    # Uninstall: the agents go, the file, the profile and the CRDs stay; the pod runs on.
    with Watch(crd, namespace, "deny-mkdir", "user") as watch:
        out = release.uninstall(helm, crd)
    assert "kept due to the resource policy" in out
    assert agent_pods(crd, node.name) == []
    assert path.read_bytes() == content
    for name in release.CRDS:
        crd.kubectl("get", "crd", name)
    crd.kubectl("get", "seccompprofile", "deny-mkdir", "-n", namespace)
    assert watch.pods == [(probe["metadata"]["uid"], 0, "Running")], watch.pods
    gone = crd.kubectl(
        "wait", "--for=delete", f"namespace/{agent_deploy.NAMESPACE}", "--timeout=120s",
        check=False, timeout=150,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert release.leftovers(crd) == []
    print(
        f"\nhelm on the node: install {installed:.1f} s, upgrade {upgraded:.1f} s, "
        f"rollback {rolled_back:.1f} s (each until its rollout completed)"
    )
