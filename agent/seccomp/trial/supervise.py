"""Run a command under a seccomp filter and see every syscall the filter sends to us.

The child loads the filter (libseccomp sets no_new_privs first, so no privilege is needed) and
execs the command; the filter and its listener are inherited by every thread and child process
it makes, so they are all followed. The parent takes the listener from the child with
pidfd_getfd(2) (the child cannot hand it over: any syscall it makes after loading may itself
wait on the listener) and answers each notification with SECCOMP_USER_NOTIF_FLAG_CONTINUE
(Linux >= 5.5): the kernel then runs the syscall as if there were no filter. Notifications are
synchronous, so none is lost, unlike SCMP_ACT_LOG's rate-limited audit records.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib
import os
import platform
import select
import shutil
import signal
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.seccomp.worker import (
    ARCHITECTURES,
    UNKNOWN_SYSCALL,
    native_token,
    parse_action,
    parse_condition_sets,
    resolve_name,
)

_seccomp: Any = importlib.import_module("pyseccomp")

# <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, seccomp_notif_resp)
# with the generic ioctl encoding (x86, arm, riscv, s390: not mips, powerpc, sparc).
NOTIF_SIZE: Final = 80
NOTIF_RESP_SIZE: Final = 24
IOCTL_NOTIF_RECV: Final = 0xC0000000 | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_NOTIF_SEND: Final = 0xC0000000 | (NOTIF_RESP_SIZE << 16) | (ord("!") << 8) | 1
FLAG_CONTINUE: Final = 1
NOTIF: Final = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]
NOTIF_RESP: Final = struct.Struct("=QqiI")  # id, val, error, flags
SYS_PIDFD_GETFD: Final = 438  # the same number on every architecture (asm-generic)
MIN_KERNEL: Final = (5, 5)  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
LISTENER_LINK: Final = "anon_inode:seccomp notify"
DRAIN_SECONDS: Final = 0.5  # after the command exits, how long its descendants are followed

OnSyscall = Callable[[int, int, int, tuple[int, ...]], None]  # arch token, nr, pid, args


class TrialError(Exception):
    """The command could not be run under the filter; the message says why."""


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # the command's, or 128 + signal number as a shell reports it
    notifications: int


def kernel_supports_continue() -> bool:
    release = platform.release().split(".")
    try:
        return (int(release[0]), int(release[1].split("-")[0])) >= MIN_KERNEL
    except (IndexError, ValueError):
        return False


def build_filter(document: Mapping[str, Any]) -> Any:
    """A libseccomp filter from an OCI profile, translated the way the compile check (and runc)
    translate it: native names, translated per architecture; unknown names skipped."""
    native = native_token()
    default = parse_action(document, "defaultAction", "defaultErrnoRet", "profile")
    seccomp_filter = _seccomp.SyscallFilter(default)
    for architecture in document.get("architectures") or []:
        token = ARCHITECTURES[architecture]
        if token != native:
            try:
                seccomp_filter.add_arch(token)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.EDOM, errno.EINVAL):
                    raise  # another byte order, or not this libseccomp's: runc skips those too
    for index, rule in enumerate(document.get("syscalls") or []):
        path = f"syscalls[{index}]"
        action = parse_action(rule, "action", "errnoRet", path)
        if action == default:
            continue
        for name in rule["names"]:
            number = resolve_name(native, name)
            if number == UNKNOWN_SYSCALL:
                continue
            for conditions in parse_condition_sets(rule.get("args"), path):
                seccomp_filter.add_rule(action, number, *conditions)
    return seccomp_filter


def syscall_name(arch_token: int, number: int) -> str:
    try:
        return bytes(_seccomp.resolve_syscall(arch_token, number)).decode()
    except (OSError, ValueError, TypeError):
        return f"syscall-{number}"


def run(
    argv: Sequence[str],
    seccomp_filter: Any,
    *,
    on_syscall: OnSyscall | None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run `argv` under `seccomp_filter`; with `on_syscall`, answer its notifications."""
    program = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if program is None:
        raise TrialError(f"{argv[0]}: command not found")
    if on_syscall is not None and not kernel_supports_continue():
        raise TrialError(
            f"this kernel ({platform.release()}) cannot let a notified syscall continue "
            f"(needs Linux >= {MIN_KERNEL[0]}.{MIN_KERNEL[1]})"
        )
    environment = dict(os.environ if env is None else env)
    # The listener dies with its last holder, and the child's copy is close-on-exec: the child
    # must not exec before the parent holds its own copy. It waits on this pipe (both ends are
    # close-on-exec, so the command inherits neither).
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, wait for the parent, exec; nothing else
        try:
            seccomp_filter.load()
            if on_syscall is not None:
                os.read(go_read, 1)
            os.execve(program, list(argv), environment)
        except BaseException:
            os._exit(127)
    os.close(go_read)
    pidfd = os.pidfd_open(pid)
    try:
        if on_syscall is None:
            os.close(go_write)
            return Outcome(_exit_code(os.waitpid(pid, 0)[1]), 0)
        listener = _take_listener(pid, pidfd)
        os.write(go_write, b"g")
        os.close(go_write)
        # The child's wait on the pipe is ours, not the command's: leave it out of the report.
        own_wait = (pid, resolve_name(native_token(), "read"), go_read)
        try:
            return _supervise(pid, pidfd, listener, on_syscall, own_wait)
        finally:
            os.close(listener)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(pidfd)


