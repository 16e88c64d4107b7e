"""Tenant guardrails on the real API server: the ValidatingAdmissionPolicies of
deploy/base/tenant-policy.yaml, parameterised by SeccompTenantPolicy objects, refuse exactly what
agent/profiles/tenancy/policy.py refuses, with the same message, through server-side apply and
through a client-side `kubectl apply --validate=false` (admission does not depend on the client)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.model import OciSeccomp
from agent.profiles.tenancy.policy import (
    parse_policy,
    pod_violations,
    profile_violations,
    recording_violations,
    selects,
)
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.conftest import profile_object
from tests.tenancy.cases import (
    POD_CASES,
    PROFILE_CASES,
    RECORDING_CASES,
    RESTRICTED,
    PodCase,
    ProfileCase,
    RecordingCase,
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


@pytest.fixture(scope="module", autouse=True)
def tenant_admission(crd: Cluster) -> Iterator[None]:
    """The shipped tenant admission policies, for this module only: later modules must not
    meet them unless they install them (a profile write would need their parameter kind)."""
    install_tenant_admission(crd)
    yield
    uninstall_tenant_admission(crd)


@pytest.fixture(scope="module")
def scenarios(crd: Cluster) -> Iterator[dict[str, Scenario]]:
    """Every case's namespace and policy, created up front; then a canary shows the API server's
    admission caches have caught up (they are filled by watches, in order)."""
    crd.kubectl("delete", "seccomptenantpolicy", SHIPPED_NAME, "--ignore-not-found")
    made: dict[str, Scenario] = {}
    cases: list[ProfileCase | PodCase | RecordingCase] = [
        *PROFILE_CASES,
        *POD_CASES,
        *RECORDING_CASES,
    ]
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


def install_tenant_admission(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(TENANT_POLICY))


def uninstall_tenant_admission(cluster: Cluster) -> None:
    cluster.kubectl("delete", "--ignore-not-found", "-f", str(TENANT_POLICY), check=False)


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


@pytest.mark.parametrize("case", RECORDING_CASES, ids=lambda c: c.id)
def test_recordings(crd: Cluster, scenarios: dict[str, Scenario], case: RecordingCase) -> None:
    scenario = scenarios[case.id]
    obj = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": "web", "namespace": scenario.namespace},
        "spec": case.spec,
    }
    found = recording_violations(parse_policy(scenario.policy), "web", case.spec)
    python = f"{found[0].field}: {found[0].message}" if found else None
    result = crd.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    refused = None if result.returncode == 0 else result.stderr
    server = denial(refused, "seccomp-sync-tenant-recordings")
    assert server == python == scenario.message(case.refusal)


def test_a_recording_in_a_forbidden_namespace_can_still_be_stopped_and_deleted(
    crd: Cluster,
) -> None:
    """A recording made before its namespace was forbidden to record: only a new spec is
    checked, so the controller's finalizer and status writes and the deletion pass."""
    scenario = fresh_scenario(crd, "recording-predates")
    recording = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": "web", "namespace": scenario.namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}},
    }
    crd.kubectl("delete", "seccomptenantpolicy", scenario.policy_name)
    wait_for(
        lambda: apply(crd, recording, "create", "--dry-run=server") is None,
        timeout=30,
        what="the policy's removal to take effect",
    )
    crd.kubectl("create", "-f", "-", input=json.dumps(recording))
    forbidding = {**scenario.policy, "spec": {**scenario.policy["spec"], "recording": "Forbidden"}}
    crd.kubectl("apply", "-f", "-", input=json.dumps(forbidding))
    probe = {**recording, "metadata": {**recording["metadata"], "name": "probe"}}
    wait_for(
        lambda: apply(crd, probe, "create", "--dry-run=server") is not None,
        timeout=30,
        what="the forbidding policy to take effect",
    )
    finalizer = '{"metadata": {"finalizers": ["seccompsync.io/recording-result"]}}'
    crd.kubectl(
        "patch", "scmprec", "web", "-n", scenario.namespace, "--type=merge", "-p", finalizer
    )
    crd.kubectl("patch", "scmprec", "web", "-n", scenario.namespace, "--type=merge", "-p",
                '{"metadata": {"finalizers": null}}')  # fmt: skip
    crd.kubectl("delete", "scmprec", "web", "-n", scenario.namespace, "--timeout=20s")
    remove(crd, scenario)


# --- objects that predate the policy -------------------------------------------------------------


