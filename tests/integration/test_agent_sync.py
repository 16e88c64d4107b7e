"""The node agent against the real control plane: profiles reach the disk, safely."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from agent.api.model import OciSeccomp
from agent.node.store import temp_file_name
from agent.profiles.render import render
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, running_agent, wait_for
from tests.integration.conftest import (
    apply_profile,
    delete_profile,
    profile_object,
    replace_profile,
)
from tests.integration.nodes import delete_node, register_node
from tests.integration.profiles import DENY_MKDIR, DENY_PTRACE

pytestmark = pytest.mark.cluster


def rendered(spec: dict[str, object]) -> bytes:
    return render(OciSeccomp.model_validate(spec)).content


def file_is(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except FileNotFoundError:
        return False


def test_create_update_delete_reach_the_disk(crd: Cluster, namespace: str, tmp_path: Path) -> None:
    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        path = agent.profile_path(namespace, "web")
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), what="created profile on disk")
        assert json.loads(path.read_bytes()) == DENY_MKDIR
        assert path.stat().st_mode & 0o777 == 0o644

        replace_profile(crd, namespace, "web", DENY_PTRACE)
        wait_for(lambda: file_is(path, rendered(DENY_PTRACE)), what="updated profile on disk")

        delete_profile(crd, namespace, "web")
        wait_for(lambda: not path.exists(), what="file removed after delete")
        wait_for(lambda: not path.parent.exists(), what="empty namespace dir removed")
        assert list(Path(agent.managed_dir).iterdir()) == []


def test_a_profile_written_as_deprecated_v1alpha1_reaches_the_disk(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A client of the previous release still writes v1alpha1 after the upgrade: the API server
    stores it as v1beta1, and the agent (which reads v1beta1) installs it."""
    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        path = agent.profile_path(namespace, "legacy")
        document = {**profile_object(namespace, "legacy", DENY_MKDIR)}
        document["apiVersion"] = "seccompsync.io/v1alpha1"
        result = crd.kubectl("create", "-f", "-", input=json.dumps(document))
        assert "seccompsync.io/v1alpha1 SeccompProfile is deprecated" in result.stderr
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), what="v1alpha1 profile on disk")


def test_invalid_update_keeps_the_last_good_file_and_says_why(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        path = agent.profile_path(namespace, "web")
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), what="valid profile on disk")
        good = path.read_bytes()

        typo = {
            **DENY_MKDIR,
            "syscalls": [{"names": ["mkdir", "opne"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
        }
        replace_profile(crd, namespace, "web", typo)

        def event_message() -> str | None:
            out = crd.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
            for event in json.loads(out)["items"]:
                if event["reason"] == "InvalidProfile" and event["involvedObject"]["name"] == "web":
                    return str(event["message"])
            return None

        message = wait_for(event_message, what="InvalidProfile event")
        assert "spec.syscalls[0].names[1]" in message
        assert "`opne` is not a Linux syscall" in message
        assert "node node-a" in message
        assert "last valid version stays on disk" in message
        assert path.read_bytes() == good
        assert agent.metric("seccomp_sync_validation_failures_total") == 1
        described = crd.kubectl("describe", "seccompprofile", "web", "-n", namespace).stdout
        assert "InvalidProfile" in described


def test_symlinks_planted_in_the_tree_are_refused(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    (root / "seccomp-sync").mkdir(parents=True)
    # The namespace directory is a symlink to a directory outside the managed tree.
    (root / "seccomp-sync" / namespace).symlink_to(elsewhere)
    with running_agent(
        crd, "node-a", root, tmp_path / "agent.log", "--namespace", namespace, ready=False
    ) as agent:
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        wait_for(
            lambda: agent.metric("seccomp_sync_unsafe_paths_total") >= 1, what="unsafe path refused"
        )
        assert list(elsewhere.iterdir()) == []
        # Replace the planted directory link by a real directory with a planted file link.
        (root / "seccomp-sync" / namespace).unlink()
        (root / "seccomp-sync" / namespace).mkdir()
        (root / "seccomp-sync" / namespace / "web.json").symlink_to(victim)
        apply_profile(crd, namespace, "other", DENY_PTRACE)
        wait_for(
            lambda: file_is(agent.profile_path(namespace, "other"), rendered(DENY_PTRACE)),
            what="a safe profile still written",
        )
        wait_for(
            lambda: agent.metric("seccomp_sync_unsafe_paths_total") >= 2,
            what="file symlink refused",
        )
        assert victim.read_text() == "precious"
        assert (root / "seccomp-sync" / namespace / "web.json").is_symlink()
        messages = [line.get("error", "") for line in agent.log_lines()]
        assert any("symlink" in str(m) for m in messages)


def test_restart_removes_orphans_writes_new_keeps_foreign_files(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    with running_agent(crd, "node-a", root, tmp_path / "agent.log", "--namespace", namespace) as a:
        apply_profile(crd, namespace, "old", DENY_MKDIR)
        apply_profile(crd, namespace, "kept", DENY_PTRACE)
        wait_for(
            lambda: (
                a.profile_path(namespace, "old").exists()
                and a.profile_path(namespace, "kept").exists()
            ),
            what="both profiles written",
        )
    # Agent down: the cluster changes, and a crash left a temp file behind.
    delete_profile(crd, namespace, "old")
    apply_profile(crd, namespace, "new", DENY_MKDIR)
    leftover = root / "seccomp-sync" / namespace / temp_file_name("kept")
    leftover.write_bytes(b'{"defaultAct')
    foreign = root / "my-own-profile.json"
    foreign.write_text("{}")
    foreign_dir = root / "custom"
    foreign_dir.mkdir()
    (foreign_dir / "x.json").write_text("{}")
    with running_agent(crd, "node-a", root, tmp_path / "agent2.log", "--namespace", namespace) as a:
        assert not a.profile_path(namespace, "old").exists()
        assert file_is(a.profile_path(namespace, "new"), rendered(DENY_MKDIR))
        assert file_is(a.profile_path(namespace, "kept"), rendered(DENY_PTRACE))
        assert not leftover.exists()
        assert foreign.read_text() == "{}"
        assert (foreign_dir / "x.json").read_text() == "{}"


def test_drift_on_the_host_is_repaired(crd: Cluster, namespace: str, tmp_path: Path) -> None:
    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        path = agent.profile_path(namespace, "web")
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), what="profile on disk")
        path.unlink()
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), timeout=2, what="deleted restored")
        path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}\n')
        wait_for(lambda: file_is(path, rendered(DENY_MKDIR)), timeout=2, what="edited restored")
        assert agent.metric("seccomp_sync_drift_repairs_total") >= 2


