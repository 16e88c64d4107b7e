"""Install seccomp-sync's CRDs on a control plane and wait until the API server serves them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.pytest_plugin import Cluster

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("seccompprofiles.seccompsync.io", "seccompnodestatuses.seccompsync.io")


def install_crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES)
    )
    return cluster


# A spec over the CRD's whole-profile totals (2,048 names) but within every per-field bound.
_OVER_TOTALS = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["read"] * 1024, "action": "SCMP_ACT_LOG"} for _ in range(3)],
}


def _permissive_crd() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS_DIR / "seccompprofile.yaml").read_text())
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["x-kubernetes-validations"] = [
            rule for rule in spec["x-kubernetes-validations"] if ".sum()" not in rule["rule"]
        ]
    return dict(crd)


def _crd_without_builtin_check() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS_DIR / "seccompprofile.yaml").read_text())
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        del spec["properties"]["baseProfileName"]["x-kubernetes-validations"]
    return dict(crd)


def _totals_enforced(cluster: Cluster, namespace: str) -> bool:
    probe = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "size-probe", "namespace": namespace},
        "spec": _OVER_TOTALS,
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
    )
    return result.returncode != 0


@contextmanager
def crd_without_size_totals(cluster: Cluster, namespace: str) -> Iterator[None]:
    """The CRD as it was before it bounded a whole profile's size. Objects created inside exist
    afterwards as they would on a cluster upgraded from that CRD (the API server keeps them)."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps(_permissive_crd()),
    )
    try:
        _wait(lambda: not _totals_enforced(cluster, namespace), "the permissive CRD")
        yield
    finally:
        install_crds(cluster)
        _wait(lambda: _totals_enforced(cluster, namespace), "the shipped CRD")


_UNKNOWN_BUILTIN = {"baseProfileName": "runtime/default@moby-1999-01-01"}


def _builtins_checked(cluster: Cluster, namespace: str) -> bool:
    probe = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "builtin-probe", "namespace": namespace},
        "spec": _UNKNOWN_BUILTIN,
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
    )
    return result.returncode != 0


@contextmanager
def crd_without_builtin_check(cluster: Cluster, namespace: str) -> Iterator[None]:
    """The CRD as a node agent of an older release may meet it: the API server admits a
    built-in base this agent does not ship (a newer release's CRD lists newer built-ins)."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps(_crd_without_builtin_check()),
    )
    try:
        _wait(lambda: not _builtins_checked(cluster, namespace), "the CRD without the check")
        yield
    finally:
        install_crds(cluster)
        _wait(lambda: _builtins_checked(cluster, namespace), "the shipped CRD")


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API server did not serve {what} within {timeout} s")
        time.sleep(0.2)
