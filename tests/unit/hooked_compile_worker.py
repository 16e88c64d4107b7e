"""The real compile worker, plus hooks that crash or hang it on cue: for the compiler's tests.

`Compiler(worker_command=HOOKED_WORKER_COMMAND)` starts this file as its worker: it runs
`agent.seccomp.worker.main` with a FilterBuilder that first looks at the profile's
`TEST_HOOK_KEY`, e.g. {"architecture": "SCMP_ARCH_X86", "action": "segv"}:
- "segv": the worker kills itself with SIGSEGV before compiling for that architecture;
- "hang": it sleeps for an hour instead;
- "segv-once" / "hang-once" with "marker": a path: only while that file does not exist, which
  the hook then creates, so the first attempt fails and a retry on a fresh worker does not.
Everything else (the protocol, the compile itself) is the shipped worker's, which has no hooks.

Also `worker_pids()`: this process's compile workers, real or hooked, read from /proc.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from agent.seccomp import worker

TEST_HOOK_KEY: Final = "x-seccomp-sync-test-hook"
# -P: the interpreter does not put tests/unit on sys.path; the worker needs only the agent.
HOOKED_WORKER_COMMAND: Final[tuple[str, ...]] = (sys.executable, "-P", str(Path(__file__)))


class HookedFilterBuilder(worker.FilterBuilder):
    """The real FilterBuilder, which first runs the profile's hook for this architecture."""

    def compile(self, profile: Any, architecture: str) -> dict[str, Any]:
        _run_hook(profile, architecture)
        return super().compile(profile, architecture)


def _run_hook(profile: Any, architecture: str) -> None:
    hook = profile.get(TEST_HOOK_KEY) if isinstance(profile, Mapping) else None
    if not isinstance(hook, Mapping) or hook.get("architecture") != architecture:
        return
    action = hook.get("action")
    marker = hook.get("marker")
    if isinstance(action, str) and action.endswith("-once") and isinstance(marker, str):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        action = action.removesuffix("-once")
    if action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "hang":
        time.sleep(3600)


def _cmdline(command: Sequence[str]) -> bytes:
    return b"".join(os.fsencode(arg) + b"\0" for arg in command)


def worker_pids() -> set[int]:
    """This process's children that are compile workers (read from /proc, no private state).

    A compiler shared by a test module has one too: compare with a set taken before.
    """
    # Imported here: the worker process, which runs this file too, has no use for the compiler.
    from agent.seccomp.compiler import WORKER_COMMAND

    workers = {_cmdline(WORKER_COMMAND), _cmdline(HOOKED_WORKER_COMMAND)}
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended since the listing: it has no children left to see
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue  # the child ended since the listing
            if cmdline in workers:
                pids.add(int(child))
    return pids


if __name__ == "__main__":
    sys.exit(worker.main(HookedFilterBuilder))
