"""The libseccomp half of the compiler, run in a child process so a libseccomp crash kills only it.

`compiler.Compiler` starts it (`python -P -m agent.seccomp.worker`) and keeps it running. Of
the agent it imports only `runc` (pure, no imports of its own), so it starts fast.

Protocol on stdin/stdout; every message is a 4-byte big-endian length, then UTF-8 JSON:
  request:   {"architectures": ["SCMP_ARCH_X86_64", ...], "profile": {OCI seccomp object}}
  responses: one per architecture, in request order, each sent as soon as it is ready:
             {"architecture": str, "instructions": int | null, "error": str | null,
              "rule_path": str | null, "transient": bool}
`transient` marks a failure of this machine (out of memory or descriptors), not of the profile.
Streaming one answer per architecture tells the parent which architecture was being compiled
when the process died. End of input ends the process.

The filter is built the way runc builds it (libcontainer/seccomp/seccomp_linux.go), but for one
architecture at a time: runc puts all of a profile's architectures into one filter, and a count
per architecture shows which one is large. `seccomp-agent test` builds its filters with the same
parsing (`parse_action`, `parse_condition_sets`).
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import importlib
import json
import os
import signal
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Final, Protocol, TypeGuard, cast

from agent.seccomp.runc import condition_sets

# What the agent (and the compiler's test worker) uses; everything else here is private.
__all__ = [
    "ARCHITECTURES", "HEADER", "UNKNOWN_SYSCALL", "FilterBuilder", "ProfileError", "ResourceError",
    "main", "native_token", "parse_action", "parse_condition_sets", "resolve_name", "serve",
]  # fmt: skip

# pyseccomp ships no type hints: it is used only through the typed helpers below.
_seccomp: Any = importlib.import_module("pyseccomp")

HEADER: Final = struct.Struct(">I")

# SCMP_ARCH_* tokens: AUDIT_ARCH_* values (ELF machine | 64-bit | little-endian bits), as in
# libseccomp's seccomp.h. Listed even where this libseccomp lacks the architecture (2.5.4 has no
# LoongArch, M68K or SuperH) so the error says "not supported here" instead of "unknown".
_EM: Final = {
    "386": 3, "68K": 4, "MIPS": 8, "PARISC": 15, "PPC": 20, "PPC64": 21, "S390": 22, "ARM": 40,
    "SH": 42, "X86_64": 62, "AARCH64": 183, "RISCV": 243, "LOONGARCH": 258,
}  # fmt: skip
_BIT64: Final = 0x80000000
_LE: Final = 0x40000000
_N32: Final = 0x20000000
ARCHITECTURES: Final[Mapping[str, int]] = {
    "SCMP_ARCH_X86": _EM["386"] | _LE,
    "SCMP_ARCH_X86_64": _EM["X86_64"] | _BIT64 | _LE,
    "SCMP_ARCH_X32": _EM["X86_64"] | _LE,
    "SCMP_ARCH_ARM": _EM["ARM"] | _LE,
    "SCMP_ARCH_AARCH64": _EM["AARCH64"] | _BIT64 | _LE,
    "SCMP_ARCH_LOONGARCH64": _EM["LOONGARCH"] | _BIT64 | _LE,
    "SCMP_ARCH_M68K": _EM["68K"],
    "SCMP_ARCH_MIPS": _EM["MIPS"],
    "SCMP_ARCH_MIPSEL": _EM["MIPS"] | _LE,
    "SCMP_ARCH_MIPS64": _EM["MIPS"] | _BIT64,
    "SCMP_ARCH_MIPSEL64": _EM["MIPS"] | _BIT64 | _LE,
    "SCMP_ARCH_MIPS64N32": _EM["MIPS"] | _BIT64 | _N32,
    "SCMP_ARCH_MIPSEL64N32": _EM["MIPS"] | _BIT64 | _LE | _N32,
    "SCMP_ARCH_PARISC": _EM["PARISC"],
    "SCMP_ARCH_PARISC64": _EM["PARISC"] | _BIT64,
    "SCMP_ARCH_PPC": _EM["PPC"],
    "SCMP_ARCH_PPC64": _EM["PPC64"] | _BIT64,
    "SCMP_ARCH_PPC64LE": _EM["PPC64"] | _BIT64 | _LE,
    "SCMP_ARCH_RISCV64": _EM["RISCV"] | _BIT64 | _LE,
    "SCMP_ARCH_S390": _EM["S390"],
    "SCMP_ARCH_S390X": _EM["S390"] | _BIT64,
    # libseccomp calls little-endian SuperH plain "SH" (the common one) and big-endian "SHEB".
    "SCMP_ARCH_SH": _EM["SH"] | _LE,
    "SCMP_ARCH_SHEB": _EM["SH"],
}

# OCI action -> libseccomp action; ERRNO and TRACE carry errnoRet in their low 16 bits.
_PLAIN_ACTIONS: Final[Mapping[str, int]] = {
    "SCMP_ACT_KILL": 0x00000000,  # runc maps plain KILL to KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ERRNO_ACTIONS: Final[Mapping[str, int]] = {
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
}
_OPERATORS: Final[Mapping[str, int]] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
MAX_ARG_INDEX: Final = 5  # syscalls have six arguments
UINT64_MAX: Final = 2**64 - 1
UNKNOWN_SYSCALL: Final = -1  # __NR_SCMP_ERROR; other negative numbers are pseudo-syscalls
# runc turns on libseccomp's binary-tree optimisation above this many entries in `syscalls`;
# it changes the instruction count, so do the same.
RUNC_OPTIMIZE_ABOVE: Final = 32
_ATTR_CTL_OPTIMIZE: Final = 8
BPF_INSTRUCTION_BYTES: Final = 8  # sizeof(struct sock_filter)


class _Filter(Protocol):
    """The part of pyseccomp.SyscallFilter used here."""

    def add_arch(self, arch: int) -> None: ...
    def remove_arch(self, arch: int) -> None: ...
    def set_attr(self, attr: int, value: int) -> None: ...
    def add_rule(self, action: int, syscall: int, *args: object) -> None: ...
    def export_bpf(self, file: IO[bytes]) -> None: ...


def native_token() -> int:
    """The SCMP_ARCH_* token of the machine libseccomp runs on."""
    return int(_seccomp.system_arch())


def resolve_name(arch_token: int, name: str) -> int:
    """libseccomp's number for `name` on an architecture, or -1 when it does not know the name."""
    # Every name in libseccomp's table is plain ASCII. ctypes would cut a name at a NUL byte
    # ("read\0x" would resolve as "read") and cannot encode lone surrogates, so refuse both here.
    if not name.isascii() or "\0" in name:
        return UNKNOWN_SYSCALL
    return int(_seccomp.resolve_syscall(arch_token, name))


