"""Calibrate the compile cost model: libseccomp's real compile time next to the model's estimate.

Run from the repository root: `python -m bench.compile_cost_bench [--timeout S] [--json]`.
One row per profile shape (rules, arguments per rule, names per rule, the same syscall repeated
with different arguments, comparison operators, architectures), plus the real-world profiles of
tests/data/profiles/ (docs/performance.md shows a selection of the rows). Each shape is
compiled through `agent.seccomp.compiler.Compiler` (the worker round trip included; the best of
a few runs, since other work shares the machine) and estimated by `agent.seccomp.cost.estimate`.
The constants in cost.py are an upper envelope of these rows; rerun this after a libseccomp
upgrade and raise them where `measured` beats `estimate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import yaml

from agent.seccomp.compiler import Compiler
from agent.seccomp.cost import COMPILE_BUDGET_SECONDS, estimate
from agent.seccomp.syscalls import libseccomp_knows, names_on
from bench._docker_profile import (
    REPO_ROOT,
    docker_to_oci,
    moby_default_oci,
    shared_profiles_dir,
)

X86_64: Final = "SCMP_ARCH_X86_64"
THREE: Final = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


@dataclass(frozen=True)
class Shape:
    name: str
    profile: Mapping[str, Any]
    architectures: Sequence[str] = (X86_64,)


@dataclass(frozen=True)
class Row:
    shape: str
    architectures: int
    estimate_s: float
    measured_s: float | None  # None: over budget and not compiled (see --compile-over-budget)
    instructions: list[int | None]
    lane: str
    over_budget: bool
    timed_out: bool


def rule(names: Sequence[str], args: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"names": list(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        body["args"] = list(args)
    return body


def arg(index: int, value: int, op: str = "SCMP_CMP_EQ") -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def profile(rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": list(rules)}


def repeated(rules: int, args: int, op: str = "SCMP_CMP_EQ", names: Sequence[str] = ()) -> Shape:
    """`rules` rules on the same syscall(s), each with `args` conditions of different values."""
    names = list(names) or ["personality"]
    body = [rule(names, [arg(i, v * 7 + i + 1, op) for i in range(args)]) for v in range(rules)]
    label = op.removeprefix("SCMP_CMP_")
    return Shape(f"{rules} rules x {args} {label} args x {len(names)} names", profile(body))


def real_world() -> list[Shape]:
    shapes = [
        Shape("Docker default (moby), x86_64", moby_default_oci(), (X86_64,)),
        Shape("Docker default (moby), x86_64+x86+x32", moby_default_oci(), THREE),
    ]
    shared = shared_profiles_dir()
    podman = json.loads((shared / "containers-common-default.json").read_text())
    shapes.append(Shape("Podman default (containers-common), x86_64", docker_to_oci(podman)))
    spo = yaml.safe_load((shared / "spo-baseprofile-runc.yaml").read_text())
    shapes.append(Shape("SPO base profile (runc)", spo["spec"]))
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        architectures = spec.get("architectures") or [X86_64]
        shapes.append(Shape(f"examples/{path.name}", spec, architectures))
    return shapes


def synthetic() -> list[Shape]:
    pool = sorted(n for n in names_on(X86_64) if libseccomp_knows(n))
    shapes = [
        Shape("1 rule x 64 names", profile([rule(pool[:64])])),
        Shape("1 rule x 300 names", profile([rule(pool[:300])])),
        Shape("300 rules x 1 name", profile([rule([n]) for n in pool[:300]])),
        Shape("512 rules x 300 names (repeated)", profile([rule(pool[:300])] * 512)),
    ]
    shapes += [repeated(n, 1) for n in (64, 256, 512)]
    shapes += [repeated(n, 6) for n in (64, 256, 512)]
    # Rules on the same syscall that test different arguments: as cheap as equal ones.
    mixed = [rule(["personality"], [arg(v % 6, v + 1)]) for v in range(384)]
    shapes.append(Shape("384 rules x 1 EQ arg on varying arguments", profile(mixed)))
    shapes += [repeated(n, 6, names=pool[:count]) for count in (8, 64) for n in (8, 32)]
    shapes.append(repeated(8, 6, names=pool[:300]))
    shapes += [repeated(n, 2, "SCMP_CMP_GT") for n in (24, 48, 64)]
    shapes += [repeated(n, 2, "SCMP_CMP_LT") for n in (24, 32)]
    shapes += [repeated(n, 3, "SCMP_CMP_GT") for n in (6, 8)]
    shapes += [repeated(n, 6, "SCMP_CMP_NE") for n in (2, 3)]
    shapes.append(repeated(512, 1, "SCMP_CMP_GT"))
    shapes.append(repeated(256, 6, "SCMP_CMP_MASKED_EQ"))
    for architectures in (THREE, ("SCMP_ARCH_AARCH64",), ("SCMP_ARCH_X86",)):
        base = repeated(256, 6)
        shapes.append(Shape(f"{base.name}, {'+'.join(architectures)}", base.profile, architectures))
    # Over the budget: refused before compiling; measured only with --compile-over-budget.
    shapes += [
        repeated(12, 3, "SCMP_CMP_GT"),
        repeated(64, 2, "SCMP_CMP_LT"),
        repeated(4, 6, "SCMP_CMP_NE"),
        repeated(512, 6, "SCMP_CMP_GT"),
        repeated(32, 6, names=pool[:300]),
        Shape("512 rules x 6 EQ args x 1 names, x86_64+x86+x32", repeated(512, 6).profile, THREE),
    ]
    return shapes


def measure(compiler: Compiler, shape: Shape, runs: int, compile_over_budget: bool) -> Row:
    cost = estimate(shape.profile, len(shape.architectures))
    measured: float | None = None
    instructions: list[int | None] = []
    timed_out = False
    if compile_over_budget or not cost.over_budget:
        timings = []
        for _ in range(runs if not cost.over_budget else 1):
            started = time.perf_counter()
            results = compiler.compile(shape.profile, list(shape.architectures))
            timings.append(time.perf_counter() - started)
            instructions = [r.instructions for r in results]
            timed_out = any(r.transient for r in results)
            if timed_out or timings[-1] > 1:
                break  # one slow run says enough
        measured = min(timings)
    return Row(
        shape.name,
        len(shape.architectures),
        cost.seconds,
        measured,
        instructions,
        cost.lane.value,
        cost.over_budget,
        timed_out,
    )


def print_table(rows: Sequence[Row], timeout: float) -> None:
    width = max(len(row.shape) for row in rows)
    print(f"compile budget: {COMPILE_BUDGET_SECONDS:g} s (estimate); compile timeout {timeout:g} s")
    print(
        f"{'shape':<{width}}  {'archs':>5}  {'estimate s':>10}  {'measured s':>10}  "
        f"{'est/meas':>8}  {'lane':>9}  instructions"
    )
    for row in rows:
        if row.measured_s is None:
            measured, ratio = "refused", ""
        elif row.timed_out:
            measured, ratio = f">{timeout:g}", ""
        else:
            measured = f"{row.measured_s:.4f}"
            ratio = f"{row.estimate_s / row.measured_s:.1f}" if row.measured_s else ""
        lane = "refused" if row.over_budget else row.lane
        print(
            f"{row.shape:<{width}}  {row.architectures:>5}  {row.estimate_s:>10.4g}  "
            f"{measured:>10}  {ratio:>8}  {lane:>9}  {row.instructions or ''}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per shape (the best counts)")
    parser.add_argument("--timeout", type=float, default=10.0, help="compile timeout, seconds")
    parser.add_argument(
        "--compile-over-budget",
        action="store_true",
        help="also compile the shapes the model refuses (each may take up to --timeout)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with Compiler(timeout_seconds=args.timeout) as compiler:
        compiler.compile(profile([rule(["read"])]), [X86_64])  # start the worker: not timed
        rows = [
            measure(compiler, shape, args.runs, args.compile_over_budget)
            for shape in real_world() + synthetic()
        ]
    if args.json:
        print(json.dumps({"rows": [asdict(row) for row in rows]}))
    else:
        print_table(rows, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
