"""The generated syscall table, checked against its source CSV and the installed libseccomp."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import json
import platform
from pathlib import Path
from typing import Any

import pytest

from agent.seccomp.syscalls import (
    ALL_SYSCALL_NAMES,
    is_known_anywhere,
    libseccomp_knows,
    names_on,
    native_architecture,
)
from agent.seccomp.worker import ARCHITECTURES
from tools import generate_syscall_table

seccomp: Any = importlib.import_module("pyseccomp")
_libseccomp = ctypes.CDLL(ctypes.util.find_library("seccomp"))


class _ScmpVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_libseccomp.seccomp_version.restype = ctypes.POINTER(_ScmpVersion)
_libseccomp.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
_libseccomp.seccomp_arch_resolve_name.restype = ctypes.c_uint32

_version = _libseccomp.seccomp_version().contents
LIBSECCOMP_VERSION = (_version.major, _version.minor, _version.micro)


def _supported_here(arch: str) -> bool:
    """Whether this libseccomp can build a filter for `arch` (2.5.4 lacks LoongArch, M68K, SH)."""
    seccomp_filter = seccomp.SyscallFilter(seccomp.ALLOW)
    seccomp_filter.remove_arch(seccomp.system_arch())
    try:
        seccomp_filter.add_arch(ARCHITECTURES[arch])
    except OSError:
        return False
    return True


SUPPORTED_ARCHITECTURES = [arch for arch in ARCHITECTURES if _supported_here(arch)]

# Where each architecture's syscall numbers live: MIPS ABIs start at 4000/5000/6000, x32 sets
# bit 30, ARM has private syscalls at 0xf0000. 1024 leaves room above today's ~470.
_MIPS_BASES = {"MIPS": 4000, "MIPSEL": 4000, "MIPS64": 5000, "MIPSEL64": 5000}
_MIPS_BASES |= {"MIPS64N32": 6000, "MIPSEL64N32": 6000}
NUMBER_RANGES: dict[str, list[range]] = {
    f"SCMP_ARCH_{abi}": [range(base, base + 1024)] for abi, base in _MIPS_BASES.items()
}
NUMBER_RANGES["SCMP_ARCH_X32"] = [range(0x40000000, 0x40000000 + 1024)]
NUMBER_RANGES["SCMP_ARCH_ARM"] = [range(0, 1024), range(0xF0000, 0xF0100)]

# libseccomp 2.5.4 lists _llseek on parisc64; its newer table (which we ship) no longer does.
# Spelled out so any other disagreement fails the test.
KNOWN_OLD_LIBSECCOMP_ONLY = {"SCMP_ARCH_PARISC64": {"_llseek"}}


def _shared_csv() -> Path:
    """libseccomp's own table, copied into tests/data (source in its README)."""
    return Path(__file__).resolve().parents[1] / "data" / "libseccomp" / "syscalls.csv"


def _libseccomp_names_by_number(arch: str) -> set[str]:
    """Every name libseccomp has a real number for on `arch`, found by trying the numbers."""
    names = set()
    for numbers in NUMBER_RANGES.get(arch, [range(1024)]):
        for number in numbers:
            try:
                names.add(seccomp.resolve_syscall(ARCHITECTURES[arch], number).decode())
            except ValueError:
                continue  # no syscall with that number
    return names


# The generated file


def test_committed_table_is_exactly_what_the_generator_makes() -> None:
    csv_path = _shared_csv()
    version, names = generate_syscall_table.parse_table(
        csv_path.read_text(encoding="utf-8").splitlines()
    )
    expected = generate_syscall_table.render(generate_syscall_table.table_document(version, names))
    committed = generate_syscall_table.OUTPUT_PATH.read_text(encoding="utf-8")
    assert committed == expected, "syscall_table.json is stale or hand-edited: regenerate it"


def test_table_cites_its_source_and_covers_every_architecture() -> None:
    table = json.loads(generate_syscall_table.OUTPUT_PATH.read_text(encoding="utf-8"))
    assert "seccomp/libseccomp src/syscalls.csv" in table["source"]
    assert "v7.1.0-rc4" in table["source"]
    assert "LGPL-2.1" in table["source"]
    assert set(table["architectures"]) == set(ARCHITECTURES)
    for arch, names in table["architectures"].items():
        assert names == sorted(set(names)), arch


def test_byte_order_twins_share_one_table() -> None:
    for big, little in [
        ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPSEL"),
        ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPSEL64"),
        ("SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL64N32"),
        ("SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE"),
        ("SCMP_ARCH_SHEB", "SCMP_ARCH_SH"),
    ]:
        assert names_on(big) == names_on(little) != frozenset()


def test_generator_maps_pnr_to_absent_and_numbers_to_present() -> None:
    header = ",".join(
        ["#syscall (v9.9 2030-01-01)"]
        + [f"{col},{col}_kver" for col in generate_syscall_table.COLUMN_ARCHITECTURES]
    )
    columns = len(generate_syscall_table.COLUMN_ARCHITECTURES)
    only_x86_64 = ["PNR,SCMP_KV_UNDEF"] * columns
    only_x86_64[list(generate_syscall_table.COLUMN_ARCHITECTURES).index("x86_64")] = "7,5.1"
    everywhere = ["12,SCMP_KV_UNDEF"] * columns
    version, names = generate_syscall_table.parse_table(
        [header, ",".join(["newcall", *only_x86_64]), ",".join(["oldcall", *everywhere])]
    )
    assert version == "v9.9"
    assert names["SCMP_ARCH_X86_64"] == ["newcall", "oldcall"]
    assert names["SCMP_ARCH_AARCH64"] == ["oldcall"]
    assert names["SCMP_ARCH_PPC64LE"] == ["oldcall"]


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        (["name,x86,x86_kver"], "is not libseccomp's"),
        (["#syscall (v7.1),x86,x86_kver"], "lacks architecture columns"),
    ],
)
def test_generator_refuses_what_is_not_libseccomps_table(lines: list[str], complaint: str) -> None:
    with pytest.raises(generate_syscall_table.TableError, match=complaint):
        generate_syscall_table.parse_table(lines)


