"""The recording listener: runc hands it each recorded container's seccomp notifications.

A container started under a recording profile (agent.seccomp.recording_profile) has a filter
that notifies nearly every syscall. Before the container starts, runc connects to
`listenerPath` (this socket, on the host) and sends one message: the OCI state as JSON (`pid`,
`metadata` = the profile's `listenerMetadata`, the CRI annotations naming the pod and the
container) with the filter's notification fd (SCM_RIGHTS). From then on every notified syscall
of that container, of each of its threads and children, waits until someone answers on that fd.

One thread serves them all with poll(2): it answers each notification with "continue" at once
(the kernel then runs the syscall as if there were no filter) and only then records the name.
It never denies: whatever goes wrong inside the recorder (a name it cannot resolve, a bug), the
answer is still "continue", and the error is counted. The fd reports POLLHUP once the
container's last task has exited; the container is then done.

A refused listener is not closed at once: runc's init holds its own copy of it until it execs
the container's program, and a notified call of its own would wait on that copy forever (the
container hangs in `created`). It is answered, unrecorded, until that exec, then closed: the
program's first notified call fails with ENOSYS and the container fails where users see it.

A thread, not the event loop: every notified syscall of every recorded container waits for this
answer, so it must not queue behind the agent's other work.

What it must refuse (the container's notified syscalls then fail with ENOSYS, see below):
a listener whose metadata names no active recording, or whose pod lives in another namespace
than the recording (a recording never observes another namespace's pods). `admit` decides.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from agent.api.keys import ProfileKey
from agent.runtime.waiting import daemon_thread
from agent.seccomp.syscalls import architecture_name
from agent.seccomp.trial.supervise import (
    FLAG_CONTINUE,
    IOCTL_NOTIF_RECV,
    IOCTL_NOTIF_SEND,
    NOTIF,
    NOTIF_RESP,
    NOTIF_SIZE,
    syscall_name,
)

log = logging.getLogger(__name__)

# The socket is the agent's own; root (runc) connects whatever the mode, nobody else may.
SOCKET_MODE: Final = 0o600
MAX_STATE_BYTES: Final = 256 * 1024  # the OCI state is a few kB; its annotations are bounded
STATE_READ_SECONDS: Final = 2.0  # runc sends at once, then closes: a slow peer is not runc
RETRY_SECONDS: Final = 10.0
BACKLOG: Final = 128
EXEC_CALLS: Final = frozenset({"execve", "execveat"})  # runc's init becomes the container
NAMESPACE_ANNOTATION: Final = "io.kubernetes.cri.sandbox-namespace"
POD_ANNOTATION: Final = "io.kubernetes.cri.sandbox-name"
POD_UID_ANNOTATION: Final = "io.kubernetes.cri.sandbox-uid"
CONTAINER_ANNOTATION: Final = "io.kubernetes.cri.container-name"


class StateError(ValueError):
    """runc's message is not what a recorded container's runtime sends; the text says why."""


@dataclass(frozen=True)
class ListenerState:
    """Who a listener belongs to, from the OCI state runc sends with it."""

    recording: ProfileKey
    namespace: str  # the pod's
    pod: str
    pod_uid: str
    container: str
    pid: int

    @property
    def pod_ref(self) -> str:
        return f"{self.namespace}/{self.pod}"


def parse_state(payload: bytes) -> ListenerState:
    """The OCI state JSON (runtime-spec `state`, as runc sends it to a seccomp listener)."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"the state is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise StateError("the state is not a JSON object")
    recording = ProfileKey.parse(str(document.get("metadata") or ""))
    if recording is None or not recording.is_valid:
        raise StateError(
            f"listenerMetadata {document.get('metadata')!r} names no recording "
            "(expected <namespace>/<recording>)"
        )
    state = document.get("state")
    annotations = (state or {}).get("annotations") if isinstance(state, Mapping) else None
    if not isinstance(annotations, Mapping):
        raise StateError("the state carries no annotations: not a container started by the CRI")
    missing = [
        key
        for key in (NAMESPACE_ANNOTATION, POD_ANNOTATION, CONTAINER_ANNOTATION)
        if not isinstance(annotations.get(key), str) or not annotations.get(key)
    ]
    if missing:
        raise StateError(f"the state lacks the annotations {', '.join(missing)}")
    pid = document.get("pid")
    return ListenerState(
        recording=recording,
        namespace=str(annotations[NAMESPACE_ANNOTATION]),
        pod=str(annotations[POD_ANNOTATION]),
        pod_uid=str(annotations.get(POD_UID_ANNOTATION) or ""),
        container=str(annotations[CONTAINER_ANNOTATION]),
        pid=pid if isinstance(pid, int) else 0,
    )