class ProfileError(Exception):
    """The profile cannot be compiled; `path` names the offending field, e.g. spec.syscalls[3]."""

    def __init__(self, path: str | None, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class ResourceError(Exception):
    """libseccomp ran short of memory or descriptors: the machine's fault, not the profile's."""


class FilterBuilder:
    """Compiles OCI profiles; keeps what can be reused between compiles (name lookups, a memfd)."""

    def __init__(self) -> None:
        self._native = native_token()
        self._numbers: dict[str, int] = {}
        # export_bpf writes to a file descriptor; an in-memory file avoids touching the disk.
        self._output = os.fdopen(os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC), "w+b")

    def compile(self, profile: Any, architecture: str) -> dict[str, Any]:
        """One response message: the instruction count, or why the filter cannot be built."""
        try:
            count = self._instructions(profile, architecture)
        except ResourceError as exc:
            return _response(architecture, None, str(exc), transient=True)
        except MemoryError:
            return _response(architecture, None, "out of memory while compiling", transient=True)
        except ProfileError as exc:
            return _response(architecture, None, exc.message, exc.path)
        except Exception as exc:  # a bug here must not take the worker down with it
            return _response(architecture, None, f"internal error: {type(exc).__name__}: {exc}")
        return _response(architecture, count, None)

    def _instructions(self, profile: Any, architecture: str) -> int:
        if not isinstance(profile, Mapping):
            raise ProfileError(None, "the profile is not a JSON object")
        default_action = parse_action(profile, "defaultAction", "defaultErrnoRet", "spec")
        seccomp_filter = self._new_filter(default_action, architecture)
        rules = profile.get("syscalls") or []
        if not isinstance(rules, list):
            raise ProfileError("spec.syscalls", "spec.syscalls must be a list")
        if len(rules) > RUNC_OPTIMIZE_ABOVE:
            # An older libseccomp lacks it: runc carries on without, and so do we.
            with contextlib.suppress(OSError):
                seccomp_filter.set_attr(_ATTR_CTL_OPTIMIZE, 2)
        for index, rule in enumerate(rules):
            self._add_rule(seccomp_filter, rule, f"spec.syscalls[{index}]", default_action)
        return self._export(seccomp_filter)

    def _new_filter(self, default_action: int, architecture: str) -> _Filter:
        token = ARCHITECTURES.get(architecture)
        if token is None:
            raise ProfileError(None, f"unknown architecture {architecture!r}")
        try:
            seccomp_filter = cast(_Filter, _seccomp.SyscallFilter(default_action))
        except OSError as exc:
            raise ProfileError("spec.defaultAction", _refusal("the default action", exc)) from exc
        if token != self._native:
            # A filter holds the native architecture until told otherwise: swap it for the
            # target so the count is for that architecture alone. Remove first: libseccomp
            # refuses (EDOM) to mix byte orders, e.g. s390x into an x86_64 filter.
            seccomp_filter.remove_arch(self._native)
            try:
                seccomp_filter.add_arch(token)
            except OSError as exc:
                raise ProfileError(
                    None, f"this libseccomp does not support {architecture} ({_errno_name(exc)})"
                ) from exc
        return seccomp_filter

    def _add_rule(self, seccomp_filter: _Filter, rule: Any, path: str, default: int) -> None:
        if not isinstance(rule, Mapping):
            raise ProfileError(path, f"{path} must be an object")
        action = parse_action(rule, "action", "errnoRet", path)
        if action == default:
            return  # runtimes skip these; libseccomp would refuse them with EACCES
        alternatives = parse_condition_sets(rule.get("args"), path)
        for name in _names(rule.get("names"), path):
            number = self._native_number(name)
            if number == UNKNOWN_SYSCALL:
                continue  # runc and crun skip names their libseccomp cannot resolve
            for conditions in alternatives:
                try:
                    # Not add_rule_exactly: libseccomp translates the native number to the
                    # target architecture and quietly drops syscalls it lacks, as in runc.
                    seccomp_filter.add_rule(action, number, *conditions)
                except OSError as exc:
                    raise ProfileError(path, _refusal(f"the rule for `{name}`", exc)) from exc

    def _native_number(self, name: str) -> int:
        # runc resolves names for the native architecture and lets libseccomp translate.
        number = self._numbers.get(name)
        if number is None:
            number = self._numbers[name] = resolve_name(self._native, name)
        return number

    def _export(self, seccomp_filter: _Filter) -> int:
        self._output.seek(0)
        self._output.truncate()
        try:
            seccomp_filter.export_bpf(self._output)
        except OSError as exc:
            raise ProfileError(None, _refusal("exporting the BPF program", exc)) from exc
        return os.lseek(self._output.fileno(), 0, os.SEEK_END) // BPF_INSTRUCTION_BYTES


