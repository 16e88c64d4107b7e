"""Syscall names: typos are errors; real names a node cannot use yet are warnings."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence

from agent.api.findings import Finding, error, warning
from agent.api.model import OciSeccomp
from agent.seccomp.syscalls import ALL_SYSCALL_NAMES, libseccomp_knows, names_on


def syscall_name_findings(
    profile: OciSeccomp,
    architectures: Sequence[str],
    prefix: str,
    known_to_libseccomp: Callable[[str], bool] = libseccomp_knows,
) -> Iterator[Finding]:
    """Check every name against Linux's syscall table and this node's libseccomp.

    runc and crun skip names they cannot resolve, so a misspelt name in an allow-list is a
    syscall that stays blocked (or, in a deny-list, one that stays allowed): an error. A real
    syscall that this libseccomp predates, or that the target architectures lack, is skipped the
    same way, but the profile still means what it says on newer nodes: a warning.
    """
    on_targets = frozenset().union(*(names_on(arch) for arch in architectures))
    for rule_index, rule in enumerate(profile.syscalls or []):
        for name_index, name in enumerate(rule.names):
            field = f"{prefix}syscalls[{rule_index}].names[{name_index}]"
            if name not in ALL_SYSCALL_NAMES:
                yield error(field, "UnknownSyscall", _unknown_message(name))
            elif name not in on_targets:
                yield warning(
                    field,
                    "SyscallNotOnArchitecture",
                    f"`{name}` does not exist on {', '.join(architectures)}; runtimes skip it",
                )
            elif not known_to_libseccomp(name):
                yield warning(
                    field,
                    "SyscallUnknownToLibseccomp",
                    f"`{name}` is newer than this node's libseccomp, so the runtime skips it "
                    "here; it is enforced on nodes with a newer libseccomp",
                )


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, ALL_SYSCALL_NAMES, n=1, cutoff=0.75)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"`{name}` is not a Linux syscall on any architecture{hint}"
