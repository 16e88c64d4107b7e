"""An upgrade from the v1alpha1-only CRDs: objects written before it are rewritten at v1beta1.

This module starts a control plane of its own: the API server refuses to drop a version from a
CRD while `status.storedVersions` names it, so the session's cluster, whose CRDs already store
v1beta1, cannot go back to the previous release's CRDs. The test reads etcd itself (the test
cluster's etcd listens on loopback without TLS, and serves its JSON gateway), so it sees the
version each object is really stored as, not only what the API server converts it to.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.main import main
from tests.cluster.pytest_plugin import Cluster, ClusterError
from tests.integration.crds import CRDS_DIR, apply_documents
from tests.integration.profiles import DENY_MKDIR
from tests.integration.test_deploy import token_kubeconfig

pytestmark = pytest.mark.cluster

MIGRATION_DIR = Path(__file__).resolve().parents[2] / "deploy" / "migration"
MIGRATION_NAMESPACE = "seccomp-sync"
MIGRATION_ACCOUNT = "seccomp-sync-migrate-storage"
CRD = "customresourcedefinitions.apiextensions.k8s.io/"

CRDS = {
    "seccompprofiles": "seccompprofile.yaml",
    "seccompnodestatuses": "seccompnodestatus.yaml",
    "seccomptenantpolicies": "seccomptenantpolicy.yaml",
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane that has never seen our CRDs."""
    instance = Cluster.in_dir(tmp_path_factory.mktemp("upgrade-cluster"))
    try:
        instance.up()
    except ClusterError as err:
        pytest.fail(f"the upgrade test's control plane did not start:\n{err}", pytrace=False)
    try:
        yield instance
    finally:
        instance.down()


def previous_release_crd(file: str) -> dict[str, Any]:
    """The CRD as the previous release shipped it: v1alpha1 only, stored as v1alpha1."""
    crd: dict[str, Any] = yaml.safe_load((CRDS_DIR / file).read_text(encoding="utf-8"))
    [old] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    old = copy.deepcopy(old)
    old["storage"] = True
    old.pop("deprecated")
    old.pop("deprecationWarning")
    crd["spec"]["versions"] = [old]
    return crd


def etcd_api_version(cluster: Cluster, key: str) -> str:
    """The apiVersion in the bytes etcd holds under `key` (custom resources are stored as JSON)."""
    ports = json.loads((cluster.state_dir / "ports.json").read_text(encoding="utf-8"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['etcdClient']}/v3/kv/range",
        data=json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        kvs = json.loads(response.read())["kvs"]
    assert len(kvs) == 1, f"etcd holds nothing under {key}"
    return str(json.loads(base64.b64decode(kvs[0]["value"]))["apiVersion"])


def stored_versions(cluster: Cluster, plural: str) -> list[str]:
    out = cluster.kubectl(
        "get", "crd", f"{plural}.seccompsync.io", "-o", "jsonpath={.status.storedVersions}"
    ).stdout
    return list(json.loads(out))


def wait_established(cluster: Cluster) -> None:
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{p}.seccompsync.io" for p in CRDS),
    )


def migration_account(cluster: Cluster, tmp_path: Path) -> Cluster:
    """deploy/migration's ServiceAccount and rights (not its Job: no node runs it here), and the
    cluster as that account sees it."""
    cluster.kubectl("create", "namespace", MIGRATION_NAMESPACE)
    rendered = yaml.safe_load_all(cluster.kubectl("kustomize", str(MIGRATION_DIR)).stdout)
    apply_documents(cluster, *(d for d in rendered if d and d["kind"] != "Job"))
    token = cluster.kubectl(
        "create", "token", MIGRATION_ACCOUNT, "-n", MIGRATION_NAMESPACE, "--duration=1h"
    ).stdout.strip()
    account = token_kubeconfig(cluster, token, tmp_path / "migration.kubeconfig")
    user = f"system:serviceaccount:{MIGRATION_NAMESPACE}:{MIGRATION_ACCOUNT}"
    for verb, resource, allowed in (
        (
            "patch",
            CRD + "seccompprofiles.seccompsync.io",
            "no",
        ),
        (
            "patch",
            CRD + "seccompprofiles.seccompsync.io --subresource=status",
            "yes",
        ),
        (
            "patch",
            CRD + "other.example.com --subresource=status",
            "no",
        ),
        ("delete", "seccompprofiles.seccompsync.io", "no"),
        ("create", "seccompprofiles.seccompsync.io", "no"),
        ("update", "seccompprofiles.seccompsync.io", "yes"),
        ("update", "seccompprofiles.seccompsync.io --subresource=status", "no"),
        ("list", "pods", "no"),
    ):
        answer = cluster.kubectl(
            "auth", "can-i", verb, *resource.split(), "-A", "--as", user, check=False
        ).stdout.strip()
        assert answer == allowed, f"{user} {verb} {resource}: {answer}"
    return account


def get(cluster: Cluster, resource: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", resource, *args, "-o", "json").stdout
    )
    return result


