"""A recorder in a process of its own, for a test to kill: what an agent restart does.

    python -m tests.integration.recorder_process SOCKET NAMESPACE/RECORDING

Prints `listening`, then `serving <pod> <container>` for each container it serves.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.api.keys import ProfileKey
from agent.node.recorder import Observations, Recorder
from agent.node.recordings import Admissions


async def serve(socket_path: Path, recording: ProfileKey) -> None:
    admissions = Admissions()
    admissions.set(frozenset({recording}))
    recorder = Recorder(socket_path, Observations(), admissions.admit)
    task = asyncio.create_task(recorder.run())
    while not recorder.listening:
        await asyncio.sleep(0.01)
    print("listening", flush=True)
    said: set[tuple[str, str]] = set()
    while not task.done():
        for state in recorder.live():
            if (state.pod_ref, state.container) not in said:
                said.add((state.pod_ref, state.container))
                print(f"serving {state.pod_ref} {state.container}", flush=True)
        await asyncio.sleep(0.01)


def main(argv: list[str]) -> int:
    recording = ProfileKey.parse(argv[1])
    if len(argv) != 2 or recording is None:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(Path(argv[0]), recording))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
