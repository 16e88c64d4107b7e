"""The agent DaemonSet and the controller on test nodes: deploy/ through tests/node/overlay.

The overlay holds everything a test node needs; what differs per cluster (the image tag, the API
server's port, two free HTTP ports) goes into a small kustomization written on top of it.

The patches that set the HTTP address and port find the flags' positions in deploy/base's own
manifests (a new argument there moves them), and each carries a JSON-patch ``test`` of the flag,
so a manifest that changed under it fails ``kubectl apply -k`` instead of patching another value.

    python3 -m tests.node.agent_deploy CLUSTER_DIR WORK_DIR IMAGE_TAG   # prints WORK_DIR
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

OVERLAY = Path(__file__).resolve().parent / "overlay"
BASE = OVERLAY.parents[2] / "deploy" / "base"
NAMESPACE = "seccomp-sync"
DAEMONSET = "seccomp-sync-agent"
CONTROLLER = "seccomp-sync-controller"
AGENT_LABEL = "app.kubernetes.io/name=seccomp-sync,app.kubernetes.io/component=agent"
CONTROLLER_LABEL = "app.kubernetes.io/name=seccomp-sync,app.kubernetes.io/component=controller"
CONTAINER = "/spec/template/spec/containers/0"
# What deploy/ creates outside its namespace, but the CRDs (other tests share them): its cluster
# RBAC and the admission policies (a gating policy left behind would gate other tests' pods).
CLUSTER_OBJECTS = (
    "mutatingadmissionpolicybinding/seccomp-sync-profiles-ready",
    "mutatingadmissionpolicy/seccomp-sync-profiles-ready",
    "validatingadmissionpolicybinding/seccomp-sync-agent-own-node",
    "validatingadmissionpolicy/seccomp-sync-agent-own-node",
    "validatingadmissionpolicybinding/seccomp-sync-syscall-names",
    "validatingadmissionpolicy/seccomp-sync-syscall-names",
    # The tenant policies: left behind, every later profile write needs their parameter kind.
    "validatingadmissionpolicybinding/seccomp-sync-tenant-profiles",
    "validatingadmissionpolicy/seccomp-sync-tenant-profiles",
    "validatingadmissionpolicybinding/seccomp-sync-tenant-pods",
    "validatingadmissionpolicy/seccomp-sync-tenant-pods",
    "validatingadmissionpolicybinding/seccomp-sync-tenant-recordings",
    "validatingadmissionpolicy/seccomp-sync-tenant-recordings",
    # The recording policy: left behind, a later test's recording would still mutate its pods.
    "mutatingadmissionpolicybinding/seccomp-sync-recording",
    "mutatingadmissionpolicy/seccomp-sync-recording",
    "clusterrolebinding/seccomp-sync-agent",
    "clusterrole/seccomp-sync-agent",
    "clusterrolebinding/seccomp-sync-controller",
    "clusterrole/seccomp-sync-controller",
)


def api_port(kubeconfig: Path, kubectl: Path) -> int:
    view = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "config", "view", "--raw", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    port = urlsplit(json.loads(view)["clusters"][0]["cluster"]["server"]).port
    if port is None:
        raise ValueError(f"{kubeconfig}: the server URL names no port")
    return port


def free_port() -> int:
    """A port free on every address: the pods bind it on their node's 127.0.0.N."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def base_args(manifest: str, kind: str, name: str) -> list[str]:
    """The first container's args of one object in deploy/base/<manifest>."""
    for doc in yaml.safe_load_all((BASE / manifest).read_text()):
        if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
            args: list[str] = doc["spec"]["template"]["spec"]["containers"][0]["args"]
            return args
    raise ValueError(f"deploy/base/{manifest}: no {kind} {name}")


