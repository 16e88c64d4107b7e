"""A recorder in a process of its own, for a test to kill: what an agent restart does.

    python -m tests.integration.recorder_process SOCKET NAMESPACE/RECORDING SYSCALL

Prints `listening`, then `serving <pod> <container>` for each container it serves, once that
container has made SYSCALL: a test kills it only after the container's program runs (killed
while runc's init still holds its own copy of the listener, the container hangs in `created`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.api.keys import ProfileKey
from agent.node.recorder import Observations, Recorder
from agent.node.recordings import Admissions


async def serve(socket_path: Path, recording: ProfileKey, syscall: str) -> None:
    admissions = Admissions()
    admissions.set(frozenset({recording}))
    observations = Observations()
    recorder = Recorder(socket_path, observations, admissions.admit)
    task = asyncio.create_task(recorder.run())
    while not recorder.listening:
        await asyncio.sleep(0.01)
    print("listening", flush=True)
    said: set[tuple[str, str]] = set()
    while not task.done():
        seen = observations.snapshot()
        for state in recorder.live():
            observed = seen.get(state.recording)
            made = observed is not None and syscall in observed.syscalls.get(state.container, ())
            if made and (state.pod_ref, state.container) not in said:
                said.add((state.pod_ref, state.container))
                print(f"serving {state.pod_ref} {state.container}", flush=True)
        await asyncio.sleep(0.01)


def main(argv: list[str]) -> int:
    recording = ProfileKey.parse(argv[1]) if len(argv) == 3 else None
    if recording is None:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(Path(argv[0]), recording, argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
