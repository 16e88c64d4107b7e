"""Resolve a Docker-format profile (moby, containers/common) into a plain OCI seccomp object.

Docker's format gates rules on the container: `archMap` picks the architectures for the native
one, and `includes`/`excludes` keep or drop a rule by architecture, capability and kernel
version. Docker resolves them when it starts a container (moby, profiles/seccomp/seccomp.go,
`setupSeccomp`); a Localhost profile on a Kubernetes node is read by runtimes that do not, so
the resolution happens here, once, for a stated target, and every rule left out is reported.

The semantics follow moby's: `excludes` drops a rule when the target's architecture is listed,
when the container holds ANY listed capability, or when the kernel is at least `minKernel`;
`includes` keeps a rule only when the target's architecture is listed, the container holds
EVERY listed capability, and the kernel is at least `minKernel`. Architectures in
`includes`/`excludes` are Go names (amd64, arm64...) matched against the target's native one.
"""

from __future__ import annotations

import errno as errno_names
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# SCMP_ARCH_* of a node -> the names Docker profiles use for it in includes/excludes.
GO_ARCH_NAMES: Final[Mapping[str, frozenset[str]]] = {
    "SCMP_ARCH_X86_64": frozenset({"amd64", "x86_64"}),
    "SCMP_ARCH_X86": frozenset({"386", "x86"}),
    "SCMP_ARCH_X32": frozenset({"x32"}),
    "SCMP_ARCH_AARCH64": frozenset({"arm64", "aarch64"}),
    "SCMP_ARCH_ARM": frozenset({"arm"}),
    "SCMP_ARCH_PPC64LE": frozenset({"ppc64le"}),
    "SCMP_ARCH_PPC64": frozenset({"ppc64"}),
    "SCMP_ARCH_PPC": frozenset({"ppc"}),
    "SCMP_ARCH_S390X": frozenset({"s390x"}),
    "SCMP_ARCH_S390": frozenset({"s390"}),
    "SCMP_ARCH_RISCV64": frozenset({"riscv64"}),
    "SCMP_ARCH_LOONGARCH64": frozenset({"loong64", "loongarch64"}),
    "SCMP_ARCH_MIPS64": frozenset({"mips64"}),
    "SCMP_ARCH_MIPSEL64": frozenset({"mips64le"}),
    "SCMP_ARCH_MIPS": frozenset({"mips"}),
    "SCMP_ARCH_MIPSEL": frozenset({"mipsle"}),
}

# The capabilities a container gets when nothing is added or dropped: the default set of
# containerd's CRI plugin, CRI-O and Docker (the OCI runtime-spec example set). An
# "unprivileged container" in this project means exactly this set.
DEFAULT_CONTAINER_CAPABILITIES: Final = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)

DOCKER_TOP_LEVEL_KEYS: Final = frozenset({"archMap", "defaultErrno"})
DOCKER_RULE_KEYS: Final = frozenset({"includes", "excludes", "errno", "name", "comment"})
_PASSED_THROUGH: Final = (
    "defaultAction",
    "defaultErrnoRet",
    "flags",
    "listenerPath",
    "listenerMetadata",
)


class ConversionError(ValueError):
    """The input cannot be turned into a profile; the message names the field."""


@dataclass(frozen=True)
class Target:
    """The containers the profile is resolved for."""

    architecture: str  # the node's native SCMP_ARCH_*
    capabilities: frozenset[str] = DEFAULT_CONTAINER_CAPABILITIES
    kernel: tuple[int, int] | None = None  # None: assume every minKernel is met


@dataclass
class Resolution:
    spec: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # rules (or names) left out, and why
    notes: list[str] = field(default_factory=list)  # assumptions made


def is_docker_format(document: Mapping[str, Any]) -> bool:
    if any(key in document for key in DOCKER_TOP_LEVEL_KEYS):
        return True
    rules = document.get("syscalls")
    return isinstance(rules, list) and any(
        isinstance(rule, Mapping) and any(rule.get(k) for k in DOCKER_RULE_KEYS - {"comment"})
        for rule in rules
    )


def parse_kernel(text: str) -> tuple[int, int]:
    """`6.1`, `6.1.0-18-amd64`, `4.8` -> (major, minor)."""
    parts = text.strip().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        raise ConversionError(f"kernel version {text!r} is not MAJOR.MINOR[...]") from None


