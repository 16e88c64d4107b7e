"""The host store: the only code that touches the node's filesystem.

Everything lives under `<root>/seccomp-sync/<namespace>/<name>.json`. Container runtimes read these
files as root and follow symlinks, so a writer that followed a planted symlink could be made to
overwrite any host file (compare CVE-2021-25741). Hence:

- `root` is opened once per call and may itself be a symlink: an admin chose it. Every component
  below it is opened with `O_NOFOLLOW` relative to its parent's descriptor, so no path is ever
  resolved twice and a symlink planted at any level is refused with an `UnsafePathError`.
- A profile is written to a temporary file in its final directory, fsynced, renamed over the old
  one and the directory fsynced: a reader sees the old bytes or the new bytes, never a mix, and a
  crash leaves at worst a temporary file that `collect_garbage` recognises by its name.
- Bytes already on disk are compared first, so an idempotent reconcile writes nothing.

Concurrency: writers hold a shared `flock` on the managed directory, while `remove` and
`collect_garbage` hold it exclusively. Any temporary file the garbage collector sees was therefore
left by a writer that died (the kernel drops a dead process's locks), never one still in flight,
and a namespace directory is never removed under a writer about to create a file in it. This holds
across threads and processes (say two agent pods during a rolling update), because each call
opens its own descriptor.

`ProfileStore` makes its system calls through the `SystemCalls` it is given (`os` itself, or a
fault injector in tests). `Store` is what the syncer asks of it; `MemoryStore` is a fake of that.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from agent.api.keys import ProfileKey, is_dns_label
from agent.api.layout import MANAGED_DIR_NAME, PROFILE_SUFFIX, file_name, name_of_file
from agent.api.model import DNS1123_LABEL_MAX
from agent.api.recording import RECORDING_DIR_NAME

FILE_MODE: Final = 0o644
DIR_MODE: Final = 0o755

_TEMP_TOKEN_BYTES: Final = 8  # 16 hex digits, as _TEMP_NAME expects
_TEMP_NAME: Final = re.compile(r"\.(?P<name>[^/]+)\.json\.tmp-[0-9a-f]{16}")
_TEMP_CREATE_ATTEMPTS: Final = 8
_READ_CHUNK: Final = 64 * 1024

# Directories below the managed one that belong to another `ProfileStore` (`subdir`): a
# namespace is a DNS label, which never starts with "_", so none can be taken for the other.
_SUBSTORES: Final = frozenset({RECORDING_DIR_NAME})

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted in place of a profile must not hang the agent before fstat rejects it.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_Expected = Literal["directory", "regular file"]


class WriteOutcome(enum.Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"


class StoreError(Exception):
    """The store could not do what was asked; `path` is the host path concerned.

    `reason` is short and stable (an errno name such as `EROFS` or `ENOSPC`, or `UnsafePath`):
    what readiness, metrics and de-duplicated Events key on. The message never names a
    temporary file, so the same fault always reads the same.
    """

    reason: str = "IOError"

    def __init__(self, path: Path, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        if reason is not None:
            self.reason = reason


class UnsafePathError(StoreError):
    """A symlink or an entry of the wrong type sits where the store expects its own entry."""

    reason = "UnsafePath"


class ManagedDirGoneError(StoreError):
    """The managed directory was deleted on the host and cannot be brought back in-process."""

    reason = "ManagedDirRemoved"


@dataclass(frozen=True)
class GcResult:
    """What one garbage collection removed, and what it found but left alone; paths sorted."""

    removed_profiles: tuple[Path, ...] = ()
    removed_temp_files: tuple[Path, ...] = ()
    removed_dirs: tuple[Path, ...] = ()
    # Entries inside the managed directory that the store did not create (symlinks, other
    # files, bad names). Left in place for a person to look at: they may be evidence of tampering.
    unexpected: tuple[Path, ...] = ()


def validate_label(value: str, what: str) -> str:
    """Return `value` if it is a DNS-1123 label, else raise ValueError; it becomes a path part."""
    if not isinstance(value, str) or not is_dns_label(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {DNS1123_LABEL_MAX} characters)"
        )
    return value


def temp_file_name(name: str) -> str:
    """A fresh temporary file name for profile `name`; `collect_garbage` recognises the pattern."""
    return f".{name}{PROFILE_SUFFIX}.tmp-{secrets.token_hex(_TEMP_TOKEN_BYTES)}"


def is_temp_file_name(entry: str) -> bool:
    """True if `entry` is a name `temp_file_name` could have made."""
    match = _TEMP_NAME.fullmatch(entry)
    return match is not None and is_dns_label(match["name"])


class SystemCalls(Protocol):
    """The system calls the store makes: the `os` module itself, or (in the fault tests) a
    stand-in that fails some of them (EROFS, ENOSPC, EMFILE, a hang)."""

    def open(
        self, path: str | Path, flags: int, mode: int = ..., *, dir_fd: int | None = ...
    ) -> int: ...
    def close(self, fd: int) -> None: ...
    def read(self, fd: int, length: int) -> bytes: ...
    def write(self, fd: int, data: memoryview) -> int: ...
    def stat(self, path: str, *, dir_fd: int, follow_symlinks: bool) -> os.stat_result: ...
    def fstat(self, fd: int) -> os.stat_result: ...
    def fsync(self, fd: int) -> None: ...
    def fchmod(self, fd: int, mode: int) -> None: ...
    def mkdir(self, path: str, mode: int, *, dir_fd: int) -> None: ...
    def rename(self, src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None: ...
    def unlink(self, path: str, *, dir_fd: int) -> None: ...
    def rmdir(self, path: str, *, dir_fd: int) -> None: ...
    def readlink(self, path: str, *, dir_fd: int) -> str: ...
    def scandir(self, fd: int) -> Iterator[os.DirEntry[str]]: ...


class Store(Protocol):
    """What the syncer and the initial sync ask of the disk; `ProfileStore` is the real one."""

    def read(self, namespace: str, name: str) -> bytes | None: ...
    def write(self, namespace: str, name: str, content: bytes) -> WriteOutcome: ...
    def write_many(
        self, items: Sequence[tuple[str, str, bytes]]
    ) -> list[WriteOutcome | StoreError]: ...
    def remove(self, namespace: str, name: str) -> bool: ...
    def collect_garbage(self, wanted: AbstractSet[ProfileKey]) -> GcResult: ...


class ProfileStore:
    """Profiles under `<root>/seccomp-sync`. Holds no open descriptors between calls."""

    def __init__(self, root: Path, calls: SystemCalls = os, *, subdir: str | None = None) -> None:
        """`subdir`: a store of its own in `<root>/seccomp-sync/<subdir>` (the recording
        profiles, `_recording`), with its own lock; this store's sweep leaves it alone."""
        self.root = root
        self._fs = calls
        self._path = (MANAGED_DIR_NAME,) if subdir is None else (MANAGED_DIR_NAME, subdir)

    @property
    def managed_dir(self) -> Path:
        return self.root.joinpath(*self._path)

    def profile_path(self, namespace: str, name: str) -> Path:
        """The host path of a profile, for reporting; the store itself never resolves it."""
        validate_label(namespace, "namespace")
        validate_label(name, "name")
        return self.managed_dir / namespace / file_name(name)

    def ensure_managed_dir(self) -> None:
        """Create `<root>/seccomp-sync` if missing (never via a symlink) so it can be watched."""
        with contextlib.ExitStack() as stack:
            self._ensure_managed_dir(stack, lock=fcntl.LOCK_SH)

    def open_managed_dir(self) -> int:
        """A descriptor of the managed directory as it is now, for watching it (the caller
        closes it). While it is held the directory's inode cannot be reused, so
        `is_current` tells a directory recreated under the same path apart for certain."""
        fd = self._walk(ensure=False)
        if fd is None:
            raise StoreError(self.managed_dir, f"{self.managed_dir} does not exist", "ENOENT")
        try:
            if self._fs.fstat(fd).st_nlink == 0:
                # Still reachable by this path, yet deleted: a bind mount whose source was
                # removed on the host. Nothing written here would reach the container runtime.
                raise ManagedDirGoneError(
                    self.managed_dir,
                    f"{self.managed_dir} was deleted on the host while mounted into this "
                    "container; files written there are invisible to the container runtime. "
                    "Restart the agent's pod to mount it again.",
                )
        except BaseException:
            self._fs.close(fd)
            raise
        return fd

    def is_current(self, fd: int) -> bool:
        """True while `fd` (from `open_managed_dir`) is still the managed directory."""
        try:
            held = self._fs.fstat(fd)
            now = self.managed_dir.lstat()
        except OSError:
            return False
        return held.st_nlink > 0 and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def write(self, namespace: str, name: str, content: bytes) -> WriteOutcome:
        """Make the profile's bytes equal `content`, atomically and durably; no-op if they are."""
        path = self.profile_path(namespace, name)
        with contextlib.ExitStack() as stack:
            managed_fd = self._ensure_managed_dir(stack, lock=fcntl.LOCK_SH)
            ns_fd = _ensure_dir(self._fs, managed_fd, namespace, path.parent)
            stack.callback(self._fs.close, ns_fd)
            if _holds_bytes(self._fs, ns_fd, path, content):
                return WriteOutcome.UNCHANGED
            _replace(self._fs, ns_fd, path, content)
        return WriteOutcome.WRITTEN

    def write_many(
        self, items: Sequence[tuple[str, str, bytes]]
    ) -> list[WriteOutcome | StoreError]:
        """`write` for many profiles at once, each atomic, all durable with two filesystem
        syncs instead of two fsyncs per file (a cold start writes thousands).

        Every temp file's bytes are on disk before any rename (first sync), and the renames
        before this returns (second sync). Results are in the order of `items`; one profile's
        failure does not stop the others.
        """
        results: list[WriteOutcome | StoreError] = [WriteOutcome.UNCHANGED] * len(items)
        try:
            self._write_batch(items, results)
        except StoreError as exc:
            # The whole batch failed (the managed directory cannot be created, the filesystem
            # cannot be synced): every profile not already settled shares the error.
            for index, result in enumerate(results):
                if not isinstance(result, StoreError):
                    results[index] = exc
        return results

    def _write_batch(
        self, items: Sequence[tuple[str, str, bytes]], results: list[WriteOutcome | StoreError]
    ) -> None:
        staged: list[tuple[int, int, str, Path]] = []
        with contextlib.ExitStack() as stack:
            managed_fd = self._ensure_managed_dir(stack, lock=fcntl.LOCK_SH)
            dir_fds: dict[str, int] = {}
            for index, (namespace, name, content) in enumerate(items):
                try:
                    path = self.profile_path(namespace, name)
                    if namespace not in dir_fds:
                        dir_fds[namespace] = _ensure_dir(
                            self._fs, managed_fd, namespace, path.parent
                        )
                        stack.callback(self._fs.close, dir_fds[namespace])
                    dir_fd = dir_fds[namespace]
                    if not _holds_bytes(self._fs, dir_fd, path, content):
                        staged.append(
                            (index, dir_fd, _stage(self._fs, dir_fd, path, content), path)
                        )
                except (StoreError, ValueError) as exc:
                    results[index] = _as_store_error(exc, self.managed_dir / namespace)
            if not staged:
                return
            try:
                _sync_filesystem(managed_fd, self.managed_dir)
            except StoreError:
                for _, dir_fd, temp, _ in staged:
                    with contextlib.suppress(OSError):
                        self._fs.unlink(temp, dir_fd=dir_fd)
                raise
            for index, dir_fd, temp, path in staged:
                try:
                    self._fs.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                    results[index] = WriteOutcome.WRITTEN
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        self._fs.unlink(temp, dir_fd=dir_fd)
                    results[index] = _io_error(path, "write", exc)
            _sync_filesystem(managed_fd, self.managed_dir)

    def read(self, namespace: str, name: str) -> bytes | None:
        """The profile's bytes, or None if it does not exist."""
        path = self.profile_path(namespace, name)
        with contextlib.ExitStack() as stack:
            fds = self._open_namespace_dir(stack, path)
            return None if fds is None else _read_regular(self._fs, fds[1], path)

    def remove(self, namespace: str, name: str) -> bool:
        """Delete the profile, then its namespace directory if now empty; False if absent.

        A symlink found in place of the profile is removed as well: unlinking never follows it,
        and leaving it would keep runtimes reading whatever it points at under a name the
        cluster no longer has. A directory found there is refused.
        """
        path = self.profile_path(namespace, name)
        with contextlib.ExitStack() as stack:
            fds = self._open_namespace_dir(stack, path, lock=fcntl.LOCK_EX)
            if fds is None:
                return False
            managed_fd, ns_fd = fds
            if not _unlink_profile(self._fs, ns_fd, path):
                return False
            _fsync_dir(self._fs, ns_fd, path.parent)
            _remove_dir_if_empty(self._fs, managed_fd, namespace, path.parent)
        return True

    def list_managed(self) -> frozenset[ProfileKey]:
        """(namespace, name) of every `<label>/<label>.json` regular file; nothing is followed."""
        keys: set[ProfileKey] = set()
        with contextlib.ExitStack() as stack:
            managed_fd = self._open_managed_dir(stack)
            if managed_fd is None:
                return frozenset()
            for namespace in _namespace_dirs(self._fs, managed_fd, self.managed_dir):
                ns_fd = _open_dir_if_still_dir(
                    self._fs, managed_fd, namespace, self.managed_dir / namespace
                )
                if ns_fd is None:
                    continue
                with _closing(self._fs, ns_fd):
                    for entry in _entries(self._fs, ns_fd, self.managed_dir / namespace):
                        name = name_of_file(entry.name)
                        if name is not None and entry.is_file(follow_symlinks=False):
                            keys.add(ProfileKey(namespace, name))
        return frozenset(keys)

    def collect_garbage(self, wanted: AbstractSet[ProfileKey]) -> GcResult:
        """Remove unwanted profiles, crash leftovers and empty namespace dirs from the managed dir.

        Only regular `<label>/<label>.json` files and the store's own temporary files are
        deleted. Anything else inside the managed directory is reported in `unexpected` and left
        alone; symlinks are never followed. Nothing outside `<root>/seccomp-sync` is looked at.
        """
        sweep = _Sweep(self._fs, wanted)
        with contextlib.ExitStack() as stack:
            managed_fd = self._open_managed_dir(stack, lock=fcntl.LOCK_EX)
            if managed_fd is None:
                return GcResult()
            for entry in _entries(self._fs, managed_fd, self.managed_dir):
                entry_path = self.managed_dir / entry.name
                if is_dns_label(entry.name) and entry.is_dir(follow_symlinks=False):
                    sweep.namespace(managed_fd, entry.name, entry_path)
                elif entry.name in _SUBSTORES and entry.is_dir(follow_symlinks=False):
                    continue  # a store of its own (`subdir`), swept by its owner
                else:
                    sweep.unexpected.append(entry_path)
        return sweep.result()

    # --- opening the managed directory -------------------------------------------------------

    def _open_root(self) -> int:
        # Without O_NOFOLLOW: the root is configuration, and an admin may point it anywhere.
        try:
            return self._fs.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise StoreError(
                self.root,
                f"seccomp root {self.root} does not exist; mount the kubelet seccomp directory "
                "there or point --root at it",
            ) from exc
        except NotADirectoryError as exc:
            raise StoreError(
                self.root,
                f"seccomp root {self.root} is not a directory; point --root at the kubelet "
                "seccomp directory",
            ) from exc
        except OSError as exc:
            raise _io_error(self.root, "open", exc) from exc

    def _open_managed_dir(
        self, stack: contextlib.ExitStack, *, lock: int | None = None
    ) -> int | None:
        """The managed directory's fd (closed by `stack`), or None if it does not exist yet."""
        fd = self._walk(ensure=False)
        if fd is not None:
            stack.callback(self._fs.close, fd)
            if lock is not None:
                _lock(fd, lock, self.managed_dir)
        return fd

    def _open_namespace_dir(
        self, stack: contextlib.ExitStack, profile: Path, *, lock: int | None = None
    ) -> tuple[int, int] | None:
        """The fds of the managed directory (locked as asked) and of `profile`'s namespace
        directory, both closed by `stack`; None if either does not exist."""
        managed_fd = self._open_managed_dir(stack, lock=lock)
        if managed_fd is None:
            return None
        ns_fd = _open_dir(self._fs, managed_fd, profile.parent.name, profile.parent)
        if ns_fd is None:
            return None
        stack.callback(self._fs.close, ns_fd)
        return managed_fd, ns_fd

    def _ensure_managed_dir(self, stack: contextlib.ExitStack, *, lock: int) -> int:
        """The managed directory's fd (closed by `stack`), creating the directory if missing."""
        fd = self._walk(ensure=True)
        if fd is None:  # never: _ensure_dir creates what is missing or raises
            raise StoreError(self.managed_dir, f"{self.managed_dir} could not be created")
        stack.callback(self._fs.close, fd)
        _lock(fd, lock, self.managed_dir)
        return fd

    def _walk(self, *, ensure: bool) -> int | None:
        """Open (or create) each directory from the root down to the managed one, each relative
        to its parent and never through a symlink; None if one is missing and not `ensure`."""
        fd = self._open_root()
        path = self.root
        for part in self._path:
            path = path / part
            try:
                child = (
                    _ensure_dir(self._fs, fd, part, path)
                    if ensure
                    else _open_dir(self._fs, fd, part, path)
                )
            finally:
                self._fs.close(fd)
            if child is None:
                return None
            fd = child
        return fd


