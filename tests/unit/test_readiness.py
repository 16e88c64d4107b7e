"""Per-node reports and the aggregated profile status, as plain data."""

from __future__ import annotations

from agent.api.findings import error
from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.api.node_report import NodeProfileStatus, NodeState, build_status, parse_status
from agent.controller.profile_status import ProfileView, profile_status
from agent.node.catalog import ProfileCatalog, ProfileRecord
from agent.profiles.render import render

KEY = ProfileKey("team", "web")
V1 = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO"}))
V2 = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_KILL"}))
NOW = "2026-11-28T10:00:00Z"


def report(node: str, *entries: tuple[ProfileKey, NodeProfileStatus], synced: bool = True):  # type: ignore[no-untyped-def]
    return parse_status(node, build_status(node, synced, entries))


def installed(sha: str) -> NodeProfileStatus:
    return NodeProfileStatus(NodeState.INSTALLED, sha256=sha)


def test_node_status_round_trips_and_counts() -> None:
    other = ProfileKey("team", "db")
    status = build_status(
        "node-a",
        True,
        [
            (KEY, installed(V1.sha256)),
            (other, NodeProfileStatus(NodeState.INVALID, None, "UnknownSyscall", "bad name")),
        ],
    )
    assert status["counts"] == {"installed": 1, "invalid": 1, "pending": 0, "terminating": 0}
    assert status["installed"] == [f"team/web@{V1.sha256[:12]}"]
    parsed = parse_status("node-a", status)
    assert parsed.installed == {KEY: V1.sha256[:12]}
    assert parsed.problems[other].reason == "UnknownSyscall"


def test_ready_when_every_reporting_node_has_the_current_content() -> None:
    view = ProfileView(KEY, 2, V1.sha256)
    reports = {n: report(n, (KEY, installed(V1.sha256))) for n in ("a", "b", "c")}
    status = profile_status(view, reports, None, NOW)
    assert status["state"] == "Installed"
    assert status["readyNodes"] == "3/3"
    assert status["localhostProfile"] == "seccomp-sync/team/web.json"
    assert status["observedGeneration"] == 2
    (condition,) = status["conditions"]
    assert condition["type"] == "Ready"
    assert condition["status"] == "True"
    assert condition["lastTransitionTime"] == NOW
    assert status["failingNodes"] == []


def test_an_old_version_on_one_node_is_partial_and_names_the_node() -> None:
    view = ProfileView(KEY, 3, V2.sha256)
    reports = {
        "a": report("a", (KEY, installed(V2.sha256))),
        "b": report("b", (KEY, installed(V1.sha256))),
    }
    status = profile_status(view, reports, None, NOW)
    assert status["state"] == "Partial"
    assert status["readyNodes"] == "1/2"
    assert status["conditions"][0]["status"] == "False"
    assert status["conditions"][0]["reason"] == "Outdated"
    assert status["failingNodes"][0]["node"] == "b"
    assert "waiting for b" in status["conditions"][0]["message"]


def test_a_node_that_never_got_it_keeps_it_pending_and_no_agents_is_pending() -> None:
    view = ProfileView(KEY, 1, V1.sha256)
    status = profile_status(view, {"a": report("a")}, None, NOW)
    assert status["state"] == "Pending"
    assert status["failingNodes"][0]["reason"] == "NotYetInstalled"
    assert profile_status(view, {}, None, NOW)["conditions"][0]["reason"] == "NoAgents"


def test_invalid_on_a_node_makes_the_profile_invalid_with_the_reason() -> None:
    view = ProfileView(KEY, 1, None)
    bad = NodeProfileStatus(
        NodeState.INVALID,
        None,
        "UnknownSyscall",
        "spec.syscalls[0].names[1]: `opne` is not a Linux syscall",
    )
    status = profile_status(view, {"a": report("a", (KEY, bad))}, None, NOW)
    assert status["state"] == "Invalid"
    assert "spec.syscalls[0].names[1]" in status["conditions"][0]["message"]
    assert status["failingNodes"] == [
        {
            "node": "a",
            "state": "Invalid",
            "reason": "UnknownSyscall",
            "message": "spec.syscalls[0].names[1]: `opne` is not a Linux syscall",
        }
    ]


def test_unsynced_agent_counts_as_pending() -> None:
    view = ProfileView(KEY, 1, V1.sha256)
    status = profile_status(view, {"a": report("a", synced=False)}, None, NOW)
    assert status["failingNodes"][0]["reason"] == "AgentStarting"


def test_transition_time_is_kept_while_the_condition_does_not_change() -> None:
    view = ProfileView(KEY, 1, V1.sha256)
    reports = {"a": report("a", (KEY, installed(V1.sha256)))}
    earlier = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    status = profile_status(view, reports, earlier, NOW)
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    flipped = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    assert profile_status(view, reports, flipped, NOW)["conditions"][0]["lastTransitionTime"] == NOW


def test_failing_nodes_list_is_bounded() -> None:
    view = ProfileView(KEY, 1, V1.sha256)
    reports = {f"n{i:02}": report(f"n{i:02}") for i in range(40)}
    status = profile_status(view, reports, None, NOW)
    assert status["readyNodes"] == "0/40"
    assert len(status["failingNodes"]) == 10


def test_catalog_keeps_the_last_good_rendering_over_an_invalid_update() -> None:
    catalog = ProfileCatalog()
    catalog.accept(ProfileRecord(KEY, "uid", 1, V1))
    catalog.mark_installed(KEY, V1.sha256)
    bad = (error("spec.syscalls[0].names[0]", "UnknownSyscall", "`opne` is not a syscall"),)
    kept = catalog.accept(ProfileRecord(KEY, "uid", 2, None, bad))
    assert kept.rendered == V1
    status = catalog.status_of(KEY)
    assert status is not None
    assert status.state is NodeState.INVALID
    assert status.sha256 == V1.sha256
    # A new object with the same name starts afresh.
    fresh = catalog.accept(ProfileRecord(KEY, "other-uid", 1, None, bad))
    assert fresh.rendered is None


def test_deleted_profile_still_on_disk_is_terminating() -> None:
    catalog = ProfileCatalog()
    catalog.mark_installed(KEY, V1.sha256)
    status = catalog.status_of(KEY)
    assert status is not None
    assert status.state is NodeState.TERMINATING
