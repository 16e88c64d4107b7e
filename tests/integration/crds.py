"""Install seccomp-sync's CRDs on a control plane and wait until the API server serves them."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.pytest_plugin import Cluster

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("seccompprofiles.seccompsync.io", "seccompnodestatuses.seccompsync.io")


def install_crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES)
    )
    return cluster
