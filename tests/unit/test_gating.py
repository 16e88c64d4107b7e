"""Which pods wait, for what, and the patch that lets them go: pure logic, plain data."""

from __future__ import annotations

from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX, NodeReport, NodeState, Problem
from agent.controller.gate_decision import ProfileReadiness, Release, Wait, decide, readiness
from agent.controller.gated_pods import GATE, GatedPod, gated_pod, release_patch
from agent.controller.profile_status import ProfileView

WEB = ProfileKey("default", "web")
SHA = "a" * 64
OLD_SHA = "b" * 64


def pod_body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "name": "app",
            "uid": "u1",
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "containers": [
                {
                    "name": "c",
                    "securityContext": {
                        "seccompProfile": {
                            "type": "Localhost",
                            "localhostProfile": "seccomp-sync/default/web.json",
                        }
                    },
                }
            ],
            **spec,
        },
    }


def report(
    node: str, sha: str | None = SHA, synced: bool = True, **problems: Problem
) -> NodeReport:
    installed = {WEB: sha[:SHA_PREFIX]} if sha else {}
    return NodeReport(
        node, synced, installed, {ProfileKey("default", k): v for k, v in problems.items()}
    )


def view(sha: str | None = SHA, **kw: Any) -> ProfileView:
    return ProfileView(WEB, 3, sha, **kw)


# --- reading pods ----------------------------------------------------------------------------


def test_a_pod_without_our_gate_is_not_ours() -> None:
    body = pod_body(schedulingGates=[{"name": "example.com/other"}])
    assert gated_pod(body) is None


def test_a_gated_pod_names_its_profiles_and_gates() -> None:
    pod = gated_pod(pod_body(schedulingGates=[{"name": "x/y"}, {"name": GATE}]))
    assert pod is not None
    assert pod.profiles == frozenset({WEB})
    assert pod.gates == ("x/y", GATE)
    assert pod.created == 1767225600.0
    assert pod.pinned_nodes is None


def test_pinned_by_node_name_in_every_term_or_by_hostname() -> None:
    pinned = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                ]
            }
        }
    }
    pod = gated_pod(pod_body(affinity=pinned))
    assert pod is not None and pod.pinned_nodes == frozenset({"n1"})
    by_label = gated_pod(pod_body(nodeSelector={"kubernetes.io/hostname": "n2"}))
    assert by_label is not None and by_label.pinned_nodes == frozenset({"n2"})
    loose = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    pod = gated_pod(pod_body(affinity=loose))
    assert pod is not None and pod.pinned_nodes is None


# --- the release patch -----------------------------------------------------------------------


def gated(**spec: Any) -> GatedPod:
    pod = gated_pod(pod_body(**spec))
    assert pod is not None
    return pod


TEST_RV = {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
NOT_IN = {"key": "metadata.name", "operator": "NotIn", "values": ["n2", "n3"]}


def test_plain_release_removes_only_our_gate_on_the_version_decided_on() -> None:
    assert release_patch(gated(), frozenset()) == [
        TEST_RV,
        {"op": "remove", "path": "/spec/schedulingGates"},
    ]
    other = gated(schedulingGates=[{"name": "x/y"}, {"name": GATE}])
    assert release_patch(other, frozenset())[-1] == {
        "op": "replace",
        "path": "/spec/schedulingGates",
        "value": [{"name": "x/y"}],
    }


def test_narrowing_without_affinity_adds_one_term() -> None:
    ops = release_patch(gated(), frozenset({"n3", "n2"}))
    assert ops[1] == {
        "op": "add",
        "path": "/spec/affinity",
        "value": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [NOT_IN]}]
                }
            }
        },
    }


def test_narrowing_ands_the_exclusion_into_every_existing_term() -> None:
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x"]}]},
    ]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }
    ops = release_patch(gated(affinity=affinity), frozenset({"n2", "n3"}))
    base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
    assert ops[1:3] == [
        {"op": "add", "path": f"{base}/nodeSelectorTerms/0/matchFields", "value": [NOT_IN]},
        {"op": "add", "path": f"{base}/nodeSelectorTerms/1/matchFields/-", "value": NOT_IN},
    ]