def test_objects_created_as_v1alpha1_are_stored_as_v1beta1_after_migrate_storage(
    fresh: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    apply_documents(fresh, *(previous_release_crd(f) for f in CRDS.values()))
    wait_established(fresh)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    fresh.kubectl("create", "namespace", namespace)
    profiles = [
        {
            "apiVersion": "seccompsync.io/v1alpha1",
            "kind": "SeccompProfile",
            "metadata": {"name": f"p{i}", "namespace": namespace},
            "spec": {**DENY_MKDIR, "listenerMetadata": f"p{i}", "listenerPath": "/run/x.sock"},
        }
        for i in range(12)
    ]
    node_status = {
        "apiVersion": "seccompsync.io/v1alpha1",
        "kind": "SeccompNodeStatus",
        "metadata": {"name": "node-a"},
        "status": {"nodeName": "node-a", "synced": True, "installed": [f"{namespace}/p0@abc"]},
    }
    policy = {
        "apiVersion": "seccompsync.io/v1alpha1",
        "kind": "SeccompTenantPolicy",
        "metadata": {"name": "strict"},
        "spec": {"namespaceSelector": {"matchLabels": {"x": "y"}}, "atLeastRuntimeDefault": True},
    }
    apply_documents(fresh, *profiles, node_status, policy)
    keys = {
        **{
            f"/registry/seccompsync.io/seccompprofiles/{namespace}/p{i}": ("seccompprofiles", i)
            for i in range(12)
        },
        "/registry/seccompsync.io/seccompnodestatuses/node-a": ("seccompnodestatuses", 0),
        "/registry/seccompsync.io/seccomptenantpolicies/strict": ("seccomptenantpolicies", 0),
    }
    for key in keys:
        assert etcd_api_version(fresh, key) == "seccompsync.io/v1alpha1"

    # The upgrade: the new CRDs. Nothing is rewritten by applying them.
    fresh.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
    wait_established(fresh)
    for plural in CRDS:
        assert stored_versions(fresh, plural) == ["v1alpha1", "v1beta1"]
    before = {
        "profiles": get(fresh, "seccompprofiles.v1beta1.seccompsync.io", "-n", namespace),
        "node": get(fresh, "seccompnodestatuses.v1beta1.seccompsync.io", "node-a"),
        "policy": get(fresh, "seccomptenantpolicies.v1beta1.seccompsync.io", "strict"),
    }
    for key in keys:
        assert etcd_api_version(fresh, key) == "seccompsync.io/v1alpha1"

    # As deploy/migration's ServiceAccount, with nothing but its token: its rights are enough.
    account = migration_account(fresh, tmp_path)
    started = time.monotonic()
    assert main(["migrate-storage", "--kubeconfig", str(account.kubeconfig)]) == 0
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert "seccompprofiles.seccompsync.io: rewrote 12 object(s) at v1beta1" in out
    assert (
        "seccompprofiles.seccompsync.io: status.storedVersions ['v1alpha1', 'v1beta1'] -> "
        "['v1beta1']" in out
    )
    assert "seccompnodestatuses.seccompsync.io: rewrote 1 object(s) at v1beta1" in out
    assert "seccomptenantpolicies.seccompsync.io: rewrote 1 object(s) at v1beta1" in out
    with capsys.disabled():
        print(f"\nmigrate-storage of 14 objects took {took:.2f} s")

    for plural in CRDS:
        assert stored_versions(fresh, plural) == ["v1beta1"]
    for key in keys:
        assert etcd_api_version(fresh, key) == "seccompsync.io/v1beta1", key
    after = {
        "profiles": get(fresh, "seccompprofiles.v1beta1.seccompsync.io", "-n", namespace),
        "node": get(fresh, "seccompnodestatuses.v1beta1.seccompsync.io", "node-a"),
        "policy": get(fresh, "seccomptenantpolicies.v1beta1.seccompsync.io", "strict"),
    }
    # Unchanged in content: same spec, status, uid and generation (a no-change update does not
    # bump generation); only resourceVersion and managedFields move.
    assert _content(after) == _content(before)
    # Still readable as v1alpha1 (served, deprecated) for the previous release's agents.
    old_view = get(fresh, "seccompprofiles.v1alpha1.seccompsync.io", "p3", "-n", namespace)
    assert old_view["spec"] == profiles[3]["spec"]

    # Again: nothing to do, and it says so.
    assert main(["migrate-storage", "--kubeconfig", str(account.kubeconfig)]) == 0
    again = capsys.readouterr().out
    for plural in CRDS:
        assert f"{plural}.seccompsync.io: every object is already stored as v1beta1" in again


def _content(listing: dict[str, Any]) -> Any:
    def strip(item: dict[str, Any]) -> dict[str, Any]:
        meta = {
            k: v
            for k, v in item["metadata"].items()
            if k not in ("resourceVersion", "managedFields")
        }
        return {**item, "metadata": meta}

    return {
        name: [strip(i) for i in value["items"]] if "items" in value else strip(value)
        for name, value in listing.items()
    }
