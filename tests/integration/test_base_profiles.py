"""Base profiles against the real control plane and a real agent: what the node gets, and when.

The API server refuses a malformed baseProfileName; the agent writes the flattened composition,
re-renders children when a base changes (without touching the children), keeps a child's last
good file when its base goes missing or bad, refuses cycles, and the status shows the chain.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.model import OciSeccomp, ProfileSpec
from agent.profiles.builtin_bases import builtin_profile
from agent.profiles.compose import compose
from agent.profiles.render import render
from agent.seccomp.syscalls import native_architecture
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import running_agent, wait_for
from tests.integration.conftest import (
    apply_profile,
    delete_profile,
    profile_object,
    replace_profile,
)
from tests.integration.controller import running_controller
from tests.integration.crds import crd_without_builtin_check
from tests.tenancy.cases import RESTRICTED, policy_object

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def controller(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[None]:
    """The controller writes each profile's status (the base chain with it); its Lease lives in
    this test's namespace, so a controller of another test never leads here."""
    with running_controller(crd, namespace, tmp_path / "controller.log"):
        yield


MOBY = "runtime/default@moby-2026-06-30"
TEAM_BASE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [{"names": ["read", "write", "exit_group", "mkdir"], "action": "SCMP_ACT_ALLOW"}],
}
APP: dict[str, Any] = {
    "baseProfileName": "team-base",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


def flattened(base: dict[str, Any], child: dict[str, Any]) -> bytes:
    return render(
        compose(OciSeccomp.model_validate(base), ProfileSpec.model_validate(child))
    ).content


def read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def generation(cluster: Cluster, namespace: str, name: str) -> int:
    out = cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout
    return int(json.loads(out)["metadata"]["generation"])


def node_problem(
    cluster: Cluster, node: str, namespace: str, name: str, reason: str
) -> dict[str, Any] | None:
    """The node's report on one profile, once it has this reason."""
    out = cluster.kubectl("get", "scmpns", node, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    for problem in (json.loads(out.stdout).get("status") or {}).get("problems") or []:
        if problem.get("profile") == f"{namespace}/{name}" and problem.get("reason") == reason:
            return dict(problem)
    return None


def test_api_server_refuses_a_malformed_base_name_and_a_profile_without_action_or_base(
    crd: Cluster, namespace: str
) -> None:
    for bad in ("Team_Base", "runtime/default", "other-ns/base", "runtime/default@"):
        body = profile_object(namespace, "p", {"baseProfileName": bad})
        result = crd.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
        assert result.returncode != 0, bad
        assert "spec.baseProfileName" in result.stderr, result.stderr
    body = profile_object(
        namespace, "p", {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    )
    result = crd.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "defaultAction is required" in result.stderr


def test_child_gets_the_flattened_file_and_follows_its_base(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    with running_agent(
        crd, "node-b", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        app = agent.profile_path(namespace, "app")
        apply_profile(crd, namespace, "team-base", TEAM_BASE)
        apply_profile(crd, namespace, "app", APP)
        expected = flattened(TEAM_BASE, APP)
        wait_for(lambda: read(app) == expected, what="flattened child on disk")
        on_disk = json.loads(expected)
        assert "baseProfileName" not in on_disk
        assert on_disk["syscalls"][0] == {
            "names": ["mkdir"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 13,
        }

        def ready_with_chain() -> dict[str, Any] | None:
            # Installed on this node (other agents' reports, even stale ones, are not ours).
            st = status(crd, namespace, "app")
            failing = {f["node"] for f in st.get("failingNodes") or []}
            installed = st.get("nodesInstalled", 0) >= 1 and "node-b" not in failing
            return st if installed and st.get("baseChain") else None

        # The status comes from the controller's elected replica.
        st = wait_for(ready_with_chain, timeout=60, what="child Installed with its chain")
        assert st["baseChain"] == [f"{namespace}/team-base"]
        app_generation = generation(crd, namespace, "app")

        # A change to the base reaches the child's file; the child object is not touched.
        new_base = {**TEAM_BASE, "defaultErrnoRet": 38}
        replace_profile(crd, namespace, "team-base", new_base)
        wait_for(lambda: read(app) == flattened(new_base, APP), what="child re-rendered")
        assert generation(crd, namespace, "app") == app_generation

        # An invalid base: the child is not Ready, says why, and keeps its last good file.
        good = read(app)
        bad_base = {**new_base, "syscalls": [{"names": ["opne"], "action": "SCMP_ACT_ALLOW"}]}
        replace_profile(crd, namespace, "team-base", bad_base)
        problem = wait_for(
            lambda: node_problem(crd, "node-b", namespace, "app", "BaseInvalid"),
            what="child Invalid on node",
        )
        assert f"{namespace}/team-base is invalid" in problem["message"]
        assert read(app) == good

        # The base deleted: still not Ready, now BaseNotFound; the file stays.
        delete_profile(crd, namespace, "team-base")

        wait_for(
            lambda: node_problem(crd, "node-b", namespace, "app", "BaseNotFound"),
            what="BaseNotFound",
        )
        wait_for(
            lambda: status(crd, namespace, "app").get("state") == "Invalid",
            timeout=60,
            what="status Invalid",
        )
        assert read(app) == good

        # The base comes back: the child follows without being edited.
        apply_profile(crd, namespace, "team-base", TEAM_BASE)
        wait_for(lambda: read(app) == expected, what="child restored from the new base")
        assert generation(crd, namespace, "app") == app_generation


def test_builtin_base_and_chains_through_it(crd: Cluster, namespace: str, tmp_path: Path) -> None:
    arch = native_architecture()
    mid = {"baseProfileName": MOBY, "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_LOG"}]}
    leaf = {"baseProfileName": "mid", "defaultAction": "SCMP_ACT_KILL_PROCESS"}
    with running_agent(
        crd, "node-b", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        apply_profile(crd, namespace, "mid", mid)
        apply_profile(crd, namespace, "leaf", leaf)
        mid_flat = compose(builtin_profile(MOBY, arch), ProfileSpec.model_validate(mid))
        leaf_flat = compose(mid_flat, ProfileSpec.model_validate(leaf))
        leaf_path = agent.profile_path(namespace, "leaf")
        wait_for(lambda: read(leaf_path) == render(leaf_flat).content, what="leaf on disk")
        content = json.loads(read(leaf_path) or b"{}")
        assert content["defaultAction"] == "SCMP_ACT_KILL_PROCESS"
        assert "SCMP_ARCH_X86" in content["architectures"] or arch != "SCMP_ARCH_X86_64"

        def chain() -> list[str] | None:
            return status(crd, namespace, "leaf").get("baseChain")

        assert wait_for(chain, timeout=60, what="leaf chain") == [f"{namespace}/mid", MOBY]


def test_unknown_builtin_and_cycles_are_refused_with_the_chain(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    with running_agent(
        crd, "node-b", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        # The API server refuses it (test_syscall_names_policy.py); an agent still meets one when
        # the CRD is newer than the agent, and must say what it ships.
        with crd_without_builtin_check(crd, namespace):
            apply_profile(
                crd, namespace, "odd", {"baseProfileName": "runtime/default@moby-1999-01-01"}
            )
        problem = wait_for(
            lambda: node_problem(crd, "node-b", namespace, "odd", "UnknownBuiltinBase"),
            what="unknown built-in",
        )
        assert MOBY in problem["message"]  # it lists what exists

        apply_profile(crd, namespace, "a", {**TEAM_BASE})
        apply_profile(crd, namespace, "b", {"baseProfileName": "a"})
        wait_for(lambda: read(agent.profile_path(namespace, "b")), what="b on disk")
        # Closing the loop: a -> b -> a.
        replace_profile(crd, namespace, "a", {**TEAM_BASE, "baseProfileName": "b"})

        problem = wait_for(
            lambda: node_problem(crd, "node-b", namespace, "a", "BaseCycle"), what="cycle refused"
        )
        assert f"{namespace}/a -> {namespace}/b -> {namespace}/a" in problem["message"]
        wait_for(
            lambda: node_problem(crd, "node-b", namespace, "b", "BaseCycle"), what="b refused too"
        )
        assert read(agent.profile_path(namespace, "b"))  # last good file kept


def test_render_cli_prints_what_the_agent_writes(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    manifests = tmp_path / "profiles.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            [profile_object(namespace, n, s) for n, s in (("team-base", TEAM_BASE), ("app", APP))]
        )
    )
    with running_agent(
        crd, "node-b", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        crd.kubectl("apply", "-f", str(manifests))
        path = agent.profile_path(namespace, "app")
        wait_for(lambda: read(path), what="app on disk")
        printed = subprocess.run(
            ["seccomp-agent", "render", str(manifests), "--name", "app"],
            capture_output=True,
            check=True,
        ).stdout
        assert printed == read(path)

        # Only the child in a file: its base comes from the cluster.
        child_only = tmp_path / "app.yaml"
        child_only.write_text(yaml.safe_dump(profile_object(namespace, "app", APP)))
        from_cluster = subprocess.run(
            ["seccomp-agent", "render", "--kubeconfig", str(crd.kubeconfig), str(child_only)],
            capture_output=True,
            check=True,
        ).stdout
        assert from_cluster == read(path)
        # Nothing but a name: the object itself from the cluster.
        by_name = subprocess.run(
            [
                "seccomp-agent",
                "render",
                "--kubeconfig",
                str(crd.kubeconfig),
                "--name",
                f"{namespace}/app",
            ],
            capture_output=True,
            check=True,
        ).stdout
        assert by_name == read(path)


def test_child_listed_before_its_base_at_start_is_written_without_a_false_alarm(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    # Both exist before the agent starts; the listing brings "app" before "team-base".
    apply_profile(crd, namespace, "app", APP)
    apply_profile(crd, namespace, "team-base", TEAM_BASE)
    with running_agent(
        crd, "node-b", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        path = agent.profile_path(namespace, "app")
        wait_for(lambda: read(path) == flattened(TEAM_BASE, APP), what="child on disk")
        events = json.loads(crd.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
        assert [e for e in events["items"] if e["reason"] == "InvalidProfile"] == []


def test_tenant_admission_admits_a_profile_that_leaves_its_default_action_to_the_base(
    crd: Cluster, namespace: str
) -> None:
    # The shipped admission policy, selecting only this namespace (restricted pod security).
    admission = Path(__file__).resolve().parents[2] / "deploy" / "base" / "tenant-policy.yaml"
    crd.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(admission),
    )
    crd.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    crd.kubectl("label", "namespace", namespace, f"seccompsync.io/tenant-test={namespace}")
    policy = policy_object({}, name=f"bases-{namespace}")
    policy["spec"]["namespaceSelector"]["matchLabels"]["seccompsync.io/tenant-test"] = namespace
    crd.kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:

        def refused(spec: dict[str, Any]) -> str | None:
            body = json.dumps(profile_object(namespace, "probe", spec))
            result = crd.kubectl("create", "--dry-run=server", "-f", "-", input=body, check=False)
            return result.stderr if result.returncode != 0 else None

        wait_for(
            lambda: refused({"defaultAction": "SCMP_ACT_ALLOW"}),
            timeout=30,
            what="the tenant policy to take effect",
        )
        # No defaultAction of its own: admitted (before, CEL failed on the missing field). The
        # API server picks up a changed admission policy through a watch: allow it some time.
        wait_for(
            lambda: refused({"baseProfileName": MOBY}) is None,
            timeout=30,
            what="a profile without defaultAction admitted",
        )
        assert refused(APP) is None
        # One of its own is still judged.
        message = refused({"baseProfileName": MOBY, "defaultAction": "SCMP_ACT_ALLOW"})
        assert message is not None and "spec.defaultAction: SCMP_ACT_ALLOW" in message
    finally:
        crd.kubectl("delete", "seccomptenantpolicy", policy["metadata"]["name"], check=False)
        # Leave the control plane as this test found it: later tests (CRD reinstalls) must not
        # meet an admission policy whose parameter kind they remove.
        crd.kubectl("delete", "--ignore-not-found", "-f", str(admission), check=False)