def test_narrowing_keeps_preferred_affinity() -> None:
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    ops = release_patch(gated(affinity=affinity), frozenset({"n2", "n3"}))
    assert ops[1]["op"] == "add"
    assert ops[1]["path"].endswith("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")


# --- readiness of one profile ----------------------------------------------------------------


def test_missing_profile_is_a_problem() -> None:
    assert readiness(WEB, None, [report("n1")]).problem == "SeccompProfile default/web: not found"


def test_ready_and_lagging_by_content_hash_not_by_time() -> None:
    result = readiness(
        WEB, view(), [report("n1"), report("n2", sha=OLD_SHA), report("n3", sha=None)]
    )
    assert result.ready_nodes == {"n1"}
    assert set(result.lagging) == {"n2", "n3"}
    assert result.problem is None


def test_invalid_spec_is_a_problem_with_the_reason() -> None:
    result = readiness(
        WEB, view(sha=None, invalid_reason="spec.syscalls[0].names[0]: opne"), [report("n1")]
    )
    assert result.problem == "SeccompProfile default/web: invalid: spec.syscalls[0].names[0]: opne"


def test_invalid_on_every_node_is_a_problem() -> None:
    bad = Problem(NodeState.INVALID, "Compile", "too many instructions")
    result = readiness(WEB, view(), [report("n1", sha=None, web=bad)])
    assert result.problem is not None and "invalid on every node" in result.problem


def test_no_agents_is_a_problem() -> None:
    assert (
        readiness(WEB, view(), []).problem
        == "SeccompProfile default/web: no node runs a seccomp-sync agent"
    )


# --- the decision ----------------------------------------------------------------------------

NODES = frozenset({"n1", "n2"})


def ready_on(*nodes: str, problem: str | None = None) -> dict[ProfileKey, ProfileReadiness]:
    lagging = dict.fromkeys(NODES - set(nodes), "NotYetInstalled")
    return {WEB: ProfileReadiness(frozenset(nodes), lagging, problem)}


def test_released_when_ready_on_every_agent_node() -> None:
    assert (
        decide(gated(), ready_on("n1", "n2"), NODES, now=1767225601, grace_seconds=60) == Release()
    )


def test_waits_within_the_grace_period() -> None:
    assert decide(gated(), ready_on("n1"), NODES, now=1767225610, grace_seconds=60) == Wait()


def test_after_the_grace_period_lagging_nodes_are_excluded() -> None:
    decision = decide(gated(), ready_on("n1"), NODES, now=1767225700, grace_seconds=60)
    assert decision == Release(exclude=frozenset({"n2"}))


def test_pinned_to_lagging_nodes_only_stays_gated() -> None:
    pod = gated(nodeSelector={"kubernetes.io/hostname": "n2"})
    decision = decide(pod, ready_on("n1"), NODES, now=1767225700, grace_seconds=60)
    assert isinstance(decision, Wait) and decision.message is not None
    assert "not ready on its nodes" in decision.message


def test_not_ready_anywhere_stays_gated_after_grace() -> None:
    decision = decide(gated(), ready_on(), NODES, now=1767225700, grace_seconds=60)
    assert isinstance(decision, Wait) and decision.message


@pytest.mark.parametrize("now", [1767225601, 1767229999])
def test_a_problem_always_waits_with_its_message(now: float) -> None:
    decision = decide(
        gated(), ready_on(problem="SeccompProfile default/web: not found"), NODES, now, 60
    )
    assert decision == Wait("SeccompProfile default/web: not found")


def test_every_named_profile_must_be_ready_on_a_node() -> None:
    other = ProfileKey("default", "other")
    pod = gated(
        initContainers=[
            {
                "name": "i",
                "securityContext": {
                    "seccompProfile": {
                        "type": "Localhost",
                        "localhostProfile": "seccomp-sync/default/other.json",
                    }
                },
            }
        ]
    )
    profiles = {
        WEB: ProfileReadiness(frozenset({"n1", "n2"}), {}, None),
        other: ProfileReadiness(frozenset({"n2"}), {"n1": "Outdated"}, None),
    }
    assert decide(pod, profiles, NODES, now=1767225601, grace_seconds=60) == Wait()
    assert decide(pod, profiles, NODES, now=1767225700, grace_seconds=60) == Release(
        exclude=frozenset({"n1"})
    )
