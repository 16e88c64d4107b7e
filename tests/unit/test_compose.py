"""The composition rules of agent/profiles/compose.py, each with plain data, and the chain walk."""

from __future__ import annotations

import itertools
from typing import Any

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp, ProfileSpec
from agent.profiles.base_graph import MAX_BASE_DEPTH, BaseGraph, walk_chain
from agent.profiles.compose import BASE_CHAIN_TOO_DEEP, BASE_CYCLE, compose

BASE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read", "write", "mkdir"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ],
}


def flat(child: dict[str, Any], base: dict[str, Any] = BASE) -> dict[str, Any]:
    composed = compose(OciSeccomp.model_validate(base), ProfileSpec.model_validate(child))
    return composed.model_dump(mode="json", exclude_none=True)


def flat_base() -> dict[str, Any]:
    return OciSeccomp.model_validate(BASE).model_dump(mode="json", exclude_none=True)


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile.get("syscalls", []) if name in r["names"]]


def test_child_without_default_action_inherits_the_bases_action_and_errno() -> None:
    result = flat({"baseProfileName": "b"})
    assert (result["defaultAction"], result["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    assert result["syscalls"] == flat_base()["syscalls"]


def test_child_default_action_wins_and_brings_its_own_errno() -> None:
    result = flat({"baseProfileName": "b", "defaultAction": "SCMP_ACT_KILL_PROCESS"})
    assert result["defaultAction"] == "SCMP_ACT_KILL_PROCESS"
    assert "defaultErrnoRet" not in result  # 38 belonged to the base's ERRNO default


def test_child_errno_alone_changes_the_bases_errno() -> None:
    result = flat({"baseProfileName": "b", "defaultErrnoRet": 1})
    assert (result["defaultAction"], result["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)


def test_child_rule_replaces_every_base_rule_for_that_syscall() -> None:
    result = flat(
        {
            "baseProfileName": "b",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW"},
            ],
        }
    )
    assert rules_for(result, "mkdir") == [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    ]
    # The base's conditional socket rule is gone too: the child decides socket alone.
    assert rules_for(result, "socket") == [{"names": ["socket"], "action": "SCMP_ACT_ALLOW"}]
    # The rest of the base's rule survives, without the name the child took.
    assert {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"} in result["syscalls"]
    # Child rules come first: for a syscall, the first unconditional rule is the one kept.
    assert result["syscalls"][0]["names"] == ["mkdir"]


def test_child_can_allow_what_the_base_denies() -> None:
    result = flat(
        {"baseProfileName": "b", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}]}
    )
    assert rules_for(result, "ptrace") == [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}]


def test_architectures_and_flags_are_unioned_without_repeats() -> None:
    result = flat(
        {
            "baseProfileName": "b",
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"],
        }
    )
    assert result["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert result["flags"] == ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]


def test_rules_that_end_up_equal_to_the_default_are_dropped() -> None:
    # An allow-list base under a child that allows everything by default: its ALLOW rules are
    # what the default already does (libseccomp would refuse them, runtimes skip them).
    result = flat({"baseProfileName": "b", "defaultAction": "SCMP_ACT_ALLOW"})
    assert all(r["action"] != "SCMP_ACT_ALLOW" for r in result["syscalls"])
    assert rules_for(result, "ptrace")  # ERRNO(1) still differs from the default


def test_composition_is_deterministic() -> None:
    child = {"baseProfileName": "b", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]}
    assert flat(child) == flat(child)


# --- chains -------------------------------------------------------------------------------------


def key(name: str) -> ProfileKey:
    return ProfileKey("team", name)


def test_chain_lists_the_bases_nearest_first_up_to_a_builtin() -> None:
    bases = {key("app"): "team-base", key("team-base"): "runtime/default@moby-2026-06-30"}
    chain = walk_chain(key("app"), bases.get)
    assert chain.links == ("team/team-base", "runtime/default@moby-2026-06-30")
    assert chain.reason is None


def test_a_cycle_is_refused_with_the_chain_in_the_message() -> None:
    bases = {key("a"): "b", key("b"): "c", key("c"): "a"}
    chain = walk_chain(key("a"), bases.get)
    assert chain.reason == BASE_CYCLE
    assert chain.message is not None
    assert "team/a -> team/b -> team/c -> team/a" in chain.message


def test_a_chain_deeper_than_the_limit_is_refused() -> None:
    names = [f"p{i}" for i in range(MAX_BASE_DEPTH + 2)]
    bases = {key(a): b for a, b in itertools.pairwise(names)}
    chain = walk_chain(key("p0"), bases.get)
    assert chain.reason == BASE_CHAIN_TOO_DEEP
    assert chain.message is not None and "team/p0 -> team/p1" in chain.message
    exactly = {key(a): b for a, b in itertools.pairwise(names[:6])}
    assert walk_chain(key("p0"), exactly.get).reason is None  # 5 bases: allowed


def test_graph_reports_dependents_bases_before_children_and_forgets() -> None:
    graph = BaseGraph()
    graph.set(key("app"), "mid", {})
    graph.set(key("mid"), "root", {})
    graph.set(key("other"), "root", {})
    graph.set(key("alone"), "runtime/default@moby-2026-06-30", {})
    assert graph.dependents(key("root")) == [key("mid"), key("other"), key("app")]
    graph.set(key("app"), None, {})  # the edit removed its base
    assert graph.dependents(key("root")) == [key("mid"), key("other")]
    graph.forget(key("mid"))
    assert graph.dependents(key("root")) == [key("other")]


def test_graph_dependents_of_a_cycle_terminate() -> None:
    graph = BaseGraph()
    graph.set(key("a"), "b", {})
    graph.set(key("b"), "a", {})
    # `a` itself is being validated already; `b` is then refused by the chain walk.
    assert graph.dependents(key("a")) == [key("b")]
