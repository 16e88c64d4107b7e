"""Cost of the profile-authoring tools: `test`/`record` overhead, and composing on a base.

Run from the repository root: `python -m bench.authoring_bench [--runs N] [--json]`.

- A syscall-heavy program (coreutils `dd` copying /dev/zero to /dev/null one byte at a time:
  two syscalls per byte) run plainly, under `test` with a profile that denies none of its
  syscalls (the filter alone), under `test` with a profile that denies `read` and `write`
  (every call goes through the supervisor: the worst case), and under `record` (every syscall
  is observed). Times are wall-clock medians of whole runs, including the CLI's start-up.
- Compose + validate + compile a child on `runtime/default@moby-2026-06-30`, as the agent does
  for each event (through the compile worker).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from agent.api.keys import ProfileKey
from agent.profiles.base_graph import walk_chain
from agent.profiles.base_resolution import resolve_base
from agent.seccomp.compiler import Compiler
from agent.seccomp.syscalls import native_architecture
from agent.validation.validate import validate_resource

MOBY: Final = "runtime/default@moby-2026-06-30"
BYTES: Final = 200_000  # dd bs=1: 2 syscalls per byte
AGENT: Final = [sys.executable, "-m", "agent"]


@dataclass(frozen=True)
class Row:
    name: str
    runs: int
    median_ms: float
    min_ms: float
    relative: float | None  # median / plain run's median


def _timed(call: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _run(argv: Sequence[str]) -> None:
    result = subprocess.run(argv, capture_output=True, check=False)
    if result.returncode not in (0, 1):  # `test` exits 1 when something would be denied
        raise RuntimeError(f"{argv} failed: {result.stderr.decode()[-400:]}")


def _profile(directory: Path, name: str, spec: dict[str, Any]) -> str:
    path = directory / f"{name}.yaml"
    manifest = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(manifest))
    return str(path)


def trial_rows(runs: int) -> list[Row]:
    program = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={BYTES}"]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        allow = _profile(directory, "allow", {"defaultAction": "SCMP_ACT_ALLOW"})
        deny_io = _profile(
            directory,
            "deny-io",
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ERRNO"}],
            },
        )
        cases = {
            f"plain: dd bs=1 count={BYTES} ({2 * BYTES} syscalls)": program,
            "test, nothing denied (filter only)": [*AGENT, "test", allow, "--", *program],
            "test, read+write denied (every call notified)": [
                *AGENT,
                "test",
                deny_io,
                "--",
                *program,
            ],
            "record (every syscall notified)": [
                *AGENT,
                "record",
                "-o",
                str(directory / "rec.yaml"),
                "--",
                *program,
            ],
            "CLI start-up alone: test ... -- true": [*AGENT, "test", allow, "--", "true"],
        }
        rows = []
        plain_median = None
        for name, argv in cases.items():
            times = _timed(lambda argv=argv: _run(argv), runs)  # type: ignore[misc]
            median = statistics.median(times)
            plain_median = plain_median or median
            rows.append(Row(name, runs, median, min(times), median / plain_median))
        return rows


def compose_row(runs: int) -> Row:
    arch = native_architecture()
    child = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "baseProfileName": MOBY,
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
            ],
        },
    }
    key = ProfileKey("shop", "web")

    def resolve(name: str) -> Any:
        chain = walk_chain(key, lambda k: name if k == key else None)
        return resolve_base(key, name, chain, lambda _: None, arch)

    with Compiler() as compiler:

        def once() -> None:
            result = validate_resource(
                child,
                default_architectures=[arch],
                compile_profile=compiler.compile,
                node_architectures=[arch],
                resolve_base=resolve,
            )
            if not result.report.valid:
                raise RuntimeError(str(result.report.errors))

        once()  # the built-in is flattened once and cached, as in the agent
        times = _timed(once, runs)
    name = f"compose + validate + compile on {MOBY} ({arch}, 3 ABIs)"
    return Row(name, runs, statistics.median(times), min(times), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per program row")
    parser.add_argument("--compose-runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [*trial_rows(args.runs), compose_row(args.compose_runs)]
    if args.json:
        environment = {"kernel": platform.release(), "cpus": os.cpu_count()}
        print(json.dumps({"environment": environment, "rows": [asdict(r) for r in rows]}))
        return 0
    width = max(len(r.name) for r in rows)
    print(f"{'benchmark':<{width}}  {'runs':>5}  {'median ms':>10}  {'min ms':>8}  {'x plain':>7}")
    for r in rows:
        relative = f"{r.relative:.1f}" if r.relative is not None else ""
        print(
            f"{r.name:<{width}}  {r.runs:>5}  {r.median_ms:>10.1f}  {r.min_ms:>8.1f}  {relative:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
