"""Install seccomp-sync's CRDs on a control plane and wait until the API server serves them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.pytest_plugin import Cluster

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = (
    "seccompprofiles.seccompsync.io",
    "seccompnodestatuses.seccompsync.io",
    "seccompprofilerecordings.seccompsync.io",
)


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


def apply_documents(cluster: Cluster, *documents: dict[str, Any]) -> None:
    """Server-side apply of objects given as dicts (taking over fields others own)."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input="\n---\n".join(json.dumps(d) for d in documents),
    )


def _refuses(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> bool:
    """Whether the API server now refuses a SeccompProfile with this spec (a dry run)."""
    probe = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "crd-probe", "namespace": namespace},
        "spec": spec,
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
    )
    return result.returncode != 0


@contextmanager
def _older_crd(
    cluster: Cluster, namespace: str, crd: dict[str, Any], probe: dict[str, Any], what: str
) -> Iterator[None]:
    """``crd`` in place of the shipped SeccompProfile CRD until the block ends; ``probe`` is a
    spec the shipped CRD refuses and ``crd`` admits, which tells when each is being served."""
    apply_documents(cluster, crd)
    try:
        _wait(lambda: not _refuses(cluster, namespace, probe), what)
        yield
    finally:
        install_crds(cluster)
        _wait(lambda: _refuses(cluster, namespace, probe), "the shipped CRD")


def crd_without_size_totals(cluster: Cluster, namespace: str) -> AbstractContextManager[None]:
    """The CRD as it was before it bounded a whole profile's size. Objects created inside exist
    afterwards as they would on a cluster upgraded from that CRD (the API server keeps them)."""
    return _older_crd(cluster, namespace, _permissive_crd(), _OVER_TOTALS, "the permissive CRD")


_UNKNOWN_BUILTIN = {"baseProfileName": "runtime/default@moby-1999-01-01"}


def crd_without_builtin_check(cluster: Cluster, namespace: str) -> AbstractContextManager[None]:
    """The CRD as a node agent of an older release may meet it: the API server admits a
    built-in base this agent does not ship (a newer release's CRD lists newer built-ins)."""
    return _older_crd(
        cluster,
        namespace,
        _crd_without_builtin_check(),
        _UNKNOWN_BUILTIN,
        "the CRD without the check",
    )


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API server did not serve {what} within {timeout} s")
        time.sleep(0.2)


def as_admitted(cluster: Cluster, manifest: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """`manifest` as the API server would store it after admission (a server-side dry run:
    nothing is stored): the object, or None and the refusal, with everything kubectl said."""
    result = cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-",
        check=False, input=json.dumps(manifest),
    )  # fmt: skip
    said = result.stdout + result.stderr
    return (json.loads(result.stdout) if result.returncode == 0 else None), said
