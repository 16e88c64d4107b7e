"""Cross-field rules: what a runtime rejects, or silently reads differently from what was written.

Pure functions of a parsed profile. Each mirrors how runtimes read a profile (docs/api.md, "What
validation catches"); the CRD repeats the ones a CEL rule can express, and these catch objects
that never went through the API server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from agent.api.findings import Finding, error, warning
from agent.api.model import (
    ACTIONS_WITH_ERRNO,
    MAX_TOTAL_ARGS,
    MAX_TOTAL_NAMES,
    OciSeccomp,
    SyscallRule,
)

NOTIFY = "SCMP_ACT_NOTIFY"


# libseccomp cannot mix byte orders in one filter, and runtimes always add the node's own
# architecture to the profile's list: a big-endian entry breaks every container on a
# little-endian node, and the other way round.
BIG_ENDIAN = frozenset(
    {
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
    }
)


def semantic_findings(
    profile: OciSeccomp, prefix: str, node_architectures: Sequence[str] = ()
) -> list[Finding]:
    """Every cross-field finding for one profile; `prefix` is prepended to each field path.

    `node_architectures` are the architectures of the node that will load the profile (the
    agent knows its own); empty when unknown, as for the CLI with no --arch."""
    findings = list(_default_action_findings(profile, prefix))
    findings.extend(_byte_order_findings(profile, prefix, node_architectures))
    rules = profile.syscalls or []
    for index, rule in enumerate(rules):
        findings.extend(_rule_findings(profile, rule, f"{prefix}syscalls[{index}]"))
    findings.extend(_duplicate_name_findings(rules, prefix))
    findings.extend(_total_findings(rules, prefix))
    return findings


def _total_findings(rules: Sequence[SyscallRule], prefix: str) -> Iterator[Finding]:
    names = sum(len(rule.names) for rule in rules)
    if names > MAX_TOTAL_NAMES:
        yield error(
            f"{prefix}syscalls",
            "TooLarge",
            f"the rules name {names} syscalls in all; at most {MAX_TOTAL_NAMES} (Linux has about "
            "460 per architecture): give each syscall one rule, and merge rules that share an "
            "action",
        )
    args = sum(len(rule.args or ()) for rule in rules)
    if args > MAX_TOTAL_ARGS:
        yield error(
            f"{prefix}syscalls",
            "TooLarge",
            f"the rules hold {args} argument conditions in all; at most {MAX_TOTAL_ARGS} (Docker's "
            "default holds 9), and each costs BPF instructions out of the kernel's 4096",
        )


def _byte_order_findings(
    profile: OciSeccomp, prefix: str, node_architectures: Sequence[str]
) -> Iterator[Finding]:
    for node_arch in node_architectures:
        node_big = node_arch in BIG_ENDIAN
        for index, arch in enumerate(profile.architectures or []):
            if (arch in BIG_ENDIAN) != node_big:
                yield error(
                    f"{prefix}architectures[{index}]",
                    "ByteOrderMismatch",
                    f"{arch} has a different byte order from this node ({node_arch}); the "
                    "runtime adds the node's architecture and libseccomp cannot mix them in one "
                    "filter, so every container using the profile would fail to start here",
                )


def _default_action_findings(profile: OciSeccomp, prefix: str) -> Iterator[Finding]:
    if profile.defaultAction == NOTIFY:
        yield error(
            f"{prefix}defaultAction",
            "NotifyDefault",
            "SCMP_ACT_NOTIFY cannot be the default action: runc refuses it (the runtime's own "
            "syscalls would wait on the listener); use it on specific syscalls",
        )
    if profile.defaultErrnoRet is not None and profile.defaultAction not in ACTIONS_WITH_ERRNO:
        yield error(
            f"{prefix}defaultErrnoRet",
            "ErrnoWithoutErrnoAction",
            f"defaultErrnoRet only applies to SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not "
            f"{profile.defaultAction}: runc ignores it and crun refuses the profile",
        )
    if profile.listenerMetadata is not None and profile.listenerPath is None:
        yield error(
            f"{prefix}listenerMetadata",
            "MetadataWithoutListener",
            "listenerMetadata is only sent to a listener: set listenerPath as well, or remove it",
        )


def _rule_findings(profile: OciSeccomp, rule: SyscallRule, path: str) -> Iterator[Finding]:
    if rule.errnoRet is not None and rule.action not in ACTIONS_WITH_ERRNO:
        yield error(
            f"{path}.errnoRet",
            "ErrnoWithoutErrnoAction",
            f"errnoRet only applies to SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {rule.action}: "
            "runc ignores it silently and crun refuses the profile",
        )
    if rule.action == NOTIFY:
        if "write" in rule.names:
            yield error(
                f"{path}.names[{rule.names.index('write')}]",
                "NotifyOnWrite",
                "SCMP_ACT_NOTIFY on `write` deadlocks the runtime, which reports through write(); "
                "runc refuses it",
            )
        if profile.listenerPath is None:
            yield error(
                f"{prefix_of(path)}listenerPath",
                "NotifyWithoutListener",
                f"{path} uses SCMP_ACT_NOTIFY, which needs listenerPath (the socket of the "
                "seccomp agent that answers); runc fails with 'seccomp listenerPath is not set'",
            )
    seen: dict[int, int] = {}
    for arg_index, arg in enumerate(rule.args or []):
        if arg.index in seen:
            yield error(
                f"{path}.args[{arg_index}].index",
                "RepeatedArgIndex",
                f"argument index {arg.index} is already constrained by args[{seen[arg.index]}]: "
                "runtimes turn repeated indexes into separate rules that are ORed, not ANDed; "
                "write one rule per alternative instead",
            )
        else:
            seen[arg.index] = arg_index
    if rule.action == profile.defaultAction and rule.errnoRet == profile.defaultErrnoRet:
        yield warning(
            path,
            "SameAsDefault",
            f"the action {rule.action} is already the default, so runtimes skip this rule",
        )


def _duplicate_name_findings(rules: list[SyscallRule], prefix: str) -> Iterator[Finding]:
    """libseccomp keeps the first unconditional rule for a syscall and drops later ones."""
    first_rule_for: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.args:
            continue
        for name_index, name in enumerate(rule.names):
            earlier = first_rule_for.setdefault(name, index)
            if earlier == index:
                continue
            earlier_rule = rules[earlier]
            field = f"{prefix}syscalls[{index}].names[{name_index}]"
            if _effect(earlier_rule) == _effect(rule):
                yield warning(
                    field,
                    "DuplicateSyscall",
                    f"`{name}` already has the same action in syscalls[{earlier}]; this entry "
                    "is redundant",
                )
            else:
                yield error(
                    field,
                    "ConflictingSyscall",
                    f"`{name}` already has {_describe(earlier_rule)} in syscalls[{earlier}]; "
                    f"libseccomp keeps the first and silently drops this {_describe(rule)}. "
                    "Keep one rule for it",
                )


def _effect(rule: SyscallRule) -> tuple[str, int | None]:
    return rule.action, rule.errnoRet


def _describe(rule: SyscallRule) -> str:
    return rule.action if rule.errnoRet is None else f"{rule.action}({rule.errnoRet})"


def prefix_of(path: str) -> str:
    """`spec.syscalls[2]` -> `spec.`: the prefix of a rule path, for spec-level fields."""
    head, _, _ = path.partition("syscalls[")
    return head
