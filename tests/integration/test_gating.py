"""Scheduling gates on the real control plane: the MutatingAdmissionPolicy in deploy/base adds
the gate, a real controller releases pods, real agents write the profiles for fake Nodes, and
the real scheduler binds the pods (no kubelet runs them)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, running_agent, wait_for
from tests.integration.conftest import apply_profile, profile_object
from tests.integration.controller import ControllerProcess, running_controller
from tests.integration.crds import as_admitted
from tests.integration.nodes import delete_node, register_node
from tests.integration.profiles import DENY_MKDIR

pytestmark = pytest.mark.cluster

ADMISSION = Path(__file__).resolve().parents[2] / "deploy" / "base" / "admission.yaml"
GATE = "seccompsync.io/profiles-ready"
GRACE_SECONDS = 6


@pytest.fixture(scope="module")
def gating_policy(crd: Cluster) -> Iterator[Cluster]:
    """The MutatingAdmissionPolicy and its binding, exactly as deploy/base ships them."""
    docs = [
        d
        for d in yaml.safe_load_all(ADMISSION.read_text())
        if d and d["kind"].startswith("MutatingAdmissionPolicy")
    ]
    assert len(docs) == 2
    crd.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    # The policy takes effect asynchronously: wait until a matching pod really gets the gate.
    probe_ns = f"t-probe-{uuid.uuid4().hex[:6]}"
    crd.kubectl("create", "namespace", probe_ns)

    def gated() -> bool:
        body, _ = as_admitted(crd, pod(probe_ns, "probe", f"seccomp-sync/{probe_ns}/x.json"))
        return body is not None and GATE in gates_of(body)

    wait_for(gated, timeout=30, interval=0.5, what="the MutatingAdmissionPolicy to take effect")
    crd.kubectl("delete", "namespace", probe_ns, "--wait=false")
    yield crd
    for doc in docs:
        crd.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")


@pytest.fixture
def nodes(crd: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """Two fresh fake Nodes with a label only this test's pods select."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"gate-a-{suffix}", f"gate-b-{suffix}")
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    for name in names:
        register_node(crd, name, labels={"seccompsync.io/test-group": namespace})
    yield names
    for name in names:
        delete_node(crd, name)


def pod(namespace: str, name: str, profile: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "pause",
                    "securityContext": {
                        "seccompProfile": {"type": "Localhost", "localhostProfile": profile}
                    },
                }
            ],
            **spec,
        },
    }


def deployment(namespace: str, name: str, profile: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"seccompsync.io/test-group": namespace},
                    "securityContext": {
                        "seccompProfile": {
                            "type": "Localhost",
                            "localhostProfile": f"seccomp-sync/{namespace}/{profile}.json",
                        }
                    },
                    "containers": [{"name": "app", "image": "pause"}],
                },
            },
        },
    }


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def gates_of(obj: dict[str, Any]) -> list[str]:
    return [g["name"] for g in obj["spec"].get("schedulingGates") or []]


def create_app_pod_on_web(cluster: Cluster, namespace: str) -> None:
    """Pod `app`, naming the profile `web`, on this test's nodes only."""
    spec = pod(
        namespace,
        "app",
        f"seccomp-sync/{namespace}/web.json",
        nodeSelector={"seccompsync.io/test-group": namespace},
    )
    cluster.kubectl("create", "-f", "-", input=json.dumps(spec))


def pods(cluster: Cluster, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return list(json.loads(cluster.kubectl(*args).stdout)["items"])


def events_for(cluster: Cluster, namespace: str, name: str) -> list[str]:
    items = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
    )["items"]
    return [e["message"] for e in items if e["reason"] == "SeccompProfileNotReady"]


def agents(
    stack: ExitStack, cluster: Cluster, nodes: tuple[str, ...], tmp_path: Path, namespace: str
) -> list[AgentProcess]:
    return [
        stack.enter_context(
            running_agent(
                cluster, node, tmp_path / node, tmp_path / f"{node}.log", "--namespace", namespace
            )
        )
        for node in nodes
    ]


