"""Compile OCI seccomp profiles with the real libseccomp, safely, and count BPF instructions.

libseccomp is C and can crash (or run for minutes) on absurd input, so it runs in a long-lived
child process (`agent.seccomp.worker`): a crash or a stall costs that one profile an error result
and the next call starts a fresh worker. Keeping the worker alive between calls is what makes a
compile cheap (a few milliseconds), as opposed to paying an interpreter start-up per profile.

Every failure says whether it is the profile's fault (`transient=False`: libseccomp refused it,
or crashed on it twice, each time in a fresh worker) or the machine's (`transient=True`: the
worker was killed from outside, hung past the deadline, could not start, ran out of memory or
descriptors). Only the first kind may be cached as a verdict on the profile.

Two lanes, each with its own worker, keep cheap profiles from queueing behind expensive ones:
`cost.estimate` sends a profile to the cheap lane or the expensive one (started on first use).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from agent.seccomp import worker
from agent.seccomp.cost import Lane, estimate

# A module of this package, run by the same interpreter in the same environment: it finds the
# package as installed (or on PYTHONPATH). -P: nothing in the working directory shadows it.
WORKER_COMMAND: Final[tuple[str, ...]] = (sys.executable, "-P", "-m", worker.__name__)
_READ_CHUNK: Final = 1 << 16
_EXIT_GRACE_SECONDS: Final = 2.0
# Signals that mean the worker crashed by itself rather than being killed from outside.
_CRASH_SIGNALS: Final = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}
)


@dataclass(frozen=True)
class ArchCompileResult:
    """The outcome of compiling one profile for one architecture."""

    architecture: str  # "SCMP_ARCH_X86_64"
    instructions: int | None  # BPF instruction count when compiled
    error: str | None  # human-readable reason when it failed
    rule_path: str | None = None  # e.g. "spec.syscalls[3]" when a specific rule made it fail
    # The failure says nothing about the profile (worker killed, hung, no descriptors...):
    # compile it again later rather than report it as invalid.
    transient: bool = False


class TransientCompileError(Exception):
    """The compile failed for a reason unrelated to the profile; try again later."""

    def __init__(self, results: Sequence[ArchCompileResult]) -> None:
        failed = [r for r in results if r.transient]
        super().__init__("; ".join(f"{r.architecture}: {r.error}" for r in failed))
        self.results = tuple(results)


class Compiler:
    """Compiles profiles in worker processes; shareable between threads.

    Calls in one lane are serialised (one worker each); the cheap lane never waits for the
    expensive one.
    """

    def __init__(
        self, timeout_seconds: float = 10.0, worker_command: Sequence[str] = WORKER_COMMAND
    ) -> None:
        """`worker_command` starts a worker process (tests start one that can crash on cue)."""
        self._timeout = timeout_seconds
        self._lanes = {lane: _LaneWorker(lane, worker_command) for lane in Lane}
        self._closed = False

    def compile(
        self, profile: Mapping[str, Any], architectures: Sequence[str]
    ) -> list[ArchCompileResult]:
        """One result per architecture, in order; never raises for a bad or hostile profile.

        The whole call takes at most about `timeout_seconds` once its lane is free:
        architectures still waiting when it runs out get a (transient) error result too.
        """
        try:
            # Numbers pass through as JSON integers of any size; the worker range-checks them.
            profile_json = json.dumps(profile, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            reason = f"the profile is not plain JSON data: {exc}"
            return [ArchCompileResult(arch, None, reason) for arch in architectures]
        lane = self._lanes[estimate(profile, len(architectures)).lane]
        with lane.lock:
            if self._closed:
                raise RuntimeError("Compiler.compile() called after close()")
            return lane.compile(profile_json, architectures, self._timeout)

    def lane_busy(self, lane: Lane) -> bool:
        """Whether a compile holds that lane now (for tests and benchmarks)."""
        return self._lanes[lane].lock.locked()

    def close(self) -> None:
        """Stop the workers; the compiler cannot be used afterwards."""
        self._closed = True
        for lane in self._lanes.values():
            with lane.lock:
                lane.discard_worker()

    def __enter__(self) -> Compiler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _LaneWorker:
    """One lane: a lock and the worker process it serialises (started on first use)."""

    def __init__(self, lane: Lane, command: Sequence[str]) -> None:
        self.lane = lane
        self.lock = threading.Lock()
        self._command = tuple(command)
        self._worker: _Worker | None = None

    def compile(
        self, profile_json: str, architectures: Sequence[str], timeout: float
    ) -> list[ArchCompileResult]:
        deadline = time.monotonic() + timeout
        results: list[ArchCompileResult] = []
        crashed: set[str] = set()
        # A pass ends early only when the worker crashed on one architecture: that one is tried
        # once more, and the ones after it, on a fresh worker rather than a blanket failure.
        while len(results) < len(architectures):
            remaining = architectures[len(results) :]
            results += self._compile_in_worker(profile_json, remaining, deadline, timeout, crashed)
        return results

    def _compile_in_worker(
        self,
        profile_json: str,
        architectures: Sequence[str],
        deadline: float,
        timeout: float,
        crashed: set[str],
    ) -> list[ArchCompileResult]:
        """Results for a prefix of `architectures` (all of them unless the worker crashed)."""
        try:
            worker = self._running_worker()
        except OSError as exc:
            # EMFILE, ENOMEM, EAGAIN: the machine, not the profile.
            reason = f"cannot start the libseccomp worker: {exc}"
            return [ArchCompileResult(arch, None, reason, transient=True) for arch in architectures]
        request = _request(profile_json, architectures)
        results: list[ArchCompileResult] = []
        try:
            worker.send(request, deadline)
            for arch in architectures:
                results.append(worker.receive(arch, deadline))
        except _WorkerTimeoutError:
            # With the cost bounded up front (cost.py), a compile that overruns means a stalled
            # or starved worker, not a profile to blame.
            self.discard_worker(kill=True)
            stuck, *skipped = architectures[len(results) :]
            reason = (
                f"libseccomp did not finish compiling for {stuck} within {timeout:g} s "
                "(the worker hung or the machine is overloaded); it will be tried again"
            )
            results.append(ArchCompileResult(stuck, None, reason, transient=True))
            reason = f"not compiled: the {timeout:g} s limit ran out on {stuck}"
            results += [ArchCompileResult(arch, None, reason, transient=True) for arch in skipped]
        except _WorkerGoneError:
            status = self.discard_worker()
            arch = architectures[len(results)]
            if _crashed_by_itself(status) and arch not in crashed:
                crashed.add(arch)  # once may be bad luck: the next pass retries on a fresh worker
            else:
                results.append(_death_result(status, arch, arch in crashed))
        return results

    def _running_worker(self) -> _Worker:
        # A worker that died between calls (killed, out of memory) is replaced before use, so
        # the next profile is not blamed for it.
        if self._worker is not None and not self._worker.alive():
            self.discard_worker()
        if self._worker is None:
            self._worker = _Worker.start(self._command)
        return self._worker

    def discard_worker(self, *, kill: bool = False) -> int | None:
        worker, self._worker = self._worker, None
        return worker.stop(kill=kill) if worker is not None else None


def _request(profile_json: str, architectures: Sequence[str]) -> bytes:
    # The profile is spliced in already encoded, so a retry after a crash does not re-encode it.
    head = json.dumps({"architectures": list(architectures)})[:-1]
    body = f'{head},"profile":{profile_json}}}'.encode()
    return worker.HEADER.pack(len(body)) + body


def _crashed_by_itself(status: int | None) -> bool:
    return status is not None and status < 0 and -status in _CRASH_SIGNALS


def _death_result(status: int | None, arch: str, crashed_before: bool) -> ArchCompileResult:
    """Why the worker died on `arch`, and whether that is the profile's fault."""
    if status is not None and status < 0:
        number = -status
        name = _signal_name(number)
        if number in _CRASH_SIGNALS and crashed_before:
            # The same input crashed two fresh workers: libseccomp cannot take this profile.
            reason = (
                f"libseccomp crashed (signal {number}, {name}) compiling for {arch}, "
                "twice, each time in a fresh worker"
            )
            return ArchCompileResult(arch, None, reason)
        reason = f"the libseccomp worker was killed (signal {number}, {name}) compiling for {arch}"
        return ArchCompileResult(arch, None, reason, transient=True)
    reason = f"the libseccomp worker exited (status {status}) while compiling for {arch}"
    return ArchCompileResult(arch, None, reason, transient=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class _WorkerGoneError(Exception):
    """The worker closed its pipes: it crashed, was killed, or exited."""


class _WorkerTimeoutError(Exception):
    """The worker did not answer before the deadline."""


class _Worker:
    """One worker process and the framed pipe protocol to it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._to_worker = process.stdin.fileno()
        self._from_worker = process.stdout.fileno()
        self._buffer = bytearray()
        self._readable = _poller(self._from_worker, select.POLLIN)
        self._writable = _poller(self._to_worker, select.POLLOUT)
        # Non-blocking writes let a deadline apply even when the worker stops reading.
        os.set_blocking(self._to_worker, False)
        # A Compiler dropped without close() must not leave its worker behind.
        self._finalizer = weakref.finalize(self, _kill, process)

    @classmethod
    def start(cls, command: Sequence[str]) -> _Worker:
        # subprocess forks and execs in C with nothing else run in between, so it is safe from a
        # threaded or asyncio parent.
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
        )
        return cls(process)

    def alive(self) -> bool:
        return self._process.poll() is None

    def send(self, message: bytes, deadline: float) -> None:
        view = memoryview(message)
        while view:
            _wait(self._writable, deadline)
            try:
                written = os.write(self._to_worker, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _WorkerGoneError from None
            view = view[written:]

    def receive(self, arch: str, deadline: float) -> ArchCompileResult:
        (length,) = worker.HEADER.unpack(self._read_exact(worker.HEADER.size, deadline))
        try:
            answer = json.loads(self._read_exact(length, deadline))
            result = ArchCompileResult(
                architecture=answer["architecture"],
                instructions=answer["instructions"],
                error=answer["error"],
                rule_path=answer["rule_path"],
                transient=bool(answer.get("transient", False)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise _WorkerGoneError from exc
        if result.architecture != arch:
            # Out of step with the worker: nothing it says can be trusted any more.
            raise _WorkerGoneError
        return result

    def stop(self, *, kill: bool = False) -> int | None:
        """End the worker and return its exit status (negative: the signal that ended it).

        Closing its input asks it to exit; `kill` does not wait for a worker known to be stuck.
        """
        self._finalizer.detach()
        process = self._process
        if kill:
            process.kill()
        if process.stdin is not None:
            process.stdin.close()
        if process.stdout is not None:
            process.stdout.close()
        try:
            return process.wait(timeout=_EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            _wait(self._readable, deadline)
            chunk = os.read(self._from_worker, _READ_CHUNK)
            if not chunk:
                raise _WorkerGoneError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _poller(fd: int, event: int) -> select.poll:
    poller = select.poll()
    # POLLHUP/POLLERR also wake us, so a dead worker is noticed at once, not at the deadline.
    poller.register(fd, event | select.POLLHUP | select.POLLERR)
    return poller


def _wait(poller: select.poll, deadline: float) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _WorkerTimeoutError
        if poller.poll(remaining * 1000):
            return


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