@dataclass
class Observed:
    """What one recording saw on this node (mutated under `Observations`' lock only)."""

    pods: set[str] = field(default_factory=set)
    syscalls: dict[str, set[str]] = field(default_factory=dict)  # container -> names
    architectures: set[str] = field(default_factory=set)


class Observations:
    """The recorded names per recording and container; shared by the listener thread (writes)
    and the event loop (snapshots), hence a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_recording: dict[ProfileKey, Observed] = {}

    def add(self, recording: ProfileKey, container: str, name: str, architecture: str) -> bool:
        """Record one call; True if the name is new for that container."""
        with self._lock:
            observed = self._by_recording.setdefault(recording, Observed())
            names = observed.syscalls.setdefault(container, set())
            observed.architectures.add(architecture)
            if name in names:
                return False
            names.add(name)
            return True

    def add_pod(self, recording: ProfileKey, pod: str, container: str) -> None:
        with self._lock:
            observed = self._by_recording.setdefault(recording, Observed())
            observed.pods.add(pod)
            observed.syscalls.setdefault(container, set())

    def restore(
        self,
        recording: ProfileKey,
        pods: frozenset[str],
        syscalls: Mapping[str, frozenset[str]],
        architectures: frozenset[str],
    ) -> None:
        """Merge what an earlier agent published (a restart loses no recorded name)."""
        with self._lock:
            observed = self._by_recording.setdefault(recording, Observed())
            observed.pods |= pods
            observed.architectures |= architectures
            for container, names in syscalls.items():
                observed.syscalls.setdefault(container, set()).update(names)

    def forget(self, recording: ProfileKey) -> None:
        with self._lock:
            self._by_recording.pop(recording, None)

    def snapshot(self) -> dict[ProfileKey, Observed]:
        with self._lock:
            return {
                key: Observed(
                    set(o.pods),
                    {c: set(n) for c, n in o.syscalls.items()},
                    set(o.architectures),
                )
                for key, o in self._by_recording.items()
            }


@dataclass(frozen=True)
class Listener:
    state: ListenerState
    since: float
    refused: str | None = None  # served unrecorded until the container's exec, then closed


class RecorderCounters(Protocol):
    """What the recorder counts (agent.node.metrics.RecorderMetrics: Prometheus series)."""

    def notification(self) -> None: ...
    def error(self) -> None: ...
    def connection(self, outcome: str) -> None: ...
    def listeners(self, count: int) -> None: ...


class _NoCounters:
    def notification(self) -> None:
        pass

    def error(self) -> None:
        pass

    def connection(self, outcome: str) -> None:
        pass

    def listeners(self, count: int) -> None:
        pass


Admit = Callable[[ListenerState], str | None]  # None: serve it; else why it is refused


class Recorder:
    """Supervised: `run()` serves the socket at `socket_path` until cancelled."""

    def __init__(
        self,
        socket_path: Path,
        observations: Observations,
        admit: Admit,
        *,
        counters: RecorderCounters | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_change` is called from the listener thread (make it thread-safe) when something
        the node part shows changed: a new name, a new container, a container done."""
        self.socket_path = socket_path
        self.observations = observations
        self._admit = admit
        self._counters: RecorderCounters = counters or _NoCounters()
        self._on_change = on_change
        # Live listeners by fd. Owned by the object, not the thread: if the thread fails and
        # the supervisor starts it again, the containers it served are served again.
        self._listeners: dict[int, Listener] = {}
        self._lock = threading.Lock()
        self._names: dict[tuple[int, int], str] = {}
        self.listening = False
        self.refused: dict[tuple[str, str], str] = {}  # (pod, container) -> reason
        self.served: set[tuple[str, str]] = set()  # (pod, container), ever, by this process
        self.errors = 0

    def live(self) -> list[ListenerState]:
        with self._lock:
            return [listener.state for listener in self._listeners.values()]

    async def run(self) -> None:
        stop_read, stop_write = os.pipe()
        done = daemon_thread("recorder", lambda: self._serve(stop_read))
        try:
            await done
        finally:
            os.write(stop_write, b"x")
            os.close(stop_write)
            # The thread closes stop_read when it leaves; it may still be polling now.

    # --- the listener thread -------------------------------------------------------------------

    def _serve(self, stop: int) -> None:
        try:
            server = self._bind_until_stopped(stop)
            if server is None:
                return
            with server:
                self.listening = True
                self._on_change()
                log.info("recorder listening", extra={"socket": str(self.socket_path)})
                self._loop(server, stop)
        finally:
            self.listening = False
            os.close(stop)

    def _bind_until_stopped(self, stop: int) -> socket.socket | None:
        reported = False
        while True:
            try:
                return self._bind()
            except OSError as exc:
                if not reported:  # said once; every retry would repeat it
                    log.error(
                        "cannot listen for recorded containers; recording is off on this node "
                        "until it can (retrying)",
                        extra={"socket": str(self.socket_path), "error": str(exc)},
                    )
                    reported = True
            if select.select([stop], [], [], RETRY_SECONDS)[0]:
                return None

    def _bind(self) -> socket.socket:
        """Bind under a temporary name, set the mode, then rename over the real path: runc can
        never connect to a socket with the umask's mode, and a stale socket is replaced."""
        directory = self.socket_path.parent
        temporary = directory / f".{self.socket_path.name}.{secrets.token_hex(6)}"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            server.bind(str(temporary))
            temporary.chmod(SOCKET_MODE)
            temporary.rename(self.socket_path)
            server.listen(BACKLOG)
            server.setblocking(False)
        except BaseException:
            server.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        return server

    def _loop(self, server: socket.socket, stop: int) -> None:
        poller = select.poll()
        poller.register(stop, select.POLLIN)
        poller.register(server.fileno(), select.POLLIN)
        with self._lock:
            for fd in self._listeners:
                poller.register(fd, select.POLLIN)
        buffer = bytearray(NOTIF_SIZE)
        while True:
            for fd, mask in poller.poll():
                if fd == stop:
                    return
                if fd == server.fileno():
                    accepted = self._accept(server)
                    if accepted is not None:
                        poller.register(accepted, select.POLLIN)
                elif mask & select.POLLIN:
                    if self._answer(fd, buffer):
                        poller.unregister(fd)
                        self._close(fd)
                else:  # POLLHUP, POLLERR, POLLNVAL: the container's last task exited
                    poller.unregister(fd)
                    self._close(fd)

    def _accept(self, server: socket.socket) -> int | None:
        try:
            connection, _ = server.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # EMFILE and the like: count it, keep serving the others
            self._error("could not accept a connection", exc)
            return None
        with connection:
            try:
                payload, fds = _read_state(connection)
            except OSError as exc:
                self._refused("unreadable", f"could not read the runtime's message: {exc}")
                return None
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self._refused("no-fd", f"the runtime sent {len(fds)} descriptors, expected one")
            return None
        fd = fds[0]
        try:
            state = parse_state(payload)
            reason = self._admit(state)
        except StateError as exc:
            os.close(fd)
            self._refused("malformed", str(exc))
            return None
        except Exception as exc:  # a bug in admit: refusing beats serving the wrong recording
            os.close(fd)
            self._error("could not decide on a listener", exc)
            return None
        os.set_inheritable(fd, False)
        if reason is not None:
            # Not closed now: runc's init still holds its own copy of the listener, and its
            # next notified call would wait on it forever (runc 1.1.5 hung in `created`, seen).
            # Answered, unrecorded, until the container's exec; then closed, and the program
            # fails at its first notified call (ENOSYS): the pod fails, visibly.
            self.refused[(state.pod_ref, state.container)] = reason
            self._refused("refused", reason, state)
            with self._lock:
                self._listeners[fd] = Listener(state, time.time(), refused=reason)
            return fd
        with self._lock:
            self._listeners[fd] = Listener(state, time.time())
            count = len(self._listeners)
        self.served.add((state.pod_ref, state.container))
        self.observations.add_pod(state.recording, state.pod_ref, state.container)
        self._counters.connection("accepted")
        self._counters.listeners(count)
        self._on_change()
        log.info(
            "recording a container",
            extra={
                "recording": str(state.recording),
                "pod": state.pod_ref,
                "container": state.container,
            },
        )
        return fd

    def _answer(self, fd: int, buffer: bytearray) -> bool:
        """Answer one notification "continue", then record it; True: close this listener."""
        buffer[:] = bytes(NOTIF_SIZE)  # the kernel refuses a receive buffer that is not zeroed
        try:
            fcntl.ioctl(fd, IOCTL_NOTIF_RECV, buffer, True)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EINTR):  # ENOENT: the task died
                self._error("could not receive a notification", exc)
            return False
        ident, _, _, number, arch, _, *_ = NOTIF.unpack(buffer)
        # Answer first, whatever follows: the task waits, and the recorder must never deny.
        try:
            answer = bytearray(NOTIF_RESP.pack(ident, 0, 0, FLAG_CONTINUE))
            fcntl.ioctl(fd, IOCTL_NOTIF_SEND, answer)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self._error("could not answer a notification", exc)
        self._counters.notification()
        try:
            listener = self._listeners.get(fd)
            if listener is None:
                return False
            name = self._names.get((arch, number))
            if name is None:
                name = self._names.setdefault((arch, number), syscall_name(arch, number))
            if listener.refused is not None:
                return name in EXEC_CALLS
            architecture = architecture_name(arch) or f"{arch:#x}"
            if self.observations.add(
                listener.state.recording, listener.state.container, name, architecture
            ):
                self._on_change()
        except Exception as exc:  # recorded or not, the syscall already went on
            self._error("could not record a syscall", exc)
        return False

    def _close(self, fd: int) -> None:
        with self._lock:
            listener = self._listeners.pop(fd, None)
            count = len(self._listeners)
        with contextlib.suppress(OSError):
            os.close(fd)
        self._counters.listeners(count)
        if listener is not None and listener.refused is None:
            log.info(
                "container done",
                extra={
                    "recording": str(listener.state.recording),
                    "pod": listener.state.pod_ref,
                    "container": listener.state.container,
                },
            )
        self._on_change()

    def _refused(self, outcome: str, reason: str, state: ListenerState | None = None) -> None:
        self._counters.connection(outcome)
        extra: dict[str, Any] = {"reason": reason}
        if state is not None:
            extra |= {
                "recording": str(state.recording),
                "pod": state.pod_ref,
                "container": state.container,
            }
        log.warning(
            "refused a recording listener: the container's notified syscalls fail with ENOSYS",
            extra=extra,
        )

    def _error(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self._counters.error()
        log.warning(f"recorder: {what}", extra={"error": f"{type(exc).__name__}: {exc}"})


def _read_state(connection: socket.socket) -> tuple[bytes, list[int]]:
    """runc's one message: the state JSON and the notify fd.

    runc keeps the connection open while it goes on starting the container, so the message ends
    where the JSON does, not at end of file. It is sent in one sendmsg(2) and nearly always
    arrives in one piece; a piece at a time is read until the JSON is whole.
    """
    connection.settimeout(STATE_READ_SECONDS)
    chunks: list[bytes] = []
    fds: list[int] = []
    total = 0
    try:
        while total <= MAX_STATE_BYTES:
            data, received, _, _ = socket.recv_fds(connection, 64 * 1024, 4)
            fds += received
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if _complete(b"".join(chunks)):
                break
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return b"".join(chunks), fds


def _complete(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True