def test_two_agents_sync_independently(crd: Cluster, namespace: str, tmp_path: Path) -> None:
    with (
        running_agent(
            crd, "node-a", tmp_path / "a", tmp_path / "a.log", "--namespace", namespace
        ) as a,
        running_agent(
            crd, "node-b", tmp_path / "b", tmp_path / "b.log", "--namespace", namespace
        ) as b,
    ):
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        for agent in (a, b):
            wait_for(
                lambda agent=agent: file_is(
                    agent.profile_path(namespace, "web"), rendered(DENY_MKDIR)
                ),
                what=agent.node,
            )
        b.stop()
        replace_profile(crd, namespace, "web", DENY_PTRACE)
        wait_for(
            lambda: file_is(a.profile_path(namespace, "web"), rendered(DENY_PTRACE)),
            what="node-a updated while node-b is down",
        )
        assert file_is(b.profile_path(namespace, "web"), rendered(DENY_MKDIR))


def test_readyz_only_after_initial_sync_and_sigterm_stops_cleanly(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    for index in range(20):
        apply_profile(crd, namespace, f"p{index}", DENY_MKDIR)
    # A real Node, deleted afterwards, owns the agent's SeccompNodeStatus: without it the status
    # outlives the test and every later test sees one more expected node that never gets Ready.
    register_node(crd, "node-a")
    agent = AgentProcess(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ).start()
    try:
        wait_for(lambda: agent.http("/healthz")[0] == 200, what="healthz")
        agent.wait_ready()
        # Ready means every profile is already on disk.
        for index in range(20):
            assert file_is(agent.profile_path(namespace, f"p{index}"), rendered(DENY_MKDIR))
        assert agent.metric("seccomp_sync_last_full_sync_timestamp_seconds") > 0
    finally:
        code = agent.stop(signal.SIGTERM)
        delete_node(crd, "node-a")
    assert code == 0, agent.log_tail()
    assert any(line.get("msg") == "seccomp-sync agent stopped" for line in agent.log_lines())
    leftovers = [p for p in (tmp_path / "root").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_control_plane_restart_does_not_need_an_agent_restart(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        apply_profile(crd, namespace, "before", DENY_MKDIR)
        wait_for(lambda: agent.profile_path(namespace, "before").exists(), what="before")
        crd.restart()
        apply_profile(crd, namespace, "after", DENY_PTRACE)
        wait_for(
            lambda: file_is(agent.profile_path(namespace, "after"), rendered(DENY_PTRACE)),
            timeout=90,
            what="change after the API server restarted",
        )
        agent.assert_running()


def test_more_profiles_than_a_listing_page_and_a_restart_that_rewrites_nothing(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The agent's own watch lists a page at a time (10 objects); a restart on the same disk
    (an upgrade) finds every file in place and writes none of them again."""
    specs = {
        f"p{i}": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1}],
        }
        for i in range(25)
    }
    items = [profile_object(namespace, name, spec) for name, spec in specs.items()]
    crd.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    root = tmp_path / "root"
    with running_agent(crd, "node-a", root, tmp_path / "a1.log", "--namespace", namespace) as a:
        for name, spec in specs.items():
            assert file_is(a.profile_path(namespace, name), rendered(spec)), name
        assert a.metric("seccomp_sync_files_written_total") == len(specs)
        before = {name: a.profile_path(namespace, name).stat().st_ino for name in specs}
    with running_agent(crd, "node-a", root, tmp_path / "a2.log", "--namespace", namespace) as a:
        for name, spec in specs.items():
            assert file_is(a.profile_path(namespace, name), rendered(spec)), name
        assert a.metric("seccomp_sync_files_written_total") == 0
        # Not replaced either: the same inode, so the runtime saw no change at all.
        assert {name: a.profile_path(namespace, name).stat().st_ino for name in specs} == before
