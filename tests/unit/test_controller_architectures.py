"""Mixed architectures: each node is judged against what a node of its own architecture writes.

A built-in base is flattened per architecture, so a profile on `runtime/default@...` has one
hash on x86_64 nodes and another on aarch64 nodes; a profile without one has the same bytes
everywhere. The expected hashes are checked against the CLI's own resolution for that
architecture (which the node agent shares), not against constants.
"""

from __future__ import annotations

from typing import Any

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX, NodeReport, build_status, parse_status
from agent.cli.documents import Document
from agent.cli.local_profiles import LocalProfiles
from agent.controller.profile_status import ProfileView, profile_status
from agent.controller.profiles import ProfileViews
from agent.profiles.render import render

NS = "team-a"
X86 = "SCMP_ARCH_X86_64"
ARM = "SCMP_ARCH_AARCH64"
NOW = "2026-12-05T00:00:00Z"


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"namespace": NS, "name": name, "uid": f"u-{name}", "generation": 1},
        "spec": spec,
    }


ON_DEFAULT = body(
    "web",
    {
        "baseProfileName": "runtime/default@moby-2026-06-30",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    },
)
# Built on a profile that is itself on a built-in: per architecture too.
GRANDCHILD = body(
    "worker",
    {"baseProfileName": "web", "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]},
)
PLAIN = body(
    "plain",
    {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    },
)


def node_sha(architecture: str, *bodies: dict[str, Any], name: str) -> str:
    """What a node of `architecture` writes (the CLI's resolution, shared with the agent)."""
    docs = [Document("test", index, b) for index, b in enumerate(bodies)]
    local = LocalProfiles(docs, [architecture], [], None)
    target = next(d for d in docs if d.content["metadata"]["name"] == name)
    report = local.report(target).report
    assert report.valid and report.profile is not None, report.errors
    return render(report.profile).sha256


def views_for(*architectures: str) -> ProfileViews:
    views = ProfileViews(native=X86)
    views.replace([ON_DEFAULT, GRANDCHILD, PLAIN])
    views.add_architectures(architectures)
    return views


def report(node: str, architecture: str | None, installed: dict[ProfileKey, str]) -> NodeReport:
    return NodeReport(
        node, True, {key: sha[:SHA_PREFIX] for key, sha in installed.items()}, {}, architecture
    )


def test_a_profile_on_a_builtin_is_expected_per_architecture() -> None:
    views = views_for(ARM)
    for name, bodies in (("web", (ON_DEFAULT,)), ("worker", (ON_DEFAULT, GRANDCHILD))):
        view = views.views[ProfileKey(NS, name)]
        x86, arm = node_sha(X86, *bodies, name=name), node_sha(ARM, *bodies, name=name)
        assert x86 != arm
        assert view.expected_on(X86) == x86
        assert view.expected_on(ARM) == arm


def test_a_profile_without_a_builtin_is_one_hash_everywhere_and_costs_nothing_more() -> None:
    views = views_for(ARM)
    plain = views.views[ProfileKey(NS, "plain")]
    assert not plain.per_architecture
    assert plain.expected_on(ARM) == plain.expected_on(X86) == node_sha(ARM, PLAIN, name="plain")
    assert set(views.others[ARM]) == {ProfileKey(NS, "web"), ProfileKey(NS, "worker")}


def test_an_architecture_no_node_has_is_not_rendered() -> None:
    views = views_for()  # x86_64 nodes only
    web = views.views[ProfileKey(NS, "web")]
    assert web.other_architectures == ()
    assert views.others == {}


def test_installed_on_amd64_and_arm64_alike_and_a_lagging_node_is_named() -> None:
    web = views_for(ARM).views[ProfileKey(NS, "web")]
    x86, arm = node_sha(X86, ON_DEFAULT, name="web"), node_sha(ARM, ON_DEFAULT, name="web")
    both = {
        "amd": report("amd", X86, {web.key: x86}),
        "arm": report("arm", ARM, {web.key: arm}),
    }
    status = profile_status(web, both, None, NOW)
    assert (status["state"], status["readyNodes"]) == ("Installed", "2/2")

    # The arm node holds the x86 file (an earlier agent, say): it lags and is named.
    lagging = {**both, "arm": report("arm", ARM, {web.key: x86})}
    status = profile_status(web, lagging, None, NOW)
    assert (status["state"], status["readyNodes"]) == ("Partial", "1/2")
    assert [(f["node"], f["reason"]) for f in status["failingNodes"]] == [("arm", "Outdated")]


def test_a_report_without_an_architecture_is_taken_as_the_controllers_own() -> None:
    web = views_for(ARM).views[ProfileKey(NS, "web")]
    x86 = node_sha(X86, ON_DEFAULT, name="web")
    old_agent = parse_status("old", {"synced": True, "installed": [f"{NS}/web@{x86[:12]}"]})
    assert old_agent.architecture is None
    status = profile_status(web, {"old": old_agent}, None, NOW)
    assert status["readyNodes"] == "1/1"


def test_an_architecture_not_rendered_yet_is_pending_not_outdated() -> None:
    web = views_for().views[ProfileKey(NS, "web")]
    arm = report("arm", ARM, {web.key: node_sha(ARM, ON_DEFAULT, name="web")})
    status = profile_status(web, {"arm": arm}, None, NOW)
    assert status["state"] == "Pending"
    assert status["failingNodes"][0]["reason"] == "Rendering"


def test_the_report_carries_the_architecture_and_reads_back() -> None:
    written = build_status("n1", True, [], ARM)
    assert written["architecture"] == ARM
    assert parse_status("n1", written).architecture == ARM
    assert "architecture" not in build_status("n1", True, [])


def test_a_view_from_plain_data_needs_no_architecture() -> None:
    view = ProfileView(ProfileKey(NS, "x"), 1, "a" * 64)
    assert view.expected_on(ARM) == view.expected_on(None) == "a" * 64


def test_an_architecture_that_cannot_be_rendered_spoils_nothing_else() -> None:
    """A report naming an architecture this controller does not know (a newer agent, a
    hand-written report): its nodes count as not holding profiles on built-ins, and the other
    architectures are rendered as before."""
    views = views_for("SCMP_ARCH_NEW", ARM)
    web = views.views[ProfileKey(NS, "web")]
    assert web.expected_on("SCMP_ARCH_NEW") is None
    assert web.expected_on(ARM) == node_sha(ARM, ON_DEFAULT, name="web")
    assert views.put(ON_DEFAULT)[0].expected_on(ARM) == node_sha(ARM, ON_DEFAULT, name="web")
    assert views.unrenderable == {"SCMP_ARCH_NEW"}
