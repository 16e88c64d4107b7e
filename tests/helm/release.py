"""A release of the chart on a test cluster: the helm commands the integration and node tests
run, with the same release name, namespace and timeouts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.cluster.pytest_plugin import Cluster
from tests.helm.pytest_plugin import CHART, RELEASE_NAMESPACE, Helm

RELEASE = "seccomp-sync"
CRDS = (
    "seccompprofiles.seccompsync.io",
    "seccompnodestatuses.seccompsync.io",
    "seccomptenantpolicies.seccompsync.io",
    "seccompprofilerecordings.seccompsync.io",
)


def adopt_crds(cluster: Cluster) -> None:
    """Hand CRDs that `kubectl apply` created (other tests of the session, or a cluster moving
    from deploy/ to the chart) to the release: Helm adopts an existing object that carries its
    ownership label and annotations, and refuses any other (docs/helm.md)."""
    for name in CRDS:
        if cluster.kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        cluster.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate", "--overwrite", "crd", name,
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}",
        )  # fmt: skip


def helm(helm: Helm, cluster: Cluster, command: str, *args: str, timeout: float = 180) -> float:
    """``helm COMMAND RELEASE ARGS`` on the cluster; returns the seconds it took."""
    started = time.monotonic()
    helm.run(
        command, RELEASE, *args, "--namespace", RELEASE_NAMESPACE,
        "--timeout", f"{int(timeout - 30)}s", kubeconfig=cluster.kubeconfig, timeout=timeout,
    )  # fmt: skip
    return time.monotonic() - started


def install(helm_: Helm, cluster: Cluster, *args: str, chart: Path = CHART) -> float:
    return helm(helm_, cluster, "install", str(chart), *args)


def upgrade(helm_: Helm, cluster: Cluster, *args: str, chart: Path = CHART) -> float:
    return helm(helm_, cluster, "upgrade", str(chart), *args)


def status(helm_: Helm, cluster: Cluster) -> tuple[int, str]:
    """(revision, status) of the release."""
    out = helm_.run(
        "status", RELEASE, "--namespace", RELEASE_NAMESPACE, "-o", "json",
        kubeconfig=cluster.kubeconfig,
    ).stdout  # fmt: skip
    release = json.loads(out)
    return int(release["version"]), str(release["info"]["status"])


def uninstall(helm_: Helm, cluster: Cluster, *, check: bool = True) -> str:
    """``helm uninstall --wait``; its output."""
    result = helm_.run(
        "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", "150s",
        kubeconfig=cluster.kubeconfig, check=check, timeout=180,
    )  # fmt: skip
    return result.stdout


# Every kind the chart creates outside its namespace but the CRDs.
CLUSTER_KINDS = (
    "clusterroles,clusterrolebindings,mutatingadmissionpolicies,mutatingadmissionpolicybindings,"
    "validatingadmissionpolicies,validatingadmissionpolicybindings"
)


def leftovers(cluster: Cluster) -> list[str]:
    """What an uninstalled release left behind (its CRDs stay by design): cluster objects, the
    namespace's objects, the release's records."""
    found = cluster.kubectl(
        "get", CLUSTER_KINDS, "-l", "app.kubernetes.io/name=seccomp-sync", "-o", "name",
    ).stdout.split()  # fmt: skip
    found += cluster.kubectl(
        "get", "all,serviceaccounts,roles,rolebindings,resourcequotas", "-n", "seccomp-sync",
        "-l", "app.kubernetes.io/name=seccomp-sync", "-o", "name",
    ).stdout.split()  # fmt: skip
    found += cluster.kubectl(
        "get", "secrets", "-n", RELEASE_NAMESPACE, "-l", f"owner=helm,name={RELEASE}",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    return found