def parse_action(owner: Mapping[str, Any], key: str, errno_key: str, path: str) -> int:
    """The libseccomp action for `owner[key]` (with `owner[errno_key]`), as runc maps it."""
    name = owner.get(key)
    field = f"{path}.{key}"
    if not isinstance(name, str) or name not in _PLAIN_ACTIONS.keys() | _ERRNO_ACTIONS.keys():
        raise ProfileError(field, f"{field}: unknown action {name!r}")
    if name in _PLAIN_ACTIONS:
        return _PLAIN_ACTIONS[name]
    # Like runc: EPERM when errnoRet is absent. Other actions never read errnoRet (runc ignores
    # it there too).
    code = owner.get(errno_key, errno.EPERM)
    if code is None:
        code = errno.EPERM
    if not _is_int(code) or not 0 <= code <= 0xFFFF:
        errno_field = f"{path}.{errno_key}"
        raise ProfileError(errno_field, f"{errno_field}: {code!r} is not an errno number")
    return _ERRNO_ACTIONS[name] | code


def _names(names: Any, path: str) -> list[str]:
    if not isinstance(names, list):
        raise ProfileError(f"{path}.names", f"{path}.names must be a list of syscall names")
    checked: list[str] = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            field = f"{path}.names[{index}]"
            raise ProfileError(field, f"{field}: {name!r} is not a string")
        checked.append(name)
    return checked