def fresh_scenario(cluster: Cluster, key: str) -> Scenario:
    """A namespace and a strict policy that selects it, once admission sees both."""
    scenario = Scenario(1000 + abs(hash(key)) % 1000, dict(RESTRICTED), {})
    create_namespace(cluster, scenario.namespace, scenario.labels)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(scenario.policy))
    probe = profile_object(scenario.namespace, "probe", {"defaultAction": "SCMP_ACT_LOG"})
    wait_for(
        lambda: apply(cluster, probe, "create", "--dry-run=server") is not None,
        timeout=30,
        what="the policy to take effect",
    )
    return scenario


def remove(cluster: Cluster, scenario: Scenario) -> None:
    cluster.kubectl("delete", "namespace", scenario.namespace, "--wait=false", check=False)
    cluster.kubectl("delete", "seccomptenantpolicy", scenario.policy_name, check=False)


def test_a_profile_that_predates_the_policy_keeps_working_until_its_spec_changes(
    crd: Cluster,
) -> None:
    namespace = f"tp-{RUN}-old"
    create_namespace(crd, namespace, {})
    weak = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert apply(crd, profile_object(namespace, "old", weak)) is None
    # The namespace becomes restricted: the strict policy now selects it.
    scenario = Scenario(2000, dict(RESTRICTED), {})
    scenario.namespace = namespace
    crd.kubectl(
        "label",
        "namespace",
        namespace,
        f"{TEST_LABEL}={namespace}",
        *(f"{k}={v}" for k, v in RESTRICTED.items()),
    )
    policy = scenario.policy
    policy["spec"]["namespaceSelector"]["matchLabels"][TEST_LABEL] = namespace
    crd.kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:
        probe = profile_object(namespace, "probe", weak)
        wait_for(
            lambda: apply(crd, probe, "create", "--dry-run=server") is not None,
            timeout=30,
            what="the policy to take effect",
        )
        # Metadata, status and deletion are not spec changes: they pass.
        crd.kubectl("label", "scmp", "old", "-n", namespace, "team=a")
        crd.kubectl(
            "patch",
            "scmp",
            "old",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"state": "Pending"}}),
        )
        # A spec change is checked like a new profile.
        changed = {**weak, "syscalls": [{"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO"}]}
        message = denial(
            apply(crd, profile_object(namespace, "old", changed), "replace"),
            "seccomp-sync-tenant-profiles",
        )
        assert message is not None
        assert message.startswith("spec.defaultAction: SCMP_ACT_ALLOW is not allowed in")
        crd.kubectl("delete", "scmp", "old", "-n", namespace)
    finally:
        remove(crd, scenario)


def test_ephemeral_containers_are_checked_when_added(crd: Cluster) -> None:
    scenario = fresh_scenario(crd, "ephemeral")
    try:
        own = PodCase("own", {"container": "seccomp-sync/{own}/p.json"}, None)
        crd.kubectl("create", "-f", "-", input=json.dumps(pod(own, scenario.namespace, "debug-me")))

        def ephemeral(path: str) -> dict[str, Any]:
            debug = pod(PodCase("e", {"container": path}, None), scenario.namespace, "x")
            container = debug["spec"]["containers"][0]
            container["name"] = f"debug-{uuid.uuid4().hex[:4]}"
            return {"spec": {"ephemeralContainers": [container]}}

        def add(path: str) -> subprocess.CompletedProcess[str]:
            return crd.kubectl(
                "patch",
                "pod",
                "debug-me",
                "-n",
                scenario.namespace,
                "--subresource=ephemeralcontainers",
                "--type=strategic",
                "-p",
                json.dumps(ephemeral(path)),
                check=False,
            )

        refused = add("seccomp-sync/team-b/p.json")
        assert refused.returncode != 0
        message = denial(refused.stderr, "seccomp-sync-tenant-pods")
        assert message is not None
        assert message.startswith(
            "spec.ephemeralContainers[0].securityContext.seccompProfile.localhostProfile: "
            "seccomp-sync/team-b/p.json (a profile of namespace team-b) is not allowed in"
        )
        admitted = add(f"seccomp-sync/{scenario.namespace}/p.json")
        assert admitted.returncode == 0, admitted.stderr
    finally:
        remove(crd, scenario)


def test_kubectl_explain_documents_the_policy(crd: Cluster) -> None:
    out = crd.kubectl("explain", "seccomptenantpolicy.spec.atLeastRuntimeDefault").stdout
    assert "moby/profiles seccomp/default.json" in out
    out = crd.kubectl("explain", "scmptp.spec.allowedListenerPathPrefixes").stdout
    assert "/run/containerd/containerd.sock" in out
