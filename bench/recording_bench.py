"""What in-cluster recording costs a container: Debian's runc, the profile the agent writes, the
agent's own listener (agent.node.recorder) in this process.

Run from the repository root, as root: `python -m bench.recording_bench [--calls N] [--seconds S]`.

- Per syscall: a static program calls getppid(2) in a tight loop and times the loop itself
  (clock_gettime is a vDSO call, never notified), plainly and under the recording profile.
- A server: busybox httpd (a process forked per connection) on the host's network, hammered
  by 4 client threads here for a few seconds: requests per second, plainly and recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.node.recorder import Observations, Recorder
from agent.node.recordings import Admissions
from agent.seccomp.recording_profile import recording_profile
from agent.seccomp.syscalls import native_architecture
from tests.runc_bundle import RuncBundle, cri_annotations

KEY: Final = ProfileKey("bench", "recording")
ANNOTATIONS: Final = cri_annotations(KEY.namespace, "bench-1", "0", "bench")
LOOP_C: Final = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long calls = atol(argv[1]);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < calls; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%.1f\n", ns / calls);
    return 0;
}
"""
CLIENTS: Final = 4


def make_bundle(directory: Path) -> RuncBundle:
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("busybox not found: apt-get install busybox-static")
    bundle = RuncBundle.create(directory / "bundle", directories=("bin", "tmp", "www"))
    bundle.add(busybox, "/bin/busybox")
    (bundle.rootfs / "www" / "index.html").write_text("recorded\n" * 100)
    bundle.compile(LOOP_C, "/bin/loop", optimize="-O2")
    return bundle


def host_network(config: dict[str, Any]) -> None:
    """The host's network, so that a client here reaches the server in the container."""
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"
    ]


def configure(bundle: RuncBundle, args: list[str], seccomp: dict[str, Any] | None) -> None:
    bundle.configure(args, seccomp, annotations=ANNOTATIONS, adjust=host_network)


def per_call_ns(bundle: RuncBundle, seccomp: dict[str, Any] | None, calls: int) -> float:
    configure(bundle, ["/bin/loop", str(calls)], seccomp)
    result = bundle.run("bench", timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"runc run failed: {result.stderr.strip()}")
    return float(result.stdout.strip())


def requests_per_second(
    bundle: RuncBundle, seccomp: dict[str, Any] | None, seconds: float
) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(
        bundle, ["/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"], seccomp
    )
    command = bundle.command("bench")
    name = command[-1]
    server = subprocess.Popen(command, cwd=bundle.path)
    try:
        _wait_for_port(port)
        counts = [0] * CLIENTS
        deadline = time.monotonic() + seconds

        def client(index: int) -> None:
            while time.monotonic() < deadline:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/index.html")
                response = connection.getresponse()
                response.read()
                connection.close()
                if response.status == 200:
                    counts[index] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / seconds
    finally:
        subprocess.run(["runc", "kill", name, "KILL"], check=False, capture_output=True)
        server.wait(timeout=30)
        subprocess.run(["runc", "delete", "-f", name], check=False, capture_output=True)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server did not listen on port {port}")


async def measure(calls: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="recbench-") as scratch:
        directory = Path(scratch)
        bundle = make_bundle(directory)
        socket_path = directory / "recorder.sock"
        profile = recording_profile(native_architecture(), str(socket_path), KEY)
        admissions = Admissions()
        admissions.set(frozenset({KEY}))
        recorder = Recorder(socket_path, Observations(), admissions.admit)
        task = asyncio.create_task(recorder.run())
        try:
            while not recorder.listening:
                await asyncio.sleep(0.01)
            plain_ns = await asyncio.to_thread(per_call_ns, bundle, None, calls)
            recorded_ns = await asyncio.to_thread(per_call_ns, bundle, profile, calls)
            plain_rps = await asyncio.to_thread(requests_per_second, bundle, None, seconds)
            recorded_rps = await asyncio.to_thread(requests_per_second, bundle, profile, seconds)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if recorder.errors:
            raise SystemExit(f"the recorder counted {recorder.errors} errors")
    return {
        "getppid_plain_ns": plain_ns,
        "getppid_recorded_ns": recorded_ns,
        "httpd_plain_rps": plain_rps,
        "httpd_recorded_rps": recorded_rps,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.calls, args.seconds))
    if args.json:
        print(json.dumps(figures))
        return 0
    slower = figures["getppid_recorded_ns"] / figures["getppid_plain_ns"]
    kept = figures["httpd_recorded_rps"] / figures["httpd_plain_rps"]
    print(f"getppid, {args.calls:,} calls in a loop (per call):")
    print(f"  plain     {figures['getppid_plain_ns'] / 1000:8.2f} µs")
    print(f"  recorded  {figures['getppid_recorded_ns'] / 1000:8.2f} µs   ({slower:.0f}x)")
    print(f"busybox httpd, {CLIENTS} clients for {args.seconds:.0f} s (a process per request):")
    print(f"  plain     {figures['httpd_plain_rps']:8.0f} requests/s")
    print(f"  recorded  {figures['httpd_recorded_rps']:8.0f} requests/s   ({kept:.0%} of plain)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