# --- garbage collection ----------------------------------------------------------------------


class _Sweep:
    """Accumulates one garbage collection's findings."""

    def __init__(self, fs: SystemCalls, wanted: AbstractSet[ProfileKey]) -> None:
        self._fs = fs
        self.wanted = wanted
        self.removed_profiles: list[Path] = []
        self.removed_temp_files: list[Path] = []
        self.removed_dirs: list[Path] = []
        self.unexpected: list[Path] = []

    def namespace(self, managed_fd: int, namespace: str, ns_path: Path) -> None:
        ns_fd = _open_dir_if_still_dir(self._fs, managed_fd, namespace, ns_path)
        if ns_fd is None:
            return
        with _closing(self._fs, ns_fd):
            kept = 0
            removed_any = False
            for entry in _entries(self._fs, ns_fd, ns_path):
                if self._entry(ns_fd, namespace, entry, ns_path / entry.name):
                    removed_any = True
                else:
                    kept += 1
            if removed_any:
                _fsync_dir(self._fs, ns_fd, ns_path)
        if kept == 0 and _remove_dir_if_empty(self._fs, managed_fd, namespace, ns_path):
            self.removed_dirs.append(ns_path)

    def _entry(self, ns_fd: int, namespace: str, entry: os.DirEntry[str], path: Path) -> bool:
        """Handle one entry of a namespace directory; True if it is gone afterwards."""
        if not entry.is_file(follow_symlinks=False):
            self.unexpected.append(path)
            return False
        name = name_of_file(entry.name)
        if name is not None:
            if ProfileKey(namespace, name) in self.wanted:
                return False
            _unlink_if_present(self._fs, ns_fd, entry.name, path)
            self.removed_profiles.append(path)
            return True
        if is_temp_file_name(entry.name):
            # Under the exclusive lock no writer is in flight: this one's writer died.
            _unlink_if_present(self._fs, ns_fd, entry.name, path)
            self.removed_temp_files.append(path)
            return True
        self.unexpected.append(path)
        return False

    def result(self) -> GcResult:
        # Sorted: directory order is arbitrary, and logs and tests want a stable order.
        return GcResult(
            removed_profiles=tuple(sorted(self.removed_profiles)),
            removed_temp_files=tuple(sorted(self.removed_temp_files)),
            removed_dirs=tuple(sorted(self.removed_dirs)),
            unexpected=tuple(sorted(self.unexpected)),
        )


