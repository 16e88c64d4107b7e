"""Cross-field rules, schema bounds and Docker-format detection, without compiling."""

from __future__ import annotations

from typing import Any

import pytest

from agent.api.findings import ValidationReport
from agent.validation.validate import validate_spec

X86_64 = ["SCMP_ARCH_X86_64"]


def check(spec: Any) -> ValidationReport:
    return validate_spec(spec, default_architectures=X86_64, compile_profile=None)


def errors_by_field(report: ValidationReport) -> dict[str, str]:
    return {f.field: f.reason for f in report.errors}


def allow(*names: str, **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def test_minimal_profile_is_valid() -> None:
    report = check({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", "write")]})
    assert report.valid
    assert report.findings == ()


def test_empty_profile_is_an_error_because_runtimes_read_it_as_unconfined() -> None:
    report = check({})
    assert errors_by_field(report) == {"spec.defaultAction": "MissingDefaultAction"}
    assert "no seccomp at all" in report.errors[0].message


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"defaultAction": "SCMP_ACT_DENY"}, "spec.defaultAction", "NotAllowed"),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_PARISC"]},
            "spec.architectures[0]",
            "NotAllowed",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
            "spec.flags[0]",
            "NotAllowed",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4095},
            "spec.defaultErrnoRet",
            "Schema",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}],
            },
            "spec.syscalls[0].names",
            "Schema",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", "Open")]},
            "spec.syscalls[0].names[1]",
            "Schema",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [allow("read", args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}])],
            },
            "spec.syscalls[0].args[0].index",
            "Schema",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [allow("read", args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}])],
            },
            "spec.syscalls[0].args[0].value",
            "Schema",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [allow("read", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_IS"}])],
            },
            "spec.syscalls[0].args[0].op",
            "NotAllowed",
        ),
        ({"defaultAction": "SCMP_ACT_ERRNO", "seccomp": True}, "spec.seccomp", "UnknownField"),
    ],
)
def test_schema_errors_name_the_field(spec: dict[str, Any], field: str, reason: str) -> None:
    report = check(spec)
    assert not report.valid
    assert errors_by_field(report) == {field: reason}


def test_seven_args_are_too_many() -> None:
    args = [{"index": i % 6, "value": i, "op": "SCMP_CMP_EQ"} for i in range(7)]
    report = check({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", args=args)]})
    assert errors_by_field(report) == {"spec.syscalls[0].args": "Schema"}


def test_uint64_max_argument_value_is_accepted() -> None:
    args = [{"index": 0, "value": 2**64 - 1, "valueTwo": 2**64 - 1, "op": "SCMP_CMP_MASKED_EQ"}]
    assert check({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", args=args)]}).valid


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", errnoRet=1)]},
            "spec.syscalls[0].errnoRet",
            "ErrnoWithoutErrnoAction",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
            "spec.defaultErrnoRet",
            "ErrnoWithoutErrnoAction",
        ),
        (
            {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"},
            "spec.defaultAction",
            "NotifyDefault",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}],
            },
            "spec.syscalls[0].names[1]",
            "NotifyOnWrite",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}],
            },
            "spec.listenerPath",
            "NotifyWithoutListener",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "pod=a"},
            "spec.listenerMetadata",
            "MetadataWithoutListener",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [
                            {"index": 0, "value": 0, "op": "SCMP_CMP_NE"},
                            {"index": 0, "value": 8, "op": "SCMP_CMP_NE"},
                        ],
                    }
                ],
            },
            "spec.syscalls[0].args[1].index",
            "RepeatedArgIndex",
        ),
    ],
)
def test_cross_field_rules(spec: dict[str, Any], field: str, reason: str) -> None:
    report = check(spec)
    assert errors_by_field(report) == {field: reason}


def test_errno_with_trace_is_fine() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 38}],
    }
    assert check(spec).valid


def test_conflicting_duplicate_is_an_error_naming_both_rules() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [allow("read", "ptrace"), {"names": ["ptrace"], "action": "SCMP_ACT_KILL"}],
    }
    report = check(spec)
    assert errors_by_field(report) == {"spec.syscalls[1].names[0]": "ConflictingSyscall"}
    assert "syscalls[0]" in report.errors[0].message
    assert "silently drops" in report.errors[0].message


def test_same_action_duplicate_is_only_a_warning() -> None:
    report = check({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read"), allow("read")]})
    assert report.valid
    assert [(f.field, f.reason) for f in report.warnings] == [
        ("spec.syscalls[1].names[0]", "DuplicateSyscall")
    ]


def test_conditional_rules_for_the_same_syscall_are_not_duplicates() -> None:
    cond = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            allow("personality", args=cond),
            {
                "names": ["personality"],
                "action": "SCMP_ACT_LOG",
                "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    assert check(spec).findings == ()


def test_different_errno_counts_as_conflicting() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }
    assert errors_by_field(check(spec)) == {"spec.syscalls[1].names[0]": "ConflictingSyscall"}


def test_rule_equal_to_default_is_a_warning() -> None:
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [allow("read")]}
    report = check(spec)
    assert report.valid
    assert [f.reason for f in report.warnings] == ["SameAsDefault"]


def test_typo_in_syscall_name_is_an_error_with_a_suggestion() -> None:
    report = check({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", "opne")]})
    assert errors_by_field(report) == {"spec.syscalls[0].names[1]": "UnknownSyscall"}
    assert "did you mean `open`" in report.errors[0].message


def test_syscall_missing_on_target_architecture_is_a_warning() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_AARCH64"],
        "syscalls": [allow("read", "open")],
    }
    report = check(spec)
    assert report.valid
    assert [(f.field, f.reason) for f in report.warnings] == [
        ("spec.syscalls[0].names[1]", "SyscallNotOnArchitecture")
    ]


def test_syscall_newer_than_this_libseccomp_is_a_warning() -> None:
    report = validate_spec(
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow("read", "mseal")]},
        default_architectures=X86_64,
        compile_profile=None,
    )
    # Debian 12's libseccomp 2.5.4 predates mseal; a newer one knows it.
    from agent.seccomp.syscalls import libseccomp_knows

    expected = [] if libseccomp_knows("mseal") else ["SyscallUnknownToLibseccomp"]
    assert report.valid
    assert [f.reason for f in report.warnings] == expected


def test_docker_format_keys_are_refused_with_what_to_do() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "comment": ""},
            {
                "names": ["mount"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_SYS_ADMIN"]},
            },
        ],
    }
    report = check(spec)
    assert errors_by_field(report) == {
        "spec.archMap": "DockerFormat",
        "spec.syscalls[1].includes": "DockerFormat",
    }
    assert all("containerd drops unknown keys" in f.message for f in report.errors)
    assert "architectures" in report.errors[0].message


def test_non_object_spec_is_reported() -> None:
    report = check(["defaultAction"])
    assert not report.valid
    assert report.errors[0].field == "spec"


def test_big_endian_architecture_on_a_little_endian_node_is_an_error() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_S390X"],
    }
    report = validate_spec(
        spec, default_architectures=X86_64, compile_profile=None, node_architectures=X86_64
    )
    assert errors_by_field(report) == {"spec.architectures[1]": "ByteOrderMismatch"}
    # Without knowing the node (the CLI without --arch), nothing can be said.
    assert check(spec).valid
