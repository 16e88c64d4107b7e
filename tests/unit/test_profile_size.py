"""Profile size: measured before anything is built, refused with its size, never modelled.

The walk must agree with real JSON, stay cheap, and the refusal must name the field and the
limit. Kept findings are bounded whatever a profile contains.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any, get_args

import pytest

from agent.api.findings import error
from agent.api.keys import ProfileKey
from agent.api.model import (
    MAX_ARGS,
    MAX_ERRNO,
    MAX_PATH_LENGTH,
    MAX_RULES,
    MAX_SYSCALL_NAME_LENGTH,
    MAX_TOTAL_ARGS,
    MAX_TOTAL_NAMES,
    Architecture,
    Flag,
)
from agent.node.catalog import MAX_KEPT_FINDINGS, ProfileCatalog, ProfileRecord, kept
from agent.profiles.render import RenderedProfile
from agent.validation.size import MAX_SPEC_BYTES, json_size, size_findings
from agent.validation.validate import validate_spec
from bench._docker_profile import moby_default_oci


def huge_spec(megabytes: float = 1.4) -> dict[str, Any]:
    """Within every per-field bound of the model (512 rules, 64-character names)."""
    per_rule = int(megabytes * 1_000_000 / 512 / 67)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": [f"s{rule:03d}_{i:04d}_".ljust(64, "x") for i in range(per_rule)],
                "action": "SCMP_ACT_ERRNO",
            }
            for rule in range(512)
        ],
    }


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [1, 2, {"b": None, "c": True, "d": False}], "e": "text", "f": 4094},
        moby_default_oci(),
        huge_spec(0.3),
    ],
    ids=["empty-object", "empty-list", "mixed", "docker-default", "large"],
)
def test_json_size_equals_compact_json(value: Any) -> None:
    assert json_size(value) == len(json.dumps(value, separators=(",", ":")))


def test_json_size_stops_early_when_asked() -> None:
    # Stops within one name of the limit instead of walking 1.4 MB.
    assert 1000 < json_size(huge_spec(), stop_after=1000) < 1100


def test_real_profiles_are_far_below_the_limit() -> None:
    docker = json_size(moby_default_oci())
    assert docker < MAX_SPEC_BYTES / 10
    assert size_findings(moby_default_oci()) == []


def test_an_oversize_spec_is_refused_with_its_size_and_the_limit_without_modelling_it() -> None:
    spec = huge_spec()
    tracemalloc.start()
    try:
        report = validate_spec(
            spec, default_architectures=["SCMP_ARCH_X86_64"], compile_profile=None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.profile is None
    (finding,) = report.findings
    assert finding.field == "spec"
    assert finding.reason == "TooLarge"
    assert finding.message.startswith("the profile is 1.3 MiB; the limit is 256 KiB")
    # Checking each of its 20,000 names took 15 s of CPU and 8 MB of findings before.
    assert peak < 1_000_000


def test_a_spec_just_under_the_limit_is_validated_normally() -> None:
    spec = huge_spec(0.15)  # 2,048 names of 64 characters: the most the CRD allows
    assert json_size(spec) < MAX_SPEC_BYTES
    report = validate_spec(spec, default_architectures=["SCMP_ARCH_X86_64"], compile_profile=None)
    assert all(f.reason != "TooLarge" for f in report.findings)


def test_kept_findings_are_bounded_and_count_the_rest() -> None:
    findings = tuple(error(f"spec.syscalls[{i}]", "UnknownSyscall", "x") for i in range(5000))
    result = kept(findings)
    assert len(result) == MAX_KEPT_FINDINGS + 1
    assert result[:MAX_KEPT_FINDINGS] == findings[:MAX_KEPT_FINDINGS]
    assert result[-1].message.startswith(f"and {5000 - MAX_KEPT_FINDINGS} more errors")
    assert kept(findings[:3]) == findings[:3]


def _record(name: str, size: int, uid: str = "u") -> ProfileRecord:
    rendered = RenderedProfile(b"x" * size, name)
    return ProfileRecord(ProfileKey("ns", name), uid, 1, rendered)


def test_the_catalog_caps_the_rendered_bytes_it_holds() -> None:
    catalog = ProfileCatalog(max_rendered_bytes=1000)
    assert catalog.accept(_record("a", 600)).valid
    refused = catalog.accept(_record("b", 600))
    assert not refused.valid
    assert refused.rendered is None
    assert refused.errors[0].reason == "TooLarge"
    assert "the agent keeps at most" in refused.errors[0].message
    assert catalog.rendered_bytes == 600
    # A new version of a held profile replaces its own bytes.
    assert catalog.accept(_record("a", 900)).valid
    assert catalog.rendered_bytes == 900
    # An over-budget update keeps the last valid file, and its bytes, in place.
    over = catalog.accept(_record("a", 1200))
    assert not over.valid
    assert over.rendered is not None and len(over.rendered.content) == 900
    assert catalog.rendered_bytes == 900
    catalog.forget(ProfileKey("ns", "a"))
    assert catalog.rendered_bytes == 0
    assert catalog.accept(_record("b", 600)).valid


def worst_case_spec() -> dict[str, Any]:
    """The largest spec the CRD accepts: every bound and total at its maximum, longest values."""
    rules = []
    for index in range(MAX_RULES):
        rules.append(
            {
                "names": [
                    f"n{index:03d}_{i}_".ljust(MAX_SYSCALL_NAME_LENGTH, "x") for i in range(4)
                ],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": MAX_ERRNO,
                "args": [
                    {
                        "index": MAX_ARGS - 1,
                        "value": 2**63 - 1,
                        "valueTwo": 2**63 - 1,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            }
        )
    assert sum(len(r["names"]) for r in rules) == MAX_TOTAL_NAMES
    assert sum(len(r["args"]) for r in rules) == MAX_TOTAL_ARGS
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": MAX_ERRNO,
        "architectures": list(get_args(Architecture)),
        "flags": list(get_args(Flag)),
        "listenerPath": "/" + "p" * (MAX_PATH_LENGTH - 1),
        "listenerMetadata": "m" * MAX_PATH_LENGTH,
        "syscalls": rules,
    }


def test_the_largest_spec_the_crd_accepts_is_under_the_agent_limit() -> None:
    """So an object that went through today's CRD is never refused for its size."""
    size = json_size(worst_case_spec())
    assert size <= MAX_SPEC_BYTES, f"{size} bytes"
    assert size_findings(worst_case_spec()) == []


def test_totals_over_the_crd_bounds_are_refused_by_the_agent_too() -> None:
    spec = worst_case_spec()
    spec["syscalls"][0]["names"].append("read")
    spec["syscalls"][1]["args"].append({"index": 0, "value": 1, "op": "SCMP_CMP_EQ"})
    report = validate_spec(spec, default_architectures=["SCMP_ARCH_X86_64"], compile_profile=None)
    messages = [f.message for f in report.errors if f.field == "spec.syscalls"]
    assert any(m.startswith(f"the rules name {MAX_TOTAL_NAMES + 1} syscalls") for m in messages)
    assert any(m.startswith(f"the rules hold {MAX_TOTAL_ARGS + 1} argument") for m in messages)
