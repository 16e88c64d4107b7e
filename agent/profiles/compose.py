"""Compose a profile with its base into the one flattened OCI profile a node receives.

The rules, in the order a reader checks them (docs/api.md, "Base profiles"):

1. `defaultAction`: the child's if it sets one, else the base's. `defaultErrnoRet` travels with
   the action: a child that sets `defaultAction` also decides `defaultErrnoRet` (unset means
   EPERM); a child that sets only `defaultErrnoRet` changes the base's errno.
2. Rules: every syscall the child names in any rule is the child's alone. The base's rules lose
   those names (a base rule left without names is dropped), so a child can allow what its base
   denies, deny what it allows, or replace the base's argument conditions for a syscall. The
   child's rules come first, then the base's, each in its own order.
3. `architectures` and `flags`: the union, base first, without repeats.
4. `listenerPath` and `listenerMetadata`: the child's if set, else the base's.
5. A rule that ends up with the default action and errno is dropped: runtimes skip it anyway
   (and libseccomp refuses it), and it would only make the file longer.

Pure: plain models in, a model out. Chains are composed one link at a time: a base that has a
base of its own is handed in already flattened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from agent.api.model import OciSeccomp, ProfileSpec, SyscallRule

T = TypeVar("T")

# Why a base cannot be used; the reasons the node reports (Invalid, with this reason).
BASE_NOT_FOUND: Final = "BaseNotFound"
BASE_INVALID: Final = "BaseInvalid"
BASE_CYCLE: Final = "BaseCycle"
BASE_CHAIN_TOO_DEEP: Final = "BaseChainTooDeep"
UNKNOWN_BUILTIN: Final = "UnknownBuiltinBase"


@dataclass(frozen=True)
class ResolvedBase:
    """What a child's `baseProfileName` leads to: a flattened profile, or why there is none."""

    name: str
    chain: tuple[str, ...]  # the base, its base, ... as written (namespace/name or runtime/...)
    profile: OciSeccomp | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def usable(self) -> bool:
        return self.profile is not None and self.reason is None


def child_spec(spec: ProfileSpec) -> OciSeccomp:
    """The child's own fields as an OCI profile, without the base (for its own checks)."""
    data = spec.model_dump(exclude_none=True, exclude={"baseProfileName"})
    return OciSeccomp.model_validate(data)


def compose(base: OciSeccomp, child: ProfileSpec) -> OciSeccomp:
    """The flattened profile: `child` over `base`, by the rules in this module's docstring."""
    if child.defaultAction is not None:
        default_action, default_errno = child.defaultAction, child.defaultErrnoRet
    else:
        default_action = base.defaultAction
        default_errno = (
            child.defaultErrnoRet if child.defaultErrnoRet is not None else base.defaultErrnoRet
        )
    child_rules = list(child.syscalls or [])
    claimed = {name for rule in child_rules for name in rule.names}
    base_rules = [
        rule.model_copy(update={"names": names})
        for rule in base.syscalls or []
        if (names := [n for n in rule.names if n not in claimed])
    ]
    rules = [
        rule
        for rule in child_rules + base_rules
        if not _same_as_default(rule, default_action, default_errno)
    ]
    fields: dict[str, Any] = {
        "defaultAction": default_action,
        "defaultErrnoRet": default_errno,
        "architectures": _union(base.architectures, child.architectures),
        "flags": _union(base.flags, child.flags),
        "listenerPath": child.listenerPath or base.listenerPath,
        "listenerMetadata": child.listenerMetadata or base.listenerMetadata,
        "syscalls": [r.model_dump(exclude_none=True) for r in rules] or None,
    }
    return OciSeccomp.model_validate({k: v for k, v in fields.items() if v is not None})


def _same_as_default(rule: SyscallRule, action: str, errno: int | None) -> bool:
    # With or without args: runtimes skip any rule whose effect is the default's.
    return rule.action == action and rule.errnoRet == errno


def _union(first: Iterable[T] | None, second: Iterable[T] | None) -> list[T] | None:
    merged: list[T] = []
    for item in [*(first or []), *(second or [])]:
        if item not in merged:
            merged.append(item)
    return merged or None
