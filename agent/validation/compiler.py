"""Compile OCI seccomp profiles with the real libseccomp, safely, and count BPF instructions.

libseccomp is C and can crash (or run for minutes) on absurd input, so it runs in a long-lived
child process (`_compile_worker.py`): a crash or a stall costs that one profile an error result
and the next call starts a fresh worker. Keeping the worker alive between calls is what makes a
compile cheap (a few milliseconds), as opposed to paying an interpreter start-up per profile.
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
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from agent.validation import _compile_worker

WORKER_SCRIPT: Final = Path(_compile_worker.__file__)
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


class Compiler:
    """Compiles profiles in a worker process; shareable between threads (calls are serialised)."""

    def __init__(self, timeout_seconds: float = 10.0) -> None:
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._closed = False

    def compile(
        self, profile: Mapping[str, Any], architectures: Sequence[str]
    ) -> list[ArchCompileResult]:
        """One result per architecture, in order; never raises for a bad or hostile profile.

        The whole call takes at most about `timeout_seconds`: architectures still waiting when
        it runs out get an error result too.
        """
        try:
            # Numbers pass through as JSON integers of any size; the worker range-checks them.
            profile_json = json.dumps(profile, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            reason = f"the profile is not plain JSON data: {exc}"
            return [ArchCompileResult(arch, None, reason) for arch in architectures]
        with self._lock:
            if self._closed:
                raise RuntimeError("Compiler.compile() called after close()")
            deadline = time.monotonic() + self._timeout
            results: list[ArchCompileResult] = []
            # A pass ends early only when the worker crashed on one architecture: the ones after
            # it get a fresh worker rather than a blanket failure.
            while len(results) < len(architectures):
                remaining = architectures[len(results) :]
                results += self._compile_in_worker(profile_json, remaining, deadline)
            return results

    def close(self) -> None:
        """Stop the worker; the compiler cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._discard_worker()

    def __enter__(self) -> Compiler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _compile_in_worker(
        self, profile_json: str, architectures: Sequence[str], deadline: float
    ) -> list[ArchCompileResult]:
        """Results for a prefix of `architectures` (all of them unless the worker crashed)."""
        try:
            worker = self._running_worker()
        except OSError as exc:
            return [
                ArchCompileResult(arch, None, f"cannot start the libseccomp worker: {exc}")
                for arch in architectures
            ]
        request = _request(profile_json, architectures)
        results: list[ArchCompileResult] = []
        try:
            worker.send(request, deadline)
            for arch in architectures:
                results.append(worker.receive(arch, deadline))
        except _WorkerTimeoutError:
            self._discard_worker(kill=True)
            stuck, *skipped = architectures[len(results) :]
            reason = (
                f"libseccomp did not finish compiling for {stuck} within {self._timeout:g} s "
                "(the profile is too large or pathological)"
            )
            results.append(ArchCompileResult(stuck, None, reason))
            reason = f"not compiled: the {self._timeout:g} s limit ran out on {stuck}"
            results += [ArchCompileResult(arch, None, reason) for arch in skipped]
        except _WorkerGoneError:
            status = self._discard_worker()
            arch = architectures[len(results)]
            results.append(ArchCompileResult(arch, None, _death_reason(status, arch)))
        return results

    def _running_worker(self) -> _Worker:
        # A worker that died between calls (killed, out of memory) is replaced before use, so
        # the next profile is not blamed for it.
        if self._worker is not None and not self._worker.alive():
            self._discard_worker()
        if self._worker is None:
            self._worker = _Worker.start()
        return self._worker

    def _discard_worker(self, *, kill: bool = False) -> int | None:
        worker, self._worker = self._worker, None
        return worker.stop(kill=kill) if worker is not None else None


def _request(profile_json: str, architectures: Sequence[str]) -> bytes:
    # The profile is spliced in already encoded, so a retry after a crash does not re-encode it.
    head = json.dumps({"architectures": list(architectures)})[:-1]
    body = f'{head},"profile":{profile_json}}}'.encode()
    return _compile_worker.HEADER.pack(len(body)) + body


def _death_reason(status: int | None, arch: str) -> str:
    if status is not None and status < 0:
        number = -status
        name = _signal_name(number)
        if number in _CRASH_SIGNALS:
            return f"libseccomp crashed (signal {number}, {name}) compiling for {arch}"
        return f"the libseccomp worker was killed (signal {number}, {name}) compiling for {arch}"
    return f"the libseccomp worker exited (status {status}) while compiling for {arch}"


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
    def start(cls) -> _Worker:
        # subprocess forks and execs in C with nothing else run in between, so it is safe from a
        # threaded or asyncio parent. -P: do not put the worker's own folder on sys.path.
        process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT)],
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
        (length,) = _compile_worker.HEADER.unpack(
            self._read_exact(_compile_worker.HEADER.size, deadline)
        )
        try:
            answer = json.loads(self._read_exact(length, deadline))
            result = ArchCompileResult(
                architecture=answer["architecture"],
                instructions=answer["instructions"],
                error=answer["error"],
                rule_path=answer["rule_path"],
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
