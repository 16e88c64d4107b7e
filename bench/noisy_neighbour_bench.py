"""Noisy neighbours: a trivial profile's validate+compile latency while others' are expensive.

Run from the repository root: `python -m bench.noisy_neighbour_bench [--json]`.
Drives the node agent's own event handling (`NodeAgent.on_profile_event` and its profile worker:
validation on the agent's threads, the real libseccomp worker, acceptance into the catalog) in one
process, the way kopf calls it: one task per object, all concurrent. No API server is needed (the
agent's API calls are callables handed in) and no file is written (the syncer is not running), so
the figures are the validation path alone. Latency is event handed in to verdict accepted.

Rows:
- the trivial profile alone;
- while N refused-kind profiles are validated concurrently (4 rules x 6 `SCMP_CMP_NE` arguments
  on one syscall, within the CRD's limits: libseccomp needs minutes, so without a cost bound each
  holds the worker until the compile timeout);
- while N expensive-but-allowed profiles are validated concurrently (512 rules x 6 equality
  arguments on one syscall, the CRD's limits: about half a second each);
- a cold start: ten refused-kind profiles and then the trivial one, all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from agent.api.keys import profile_key
from agent.node.agent import NodeAgent
from agent.node.catalog import ProfileCatalog
from agent.node.metrics import Metrics
from agent.node.report_writer import RecordingStatusWriter
from agent.node.store import ProfileStore
from agent.seccomp.compiler import Compiler

X86_64: Final = "SCMP_ARCH_X86_64"


@dataclass(frozen=True)
class Row:
    name: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    total_s: float | None = None  # cold start: until every profile had its verdict


class Events:
    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        pass


def trivial_spec() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
    }


def refused_kind_spec() -> dict[str, Any]:
    rules = [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": i, "value": v * 7 + i + 1, "op": "SCMP_CMP_NE"} for i in range(6)],
        }
        for v in range(4)
    ]
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}


def expensive_spec() -> dict[str, Any]:
    rules = [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": i, "value": v * 7 + i, "op": "SCMP_CMP_EQ"} for i in range(6)],
        }
        for v in range(512)
    ]
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}


class Objects:
    """SeccompProfile bodies with a fresh generation each time, so each is validated anew."""

    def __init__(self) -> None:
        self._generation = 0

    def body(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        self._generation += 1
        return {
            "apiVersion": "seccompsync.io/v1beta1",
            "kind": "SeccompProfile",
            "metadata": {
                "namespace": "bench",
                "name": name,
                "uid": f"uid-{name}",
                "generation": self._generation,
            },
            "spec": spec,
        }


def api_reads() -> dict[str, Any]:
    """The node agent's API reads, which nothing here needs: empty answers."""
    return {"list_profiles": dict, "get_profile": lambda key: None, "list_pods": dict}


def new_agent(root: Path, compiler: Compiler) -> NodeAgent:
    return NodeAgent(
        node_name="bench-node",
        architectures=[X86_64],
        catalog=ProfileCatalog(),
        store=ProfileStore(root),
        metrics=Metrics(),
        compile_profile=compiler.compile,
        events=Events(),
        status=RecordingStatusWriter(),
        **api_reads(),
    )


async def handled(agent: NodeAgent, event_type: str, body: dict[str, Any]) -> None:
    """The event handed in, and its verdict accepted by the agent's profile worker."""
    agent.on_profile_event(event_type, body)
    await agent.profiles.settled(profile_key(body))


async def timed(agent: NodeAgent, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    await handled(agent, "MODIFIED", body)
    return time.perf_counter() - started


async def alone(agent: NodeAgent, objects: Objects, samples: int) -> list[float]:
    return [await timed(agent, objects.body("trivial", trivial_spec())) for _ in range(samples)]


async def beside(
    agent: NodeAgent, objects: Objects, spec: dict[str, Any], neighbours: int, rounds: int
) -> list[float]:
    """Per round: N neighbours start together, the trivial profile arrives 50 ms later."""
    latencies = []
    for _ in range(rounds):
        noisy = [
            asyncio.create_task(handled(agent, "MODIFIED", objects.body(f"noisy-{i}", spec)))
            for i in range(neighbours)
        ]
        await asyncio.sleep(0.05)
        latencies.append(await timed(agent, objects.body("trivial", trivial_spec())))
        await asyncio.gather(*noisy)
    return latencies


async def cold_start(agent: NodeAgent, objects: Objects, neighbours: int) -> tuple[float, float]:
    """All at once, the trivial profile last: its latency, and the time until all are done."""
    started = time.perf_counter()
    noisy = [
        asyncio.create_task(handled(agent, "ADDED", objects.body(f"cold-{i}", refused_kind_spec())))
        for i in range(neighbours)
    ]
    await asyncio.sleep(0.05)  # they arrive first, as they would in a listing
    trivial = await timed(agent, objects.body("cold-trivial", trivial_spec()))
    await asyncio.gather(*noisy)
    return trivial, time.perf_counter() - started


def row(name: str, seconds: Sequence[float], total: float | None = None) -> Row:
    ordered = sorted(seconds)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return Row(
        name, len(ordered), statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3, total
    )


async def run(args: argparse.Namespace) -> list[Row]:
    objects = Objects()
    rows = []
    with tempfile.TemporaryDirectory() as root, Compiler(timeout_seconds=args.timeout) as compiler:
        agent = new_agent(Path(root), compiler)
        worker = asyncio.create_task(agent.profiles.run())
        await alone(agent, objects, 5)  # start the worker(s): not counted
        rows.append(row("trivial profile alone", await alone(agent, objects, args.samples)))
        n = args.neighbours
        latencies = await beside(agent, objects, refused_kind_spec(), n, args.refused_rounds)
        rows.append(row(f"trivial beside {n} x (4 rules x 6 NE args)", latencies))
        latencies = await beside(agent, objects, expensive_spec(), n, args.expensive_rounds)
        rows.append(row(f"trivial beside {n} x (512 rules x 6 EQ args)", latencies))
        trivial, total = await cold_start(agent, objects, 10)
        rows.append(row("cold start: 10 x (4 rules x 6 NE args) + trivial", [trivial], total))
        worker.cancel()
    return rows


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(r.name) for r in rows)
    print(
        f"{'trivial profile, validate+compile':<{width}}  {'samples':>7}  {'p50 ms':>9}  "
        f"{'p99 ms':>9}  {'max ms':>9}  {'all done s':>10}"
    )
    for r in rows:
        total = f"{r.total_s:.1f}" if r.total_s is not None else ""
        print(
            f"{r.name:<{width}}  {r.samples:>7}  {r.p50_ms:>9.1f}  {r.p99_ms:>9.1f}  "
            f"{r.max_ms:>9.1f}  {total:>10}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--neighbours", type=int, default=5, help="concurrent noisy profiles")
    parser.add_argument("--samples", type=int, default=200, help="trivial samples when alone")
    parser.add_argument("--refused-rounds", type=int, default=3)
    parser.add_argument("--expensive-rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=10.0, help="compile timeout (agent: 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.getLogger("agent").setLevel(logging.ERROR)  # "invalid profile" x hundreds
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows]}))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
