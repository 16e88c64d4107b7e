"""The Helm chart on the real API server: install, an upgrade that changes a CRD's schema really
changes it, a rollback takes it back, and uninstall keeps the CRDs and every SeccompProfile.

No node here (tests/e2e/test_helm_node.py runs the chart's pods on a real kubelet): the workloads
are created but never scheduled, which is all the API objects need.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.pytest_plugin import Cluster
from tests.helm import release
from tests.helm.pytest_plugin import CHART, RELEASE_NAMESPACE, Helm, HelmError
from tests.helm.release import CRDS
from tests.integration.conftest import profile_object
from tests.integration.crds import install_crds
from tests.integration.profiles import DENY_MKDIR
from tests.integration.test_deploy import DEPLOY, remove_installation

pytestmark = pytest.mark.cluster

PROFILE_CRD = "seccompprofiles.seccompsync.io"
PROBE_FIELD = "helmUpgradeProbe"
# The first property of SeccompProfile's spec in the generated template, once per served version
# (v1beta1 and its generated v1alpha1 copy): the new chart adds an optional field before each.
SPEC_PROPERTIES = "              properties:\n                baseProfileName:\n"


def chart_with_new_crd_field(tmp_path: Path) -> Path:
    """A copy of the chart whose SeccompProfile CRD has one more optional spec field."""
    chart = tmp_path / "seccomp-sync"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "generated-crds-seccompprofile.yaml"
    text = template.read_text()
    versions = len(yaml.safe_load(text)["spec"]["versions"])
    assert text.count(SPEC_PROPERTIES) == versions, (
        "the CRD's spec properties moved: update the test"
    )
    template.write_text(
        text.replace(
            SPEC_PROPERTIES,
            "              properties:\n"
            f"                {PROBE_FIELD}:\n"
            "                  type: string\n"
            "                  maxLength: 64\n"
            "                  description: Added by the next chart version (a test).\n"
            "                baseProfileName:\n",
        )
    )
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text().replace("\nversion: 0.1.0\n", "\nversion: 0.1.1\n")
    )
    return chart


def spec_properties(cluster: Cluster) -> dict[str, Any]:
    crd = json.loads(cluster.kubectl("get", "crd", PROFILE_CRD, "-o", "json").stdout)
    version = crd["spec"]["versions"][0]
    properties: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    return properties


def stored_probe(cluster: Cluster, namespace: str, name: str) -> object:
    """Create a profile carrying the probe field: what the API server stored of it, None if it
    refused the field as unknown to the CRD's schema."""
    obj = profile_object(namespace, name, {**DENY_MKDIR, PROBE_FIELD: "kept"})
    created = cluster.kubectl(
        "create", "--validate=strict", "-f", "-", input=json.dumps(obj), check=False
    )
    if f'unknown field "spec.{PROBE_FIELD}"' in created.stderr:
        return None
    assert created.returncode == 0, created.stderr
    got = json.loads(
        cluster.kubectl("get", "seccompprofile", name, "-n", namespace, "-o", "json").stdout
    )
    return got["spec"].get(PROBE_FIELD)


@pytest.fixture
def clean(cluster: Cluster, helm: Helm) -> Iterator[str]:
    """No seccomp-sync installation before, not even its CRDs, and none after but the CRDs
    (other tests of the session share them: restored as crds/ defines them); yields a namespace
    for profiles."""
    remove_installation(cluster)
    cluster.kubectl("delete", "crd", *CRDS, "--ignore-not-found", "--wait=true", timeout=120)
    namespace = f"h-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        yield namespace
    finally:
        release.uninstall(helm, cluster, check=False)
        remove_installation(cluster)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        install_crds(cluster)


def test_install_upgrade_rollback_uninstall_on_the_api_server(
    cluster: Cluster, helm: Helm, clean: str, tmp_path: Path
) -> None:
    namespace = clean
    release.install(helm, cluster)
    assert release.status(helm, cluster) == (1, "deployed")
    for name in CRDS:
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for obj in (
        "daemonset/seccomp-sync-agent",
        "deployment/seccomp-sync-controller",
        "serviceaccount/seccomp-sync-agent",
    ):
        cluster.kubectl("get", "-n", "seccomp-sync", obj)
    cluster.kubectl("get", "mutatingadmissionpolicy/seccomp-sync-profiles-ready")
    # The installed schema does not know the probe field: the API server refuses it.
    assert PROBE_FIELD not in spec_properties(cluster)
    assert stored_probe(cluster, namespace, "before") is None

    release.upgrade(helm, cluster, chart=chart_with_new_crd_field(tmp_path))
    assert release.status(helm, cluster) == (2, "deployed")
    assert spec_properties(cluster)[PROBE_FIELD]["maxLength"] == 64
    assert stored_probe(cluster, namespace, "after-upgrade") == "kept"

    release.helm(helm, cluster, "rollback", "1")
    assert release.status(helm, cluster) == (3, "deployed")
    assert PROBE_FIELD not in spec_properties(cluster)

    out = release.uninstall(helm, cluster)
    assert "kept due to the resource policy" in out
    for name in CRDS:
        cluster.kubectl("get", "crd", name)
    profiles = json.loads(
        cluster.kubectl("get", "seccompprofiles", "-n", namespace, "-o", "json").stdout
    )
    assert [p["metadata"]["name"] for p in profiles["items"]] == ["after-upgrade"]
    assert release.leftovers(cluster) == []
    # The namespace goes once its objects are gone (helm uninstall --wait waited for them).
    gone = cluster.kubectl(
        "wait", "--for=delete", "namespace/seccomp-sync", "--timeout=120s", check=False,
        timeout=150,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr


def test_moving_from_kubectl_apply_to_the_chart(
    cluster: Cluster, helm: Helm, clean: str, tmp_path: Path
) -> None:
    """docs/helm.md, "Moving from kubectl apply -k deploy/", command for command: every object
    deploy/ created is adopted by the release. kubectl keeps owning the fields it set beside
    Helm: the install conflicts (kustomize printed the policies' CEL with extra blank lines) and
    so does the first upgrade that changes a CRD's schema (.spec.versions), until each runs with
    --force-conflicts, which hands those fields to Helm for good."""
    cluster.kubectl("apply", "-k", str(DEPLOY), timeout=120)
    rendered = cluster.kubectl("kustomize", str(DEPLOY)).stdout
    cluster.kubectl(
        "label", "-f", "-", "--overwrite", "app.kubernetes.io/managed-by=Helm", input=rendered
    )
    cluster.kubectl(
        "annotate", "-f", "-", "--overwrite", f"meta.helm.sh/release-name={release.RELEASE}",
        f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}", input=rendered,
    )  # fmt: skip
    with pytest.raises(HelmError) as refused:
        release.install(helm, cluster)
    assert 'conflicts with "kubectl-client-side-apply"' in refused.value.stderr
    # Not `helm uninstall`: the failed release owns the adopted objects, and would delete them.
    release.upgrade(helm, cluster, "--install", "--force-conflicts")
    assert release.status(helm, cluster) == (2, "deployed")
    new_chart = chart_with_new_crd_field(tmp_path)
    with pytest.raises(HelmError) as refused:
        release.upgrade(helm, cluster, chart=new_chart)
    assert 'conflict with "kubectl-client-side-apply"' in refused.value.stderr
    release.upgrade(helm, cluster, "--force-conflicts", chart=new_chart)
    assert spec_properties(cluster)[PROBE_FIELD]["type"] == "string"
    release.upgrade(helm, cluster)
    assert PROBE_FIELD not in spec_properties(cluster)
