"""SeccompProfileRecording on the real API server: the CRD refuses bad input at apply, and the
MutatingAdmissionPolicy of deploy/base/recording.yaml gives the recording profile to exactly the
pods a recording selects (in its own namespace, created while it is active), which the gate
policy of deploy/base/admission.yaml then holds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.crds import as_admitted

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "base"
GATE = "seccompsync.io/profiles-ready"


def recording(
    namespace: str, name: str, spec: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, **(spec or {}), **fields},
    }


def pod(namespace: str, name: str, labels: dict[str, str], *containers: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [{"name": c, "image": "busybox"} for c in containers or ("web",)],
        },
    }


def create(cluster: Cluster, obj: dict[str, Any], check: bool = True) -> tuple[int, str]:
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(obj), check=check)
    return result.returncode, result.stdout + result.stderr


def created_pod(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod as admission left it (a server-side dry run: nothing is stored)."""
    out = cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj)
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def profiles_of(pod_body: dict[str, Any]) -> dict[str, str | None]:
    """container name -> its Localhost profile (None: none set)."""
    return {
        c["name"]: ((c.get("securityContext") or {}).get("seccompProfile") or {}).get(
            "localhostProfile"
        )
        for c in pod_body["spec"]["containers"]
    }


def settle(cluster: Cluster, namespace: str) -> None:
    """Wait until admission sees every recording made so far in `namespace`: the policy reads
    its parameters from an informer, which sees objects in the order they were made, so once a
    canary recording made last takes effect, so have the others."""
    labels = {"seccompsync.io/canary": "yes"}
    create(
        cluster,
        recording(namespace, f"canary-{uuid.uuid4().hex[:6]}", podSelector={"matchLabels": labels}),
    )

    def canary_seen() -> bool:
        body, _ = as_admitted(cluster, pod(namespace, "canary", labels))
        if body is None:
            return False
        profile = profiles_of(body)["web"]
        return profile is not None and "/canary-" in profile

    wait_for(canary_seen, timeout=30, interval=0.2, what="admission to see the recordings")


def admission_documents(file: str, *kinds: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / file).read_text()) if d and d["kind"] in kinds]


@pytest.fixture(scope="module")
def recording_policy(crd: Cluster) -> Iterator[Cluster]:
    """The recording and gate policies with their bindings, exactly as deploy/base ships them."""
    docs = admission_documents(
        "recording.yaml", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"
    ) + admission_documents(
        "admission.yaml", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"
    )
    assert len(docs) == 4
    crd.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    probe_ns = f"t-probe-{uuid.uuid4().hex[:6]}"
    crd.kubectl("create", "namespace", probe_ns)
    create(crd, recording(probe_ns, "probe"))
    expected = recording_localhost_profile(ProfileKey(probe_ns, "probe"))

    last: list[str] = []

    def mutated() -> bool:
        body, said = as_admitted(crd, pod(probe_ns, "p", {"app": "web"}))
        last[:] = [said]
        if body is None:
            return False
        gates = [g["name"] for g in body["spec"].get("schedulingGates") or []]
        return profiles_of(body) == {"web": expected} and GATE in gates

    # Both policies: each takes effect on its own, asynchronously.
    try:
        wait_for(mutated, timeout=60, interval=0.5, what="the recording and gate policies to act")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last pod admitted:\n{last[0][:3000]}") from None
    crd.kubectl("delete", "namespace", probe_ns, "--wait=false")
    yield crd
    for doc in docs:
        crd.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")


# -- the CRD -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"podSelector": {}}, "podSelector selects nothing in particular"),
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
            "In and NotIn need values",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like"}]}},
            "Unsupported value",
        ),
        ({"podSelector": {"matchLabels": {"app": "not a value"}}}, "should match"),
        ({"podSelector": {"matchLabels": {"no spaces": "x"}}}, "a label key must be"),
        (
            {"podSelector": {"matchLabels": {"app": "web"}}, "containers": ["c" * 60]},
            "would be longer than 63 characters",
        ),
        (
            {"podSelector": {"matchLabels": {"app": "web"}}, "profileNamePrefix": "p" * 63},
            "profileNamePrefix",
        ),
        (
            {"podSelector": {"matchLabels": {"app": "web"}}, "baseProfileName": "runtime/nope"},
            "no built-in base 'runtime/nope'",
        ),
    ],
    ids=[
        "empty-selector",
        "in-without-values",
        "unknown-operator",
        "bad-label-value",
        "bad-label-key",
        "result-name-too-long",
        "prefix-too-long",
        "unknown-base",
    ],
)
def test_crd_refuses_bad_input_at_apply(
    crd: Cluster, namespace: str, spec: dict[str, Any], says: str
) -> None:
    obj = recording(namespace, "web")
    obj["spec"] = spec
    code, out = create(crd, obj, check=False)
    assert code != 0, f"accepted: {spec}"
    assert says in out