# --- file-descriptor helpers -----------------------------------------------------------------


@contextlib.contextmanager
def _closing(fs: SystemCalls, fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        fs.close(fd)


def _as_store_error(exc: StoreError | ValueError, path: Path) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    return StoreError(path, str(exc), "InvalidName")


def _io_error(path: Path, action: str, exc: OSError) -> StoreError:
    reason = errno.errorcode.get(exc.errno, "IOError") if exc.errno is not None else "IOError"
    return StoreError(path, f"could not {action} {path}: {exc.strerror or exc}", reason)


def _lock(fd: int, operation: int, path: Path) -> None:
    try:
        fcntl.flock(fd, operation)
    except OSError as exc:
        raise _io_error(path, "lock", exc) from exc


def _fsync_dir(fs: SystemCalls, fd: int, path: Path) -> None:
    try:
        fs.fsync(fd)
    except OSError as exc:
        raise _io_error(path, "fsync", exc) from exc


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "directory",
        stat.S_IFREG: "regular file",
        stat.S_IFLNK: "symlink",
        stat.S_IFIFO: "FIFO",
        stat.S_IFSOCK: "socket",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
    }
    return kinds.get(stat.S_IFMT(mode), "special file")


def _unsafe(
    fs: SystemCalls, dir_fd: int, entry: str, path: Path, expected: _Expected
) -> UnsafePathError | None:
    """Explain why `entry` is not the `expected` kind, or None if it is (or has vanished)."""
    try:
        mode = fs.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        try:
            target = f" (-> {fs.readlink(entry, dir_fd=dir_fd)})"
        except OSError:
            target = ""
        return UnsafePathError(
            path,
            f"refusing to follow symlink {path}{target} planted in place of a {expected}; "
            "remove it",
        )
    wanted_ifmt = stat.S_IFDIR if expected == "directory" else stat.S_IFREG
    if stat.S_IFMT(mode) == wanted_ifmt:
        return None
    return UnsafePathError(
        path,
        f"refusing to use {path}: it is a {_kind(mode)} where seccomp-sync keeps a {expected}; "
        "remove it",
    )


