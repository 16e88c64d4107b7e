"""The compile cost model (pure): what it refuses before compiling, and what it lets through."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.seccomp.compiler import ArchCompileResult
from agent.seccomp.cost import (
    CHEAP_LANE_BELOW_SECONDS,
    COMPILE_BUDGET_SECONDS,
    Lane,
    budget_findings,
    estimate,
    lane_for,
    shape_size,
)
from agent.seccomp.syscalls import names_on
from agent.validation.validate import validate_spec
from bench._docker_profile import docker_to_oci, moby_default_oci

X86_64 = "SCMP_ARCH_X86_64"
THREE = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
REPO = Path(__file__).resolve().parents[2]


def allow(names: Sequence[str], args: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": list(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = list(args)
    return rule


def arg(index: int, value: int, op: str = "SCMP_CMP_EQ") -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def profile(*rules: Mapping[str, Any]) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": list(rules)}


def repeated(rules: int, args: int, op: str = "SCMP_CMP_EQ", names: Sequence[str] = ()) -> Any:
    names = list(names) or ["personality"]
    return profile(
        *(allow(names, [arg(i, v * 7 + i + 1, op) for i in range(args)]) for v in range(rules))
    )


def never_compile(document: Any, architectures: Sequence[str]) -> list[ArchCompileResult]:
    raise AssertionError("a profile over the compile budget must be refused before compiling")


# Real-world profiles stay far inside the budget, in the cheap lane


def real_world(shared_profiles_dir: Path) -> list[tuple[str, Any, int]]:
    podman = json.loads((shared_profiles_dir / "containers-common-default.json").read_text())
    spo = yaml.safe_load((shared_profiles_dir / "spo-baseprofile-runc.yaml").read_text())
    found = [
        ("moby default", moby_default_oci(), 3),
        ("containers-common default", docker_to_oci(podman), 3),
        ("SPO base profile", spo["spec"], 1),
    ]
    spo_examples = (shared_profiles_dir / "spo-seccompprofile.yaml").read_text()
    for document in yaml.safe_load_all(spo_examples):
        if document:
            found.append((document["metadata"]["name"], document["spec"], 1))
    for path in sorted((REPO / "examples").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        found.append((path.name, spec, len(spec.get("architectures") or [X86_64])))
    return found


def test_real_world_profiles_are_far_inside_the_budget_and_cheap(
    shared_profiles_dir: Path,
) -> None:
    for name, spec, architectures in real_world(shared_profiles_dir):
        cost = estimate(spec, architectures)
        assert cost.seconds < COMPILE_BUDGET_SECONDS / 50, name
        assert cost.lane is Lane.CHEAP and lane_for(spec, architectures) is Lane.CHEAP, name


# Refused before compiling, deterministically, with the field and what to do


def test_overlapping_range_conditions_are_refused_before_compiling() -> None:
    # Measured: 3 rules x 6 NE arguments on one syscall take libseccomp 1.7 s, 4 rules over 8 s.
    oci = profile(allow(["read"]), *repeated(4, 6, "SCMP_CMP_NE")["syscalls"])
    report = validate_spec(oci, default_architectures=[X86_64], compile_profile=never_compile)
    [finding] = report.errors
    assert finding.reason == "CompileBudgetExceeded"
    assert finding.field == "spec.syscalls[1]"  # the first rule for the costly syscall
    assert "`personality` has 4 rules with 24 argument conditions on 6 arguments" in finding.message
    assert "range comparisons" in finding.message
    assert "SCMP_CMP_EQ" in finding.message  # what to do instead
    assert f"budget of {COMPILE_BUDGET_SECONDS:g} s" in finding.message


def test_the_same_verdict_every_time() -> None:
    oci = repeated(64, 2, "SCMP_CMP_LT")
    first = validate_spec(oci, default_architectures=[X86_64], compile_profile=never_compile)
    again = validate_spec(oci, default_architectures=[X86_64], compile_profile=never_compile)
    assert first.errors == again.errors and first.errors[0].reason == "CompileBudgetExceeded"


def test_the_budget_is_per_profile_so_architectures_multiply_it() -> None:
    # 512 rules x 6 equality conditions (the CRD's limits) on one syscall: ~0.4-0.8 s each.
    oci = repeated(512, 6)
    assert not estimate(oci, 1).over_budget
    [finding] = budget_findings(estimate(oci, 3))
    assert finding.reason == "CompileBudgetExceeded"
    assert "for 3 architectures" in finding.message
    assert "3,072 argument conditions on 6 arguments, equality tests" in finding.message
    # The CRD (and validation) now bound a whole profile to 512 argument conditions, so this
    # shape only exists under an older CRD, and validation refuses it by its size first.
    report = validate_spec(oci, default_architectures=THREE, compile_profile=never_compile)
    assert {f.reason for f in report.errors} == {"TooLarge"}


def test_cost_spread_over_many_syscalls_is_named_as_such() -> None:
    pool = sorted(names_on(X86_64))[:300]
    # One rule naming 300 syscalls, repeated 512 times: 153,600 libseccomp rules (measured: >10 s)
    oci = profile(*[allow(pool)] * 512)
    [finding] = budget_findings(estimate(oci, 1))
    assert finding.field == "spec.syscalls"
    assert "153,600 libseccomp rules" in finding.message and "over 300 syscalls" in finding.message
    assert "List each syscall once" in finding.message


def test_equality_conditions_on_varying_arguments_are_cheap() -> None:
    mixed = profile(*(allow(["personality"], [arg(v % 6, v + 1)]) for v in range(384)))
    assert estimate(mixed, 1).lane is Lane.CHEAP


def test_range_conditions_in_a_single_rule_do_not_multiply() -> None:
    assert estimate(repeated(1, 6, "SCMP_CMP_NE"), 1).lane is Lane.CHEAP
    assert estimate(repeated(512, 1, "SCMP_CMP_GT"), 1).lane is Lane.CHEAP


def test_rules_with_the_default_action_cost_nothing() -> None:
    noisy = repeated(64, 6, "SCMP_CMP_GT")
    for rule in noisy["syscalls"]:
        rule["action"] = "SCMP_ACT_ERRNO"  # the default: runtimes and the compiler skip it
    assert estimate(noisy, 1).seconds == estimate(profile(), 1).seconds


def test_a_repeated_argument_index_counts_as_separate_rules_like_runc() -> None:
    ored = profile(allow(["ioctl"], [arg(0, 1), arg(0, 2), arg(0, 3)]))
    cost = estimate(ored, 1)
    assert cost.heaviest is not None and cost.heaviest.rules == 3
    assert cost.heaviest.conditions == 3


def test_the_lane_threshold_matches_the_estimate() -> None:
    for oci in (repeated(64, 6), repeated(256, 6), profile(*[allow(["read"] * 400)] * 10)):
        cost = estimate(oci, 1)
        assert cost.lane is (
            Lane.CHEAP if cost.seconds < CHEAP_LANE_BELOW_SECONDS else Lane.EXPENSIVE
        )
        assert lane_for(oci, 1) is cost.lane


@pytest.mark.parametrize(
    "junk",
    [
        None,
        [],
        "text",
        {"syscalls": "all"},
        {"syscalls": [None, 3, {"names": "read"}, {"names": [1, None, "read"], "args": "x"}]},
        {"syscalls": [{"names": ["read"], "args": [{"index": [1], "op": {}, "value": [2]}, 7]}]},
    ],
)
def test_any_shape_is_estimated_without_crashing(junk: Any) -> None:
    cost = estimate(junk, 1)
    assert 0 < cost.seconds < CHEAP_LANE_BELOW_SECONDS
    assert lane_for(junk, 1) is Lane.CHEAP


def test_shape_size_bounds_what_the_estimate_walks() -> None:
    shapes = [
        profile(),
        repeated(512, 6),
        repeated(4, 6, "SCMP_CMP_NE"),
        profile(allow(["ioctl", "read"], [arg(0, 1), arg(0, 2), arg(1, 3)])),
        profile(*[allow(sorted(names_on(X86_64))[:50])] * 20),
    ]
    for oci in shapes:
        cost = estimate(oci, 1)
        assert shape_size(oci) >= max(cost.conditions, cost.rules)