# --- the policy alone ------------------------------------------------------------------------


def test_policy_gates_only_pods_that_name_a_seccomp_sync_profile(
    gating_policy: Cluster, namespace: str
) -> None:
    cases = {
        "pod-level": (
            pod(
                namespace,
                "pod-level",
                "x",
                securityContext={
                    "seccompProfile": {
                        "type": "Localhost",
                        "localhostProfile": f"seccomp-sync/{namespace}/web.json",
                    }
                },
            ),
            True,
        ),
        "container": (pod(namespace, "container", f"seccomp-sync/{namespace}/web.json"), True),
        "runtime-default": (
            {
                **pod(namespace, "runtime-default", "x"),
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "pause",
                            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        }
                    ]
                },
            },
            False,
        ),
        "other-localhost": (pod(namespace, "other-localhost", "profiles/audit.json"), False),
    }
    init = pod(namespace, "init", "profiles/audit.json")
    init["spec"]["initContainers"] = [
        {
            "name": "init",
            "image": "pause",
            "securityContext": {
                "seccompProfile": {
                    "type": "Localhost",
                    "localhostProfile": f"seccomp-sync/{namespace}/web.json",
                }
            },
        }
    ]
    init["spec"]["schedulingGates"] = [{"name": "example.com/other"}]
    cases["init-container"] = (init, True)
    # Bound at creation (bypasses the scheduler; the API server refuses gates on it).
    cases["bound"] = (
        pod(namespace, "bound", f"seccomp-sync/{namespace}/web.json", nodeName="nowhere"),
        False,
    )
    # pod-level case: its container names a non-seccomp-sync path; only the pod level matches.
    for name, (obj, expected) in cases.items():
        created = json.loads(
            gating_policy.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
        )
        assert (GATE in gates_of(created)) is expected, name
    stored = {p["metadata"]["name"]: gates_of(p) for p in pods(gating_policy, namespace)}
    assert stored["init"] == ["example.com/other", GATE]  # other gates are kept
    # The escape hatch (docs/operating.md): one JSON patch lets a pod go by hand.
    gating_policy.kubectl(
        "patch", "pod", "container", "-n", namespace, "--type=json",
        "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]',
    )  # fmt: skip
    released = gating_policy.kubectl("get", "pod", "container", "-n", namespace, "-o", "json")
    assert gates_of(json.loads(released.stdout)) == []


# --- with agents and the controller ----------------------------------------------------------