def test_crd_accepts_a_full_recording_and_defaults_active(crd: Cluster, namespace: str) -> None:
    obj = recording(
        namespace,
        "web",
        containers=["web", "sidecar"],
        baseProfileName="runtime/default@moby-2026-06-30",
        profileNamePrefix="shop",
        podSelector={
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "Exists"}],
        },
    )
    create(crd, obj)
    stored = json.loads(crd.kubectl("get", "scmprec", "web", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["active"] is True
    table = crd.kubectl("get", "scmprec", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "PODS", "NODES", "SYSCALLS", "AGE"]


def test_kubectl_explain_explains(crd: Cluster) -> None:
    def explained() -> bool:
        result = crd.kubectl("explain", "seccompprofilerecording.spec", check=False)
        return result.returncode == 0 and "podSelector" in result.stdout

    wait_for(explained, timeout=30, interval=0.5, what="kubectl explain to know the CRD")
    spec = crd.kubectl("explain", "seccompprofilerecording.spec").stdout
    for field in ("podSelector", "containers", "baseProfileName", "active", "profileNamePrefix"):
        assert field in spec
    phase = crd.kubectl("explain", "seccompprofilerecording.status.phase").stdout
    assert "Completed: the results are written" in phase


# -- the mutation --------------------------------------------------------------------------------


def test_a_selected_pod_gets_the_recording_profile_and_the_gate(
    recording_policy: Cluster, namespace: str
) -> None:
    create(recording_policy, recording(namespace, "web", containers=["web"]))
    settle(recording_policy, namespace)
    expected = recording_localhost_profile(ProfileKey(namespace, "web"))
    body = created_pod(recording_policy, pod(namespace, "web-1", {"app": "web"}, "web", "sidecar"))
    assert profiles_of(body) == {"web": expected, "sidecar": None}
    assert body["spec"]["containers"][0]["securityContext"]["seccompProfile"]["type"] == (
        "Localhost"
    )
    # It names a seccomp-sync profile now, so the gate holds it until the node is ready.
    assert GATE in [g["name"] for g in body["spec"].get("schedulingGates", [])]


def test_every_container_is_recorded_when_none_are_named(
    recording_policy: Cluster, namespace: str
) -> None:
    create(
        recording_policy,
        recording(
            namespace,
            "web",
            podSelector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
        ),
    )
    settle(recording_policy, namespace)
    expected = recording_localhost_profile(ProfileKey(namespace, "web"))
    body = created_pod(recording_policy, pod(namespace, "web-1", {"app": "web"}, "a", "b"))
    assert profiles_of(body) == {"a": expected, "b": expected}


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "db"}),
        ({"matchLabels": {"app": "web"}}, {}),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            {"app": "web"},
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "web"}),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "web"}),
    ],
    ids=["other-value", "no-labels", "not-in", "exists", "does-not-exist"],
)
def test_a_pod_outside_the_selector_is_untouched(
    recording_policy: Cluster, namespace: str, selector: dict[str, Any], labels: dict[str, str]
) -> None:
    create(recording_policy, recording(namespace, "web", podSelector=selector))
    settle(recording_policy, namespace)
    body = created_pod(recording_policy, pod(namespace, "other", labels))
    assert profiles_of(body) == {"web": None}
    assert "schedulingGates" not in body["spec"]


def test_a_recording_never_selects_another_namespaces_pods(
    recording_policy: Cluster, namespace: str
) -> None:
    create(recording_policy, recording(namespace, "web"))
    settle(recording_policy, namespace)
    other = f"t-{uuid.uuid4().hex[:10]}"
    recording_policy.kubectl("create", "namespace", other)
    try:
        body = created_pod(recording_policy, pod(other, "web-1", {"app": "web"}))
        assert profiles_of(body) == {"web": None}
    finally:
        recording_policy.kubectl("delete", "namespace", other, "--wait=false")


def test_an_inactive_recording_selects_nothing(recording_policy: Cluster, namespace: str) -> None:
    create(recording_policy, recording(namespace, "web", active=False))
    settle(recording_policy, namespace)
    body = created_pod(recording_policy, pod(namespace, "web-1", {"app": "web"}))
    assert profiles_of(body) == {"web": None}


def test_a_pod_created_before_the_recording_is_untouched(
    recording_policy: Cluster, namespace: str
) -> None:
    create(recording_policy, pod(namespace, "early", {"app": "web"}))
    create(recording_policy, recording(namespace, "web"))
    settle(recording_policy, namespace)
    # A later change to the pod (a label) is an UPDATE: the policy never sees it.
    recording_policy.kubectl("label", "pod", "early", "-n", namespace, "touched=yes")
    body = json.loads(
        recording_policy.kubectl("get", "pod", "early", "-n", namespace, "-o", "json").stdout
    )
    assert profiles_of(body) == {"web": None}


def test_a_bound_pod_is_recorded_without_a_gate(recording_policy: Cluster, namespace: str) -> None:
    """The API server refuses a scheduling gate on a pod created with spec.nodeName."""
    create(recording_policy, recording(namespace, "web"))
    settle(recording_policy, namespace)
    bound = pod(namespace, "web-1", {"app": "web"})
    bound["spec"]["nodeName"] = "some-node"
    body = created_pod(recording_policy, bound)
    assert profiles_of(body) == {"web": recording_localhost_profile(ProfileKey(namespace, "web"))}
    assert "schedulingGates" not in body["spec"]
