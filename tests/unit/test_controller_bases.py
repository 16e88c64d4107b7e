"""The controller judges a profile built on a base by the same flattened file a node writes."""

from __future__ import annotations

from typing import Any

from agent.api.keys import ProfileKey
from agent.cli.documents import Document
from agent.cli.local_profiles import LocalProfiles
from agent.controller.profiles import ProfileViews
from agent.profiles.render import render
from agent.seccomp.syscalls import native_architecture

NS = "team-a"


def body(name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"namespace": NS, "name": name, "uid": f"u-{name}", "generation": generation},
        "spec": spec,
    }


BASE = body(
    "base",
    {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
    },
)
CHILD = body(
    "child",
    {
        "baseProfileName": "base",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}],
    },
)


def flattened_sha(*bodies: dict[str, Any], name: str) -> str:
    """What a node writes, by the CLI's resolution among files (the node's is tested alike)."""
    docs = [Document("test", index, b) for index, b in enumerate(bodies)]
    local = LocalProfiles(docs, [native_architecture()], [], None)
    target = next(d for d in docs if d.content["metadata"]["name"] == name)
    report = local.report(target).report
    assert report.valid and report.profile is not None, report.errors
    return render(report.profile).sha256


def test_a_child_renders_on_its_base_whatever_the_listing_order() -> None:
    for order in ([BASE, CHILD], [CHILD, BASE]):
        views = {v.key: v for v in ProfileViews().replace(order)}
        child = views[ProfileKey(NS, "child")]
        assert child.expected_sha == flattened_sha(BASE, CHILD, name="child")
        assert child.base_chain == (f"{NS}/base",)


def test_a_change_to_the_base_renders_the_child_again() -> None:
    views = ProfileViews()
    views.replace([BASE, CHILD])
    before = views.views[ProfileKey(NS, "child")].expected_sha
    changed_base = body(
        "base",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
        },
        generation=2,
    )
    updated = {v.key: v for v in views.put(changed_base)}
    assert set(updated) == {ProfileKey(NS, "base"), ProfileKey(NS, "child")}
    after = updated[ProfileKey(NS, "child")].expected_sha
    assert after != before
    assert after == flattened_sha(changed_base, CHILD, name="child")


def test_a_deleted_base_leaves_the_child_without_an_expected_file() -> None:
    views = ProfileViews()
    views.replace([BASE, CHILD])
    [child] = views.drop(ProfileKey(NS, "base"))
    assert child.key == ProfileKey(NS, "child")
    assert child.expected_sha is None
    assert "does not exist" in (child.invalid_reason or "")


def test_a_built_in_base_needs_no_object() -> None:
    on_builtin = body(
        "web",
        {
            "baseProfileName": "runtime/default@moby-2026-06-30",
            "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        },
    )
    [view] = ProfileViews().replace([on_builtin])
    assert view.expected_sha == flattened_sha(on_builtin, name="web")
    assert view.base_chain == ("runtime/default@moby-2026-06-30",)