def test_apply_of_one_directory_binds_no_pod_before_its_profile(
    gating_policy: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    """`kubectl apply -f dir/` with the profile and a Deployment of 3 at once: each pod is bound
    only once the profile file is on its node, and all are bound after."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "profile.json").write_text(
        json.dumps(profile_object(namespace, "web", DENY_MKDIR))
    )
    (directory / "deployment.json").write_text(json.dumps(deployment(namespace, "web", "web", 3)))
    with ExitStack() as stack:
        running = agents(stack, gating_policy, nodes, tmp_path, namespace)
        controller = stack.enter_context(
            running_controller(
                gating_policy, namespace, tmp_path / "controller.log", "--grace-seconds", "60"
            )
        )
        gating_policy.kubectl("apply", "-f", str(directory))
        files = {a.node: a.profile_path(namespace, "web") for a in running}
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"bound: {seen}\n{controller.log_tail()}"
            for item in pods(gating_policy, namespace, "app=web"):
                node = item["spec"].get("nodeName")
                if node and item["metadata"]["name"] not in seen:
                    # Observed bound: the file must already be on that node's disk.
                    assert files[node].exists(), (
                        f"{item['metadata']['name']} bound to {node} before its profile"
                    )
                    seen[item["metadata"]["name"]] = node
            time.sleep(0.05)
        assert controller.metric("seccomp_sync_gate_releases_total") == 3
        wait_for(
            lambda: status_of(gating_policy, namespace, "web").get("state") == "Installed",
            what="the profile Installed",
        )
        assert status_of(gating_policy, namespace, "web")["waitingPods"] == 0


def test_lagging_node_is_excluded_after_the_grace_period(
    gating_policy: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    node_a, node_b = nodes
    with ExitStack() as stack:
        (_,) = agents(stack, gating_policy, (node_a,), tmp_path, namespace)
        agent_b = AgentProcess(
            gating_policy, node_b, tmp_path / "b", tmp_path / "b.log", "--namespace", namespace
        )
        agent_b.start().wait_ready()
        agent_b.stop()  # its report stays: node B counts as expected, and lags from now on
        controller = stack.enter_context(
            running_controller(
                gating_policy,
                namespace,
                tmp_path / "controller.log",
                "--grace-seconds",
                str(GRACE_SECONDS),
            )
        )
        apply_profile(gating_policy, namespace, "web", DENY_MKDIR)
        created = time.monotonic()
        gating_policy.kubectl(
            "apply", "-f", "-", input=json.dumps(deployment(namespace, "web", "web", 3))
        )
        # A DaemonSet-like pod pinned to the lagging node: excluding B leaves it nowhere to go.
        pinned = pod(
            namespace,
            "pinned",
            f"seccomp-sync/{namespace}/web.json",
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [node_b]}
                                ]
                            }
                        ]
                    }
                }
            },
        )
        gating_policy.kubectl("create", "-f", "-", input=json.dumps(pinned))

        wait_for(
            lambda: status_of(gating_policy, namespace, "web").get("waitingPods") == 4,
            timeout=GRACE_SECONDS,
            what="4 pods waiting in the profile's status",
        )
        header, row = gating_policy.kubectl("get", "scmp", "web", "-n", namespace).stdout.split(
            "\n"
        )[:2]
        assert header.split()[:4] == ["NAME", "STATUS", "READY", "WAITING"]
        assert row.split()[0] == "web" and row.split()[3] == "4"

        def all_bound() -> list[dict[str, Any]] | None:
            items = pods(gating_policy, namespace, "app=web")
            return (
                items if len(items) == 3 and all(i["spec"].get("nodeName") for i in items) else None
            )

        bound = wait_for(all_bound, timeout=60, what="pods bound after the grace period")
        assert time.monotonic() - created >= GRACE_SECONDS - 1
        assert {i["spec"]["nodeName"] for i in bound} == {node_a}
        for item in bound:
            terms = item["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            assert all(
                {"key": "metadata.name", "operator": "NotIn", "values": [node_b]}
                in t["matchFields"]
                for t in terms
            )
        pinned_now = json.loads(
            gating_policy.kubectl("get", "pod", "pinned", "-n", namespace, "-o", "json").stdout
        )
        assert GATE in gates_of(pinned_now) and not pinned_now["spec"].get("nodeName")
        wait_for(
            lambda: events_for(gating_policy, namespace, "pinned"),
            what="an Event on the pinned pod",
        )
        assert controller.metric("seccomp_sync_gated_pods") == 1

        # Node B's agent is back: the pinned pod goes, and new pods are free to use both nodes.
        agent_b.start().wait_ready()
        try:
            wait_for(
                lambda: (
                    json.loads(
                        gating_policy.kubectl(
                            "get", "pod", "pinned", "-n", namespace, "-o", "json"
                        ).stdout
                    )["spec"].get("nodeName")
                    == node_b
                ),
                timeout=30,
                what="the pinned pod bound once its node caught up",
            )
            gating_policy.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")

            def five_bound() -> list[dict[str, Any]] | None:
                items = [
                    i
                    for i in pods(gating_policy, namespace, "app=web")
                    if i["spec"].get("nodeName")
                ]
                return items if len(items) == 5 else None

            newest = sorted(
                wait_for(five_bound, timeout=30, what="5 pods bound"),
                key=lambda i: i["metadata"]["creationTimestamp"],
            )
            new = [
                i
                for i in newest
                if i["metadata"]["name"] not in {b["metadata"]["name"] for b in bound}
            ]
            assert len(new) == 2
            assert all(not (i["spec"].get("affinity") or {}).get("nodeAffinity") for i in new)
        finally:
            agent_b.stop()


def test_missing_profile_keeps_the_pod_gated_with_an_event_until_it_exists(
    gating_policy: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    with ExitStack() as stack:
        agents(stack, gating_policy, nodes, tmp_path, namespace)
        stack.enter_context(
            running_controller(
                gating_policy, namespace, tmp_path / "controller.log", "--grace-seconds", "1"
            )
        )
        create_app_pod_on_web(gating_policy, namespace)
        messages = wait_for(
            lambda: events_for(gating_policy, namespace, "app"), what="an Event on the pod"
        )
        assert messages == [f"SeccompProfile {namespace}/web: not found"]
        time.sleep(2)  # past the grace period: still gated, never narrowed
        still = json.loads(
            gating_policy.kubectl("get", "pod", "app", "-n", namespace, "-o", "json").stdout
        )
        assert GATE in gates_of(still) and "affinity" not in still["spec"]
        apply_profile(gating_policy, namespace, "web", DENY_MKDIR)
        wait_for(
            lambda: json.loads(
                gating_policy.kubectl("get", "pod", "app", "-n", namespace, "-o", "json").stdout
            )["spec"].get("nodeName"),
            timeout=30,
            what="the pod bound once its profile exists",
        )


def test_invalid_profile_keeps_pods_gated_and_says_why(
    gating_policy: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    typo = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["opne"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    with ExitStack() as stack:
        agents(stack, gating_policy, nodes, tmp_path, namespace)
        stack.enter_context(
            running_controller(
                gating_policy, namespace, tmp_path / "controller.log", "--grace-seconds", "1"
            )
        )
        apply_profile(gating_policy, namespace, "typo", typo)
        gating_policy.kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps(pod(namespace, "app", f"seccomp-sync/{namespace}/typo.json")),
        )
        (message,) = wait_for(
            lambda: events_for(gating_policy, namespace, "app"), what="an Event on the pod"
        )
        assert message.startswith(f"SeccompProfile {namespace}/typo: invalid")
        assert "opne" in message
        wait_for(
            lambda: status_of(gating_policy, namespace, "typo").get("waitingPods") == 1,
            what="status.waitingPods 1",
        )


def test_controller_killed_while_pods_wait_the_other_replica_releases_them(
    gating_policy: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    with ExitStack() as stack:
        agents(stack, gating_policy, nodes, tmp_path, namespace)
        replicas = [
            ControllerProcess(
                gating_policy, namespace, tmp_path / f"c{i}.log", "--grace-seconds", "60"
            ).start()
            for i in range(2)
        ]
        for replica in replicas:
            stack.callback(replica.stop)
            replica.wait_ready()
        leader = wait_for(lambda: next((r for r in replicas if r.leading()), None), what="a leader")
        (standby,) = [r for r in replicas if r is not leader]
        create_app_pod_on_web(gating_policy, namespace)
        wait_for(
            lambda: events_for(gating_policy, namespace, "app"),
            what="the pod gated, with its Event",
        )
        leader.stop(signal.SIGKILL)  # no release of the Lease: the standby waits for it to expire
        apply_profile(gating_policy, namespace, "web", DENY_MKDIR)
        wait_for(
            lambda: json.loads(
                gating_policy.kubectl("get", "pod", "app", "-n", namespace, "-o", "json").stdout
            )["spec"].get("nodeName"),
            timeout=40,
            what=f"the standby releasing the pod\n{standby.log_tail()}",
        )
        assert standby.leading()


# On a real kubelet node, the same directory applied at once never shows a CreateContainerError:
# tests/e2e/test_node_seccomp.py, test_apply_of_one_directory_never_shows_a_create_container_error
# (and its counterpart without the policy's binding).