def _open_error(
    fs: SystemCalls, dir_fd: int, entry: str, path: Path, expected: _Expected, exc: OSError
) -> StoreError:
    # O_NOFOLLOW reports a symlink as ELOOP, or as ENOTDIR together with O_DIRECTORY.
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
        unsafe = _unsafe(fs, dir_fd, entry, path, expected)
        if unsafe is not None:
            return unsafe
    return _io_error(path, "open", exc)


def _open_dir(fs: SystemCalls, parent_fd: int, entry: str, path: Path) -> int | None:
    """Open a directory below `parent_fd` without following a symlink; None if missing."""
    try:
        return fs.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _open_error(fs, parent_fd, entry, path, "directory", exc) from exc


def _open_dir_if_still_dir(fs: SystemCalls, parent_fd: int, entry: str, path: Path) -> int | None:
    """`_open_dir` for a scan: an entry replaced since it was listed is skipped, not fatal."""
    try:
        return _open_dir(fs, parent_fd, entry, path)
    except UnsafePathError:
        return None


def _ensure_dir(fs: SystemCalls, parent_fd: int, entry: str, path: Path) -> int:
    """Open a directory below `parent_fd` without following a symlink, creating it if missing."""
    fd = _open_dir(fs, parent_fd, entry, path)
    if fd is not None:
        return fd
    try:
        fs.mkdir(entry, DIR_MODE, dir_fd=parent_fd)
        created = True
    except FileExistsError:
        created = False  # another writer won the race; open (and check) what it made
    except OSError as exc:
        raise _io_error(path, "create directory", exc) from exc
    fd = _open_dir(fs, parent_fd, entry, path)
    if fd is None:
        raise StoreError(path, f"directory {path} vanished right after it was created; retry")
    if created:
        try:
            fs.fchmod(fd, DIR_MODE)  # the umask must not decide who can read the profiles
            fs.fsync(parent_fd)  # make the new directory entry itself durable
        except OSError as exc:
            fs.close(fd)
            raise _io_error(path, "set up directory", exc) from exc
    return fd