def parse_condition_sets(args: Any, path: str) -> list[tuple[object, ...]]:
    """A rule's argument conditions, grouped into the libseccomp rules runc would add."""
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ProfileError(f"{path}.args", f"{path}.args must be a list")
    conditions = [_condition(arg, f"{path}.args[{i}]") for i, arg in enumerate(args)]
    return condition_sets(conditions, [arg["index"] for arg in args])


def _condition(arg: Any, path: str) -> object:
    if not isinstance(arg, Mapping):
        raise ProfileError(path, f"{path} must be an object")
    index = arg.get("index")
    if not _is_int(index) or not 0 <= index <= MAX_ARG_INDEX:
        raise ProfileError(f"{path}.index", f"{path}.index: {index!r} is not 0..{MAX_ARG_INDEX}")
    op = arg.get("op")
    operator = _OPERATORS.get(op) if isinstance(op, str) else None
    if operator is None:
        raise ProfileError(f"{path}.op", f"{path}.op: unknown operator {op!r}")
    # ctypes would silently wrap negative or oversized numbers into uint64.
    values = []
    for key in ("value", "valueTwo"):
        value = arg.get(key, 0)
        if not _is_int(value) or not 0 <= value <= UINT64_MAX:
            raise ProfileError(f"{path}.{key}", f"{path}.{key}: {value!r} is not a uint64")
        values.append(value)
    return _seccomp.Arg(index, operator, values[0], values[1])


def _is_int(value: object) -> TypeGuard[int]:
    # JSON true/false arrive as bool, a subclass of int: not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


# libseccomp returns these when the machine runs short, whatever the profile.
_RESOURCE_ERRNOS: Final = frozenset({errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN})


def _refusal(what: str, exc: OSError) -> str:
    if exc.errno in _RESOURCE_ERRNOS:
        raise ResourceError(f"libseccomp ran out of resources on {what}: {_errno_name(exc)}")
    hint = _ERRNO_HINTS.get(exc.errno or 0, "")
    return f"libseccomp refused {what}: {_errno_name(exc)}{hint}"


def _errno_name(exc: OSError) -> str:
    code = exc.errno or 0
    return f"{errno.errorcode.get(code, str(code))}, {os.strerror(code)}"


_ERRNO_HINTS: Final[Mapping[int, str]] = {
    errno.EEXIST: " (an earlier rule for this syscall has the same argument conditions and a "
    "different action)",
    errno.EINVAL: " (libseccomp cannot combine these argument conditions or this action)",
}


def _response(
    architecture: str,
    instructions: int | None,
    error: str | None,
    rule_path: str | None = None,
    *,
    transient: bool = False,
) -> dict[str, Any]:
    return {
        "architecture": architecture,
        "instructions": instructions,
        "error": error,
        "rule_path": rule_path,
        "transient": transient,
    }


def _read_message(stream: IO[bytes]) -> Any | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None  # the parent closed the pipe: time to go
    (length,) = HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return json.loads(body)


def _write_message(stream: IO[bytes], message: Mapping[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def serve(
    requests: IO[bytes], responses: IO[bytes], builder: Callable[[], FilterBuilder] = FilterBuilder
) -> None:
    """Answer requests until end of input, compiling with a `builder()`."""
    filters = builder()
    while (request := _read_message(requests)) is not None:
        profile = request["profile"]
        architectures: Sequence[str] = request["architectures"]
        for architecture in architectures:
            _write_message(responses, filters.compile(profile, architecture))


def main(builder: Callable[[], FilterBuilder] = FilterBuilder) -> int:
    """The worker process: serve the protocol on stdin/stdout."""
    # The protocol owns the original stdout; anything else printing there (a library, a stray
    # print) goes to stderr instead of corrupting a message.
    responses = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A crash inside libseccomp then leaves a Python stack on stderr showing what it was doing.
    faulthandler.enable()
    serve(sys.stdin.buffer, responses, builder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