def test_generator_refuses_a_value_that_is_neither_number_nor_pnr() -> None:
    csv_lines = _shared_csv().read_text(encoding="utf-8").splitlines()[:2]
    csv_lines[1] = csv_lines[1].replace("PNR", "N/A", 1)
    with pytest.raises(generate_syscall_table.TableError, match="'N/A'"):
        generate_syscall_table.parse_table(csv_lines)


# Against the installed libseccomp


@pytest.mark.parametrize("arch", SUPPORTED_ARCHITECTURES)
def test_every_syscall_libseccomp_numbers_is_in_the_table(arch: str) -> None:
    """libseccomp's own list, enumerated by number, not limited to names we already have."""
    from_libseccomp = _libseccomp_names_by_number(arch)
    assert len(from_libseccomp) > 250, "enumeration found too little to be a syscall table"
    missing = from_libseccomp - names_on(arch)
    assert missing == KNOWN_OLD_LIBSECCOMP_ONLY.get(arch, set())


@pytest.mark.parametrize("arch", SUPPORTED_ARCHITECTURES)
def test_names_libseccomp_places_on_an_architecture_are_listed_there(arch: str) -> None:
    """A non-negative number means a real syscall on that arch; negative ones are pseudo-calls."""
    real_here = {
        name
        for name in ALL_SYSCALL_NAMES
        if seccomp.resolve_syscall(ARCHITECTURES[arch], name) >= 0
    }
    assert real_here - names_on(arch) == KNOWN_OLD_LIBSECCOMP_ONLY.get(arch, set())


def test_the_table_is_newer_than_libseccomp_2_5_on_x86_64() -> None:
    if LIBSECCOMP_VERSION[:2] != (2, 5):
        pytest.skip(f"these facts are about libseccomp 2.5, this is {LIBSECCOMP_VERSION}")
    newer = names_on("SCMP_ARCH_X86_64") - _libseccomp_names_by_number("SCMP_ARCH_X86_64")
    assert {"mseal", "listmount", "statmount", "lsm_get_self_attr", "setxattrat"} <= newer
    assert len(newer) < 40, "the shipped table should be a few years ahead, not a different one"
    # Unknown by name too (not even as a pseudo-syscall): runtimes skip them on this node.
    assert not any(libseccomp_knows(name) for name in newer)


def test_architecture_tokens_match_libseccomp() -> None:
    for arch, token in ARCHITECTURES.items():
        resolved = _libseccomp.seccomp_arch_resolve_name(
            arch.removeprefix("SCMP_ARCH_").lower().encode()
        )
        # 0: this libseccomp does not know the architecture; then there is nothing to compare.
        assert resolved in (0, token), arch
    assert {a for a in ARCHITECTURES if _supported_here(a)} >= {
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_S390X",
    }


# The public helpers


def test_a_typo_is_unknown_everywhere() -> None:
    assert not is_known_anywhere("opne")
    assert "opne" not in ALL_SYSCALL_NAMES
    assert not libseccomp_knows("opne")


def test_open_exists_on_x86_64_but_not_on_aarch64() -> None:
    assert "open" in names_on("SCMP_ARCH_X86_64")
    assert "open" not in names_on("SCMP_ARCH_AARCH64")
    assert "openat" in names_on("SCMP_ARCH_AARCH64")
    assert is_known_anywhere("open")
    assert libseccomp_knows("open")


def test_mseal_is_real_but_only_libseccomp_2_6_knows_it() -> None:
    assert is_known_anywhere("mseal")
    assert "mseal" in names_on("SCMP_ARCH_X86_64")
    assert libseccomp_knows("mseal") is (LIBSECCOMP_VERSION >= (2, 6, 0))


def test_pseudo_syscalls_count_as_known() -> None:
    # socketcall does not exist on x86_64; libseccomp resolves it to a negative pseudo-number
    # other than -1, so it knows the name (and runtimes do not skip it).
    assert seccomp.resolve_syscall(seccomp.Arch.X86_64, "socketcall") < -1
    assert "socketcall" not in names_on("SCMP_ARCH_X86_64")
    assert libseccomp_knows("socketcall")


@pytest.mark.parametrize("name", ["", "read\0junk", "read\udc80", "READ", "read "])
def test_names_that_only_look_like_syscalls_are_unknown(name: str) -> None:
    # "read\0junk" matters: ctypes would hand C a string cut at the NUL, i.e. "read".
    assert not libseccomp_knows(name)
    assert not is_known_anywhere(name)


def test_unknown_architecture_has_no_names() -> None:
    assert names_on("SCMP_ARCH_VAX") == frozenset()


def test_native_architecture_is_this_machine() -> None:
    by_machine = {
        "x86_64": "SCMP_ARCH_X86_64",
        "aarch64": "SCMP_ARCH_AARCH64",
        "s390x": "SCMP_ARCH_S390X",
        "ppc64le": "SCMP_ARCH_PPC64LE",
        "riscv64": "SCMP_ARCH_RISCV64",
    }
    assert native_architecture() == by_machine[platform.machine()]
    assert len(names_on(native_architecture())) > 300
