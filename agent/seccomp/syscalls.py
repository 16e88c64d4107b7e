"""Which syscall names exist: per architecture in Linux, and in this node's libseccomp.

The per-architecture lists come from `syscall_table.json`, generated from libseccomp's own table
by `python -m tools.generate_syscall_table`. They answer "is this a real syscall?" independently
of the libseccomp installed here, which may predate newer ones (2.5.4 lacks mseal, listmount...).
"""

from __future__ import annotations

import functools
import json
import platform
from importlib import resources
from typing import Final

from agent.seccomp.worker import (
    ARCHITECTURES,
    UNKNOWN_SYSCALL,
    native_token,
    resolve_name,
)

TABLE_RESOURCE: Final = "syscall_table.json"

# platform.machine() -> SCMP_ARCH_*, for when libseccomp reports a native architecture that the
# table above does not list.
_MACHINE_ARCHITECTURES: Final = {
    "x86_64": "SCMP_ARCH_X86_64",
    "amd64": "SCMP_ARCH_X86_64",
    "i386": "SCMP_ARCH_X86",
    "i686": "SCMP_ARCH_X86",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
    "armv7l": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "ppc64": "SCMP_ARCH_PPC64",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "loongarch64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
}


def _load_table() -> dict[str, frozenset[str]]:
    text = resources.files(__package__).joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    architectures = json.loads(text)["architectures"]
    return {arch: frozenset(names) for arch, names in architectures.items()}


_NAMES_BY_ARCH: Final = _load_table()

ALL_SYSCALL_NAMES: Final[frozenset[str]] = frozenset().union(*_NAMES_BY_ARCH.values())


def names_on(arch: str) -> frozenset[str]:
    """The syscalls Linux has on one SCMP_ARCH_* architecture (empty for an unknown one)."""
    return _NAMES_BY_ARCH.get(arch, frozenset())


def is_known_anywhere(name: str) -> bool:
    """Whether `name` is a Linux syscall on at least one architecture."""
    return name in ALL_SYSCALL_NAMES


# Bounded: the names come from users' profiles, and a flood of made-up ones must not grow memory.
@functools.lru_cache(maxsize=4096)
def libseccomp_knows(name: str) -> bool:
    """Whether this node's libseccomp resolves `name`; runtimes silently skip names it cannot.

    libseccomp answers -1 for a name it does not know. Other negative numbers are pseudo-syscalls
    (a real syscall that the native architecture reaches another way, e.g. through socketcall),
    which libseccomp does know.
    """
    try:
        return resolve_name(native_token(), name) != UNKNOWN_SYSCALL
    except (OSError, ValueError):
        return False


def architecture_name(token: int) -> str | None:
    """The SCMP_ARCH_* name of a libseccomp architecture token (None for one not listed)."""
    return next((name for name, value in ARCHITECTURES.items() if value == token), None)


def native_architecture() -> str:
    """This node's architecture as an SCMP_ARCH_* name."""
    token = native_token()
    name = architecture_name(token)
    if name is not None:
        return name
    machine = platform.machine().lower()
    try:
        return _MACHINE_ARCHITECTURES[machine]
    except KeyError:
        raise RuntimeError(
            f"unknown machine {machine!r} (libseccomp native architecture {token:#x})"
        ) from None
