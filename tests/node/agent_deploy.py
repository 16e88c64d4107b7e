"""The agent DaemonSet on test nodes: deploy/ through tests/node/overlay, per cluster.

The overlay holds everything a test node needs; what differs per cluster (the image tag, the API
server's port, a free HTTP port) goes into a small kustomization written on top of it.

    python3 -m tests.node.agent_deploy CLUSTER_DIR WORK_DIR IMAGE_TAG   # prints WORK_DIR
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

OVERLAY = Path(__file__).resolve().parent / "overlay"
NAMESPACE = "seccomp-sync"
DAEMONSET = "seccomp-sync-agent"
AGENT_LABEL = "app.kubernetes.io/name=seccomp-sync,app.kubernetes.io/component=agent"


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
    """A port free on every address: the agents bind it on their node's 127.0.0.N."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kustomization(work_dir: Path, image_tag: str, api: int, http_port: int) -> Path:
    """Write WORK_DIR/kustomization.yaml (JSON is YAML) on top of the overlay; returns WORK_DIR."""
    work_dir.mkdir(parents=True, exist_ok=True)
    container = "/spec/template/spec/containers/0"
    patch = [
        {"op": "add", "path": f"{container}/env/-", "value": {
            "name": "KUBERNETES_SERVICE_PORT", "value": str(api)}},
        # args: [run, --root, /var/lib/kubelet/seccomp, --http-port, "8080", ...]
        {"op": "test", "path": f"{container}/args/3", "value": "--http-port"},
        {"op": "replace", "path": f"{container}/args/4", "value": str(http_port)},
        {"op": "replace", "path": f"{container}/ports/0/containerPort", "value": http_port},
    ]  # fmt: skip
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Relative: kustomize accepts another kustomization's directory anywhere.
        "resources": [os.path.relpath(OVERLAY, work_dir)],
        "images": [{"name": "localhost/seccomp-sync/agent", "newTag": image_tag}],
        "patches": [
            {"target": {"kind": "DaemonSet", "name": DAEMONSET}, "patch": json.dumps(patch)}
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
