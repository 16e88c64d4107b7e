"""In-cluster recording end to end, as a user does it (issue 18's proof, docs/recording.md).

Everything goes through kubectl: the real CRD, deploy/'s admission policies (the recording's
mutation, the scheduling gate), the agent DaemonSet and the controller from the image, on a real
kubelet, containerd and runc. Pods are created without a seccompProfile and without a node: the
recording's policy gives them the recording profile and the gate, the controller releases them.
The workloads are Debian's busybox (tests/node/images.py: the host's /bin/busybox).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.e2e import gating, pods
from tests.e2e.test_node_seccomp import (  # the deployed agent (a fixture) and its process
    agent,  # noqa: F401
    agent_pods,
    agent_process,
    ready_agent,
)
from tests.integration.nodes import recorded_names as names_in_part
from tests.integration.nodes import recording_part
from tests.node.agent_deploy import AGENT_LABEL, free_port
from tests.node.agent_deploy import NAMESPACE as AGENT_NAMESPACE
from tests.node.images import BUSYBOX_BINARY, BUSYBOX_IMAGE
from tests.node.pytest_plugin import AgentImage, Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]

API_VERSION = "seccompsync.io/v1beta1"


# --- what a user applies -------------------------------------------------------------------


def recording(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SeccompProfileRecording",
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": labels}},
    }


def pod(
    name: str,
    node: str,
    labels: dict[str, str],
    command: list[str],
    profile: str | None = None,
    restart: str = "Always",
) -> dict[str, Any]:
    """A pod as a user writes it: no seccompProfile unless `profile` (a Localhost path), placed
    by the scheduler on `node` (so the scheduling gate applies)."""
    container: dict[str, Any] = {
        "name": "web",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": command,
    }
    if profile is not None:
        container["securityContext"] = {
            "seccompProfile": {"type": "Localhost", "localhostProfile": profile}
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            # Test nodes have no pod network: the server listens on the host's.
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def httpd(port: int) -> list[str]:
    # /etc/hostname is the kubelet's file: something to serve that the image does not hold.
    return ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/etc"]


# --- what a user looks at ------------------------------------------------------------------


def get_recording(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "scmprec", name, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def recorded_names(status: dict[str, Any], container: str = "web") -> set[str]:
    for entry in status.get("containers") or []:
        if entry["name"] == container:
            return set(entry["syscalls"])
    return set()


def wait_status(
    cluster: Cluster, namespace: str, name: str, what: str, ok: Any, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = get_recording(cluster, namespace, name).get("status") or {}
        return status if ok(status) else None

    result: dict[str, Any] = pods.poll(probe, timeout, f"recording {namespace}/{name}: {what}")
    return result


def wait_recording_admits(cluster: Cluster, namespace: str, labels: dict[str, str]) -> None:
    """The admission policy sees a new recording through an informer: wait until a pod created
    now would get the recording profile (server-side dry run: nothing is stored)."""

    def mutated() -> bool:
        manifest = pod("probe", "none", labels, ["true"])
        out = cluster.kubectl(
            "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(manifest),
        ).stdout  # fmt: skip
        context = json.loads(out)["spec"]["containers"][0].get("securityContext") or {}
        return "seccompProfile" in context

    pods.poll(mutated, 60, "the recording's admission policy to see the recording", 0.5)


def wait_running(
    cluster: Cluster, namespace: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        obj = pods.get(cluster, namespace, name)
        return obj if pods.is_running(obj) else None

    try:
        return pods.poll(running, timeout, f"pod {namespace}/{name} to run")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{describe(cluster, namespace, name)}") from None


def describe(cluster: Cluster, namespace: str, name: str) -> str:
    """What a user reads when a pod does not start: its state, conditions and Events, and the
    end of the node agent's log (a recorded container waits on the agent's listener)."""
    described = cluster.kubectl("-n", namespace, "describe", "pod", name, check=False)
    agents = cluster.kubectl("-n", AGENT_NAMESPACE, "get", "pods", "-o", "wide", check=False)
    logs = [agent_log(cluster, previous) for previous in (False, True)]
    return (
        f"{described.stdout}\n--- the agent's pods ---\n{agents.stdout}"
        f"\n--- the agent's log, last lines ---\n{logs[0]}"
        f"\n--- the agent's previous container, last lines ---\n{logs[1]}"
    )


def agent_log(cluster: Cluster, previous: bool) -> str:
    """The last lines the node agents logged (of their previous containers: `previous`)."""
    command = ["-n", AGENT_NAMESPACE, "logs", "-l", AGENT_LABEL, "--tail=80", "--prefix"]
    result = cluster.kubectl(*command, *(["--previous"] if previous else []), check=False)
    return str(result.stdout or result.stderr)


def wait_succeeded(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> None:
    def succeeded() -> bool:
        return bool(pods.get(cluster, namespace, name)["status"].get("phase") == "Succeeded")

    try:
        pods.poll(succeeded, timeout, f"pod {namespace}/{name} to run to its end")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{describe(cluster, namespace, name)}") from None


def fetch(port: int) -> str:
    """A request as a client on the node would make it (hostNetwork: the host's loopback)."""

    def attempt() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    return pods.poll(attempt, 30, f"the server on port {port} to answer", 0.5)


def seccomp_profile(cluster: Cluster, pod_obj: dict[str, Any]) -> dict[str, Any] | None:
    context = pod_obj["spec"]["containers"][0].get("securityContext") or {}
    profile: dict[str, Any] | None = context.get("seccompProfile")
    return profile


# --- 1. a real server recorded, then enforced ------------------------------------------------


def test_recorded_server_is_enforced_by_its_result(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    cluster = crd
    labels = {"app": "web"}
    pods.create(cluster, namespace, recording("web", labels))
    wait_recording_admits(cluster, namespace, labels)

    port = free_port()
    pods.create(cluster, namespace, pod("web-1", agent.name, labels, httpd(port)))
    created = pods.get(cluster, namespace, "web-1")
    assert seccomp_profile(cluster, created) == {
        "type": "Localhost",
        "localhostProfile": recording_localhost_profile(ProfileKey(namespace, "web")),
    }
    running = wait_running(cluster, namespace, "web-1")
    assert gating.gates_of(running) == []  # released by the controller
    served = fetch(port)
    assert served.strip()  # the node's hostname (hostNetwork)

    # Published by the agent at most about a second after the calls, then merged.
    status = wait_status(
        cluster, namespace, "web", "the request's calls counted",
        lambda s: {"accept", "accept4"} & recorded_names(s),
    )  # fmt: skip
    assert status["phase"] == "Recording"
    assert (status["podsSeen"], status["nodesSeen"]) == (1, 1)
    assert status["syscallsCounted"] == len(recorded_names(status)) > 10
    recorded = recorded_names(status)
    assert "mkdir" not in recorded  # what the enforced pod will try below
    table = cluster.kubectl("-n", namespace, "get", "scmprec", "web").stdout
    row = table.splitlines()[1].split()
    assert row[:5] == ["web", "Recording", "1", "1", str(status["syscallsCounted"])], table

    cluster.kubectl(
        "-n", namespace, "patch", "scmprec", "web", "--type=merge",
        "-p", '{"spec": {"active": false}}',
    )  # fmt: skip
    done = wait_status(
        cluster, namespace, "web", "Completed", lambda s: s.get("phase") == "Completed"
    )
    assert done["profiles"] == ["web-web"]

    def installed() -> dict[str, Any] | None:
        out = cluster.kubectl("-n", namespace, "get", "scmp", "web-web", "-o", "json", check=False)
        if out.returncode != 0:
            return None
        obj: dict[str, Any] = json.loads(out.stdout)
        return obj if (obj.get("status") or {}).get("state") == "Installed" else None

    result = pods.poll(installed, 60, "the result web-web to be Installed")
    assert result["metadata"]["labels"]["seccompsync.io/recording"] == "web"
    assert result["spec"]["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in result["spec"]["syscalls"] for n in rule["names"]}
    assert recorded | {"write"} <= allowed and "mkdir" not in allowed

    # A new pod of the same workload under the result: a recording no longer mutates it.
    port2 = free_port()
    profile = pods.localhost_profile(namespace, "web-web")
    pods.create(cluster, namespace, pod("web-2", agent.name, labels, httpd(port2), profile))
    assert seccomp_profile(cluster, pods.get(cluster, namespace, "web-2")) == {
        "type": "Localhost",
        "localhostProfile": profile,
    }
    wait_running(cluster, namespace, "web-2")
    assert fetch(port2).strip() == served.strip()
    denied = cluster.kubectl(
        "-n", namespace, "exec", "web-2", "--", "mkdir", "/tmp/never-recorded", check=False
    )  # fmt: skip
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr, denied.stderr  # EPERM, the default
    assert fetch(port2).strip() == served.strip()  # the server lives on


# --- 4. what a recording leaves alone ----------------------------------------------------------

SECCOMP_LINE = ["sh", "-c", "grep '^Seccomp:' /proc/self/status; sleep 3600"]


def part_pods(cluster: Cluster, node: str, key: ProfileKey) -> list[str] | None:
    """The pods this node's agent recorded for the recording (its SeccompNodeStatus)."""
    part = recording_part(cluster, node, key)
    return None if part is None else list(part["pods"])


def test_pods_a_recording_does_not_select_are_untouched(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """A pod made before the recording, one outside the selector, one of another namespace with
    the selected labels, and every pod for a recording selecting nothing: their spec is as
    written, they start unconfined (no filter at all), and no recording counts them. A pod the
    recording does select, made last, shows that the recording was recording meanwhile."""
    cluster = crd
    other_ns = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other_ns)
    try:
        web = {"app": "web"}
        pods.create(cluster, namespace, pod("early", agent.name, web, SECCOMP_LINE))
        wait_running(cluster, namespace, "early")
        pods.create(cluster, namespace, recording("web", web))
        pods.create(cluster, namespace, recording("quiet", {"app": "nobody"}))
        wait_recording_admits(cluster, namespace, web)

        untouched = [
            (namespace, "early"),
            (namespace, "outside"),
            (other_ns, "elsewhere"),
        ]
        pods.create(cluster, namespace, pod("outside", agent.name, {"app": "db"}, SECCOMP_LINE))
        pods.create(cluster, other_ns, pod("elsewhere", agent.name, web, SECCOMP_LINE))
        pods.create(cluster, namespace, pod("selected", agent.name, web, SECCOMP_LINE))
        for ns, name in untouched:
            created = pods.get(cluster, ns, name)
            assert seccomp_profile(cluster, created) is None, (ns, name)
            assert created["metadata"]["labels"] in ({"app": "web"}, {"app": "db"})
            wait_running(cluster, ns, name)
            assert pods.logs(cluster, ns, name).strip() == "Seccomp:\t0", (ns, name)
        wait_running(cluster, namespace, "selected")
        assert pods.logs(cluster, namespace, "selected").strip() == "Seccomp:\t2"

        status = wait_status(cluster, namespace, "web", "the selected pod counted",
                             lambda s: s.get("podsSeen"))  # fmt: skip
        assert status["podsSeen"] == 1
        assert part_pods(cluster, agent.name, ProfileKey(namespace, "web")) == [
            f"{namespace}/selected"
        ]
        quiet = wait_status(cluster, namespace, "quiet", "a status", lambda s: "phase" in s)
        assert (quiet["phase"], quiet["podsSeen"], quiet["nodesSeen"]) == ("Recording", 0, 0)
        assert part_pods(cluster, agent.name, ProfileKey(namespace, "quiet")) in (None, [])
        assert part_pods(cluster, agent.name, ProfileKey(other_ns, "web")) is None
    finally:
        cluster.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


# --- 3. the agent killed during a recording ------------------------------------------------------


def test_agent_killed_during_a_recording_marks_it_degraded(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """docs/recording.md: the restarted agent lists the container it can no longer serve, the
    recording becomes Degraded, with a condition and one Event naming the pod."""
    cluster = crd
    labels = {"app": "sleeper"}
    pods.create(cluster, namespace, recording("sleeper", labels))
    wait_recording_admits(cluster, namespace, labels)
    # Asleep in one syscall, already answered: it outlives its listener without noticing.
    pods.create(cluster, namespace, pod("sleeper-1", agent.name, labels, ["sleep", "3600"]))
    wait_running(cluster, namespace, "sleeper-1")
    wait_status(cluster, namespace, "sleeper", "the pod counted", lambda s: s.get("podsSeen"))

    os.kill(agent_process(agent), signal.SIGKILL)  # the kubelet restarts the agent's container
    ready_agent(cluster, agent.name)

    status = wait_status(
        cluster, namespace, "sleeper", "Degraded", lambda s: s.get("phase") == "Degraded", 90
    )
    condition = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert condition["status"] == "True"
    assert "RecorderRestarted" in condition["message"]
    assert f"{namespace}/sleeper-1" in condition["message"]
    assert {"nanosleep", "clock_nanosleep"} & recorded_names(status)  # names before the kill

    def posted() -> list[dict[str, Any]] | None:
        found = [
            e
            for e in pods.events(cluster, namespace, "sleeper")
            if e["involvedObject"]["kind"] == "SeccompProfileRecording"
            and e["reason"] == "RecordingDegraded"
        ]
        return found or None

    (event,) = pods.poll(posted, 30, "the RecordingDegraded Event")
    assert event["type"] == "Warning"
    assert f"{namespace}/sleeper-1" in event["message"] and agent.name in event["message"]
    assert "RecorderRestarted" in event["message"], event["message"]
    described = cluster.kubectl("-n", namespace, "describe", "scmprec", "sleeper").stdout
    assert "Warning  RecordingDegraded" in described, described


def test_pod_created_as_the_agent_is_killed_ends_up_recorded(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """After a SIGKILL the node's part still says ready until the restarted agent publishes:
    a recorded pod created at that moment may be released at once. Whatever the kubelet meets
    meanwhile (no listener: the container fails to start), it retries, and the pod runs,
    recorded, with no one's help."""
    cluster = crd
    labels = {"app": "window"}
    pods.create(cluster, namespace, recording("window", labels))
    wait_recording_admits(cluster, namespace, labels)
    os.kill(agent_process(agent), signal.SIGKILL)
    pods.create(cluster, namespace, pod("window-1", agent.name, labels, ["sleep", "3600"]))
    # A start that met no listener is retried by the kubelet with its back-off (10 s, doubling):
    # under load a few failed attempts add up to minutes.
    wait_running(cluster, namespace, "window-1", timeout=300)
    ready_agent(cluster, agent.name)
    status = wait_status(cluster, namespace, "window", "the pod counted",
                         lambda s: s.get("podsSeen") == 1)  # fmt: skip
    assert status["phase"] == "Recording"  # not degraded: it started under the new agent


# --- 3b. no agent on the node ---------------------------------------------------------------

DAEMONSET = "daemonset/seccomp-sync-agent"
NO_NODE = "/spec/template/spec/nodeSelector/seccompsync.io~1e2e-no-node"


def test_recorded_pod_waits_while_no_agent_listens(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """docs/recording.md: while no agent listens on a node, a recorded pod cannot start there
    (runc needs the listener): the recording's NodesReady condition names the node, the pod
    waits at the gate, and starts once the agent is back."""
    cluster = crd
    labels = {"app": "waiting"}
    pods.create(cluster, namespace, recording("waiting", labels))
    wait_recording_admits(cluster, namespace, labels)
    wait_status(cluster, namespace, "waiting", "ready on the node",
                lambda s: condition_status(s, "NodesReady") == "True")  # fmt: skip
    # The agent goes from the node as in a rollout or an eviction: stopped by the kubelet.
    cluster.kubectl(
        "-n", "seccomp-sync", "patch", DAEMONSET, "--type=json",
        "-p", json.dumps([{"op": "add", "path": NO_NODE, "value": "none"}]),
    )  # fmt: skip
    try:
        pods.poll(lambda: not agent_pods(cluster, agent.name), 90, "the agent to be gone")
        status = wait_status(
            cluster, namespace, "waiting", "NodesReady False",
            lambda s: condition_status(s, "NodesReady") == "False", 30,
        )  # fmt: skip
        pods.create(cluster, namespace, pod("waiting-1", agent.name, labels, ["sleep", "3600"]))
        time.sleep(10)  # the controller's chance to release it (it must not)
        held = pods.get(cluster, namespace, "waiting-1")
        assert gating.gates_of(held) == [gating.GATE], held["status"]
        assert agent.name in next(
            c["message"] for c in status["conditions"] if c["type"] == "NodesReady"
        )
    finally:
        cluster.kubectl(
            "-n", "seccomp-sync", "patch", DAEMONSET, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": NO_NODE}]),
        )  # fmt: skip
        ready_agent(cluster, agent.name)
    wait_running(cluster, namespace, "waiting-1")
    assert pods.container_status(pods.get(cluster, namespace, "waiting-1"))["restartCount"] == 0


def condition_status(status: dict[str, Any], kind: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None


# --- 5. lossless -----------------------------------------------------------------------------

# A deterministic command; DIR is /tmp/x in the container, a fresh directory on the host.
LOSSLESS_SCRIPT = "mkdir {dir}; ls /; cat /etc/hostname"


def strace_names(command: list[str], env: dict[str, str]) -> set[str]:
    """The syscall names `strace -f -c` counts for `command` on the host (every thread and
    child), calls that failed included."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary"
        subprocess.run(
            ["strace", "-f", "-c", "-o", str(summary), *command],
            check=True, capture_output=True, timeout=60, env=env,
        )  # fmt: skip
        names = set()
        for line in summary.read_text().splitlines():
            fields = line.split()
            # Rows: % time, seconds, usecs/call, calls, [errors,] syscall; then a total row.
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
                names.add(fields[-1])
        return names


def test_recorded_set_holds_every_syscall_strace_counts(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
    tmp_path: Path,
) -> None:
    """The same busybox binary (the image's is the host's /bin/busybox) runs the same script in
    a recorded pod and on the host under strace. Every name strace counts is recorded, but
    `write`, which runc never lets be notified (docs/recording.md: every result allows it)."""
    cluster = crd
    labels = {"app": "once"}
    pods.create(cluster, namespace, recording("once", labels))
    wait_recording_admits(cluster, namespace, labels)
    script = LOSSLESS_SCRIPT.format(dir="/tmp/x")
    pods.create(
        cluster, namespace, pod("once-1", agent.name, labels, ["sh", "-c", script], restart="Never")
    )
    wait_succeeded(cluster, namespace, "once-1")
    # The last call (the shell's exit_group) published: the set is complete.
    status = wait_status(
        cluster, namespace, "once", "every call published",
        lambda s: {"mkdir", "exit_group"} <= recorded_names(s),
    )  # fmt: skip
    recorded = recorded_names(status)

    host_script = LOSSLESS_SCRIPT.format(dir=tmp_path / "x")
    # The environment a container gets: the runtime sets HOSTNAME (without it busybox's sh
    # calls uname(2) to learn it: measured, the one difference a bare host run shows).
    container_env = {"PATH": "/bin",  # the image's (tests/node/images.py)
                     "HOSTNAME": agent.name}  # fmt: skip
    traced = strace_names([str(BUSYBOX_BINARY), "sh", "-c", host_script], container_env)
    assert {"mkdir", "execve", "getdents64"} <= traced  # strace saw the script
    missing = traced - recorded - {"write"}
    assert missing == set(), f"strace counted, not recorded: {sorted(missing)}"
    # What the recording has beyond: runc's last steps before it execs the program (the
    # container start-up), which the host run has not. Printed for the report.
    print(f"recorded {len(recorded)}, strace {len(traced)}, only recorded:",
          sorted(recorded - traced))  # fmt: skip


# --- the containers a recording names, and its results' names ----------------------------------


def test_only_the_named_containers_are_recorded_under_the_prefix(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """`containers: [web]` records that container alone (its sidecar keeps its spec and runs
    unconfined); the result is named `<profileNamePrefix>-web`."""
    cluster = crd
    labels = {"app": "pair"}
    body = recording("pair", labels)
    body["spec"].update({"containers": ["web"], "profileNamePrefix": "shop"})
    pods.create(cluster, namespace, body)
    wait_recording_admits(cluster, namespace, labels)
    manifest = pod("pair-1", agent.name, labels, ["sh", "-c", "mkdir /tmp/a; sleep 3600"])
    side = {**manifest["spec"]["containers"][0], "name": "side", "command": ["sleep", "3600"]}
    manifest["spec"]["containers"].append(side)
    pods.create(cluster, namespace, manifest)
    created = pods.get(cluster, namespace, "pair-1")
    assert "securityContext" not in created["spec"]["containers"][1], created["spec"]
    wait_running(cluster, namespace, "pair-1")

    def seccomp_mode(container: str) -> str:
        return cluster.kubectl(
            "-n", namespace, "exec", "pair-1", "-c", container, "--",
            "grep", "^Seccomp:", "/proc/self/status",
        ).stdout.strip()  # fmt: skip

    assert (seccomp_mode("web"), seccomp_mode("side")) == ("Seccomp:\t2", "Seccomp:\t0")
    status = wait_status(cluster, namespace, "pair", "mkdir counted",
                         lambda s: "mkdir" in recorded_names(s))  # fmt: skip
    assert [c["name"] for c in status["containers"]] == ["web"]

    cluster.kubectl(
        "-n", namespace, "patch", "scmprec", "pair", "--type=merge",
        "-p", '{"spec": {"active": false}}',
    )  # fmt: skip
    done = wait_status(cluster, namespace, "pair", "Completed", lambda s: s["phase"] == "Completed")
    assert done["profiles"] == ["shop-web"]


# --- a recorded container that restarts ------------------------------------------------------


def test_a_recorded_container_that_restarts_is_recorded_again(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """A container that exits and is restarted by the kubelet while the recording is active
    starts under the recording again (runc hands the agent a new listener); the recording
    stays `Recording` (an exit is not a cut), and still counts one pod."""
    cluster = crd
    labels = {"app": "again"}
    pods.create(cluster, namespace, recording("again", labels))
    wait_recording_admits(cluster, namespace, labels)
    script = "mkdir /tmp/a; while [ ! -e /tmp/restart ]; do sleep 0.2; done"
    pods.create(cluster, namespace, pod("again-1", agent.name, labels, ["sh", "-c", script]))
    wait_running(cluster, namespace, "again-1")
    wait_status(cluster, namespace, "again", "mkdir counted",
                lambda s: "mkdir" in recorded_names(s))  # fmt: skip
    cluster.kubectl("-n", namespace, "exec", "again-1", "--", "touch", "/tmp/restart")
    # touch ran in the container, under its filter: recorded like any of its calls.
    wait_status(cluster, namespace, "again", "touch's utimensat counted",
                lambda s: "utimensat" in recorded_names(s))  # fmt: skip

    def restarted() -> dict[str, Any] | None:
        obj = pods.get(cluster, namespace, "again-1")
        count = int(pods.container_status(obj).get("restartCount", 0))
        return obj if count >= 1 and pods.is_running(obj) else None

    pods.poll(restarted, 120, "the container to run again")
    mode = cluster.kubectl(
        "-n", namespace, "exec", "again-1", "--", "grep", "^Seccomp:", "/proc/self/status"
    ).stdout.strip()  # fmt: skip
    assert mode == "Seccomp:\t2"
    time.sleep(3)  # a published degradation, if any, would show within about a second
    status = get_recording(cluster, namespace, "again")["status"]
    assert (status["phase"], status["podsSeen"]) == ("Recording", 1), status
    assert condition_status(status, "Degraded") == "False", status


# --- deleting a recording writes its results first --------------------------------------------


def test_deleting_an_active_recording_writes_its_results(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """docs/recording.md: a deleted recording waits (finalizer) until its results are written;
    its recording profile leaves the node, the recorded pod keeps running."""
    cluster = crd
    labels = {"app": "brief"}
    pods.create(cluster, namespace, recording("brief", labels))
    wait_recording_admits(cluster, namespace, labels)
    script = "mkdir /tmp/a && echo made; sleep 3600"
    pods.create(cluster, namespace, pod("brief-1", agent.name, labels, ["sh", "-c", script]))
    wait_running(cluster, namespace, "brief-1")
    wait_status(cluster, namespace, "brief", "mkdir counted",
                lambda s: "mkdir" in recorded_names(s))  # fmt: skip
    on_node = agent.seccomp_root / recording_localhost_profile(ProfileKey(namespace, "brief"))
    assert on_node.is_file()

    cluster.kubectl("-n", namespace, "delete", "scmprec", "brief", "--timeout=60s")
    out = cluster.kubectl("-n", namespace, "get", "scmp", "brief-web", "-o", "json").stdout
    result = json.loads(out)
    assert result["metadata"]["labels"]["seccompsync.io/recording"] == "brief"
    assert "mkdir" in {n for rule in result["spec"]["syscalls"] for n in rule["names"]}
    pods.poll(lambda: not on_node.exists(), 30, "the recording profile to leave the node")
    assert pods.is_running(pods.get(cluster, namespace, "brief-1"))


# --- a restricted namespace records on the runtime default ---------------------------------

RUNTIME_DEFAULT = "runtime/default@moby-2026-06-30"
# unshare(2) is denied by the runtime default (to a container without CAP_SYS_ADMIN).
OBSERVED_SCRIPT = (
    "grep '^Seccomp:' /proc/self/status; mkdir /tmp/a && echo made; "
    "unshare -n true || echo unshare=refused; sleep 3600"
)


def test_restricted_namespace_records_on_the_runtime_default(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """Where a tenant policy requires at least the runtime default, a recording without a base
    is refused at apply; one on the runtime default records under runc what the base allows and
    still denies what it denies, and its result is admitted there and enforced."""
    cluster = crd
    policy = f"e2e-{namespace}"
    cluster.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": API_VERSION,
        "kind": "SeccompTenantPolicy",
        "metadata": {"name": policy},
        "spec": {
            "namespaceSelector": {"matchLabels": {"e2e-restricted": namespace}},
            "atLeastRuntimeDefault": True,
        },
    }))  # fmt: skip
    try:
        cluster.kubectl("label", "namespace", namespace, f"e2e-restricted={namespace}")
        labels = {"app": "kept"}
        bare = recording("kept", labels)

        def refused() -> str | None:
            result = cluster.kubectl(
                "-n", namespace, "create", "--dry-run=server", "-f", "-",
                input=json.dumps(bare), check=False,
            )  # fmt: skip
            return result.stderr if result.returncode != 0 else None

        message = pods.poll(refused, 60, "the tenant policy to refuse a recording without base")
        assert "baseProfileName" in message, message
        bare["spec"]["baseProfileName"] = RUNTIME_DEFAULT
        pods.create(cluster, namespace, bare)
        wait_recording_admits(cluster, namespace, labels)

        pods.create(cluster, namespace, pod("kept-1", agent.name, labels,
                                            ["sh", "-c", OBSERVED_SCRIPT]))  # fmt: skip
        wait_running(cluster, namespace, "kept-1")

        def logged() -> str | None:
            text = pods.logs(cluster, namespace, "kept-1")
            return text if "unshare=refused" in text else None

        log = pods.poll(logged, 30, "the recorded script to run")
        assert "Seccomp:\t2" in log and "made" in log, log
        assert "Operation not permitted" in log, log  # the base's denial, kept while recording
        status = wait_status(cluster, namespace, "kept", "mkdir counted",
                             lambda s: "mkdir" in recorded_names(s))  # fmt: skip
        assert "unshare" not in recorded_names(status)  # denied, so never notified

        cluster.kubectl(
            "-n", namespace, "patch", "scmprec", "kept", "--type=merge",
            "-p", '{"spec": {"active": false}}',
        )  # fmt: skip
        done = wait_status(cluster, namespace, "kept", "Completed or not",
                           lambda s: s.get("phase") in ("Completed", "Stopped")
                           and any((c["type"] == "ResultsWritten" and c["status"] == "True")
                                   or c.get("reason") in ("ResultRefused", "ProfileExists")
                                   for c in s.get("conditions") or []))  # fmt: skip
        assert done["phase"] == "Completed", done
        out = cluster.kubectl("-n", namespace, "get", "scmp", "kept-web", "-o", "json").stdout
        assert json.loads(out)["spec"]["baseProfileName"] == RUNTIME_DEFAULT

        profile = pods.localhost_profile(namespace, "kept-web")
        pods.create(cluster, namespace, pod("kept-2", agent.name, {"app": "after"},
                                            ["sh", "-c", OBSERVED_SCRIPT], profile))  # fmt: skip
        wait_running(cluster, namespace, "kept-2")

        def enforced() -> str | None:
            text = pods.logs(cluster, namespace, "kept-2")
            return text if "unshare=refused" in text else None

        log = pods.poll(enforced, 60, "the script under the result")
        assert "Seccomp:\t2" in log and "made" in log, log
    finally:
        cluster.kubectl("delete", "seccomptenantpolicy", policy, "--ignore-not-found", check=False)


# --- 2. two replicas on two nodes ------------------------------------------------------------


def test_replicas_on_two_nodes_make_one_result_their_union(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
    agent_image: AgentImage,
    start_node: Callable[..., Node],
) -> None:
    """A second node joins (the agent DaemonSet runs there too); one replica calls mkdir on
    the first node, the other rmdir on the second, neither both: each node's part holds its
    own, and the result allows both. Last in this module: the second node goes at its end."""
    cluster = crd
    taken = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    name = next(f"127.0.0.{n}" for n in range(2, 255) if f"node/127.0.0.{n}" not in taken)
    # An earlier test's node of this name may have left its report, owned by that Node: the new
    # agent replaces it (test_node_status_announce), so the recorded part can be written.
    second = start_node(name=name, images=(agent_image.archive,))
    try:
        ready_agent(cluster, second.name, agent_image.name)
        labels = {"app": "twin"}
        pods.create(cluster, namespace, recording("twin", labels))
        wait_recording_admits(cluster, namespace, labels)
        scripts = {
            ("twin-a", agent.name): "mkdir /tmp/a && echo made",
            ("twin-b", second.name): "rmdir /tmp/never 2>/dev/null; echo removed",
        }
        for (pod_name, node_name), script in scripts.items():
            manifest = pod(pod_name, node_name, labels, ["sh", "-c", script], restart="Never")
            pods.create(cluster, namespace, manifest)
        for pod_name, node_name in scripts:
            wait_succeeded(cluster, namespace, pod_name, 180)
            assert pods.get(cluster, namespace, pod_name)["spec"]["nodeName"] == node_name

        status = wait_status(
            cluster, namespace, "twin", "both replicas' calls",
            lambda s: {"mkdir", "rmdir"} <= recorded_names(s) and s.get("nodesSeen") == 2,
        )  # fmt: skip
        assert status["podsSeen"] == 2
        parts = {
            n: names_in_part(recording_part(cluster, n, ProfileKey(namespace, "twin")))
            for n in (agent.name, name)
        }
        assert "mkdir" in parts[agent.name] and "rmdir" not in parts[agent.name], parts
        assert "rmdir" in parts[name] and "mkdir" not in parts[name], parts

        cluster.kubectl(
            "-n", namespace, "patch", "scmprec", "twin", "--type=merge",
            "-p", '{"spec": {"active": false}}',
        )  # fmt: skip
        wait_status(cluster, namespace, "twin", "Completed", lambda s: s["phase"] == "Completed")
        out = cluster.kubectl("-n", namespace, "get", "scmp", "twin-web", "-o", "json").stdout
        allowed = {n for rule in json.loads(out)["spec"]["syscalls"] for n in rule["names"]}
        assert {"mkdir", "rmdir"} <= allowed
    finally:
        second.down()
        # Its report would count it among the nodes that run an agent (test_node_seccomp).
        cluster.kubectl(
            "delete", "seccompnodestatus", name, "--ignore-not-found", check=False
        )  # fmt: skip