def flag_value(args: list[str], flag: str, value: str) -> list[dict[str, Any]]:
    """JSON-patch ops setting the value that follows ``flag`` (``--flag VALUE`` form), or adding
    both at the end when deploy/base leaves the flag to its default."""
    if flag not in args:
        return [
            {"op": "add", "path": f"{CONTAINER}/args/-", "value": flag},
            {"op": "add", "path": f"{CONTAINER}/args/-", "value": value},
        ]
    index = args.index(flag)
    return [
        {"op": "test", "path": f"{CONTAINER}/args/{index}", "value": flag},
        {"op": "replace", "path": f"{CONTAINER}/args/{index + 1}", "value": value},
    ]


def http_patch(args: list[str], api: int, http_port: int) -> list[dict[str, Any]]:
    """The API server's port, and the HTTP port on the node's own address (host network)."""
    return [
        {"op": "add", "path": f"{CONTAINER}/env/-",
         "value": {"name": "KUBERNETES_SERVICE_PORT", "value": str(api)}},
        # POD_IP is the node's address with the host's network (the overlay sets it).
        *flag_value(args, "--http-host", "$(POD_IP)"),
        *flag_value(args, "--http-port", str(http_port)),
        *probe_ports(http_port),
        # The port list goes: `kubectl apply` merges it by containerPort, so a later apply with
        # another port would add a second entry named "metrics" (refused as a duplicate). With
        # the host's network it only documents the port; the probes name the number instead.
        {"op": "remove", "path": f"{CONTAINER}/ports"},
    ]  # fmt: skip


def probe_ports(http_port: int) -> list[dict[str, Any]]:
    return [
        {"op": "replace", "path": f"{CONTAINER}/{probe}/httpGet/port", "value": http_port}
        for probe in ("readinessProbe", "livenessProbe")
    ]


def agent_rollout_patch(image: str, http_port: int) -> list[dict[str, Any]]:
    """A JSON patch that rolls the agent DaemonSet out to ``image``, for ``kubectl patch``.

    It moves the HTTP port too: on test nodes the agent has its node's network, and during the
    surge of deploy/base's update strategy the old and the new agent run at once on one node.
    """
    args = base_args("daemonset.yaml", "DaemonSet", DAEMONSET)
    return [
        {"op": "replace", "path": f"{CONTAINER}/image", "value": image},
        {"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": image},
        *flag_value(args, "--http-port", str(http_port)),
        *probe_ports(http_port),
    ]


def write_kustomization(
    work_dir: Path,
    image_tag: str,
    api: int,
    http_port: int,
    controller_port: int | None = None,
) -> Path:
    """Write WORK_DIR/kustomization.yaml (JSON is YAML) on top of the overlay; returns WORK_DIR.

    The controller gets its own port (``controller_port``, a free one by default): with the
    host's network it shares its node's address with that node's agent.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    if controller_port is None:
        controller_port = free_port()
    agent_args = base_args("daemonset.yaml", "DaemonSet", DAEMONSET)
    controller_args = base_args("controller.yaml", "Deployment", CONTROLLER)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Relative: kustomize accepts another kustomization's directory anywhere.
        "resources": [os.path.relpath(OVERLAY, work_dir)],
        "images": [{"name": "localhost/seccomp-sync/agent", "newTag": image_tag}],
        "patches": [
            {
                "target": {"kind": "DaemonSet", "name": DAEMONSET},
                "patch": json.dumps(http_patch(agent_args, api, http_port)),
            },
            {
                "target": {"kind": "Deployment", "name": CONTROLLER},
                "patch": json.dumps(http_patch(controller_args, api, controller_port)),
            },
        ],
    }
    (work_dir / "kustomization.yaml").write_text(json.dumps(kustomization, indent=2))
    return work_dir


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    cluster_dir, work_dir, tag = Path(argv[0]).resolve(), Path(argv[1]).resolve(), argv[2]
    port = api_port(cluster_dir / "kubeconfig", cluster_dir / "bin" / "kubectl")
    print(write_kustomization(work_dir, tag, port, free_port()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
