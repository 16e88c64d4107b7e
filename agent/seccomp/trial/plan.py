"""What `seccomp-agent test` and `record` load, and how a denial is explained. Pure.

Observing without enforcing: every action that would stop a syscall (ERRNO, KILL*, TRAP, TRACE,
NOTIFY) becomes SCMP_ACT_NOTIFY in the filter the program runs under, and everything else
ALLOW. The supervisor answers each notification with "continue" (the kernel runs the syscall
as if no filter were there), so the program runs to the end and no denial is lost: user
notification is synchronous, unlike SCMP_ACT_LOG whose audit records the kernel rate-limits.
libseccomp itself decides which syscalls notify, from the same rules, so "would be denied" is
the compiled filter's verdict; `explain` only names the rule for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.api.model import OciSeccomp, SyscallArg, SyscallRule

ALLOWING: Final = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG"})
UINT64: Final = 2**64 - 1


def denies(action: str) -> bool:
    return action not in ALLOWING


def observe_document(profile: OciSeccomp) -> dict[str, Any]:
    """The OCI profile to load for observing: denials become NOTIFY, the rest ALLOW."""
    default = "SCMP_ACT_NOTIFY" if denies(profile.defaultAction) else "SCMP_ACT_ALLOW"
    rules = []
    for rule in profile.syscalls or []:
        action = "SCMP_ACT_NOTIFY" if denies(rule.action) else "SCMP_ACT_ALLOW"
        if action == default:
            continue  # the same verdict as the default: libseccomp refuses such rules
        entry: dict[str, Any] = {"names": list(rule.names), "action": action}
        if rule.args:
            entry["args"] = [a.model_dump(mode="json") for a in rule.args]
        rules.append(entry)
    document: dict[str, Any] = {"defaultAction": default, "syscalls": rules}
    if profile.architectures:
        document["architectures"] = list(profile.architectures)
    return document


def notifies(document: dict[str, Any]) -> bool:
    """Whether a filter built from `document` can notify at all."""
    return document["defaultAction"] == "SCMP_ACT_NOTIFY" or any(
        rule["action"] == "SCMP_ACT_NOTIFY" for rule in document.get("syscalls") or []
    )


# The ABIs a process on a node of this architecture can call through (Docker's archMap): the
# recording filter covers them all, so a 32-bit helper is recorded rather than killed.
COMPAT_ABIS: Final = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
}


def record_document(native: str) -> dict[str, Any]:
    """The filter `record` loads: every syscall of every ABI notifies (and is let through)."""
    return {
        "defaultAction": "SCMP_ACT_NOTIFY",
        "architectures": [native, *COMPAT_ABIS.get(native, ())],
    }


@dataclass(frozen=True)
class Verdict:
    """Which part of the profile denies a syscall, as the user reads the profile."""

    where: str  # `syscalls[3]` or `defaultAction`
    action: str  # e.g. SCMP_ACT_ERRNO(13)


def explain(profile: OciSeccomp, name: str, args: Sequence[int], prefix: str = "") -> Verdict:
    """The rule that decides `name` with these arguments, else the default.

    Unconditional rules first, in order (libseccomp lets the first one win and runtimes drop the
    rest), then rules with conditions in order: a report label, the filter already decided.
    """
    rules = list(enumerate(profile.syscalls or []))
    for index, rule in [*_unconditional(rules), *_conditional(rules)]:
        if name in rule.names and all(_holds(arg, args) for arg in rule.args or []):
            return Verdict(f"{prefix}syscalls[{index}]", _label(rule.action, rule.errnoRet))
    return Verdict(f"{prefix}defaultAction", _label(profile.defaultAction, profile.defaultErrnoRet))


def _unconditional(rules: list[tuple[int, SyscallRule]]) -> list[tuple[int, SyscallRule]]:
    return [(i, r) for i, r in rules if not r.args]


def _conditional(rules: list[tuple[int, SyscallRule]]) -> list[tuple[int, SyscallRule]]:
    return [(i, r) for i, r in rules if r.args]


def _holds(arg: SyscallArg, args: Sequence[int]) -> bool:
    value = args[arg.index] & UINT64 if arg.index < len(args) else 0
    match arg.op:
        case "SCMP_CMP_NE":
            return value != arg.value
        case "SCMP_CMP_LT":
            return value < arg.value
        case "SCMP_CMP_LE":
            return value <= arg.value
        case "SCMP_CMP_EQ":
            return value == arg.value
        case "SCMP_CMP_GE":
            return value >= arg.value
        case "SCMP_CMP_GT":
            return value > arg.value
        case _:  # SCMP_CMP_MASKED_EQ: value & mask == datum
            return value & arg.value == arg.valueTwo


def _label(action: str, errno: int | None) -> str:
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return f"{action}({1 if errno is None else errno})"
    return action
