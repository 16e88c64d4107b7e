"""Time the libseccomp compile step: Docker's default profile, and many distinct profiles.

Run from the repository root: `python -m bench.validate_bench [--runs N] [--profiles N] [--json]`.
Every figure goes through `agent.seccomp.compiler.Compiler`, i.e. includes the round trip to
its worker process. To add a row, add a `Benchmark` to `benchmarks()`.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from agent.api.findings import ValidationReport
from agent.seccomp.compiler import ArchCompileResult, Compiler
from agent.seccomp.syscalls import libseccomp_knows, names_on
from agent.validation.validate import validate_spec
from bench._docker_profile import moby_default_oci

X86_64: Final = "SCMP_ARCH_X86_64"
X86_64_X86_X32: Final = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
SEED: Final = 20260519
# Syscalls that get argument rules in generated profiles, so they stay out of the plain lists.
ARG_SYSCALLS: Final = ("personality", "socket", "ioctl", "prctl", "clone")


@dataclass(frozen=True)
class Benchmark:
    """One row: `call(i)` is timed for i in range(runs)."""

    name: str
    runs: int
    call: Callable[[int], object]


@dataclass(frozen=True)
class Row:
    name: str
    runs: int
    median_ms: float
    p99_ms: float
    max_ms: float
    per_second: float


def compiled(results: Sequence[ArchCompileResult]) -> Sequence[ArchCompileResult]:
    """A benchmark of failures would measure the wrong thing: insist every compile worked."""
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"{result.architecture}: {result.error} ({result.rule_path})")
    return results


def distinct_profiles(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """`count` different small-to-medium OCI profiles, the same ones on every run."""
    rng = random.Random(seed)
    pool = sorted(
        name for name in names_on(X86_64) if libseccomp_knows(name) and name not in ARG_SYSCALLS
    )
    return [_profile(rng, pool, index) for index in range(count)]


def _profile(rng: random.Random, pool: Sequence[str], index: int) -> dict[str, Any]:
    default: dict[str, Any] = rng.choice(
        [
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1},
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38},
            {"defaultAction": "SCMP_ACT_KILL_PROCESS"},
            {"defaultAction": "SCMP_ACT_LOG"},
        ]
    )
    allowed = sorted(rng.sample(pool, rng.randint(10, 250)))
    rules: list[dict[str, Any]] = [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    # The profile's own index as an argument value makes every profile different.
    rules.append(
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": index, "op": "SCMP_CMP_EQ"}],
        }
    )
    for name in rng.sample(ARG_SYSCALLS[1:], rng.randint(0, len(ARG_SYSCALLS) - 1)):
        values = rng.sample(range(1, 64), rng.randint(1, 4))
        # One rule per alternative value (ORed), as seccomp-sync asks profiles to write it.
        rules += [
            {
                "names": [name],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}],
            }
            for v in values
        ]
    return {**default, "syscalls": rules}


def benchmarks(
    compiler: Compiler, runs: int, profiles: Sequence[Mapping[str, Any]]
) -> list[Benchmark]:
    """The rows, in the order printed."""
    docker = moby_default_oci()
    docker_native = {k: v for k, v in docker.items() if k != "architectures"}
    return [
        Benchmark(
            "compile Docker default, x86_64",
            runs,
            lambda _: compiled(compiler.compile(docker, [X86_64])),
        ),
        Benchmark(
            "compile Docker default, x86_64+x86+x32",
            runs,
            lambda _: compiled(compiler.compile(docker, X86_64_X86_X32)),
        ),
        Benchmark(
            f"compile {len(profiles)} distinct profiles, x86_64",
            len(profiles),
            lambda i: compiled(compiler.compile(profiles[i], [X86_64])),
        ),
        # The whole of what the agent does per profile: schema, rules, names, compile.
        Benchmark(
            "validate Docker default (all checks + compile), x86_64",
            runs,
            # Without its `architectures` list, the profile is built for the node's own only.
            lambda _: validated(docker_native, [X86_64], compiler),
        ),
        Benchmark(
            "validate Docker default (all checks + compile), x86_64+x86+x32",
            runs,
            lambda _: validated(docker, X86_64_X86_X32, compiler),
        ),
        Benchmark(
            f"validate {len(profiles)} distinct profiles, x86_64",
            len(profiles),
            lambda i: validated(profiles[i], [X86_64], compiler),
        ),
    ]


def validated(
    profile: Mapping[str, Any], architectures: Sequence[str], compiler: Compiler
) -> ValidationReport:
    """Full validation; a profile with errors would skip the compile and time the wrong thing."""
    report = validate_spec(
        profile, default_architectures=architectures, compile_profile=compiler.compile
    )
    if report.errors:
        raise RuntimeError("; ".join(f.render() for f in report.errors[:3]))
    return report


def measure(benchmark: Benchmark) -> Row:
    timings = []
    started = time.perf_counter()
    for i in range(benchmark.runs):
        before = time.perf_counter()
        benchmark.call(i)
        timings.append(time.perf_counter() - before)
    total = time.perf_counter() - started
    return Row(
        name=benchmark.name,
        runs=benchmark.runs,
        median_ms=statistics.median(timings) * 1e3,
        p99_ms=_percentile(timings, 99) * 1e3,
        max_ms=max(timings) * 1e3,
        per_second=benchmark.runs / total,
    )


def _percentile(values: Sequence[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * percent / 100) - 1)]


def first_compile_row() -> Row:
    """The first compile of a new Compiler, which pays for starting the worker process."""
    docker = moby_default_oci()
    with Compiler() as fresh:
        before = time.perf_counter()
        compiled(fresh.compile(docker, [X86_64]))
        seconds = time.perf_counter() - before
    ms = seconds * 1e3
    return Row("first compile (starts the worker)", 1, ms, ms, ms, 1 / seconds)


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "libseccomp": _libseccomp_version(),
    }


class _ScmpVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def _libseccomp_version() -> str:
    library = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    library.seccomp_version.restype = ctypes.POINTER(_ScmpVersion)
    version = library.seccomp_version().contents
    return f"{version.major}.{version.minor}.{version.micro}"


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(row.name) for row in rows)
    heading = ("runs", 6), ("median ms", 9), ("p99 ms", 8), ("max ms", 8), ("per s", 8)
    print(f"{'benchmark':<{width}}" + "".join(f"  {title:>{size}}" for title, size in heading))
    for row in rows:
        print(
            f"{row.name:<{width}}  {row.runs:>6}  {row.median_ms:>9.3f}  {row.p99_ms:>8.3f}  "
            f"{row.max_ms:>8.3f}  {row.per_second:>8.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per Docker-profile row")
    parser.add_argument("--profiles", type=int, default=10_000, help="distinct profiles")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.profiles < 1:
        parser.error("--runs and --profiles must be positive")
    profiles = distinct_profiles(args.profiles)
    rows = [first_compile_row()]
    with Compiler() as compiler:
        compiled(compiler.compile(moby_default_oci(), [X86_64]))  # start the worker: not timed
        rows += [measure(benchmark) for benchmark in benchmarks(compiler, args.runs, profiles)]
    if args.json:
        print(json.dumps({"environment": environment(), "rows": [asdict(r) for r in rows]}))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