def _entries(fs: SystemCalls, dir_fd: int, path: Path) -> list[os.DirEntry[str]]:
    try:
        # Exhausted, the iterator closes its descriptor.
        return list(fs.scandir(dir_fd))
    except OSError as exc:
        raise _io_error(path, "list", exc) from exc


def _namespace_dirs(fs: SystemCalls, managed_fd: int, managed_path: Path) -> list[str]:
    return [
        entry.name
        for entry in _entries(fs, managed_fd, managed_path)
        if is_dns_label(entry.name) and entry.is_dir(follow_symlinks=False)
    ]


# --- profile-file helpers --------------------------------------------------------------------


def _read_regular(
    fs: SystemCalls, dir_fd: int, path: Path, limit: int | None = None
) -> bytes | None:
    """The bytes of regular file `path.name` in `dir_fd` (at most `limit`); None if missing."""
    try:
        fd = fs.open(path.name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _open_error(fs, dir_fd, path.name, path, "regular file", exc) from exc
    with _closing(fs, fd):
        try:
            mode = fs.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise UnsafePathError(
                    path,
                    f"refusing to read {path}: it is a {_kind(mode)} where seccomp-sync keeps a "
                    "regular file; remove it",
                )
            return _read_all(fs, fd, limit)
        except OSError as exc:
            raise _io_error(path, "read", exc) from exc


def _read_all(fs: SystemCalls, fd: int, limit: int | None) -> bytes:
    # One read covers the usual case; a file that grows meanwhile is still read to the end.
    chunks: list[bytes] = []
    total = 0
    want = max(fs.fstat(fd).st_size + 1, _READ_CHUNK)
    while limit is None or total < limit:
        chunk = fs.read(fd, want if limit is None else min(want, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _holds_bytes(fs: SystemCalls, dir_fd: int, path: Path, content: bytes) -> bool:
    """True if `path.name` is a regular file holding exactly `content`; refuses anything else."""
    try:
        st = fs.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _io_error(path, "inspect", exc) from exc
    if not stat.S_ISREG(st.st_mode):
        unsafe = _unsafe(fs, dir_fd, path.name, path, "regular file")
        if unsafe is not None:
            raise unsafe
        return False  # replaced by a regular file or removed since the stat: just rewrite
    if st.st_size != len(content):
        return False
    # One byte past the expected length tells a file that grew since the stat apart.
    return _read_regular(fs, dir_fd, path, limit=len(content) + 1) == content


def _create_temp(fs: SystemCalls, dir_fd: int, path: Path) -> tuple[str, int]:
    name = path.name.removesuffix(PROFILE_SUFFIX)
    for _ in range(_TEMP_CREATE_ATTEMPTS):
        temp = temp_file_name(name)
        try:
            return temp, fs.open(temp, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            # Named after the profile, not the random temp name: one fault, one message.
            raise _io_error(path, "create a temporary file for", exc) from exc
    raise StoreError(path, f"could not create a temporary file next to {path}; retry")


def _write_all(fs: SystemCalls, fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[fs.write(fd, view) :]


def _stage(fs: SystemCalls, dir_fd: int, path: Path, content: bytes) -> str:
    """A complete temp file next to `path` (not yet synced); returns its name."""
    temp, fd = _create_temp(fs, dir_fd, path)
    try:
        with _closing(fs, fd):
            fs.fchmod(fd, FILE_MODE)
            _write_all(fs, fd, content)
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.unlink(temp, dir_fd=dir_fd)
        raise _io_error(path, "write", exc) from exc
    return temp


_LIBC = ctypes.CDLL(None, use_errno=True)


def _sync_filesystem(fd: int, path: Path) -> None:
    """syncfs(2): write back everything on the filesystem holding `fd`, in one journal commit."""
    if _LIBC.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise _io_error(path, "sync", OSError(err, os.strerror(err)))


def _replace(fs: SystemCalls, dir_fd: int, path: Path, content: bytes) -> None:
    """Write `content` to a temp file, fsync it, rename it over `path.name`, fsync the dir."""
    temp, fd = _create_temp(fs, dir_fd, path)
    try:
        with _closing(fs, fd):
            fs.fchmod(fd, FILE_MODE)  # runtimes may not run as root; the umask must not matter
            _write_all(fs, fd, content)
            fs.fsync(fd)
        # A symlink planted since `_holds_bytes` looked is replaced itself, never followed.
        fs.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            fs.unlink(temp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise _io_error(path, "write", exc) from exc
        raise
    _fsync_dir(fs, dir_fd, path.parent)


def _unlink_profile(fs: SystemCalls, dir_fd: int, path: Path) -> bool:
    """Unlink `path.name` (a file or a symlink, never followed); False if it was absent."""
    try:
        mode = fs.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _io_error(path, "inspect", exc) from exc
    if stat.S_ISDIR(mode):
        raise UnsafePathError(
            path,
            f"refusing to remove {path}: it is a directory where seccomp-sync keeps a regular "
            "file; remove it by hand",
        )
    return _unlink_if_present(fs, dir_fd, path.name, path)


def _unlink_if_present(fs: SystemCalls, dir_fd: int, entry: str, path: Path) -> bool:
    try:
        fs.unlink(entry, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _io_error(path, "remove", exc) from exc
    return True


def _remove_dir_if_empty(fs: SystemCalls, parent_fd: int, entry: str, path: Path) -> bool:
    try:
        fs.rmdir(entry, dir_fd=parent_fd)
    except OSError as exc:
        # Not empty, already gone, or swapped for a non-directory (rmdir never follows a link).
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.ENOTDIR):
            return False
        raise _io_error(path, "remove directory", exc) from exc
    _fsync_dir(fs, parent_fd, path.parent)
    return True


class MemoryStore:
    """A `Store` in a dict, for tests of decisions that need no disk (and meet no faults)."""

    def __init__(self) -> None:
        self.files: dict[ProfileKey, bytes] = {}

    def read(self, namespace: str, name: str) -> bytes | None:
        return self.files.get(ProfileKey(namespace, name))

    def write(self, namespace: str, name: str, content: bytes) -> WriteOutcome:
        key = ProfileKey(namespace, name)
        if self.files.get(key) == content:
            return WriteOutcome.UNCHANGED
        self.files[key] = content
        return WriteOutcome.WRITTEN

    def write_many(
        self, items: Sequence[tuple[str, str, bytes]]
    ) -> list[WriteOutcome | StoreError]:
        return [self.write(*item) for item in items]

    def remove(self, namespace: str, name: str) -> bool:
        return self.files.pop(ProfileKey(namespace, name), None) is not None

    def collect_garbage(self, wanted: AbstractSet[ProfileKey]) -> GcResult:
        gone = sorted(self.files.keys() - wanted)
        for key in gone:
            del self.files[key]
        return GcResult(tuple(Path(MANAGED_DIR_NAME, k.namespace, file_name(k.name)) for k in gone))