def resolve(document: Mapping[str, Any], target: Target) -> Resolution:
    """The OCI object Docker would hand to runc for a container matching `target`."""
    if not isinstance(document.get("defaultAction"), str):
        raise ConversionError("defaultAction: required (a profile without it means no seccomp)")
    spec: dict[str, Any] = {k: document[k] for k in _PASSED_THROUGH if k in document}
    result = Resolution(spec)
    if "defaultErrnoRet" not in spec and "defaultErrno" in document:
        spec["defaultErrnoRet"] = _errno_number(document["defaultErrno"], "defaultErrno")
    spec["architectures"] = _architectures(document, target, result)
    if target.kernel is None and _mentions_min_kernel(document):
        result.notes.append(
            "minKernel conditions were taken as met (pass --kernel to resolve them for a kernel)"
        )
    rules = []
    for index, raw in enumerate(document.get("syscalls") or []):
        if not isinstance(raw, Mapping):
            raise ConversionError(f"syscalls[{index}]: expected an object")
        why_not = _excluded(raw, target) or _not_included(raw, target)
        names = _names(raw, index)
        if why_not:
            result.dropped.append(f"syscalls[{index}] ({', '.join(names)}): {why_not}")
            continue
        rules.append(_oci_rule(raw, names, index))
    spec["syscalls"] = _without_shadowed(rules, result)
    if not spec["syscalls"]:
        del spec["syscalls"]
    return result


def _architectures(document: Mapping[str, Any], target: Target, result: Resolution) -> list[str]:
    arch_map = document.get("archMap")
    if isinstance(arch_map, list):
        for entry in arch_map:
            if isinstance(entry, Mapping) and entry.get("architecture") == target.architecture:
                return [target.architecture, *(entry.get("subArchitectures") or [])]
        result.notes.append(
            f"archMap has no entry for {target.architecture}: the filter covers only it"
        )
        return [target.architecture]
    listed = document.get("architectures")
    return list(listed) if isinstance(listed, list) and listed else [target.architecture]


def _excluded(rule: Mapping[str, Any], target: Target) -> str | None:
    gate = rule.get("excludes") or {}
    arches = set(gate.get("arches") or [])
    if arches & GO_ARCH_NAMES.get(target.architecture, frozenset()):
        return f"excluded on {target.architecture}"
    held = sorted(set(gate.get("caps") or []) & target.capabilities)
    if held:
        return f"excluded for containers holding {', '.join(held)}"
    min_kernel = gate.get("minKernel")
    if min_kernel and _kernel_at_least(target, str(min_kernel)):
        return f"excluded on kernels >= {min_kernel}"
    return None


def _not_included(rule: Mapping[str, Any], target: Target) -> str | None:
    gate = rule.get("includes") or {}
    arches = set(gate.get("arches") or [])
    if arches and not arches & GO_ARCH_NAMES.get(target.architecture, frozenset()):
        return f"only for {', '.join(sorted(arches))}, not {target.architecture}"
    missing = sorted(set(gate.get("caps") or []) - target.capabilities)
    if missing:
        return f"needs {', '.join(missing)}"
    min_kernel = gate.get("minKernel")
    if min_kernel and not _kernel_at_least(target, str(min_kernel)):
        return f"needs a kernel >= {min_kernel}"
    return None


def _kernel_at_least(target: Target, min_kernel: str) -> bool:
    return target.kernel is None or target.kernel >= parse_kernel(min_kernel)


def _mentions_min_kernel(document: Mapping[str, Any]) -> bool:
    return any(
        isinstance(rule, Mapping)
        and any((rule.get(gate) or {}).get("minKernel") for gate in ("includes", "excludes"))
        for rule in document.get("syscalls") or []
    )


def _names(rule: Mapping[str, Any], index: int) -> list[str]:
    names = list(rule.get("names") or [])
    if rule.get("name"):
        names.append(rule["name"])
    if not names or not all(isinstance(n, str) for n in names):
        raise ConversionError(f"syscalls[{index}].names: expected a list of syscall names")
    return names


def _oci_rule(raw: Mapping[str, Any], names: list[str], index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": names, "action": raw.get("action")}
    if raw.get("errnoRet") is not None:
        rule["errnoRet"] = raw["errnoRet"]
    elif raw.get("errno"):
        rule["errnoRet"] = _errno_number(raw["errno"], f"syscalls[{index}].errno")
    if raw.get("args"):
        rule["args"] = [
            {k: v for k, v in arg.items() if not (k == "valueTwo" and v == 0)}
            for arg in raw["args"]
        ]
    return rule


def _without_shadowed(rules: Sequence[dict[str, Any]], result: Resolution) -> list[dict[str, Any]]:
    """Drop names an earlier unconditional rule already decides: libseccomp would drop them."""
    first: dict[str, tuple[str, Any]] = {}
    kept = []
    for rule in rules:
        if rule.get("args"):
            kept.append(rule)
            continue
        effect = (rule["action"], rule.get("errnoRet"))
        names = []
        for name in rule["names"]:
            if name in first:
                if first[name] != effect:
                    result.dropped.append(
                        f"{name}: {effect[0]} dropped, an earlier rule already gives it "
                        f"{first[name][0]} (libseccomp keeps the first)"
                    )
                continue
            first[name] = effect
            names.append(name)
        if names:
            kept.append({**rule, "names": names})
    return kept


def _errno_number(name: Any, where: str) -> int:
    number = getattr(errno_names, str(name), None)
    if not isinstance(number, int):
        raise ConversionError(f"{where}: {name!r} is not an errno name (EPERM, ENOSYS...)")
    return number