def _take_listener(pid: int, pidfd: int) -> int:
    """Find the listener among the child's descriptors and duplicate it into this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    deadline = time.monotonic() + 10.0
    fd_dir = Path(f"/proc/{pid}/fd")
    while time.monotonic() < deadline:
        for entry in _entries(fd_dir):
            try:
                if str(entry.readlink()) != LISTENER_LINK:
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(entry.name), 0)
            if fd >= 0:
                os.set_inheritable(fd, False)
                return int(fd)
            code = ctypes.get_errno()
            raise TrialError(
                f"cannot take the seccomp listener from the command: {os.strerror(code)} "
                "(pidfd_getfd needs ptrace access to the child; check kernel.yama.ptrace_scope)"
            )
        if os.waitpid(pid, os.WNOHANG)[0] != 0:
            raise TrialError("the command exited before its seccomp filter was loaded")
        time.sleep(0.0005)
    raise TrialError("the command did not load its seccomp filter within 10 s")


def _entries(fd_dir: Path) -> list[Path]:
    try:
        return list(fd_dir.iterdir())
    except OSError:
        return []


def _supervise(
    pid: int, pidfd: int, listener: int, on_syscall: OnSyscall, own_wait: tuple[int, int, int]
) -> Outcome:
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    buffer = bytearray(NOTIF_SIZE)
    exit_code: int | None = None
    count = 0
    drain_until = 0.0
    while True:
        timeout = None if exit_code is None else max(0.0, drain_until - time.monotonic())
        events = poller.poll(None if timeout is None else int(timeout * 1000))
        if not events and exit_code is not None:
            break  # the command is gone and its descendants are quiet
        for fd, mask in events:
            if fd == pidfd and exit_code is None:
                exit_code = _exit_code(os.waitpid(pid, 0)[1])
                poller.unregister(pidfd)
                drain_until = time.monotonic() + DRAIN_SECONDS
            elif fd == listener and mask & select.POLLIN:
                if _answer(listener, buffer, on_syscall, own_wait):
                    count += 1
                    if exit_code is not None:
                        drain_until = time.monotonic() + DRAIN_SECONDS
            elif fd == listener and mask & (select.POLLHUP | select.POLLERR):
                # No task uses the filter any more: every descendant has exited.
                poller.unregister(listener)
                if exit_code is None:
                    exit_code = _exit_code(os.waitpid(pid, 0)[1])
                return Outcome(exit_code, count)
    return Outcome(exit_code, count)


def _answer(
    listener: int, buffer: bytearray, on_syscall: OnSyscall, own_wait: tuple[int, int, int]
) -> bool:
    buffer[:] = bytes(NOTIF_SIZE)  # the kernel refuses a receive buffer that is not zeroed
    try:
        fcntl.ioctl(listener, IOCTL_NOTIF_RECV, buffer, True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINTR):
            return False  # the task died (or the wait was interrupted) before we read it
        raise
    ident, task, _, number, arch, _, *args = NOTIF.unpack(buffer)
    # Answer first: the task waits, and a slow report must not slow the program down more.
    response = bytearray(NOTIF_RESP.pack(ident, 0, 0, FLAG_CONTINUE))
    try:
        fcntl.ioctl(listener, IOCTL_NOTIF_SEND, response, True)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: the task died meanwhile
            raise
    if (task, number, args[0]) == own_wait and arch == native_token():
        return False
    on_syscall(arch, number, task, tuple(args))
    return True


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
