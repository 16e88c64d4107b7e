"""Tenant guardrails on the real API server: the ValidatingAdmissionPolicies of
deploy/base/tenant-policy.yaml, parameterised by SeccompTenantPolicy objects, refuse exactly what
agent/tenancy/policy.py refuses, with the same message, through server-side apply and through a
client-side `kubectl apply --validate=false` (admission does not depend on the client)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.model import OciSeccomp
from agent.tenancy.policy import parse_policy, pod_violations, profile_violations, selects
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.conftest import profile_object
from tests.tenancy.cases import (
    POD_CASES,
    PROFILE_CASES,
    RESTRICTED,
    PodCase,
    ProfileCase,
    policy_object,
)

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TENANT_POLICY = REPO / "deploy" / "base" / "tenant-policy.yaml"
SHIPPED_NAME = "restricted-pod-security"
RUN = uuid.uuid4().hex[:6]
TEST_LABEL = "seccompsync.io/tenant-test"
METHODS = {
    "server-side-apply": ("apply", "--server-side", "--field-manager=tenant-test"),
    "apply-validate-false": ("apply", "--validate=false"),
}


class Scenario:
    """One namespace and one policy that selects only it (plus the case's own selector)."""

    def __init__(self, index: int, labels: dict[str, str], overrides: dict[str, Any]) -> None:
        self.namespace = f"tp-{RUN}-{index}"
        self.policy_name = f"{SHIPPED_NAME}-{RUN}-{index}"
        self.labels = {**labels, TEST_LABEL: self.namespace}
        policy = policy_object(overrides, name=self.policy_name)
        selector = policy["spec"]["namespaceSelector"]
        selector["matchLabels"] = {**selector.get("matchLabels", {}), TEST_LABEL: self.namespace}
        self.policy = policy

    def message(self, refusal: str | None) -> str | None:
        return None if refusal is None else refusal.replace(SHIPPED_NAME, self.policy_name)


def create_namespace(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(namespace))


def apply(cluster: Cluster, obj: dict[str, Any], *how: str) -> str | None:
    """None when admitted, else kubectl's error output."""
    result = cluster.kubectl(*(how or ("apply",)), "-f", "-", input=json.dumps(obj), check=False)
    return None if result.returncode == 0 else result.stderr


def denial(stderr: str | None, policy: str) -> str | None:
    """The message of the tenant policy's denial in kubectl's output; None when admitted."""
    if stderr is None:
        return None
    marker = f"ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: "
    assert marker in stderr, stderr
    return stderr.split(marker, 1)[1].strip()


@pytest.fixture(scope="module")
def scenarios(crd: Cluster) -> Iterator[dict[str, Scenario]]:
    """Every case's namespace and policy, created up front; then a canary shows the API server's
    admission caches have caught up (they are filled by watches, in order)."""
    crd.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(TENANT_POLICY))
    crd.kubectl("delete", "seccomptenantpolicy", SHIPPED_NAME, "--ignore-not-found")
    made: dict[str, Scenario] = {}
    cases: list[ProfileCase | PodCase] = [*PROFILE_CASES, *POD_CASES]
    for index, case in enumerate(cases):
        labels = case.labels if isinstance(case, ProfileCase) else dict(RESTRICTED)
        made[case.id] = Scenario(index, labels, case.policy)
    canary = Scenario(len(cases), RESTRICTED, {"allowedActions": ["SCMP_ACT_ERRNO"]})
    try:
        for scenario in [*made.values(), canary]:
            create_namespace(crd, scenario.namespace, scenario.labels)
        for scenario in [*made.values(), canary]:
            crd.kubectl("apply", "-f", "-", input=json.dumps(scenario.policy))
        probe = profile_object(canary.namespace, "canary", {"defaultAction": "SCMP_ACT_LOG"})
        wait_for(
            lambda: apply(crd, probe, "create", "--dry-run=server") is not None,
            timeout=30,
            what="the tenant policies to take effect",
        )
        yield made
    finally:
        for scenario in [*made.values(), canary]:
            crd.kubectl("delete", "namespace", scenario.namespace, "--wait=false", check=False)
            crd.kubectl("delete", "seccomptenantpolicy", scenario.policy_name, check=False)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", PROFILE_CASES, ids=lambda c: c.id)
def test_profiles(
    crd: Cluster, scenarios: dict[str, Scenario], case: ProfileCase, method: str
) -> None:
    scenario = scenarios[case.id]
    policy = parse_policy(scenario.policy)
    # The Python verdict on the same input...
    found = (
        profile_violations(policy, OciSeccomp.model_validate(case.spec))
        if selects(policy, scenario.labels)
        else []
    )
    python = f"{found[0].field}: {found[0].message}" if found else None
    # ... the API server's ...
    name = f"p-{method}"
    obj = profile_object(scenario.namespace, name, case.spec)
    server = denial(apply(crd, obj, *METHODS[method]), "seccomp-sync-tenant-profiles")
    # ... and what the case says.
    assert server == python == scenario.message(case.refusal)
    stored = crd.kubectl("get", "scmp", name, "-n", scenario.namespace, check=False)
    assert (stored.returncode == 0) == (case.refusal is None)


def pod(case: PodCase, namespace: str, name: str) -> dict[str, Any]:
    """A pod that Pod Security "restricted" admits, naming the case's profiles."""

    def context(kind: str) -> dict[str, Any]:
        path = case.profiles.get(kind)
        profile = (
            {"type": "Localhost", "localhostProfile": path.format(own=namespace)}
            if path
            else {"type": "RuntimeDefault"}
        )
        return {"seccompProfile": profile}

    def container(name: str, kind: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": "registry.k8s.io/pause:3.10",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                **(context(kind) if kind in case.profiles else {}),
            },
        }

    spec: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, **context("pod")},
        "containers": [container("app", "container")],
    }
    if "init" in case.profiles:
        spec["initContainers"] = [container("init", "init")]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.mark.parametrize("case", POD_CASES, ids=lambda c: c.id)
def test_pods(crd: Cluster, scenarios: dict[str, Scenario], case: PodCase) -> None:
    scenario = scenarios[case.id]
    obj = pod(case, scenario.namespace, "p")
    found = pod_violations(parse_policy(scenario.policy), scenario.namespace, obj)
    python = f"{found[0].field}: {found[0].message}" if found else None
    result = crd.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    server = denial(None if result.returncode == 0 else result.stderr, "seccomp-sync-tenant-pods")
    assert server == python == scenario.message(case.refusal)
