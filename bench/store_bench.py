"""Time `ProfileStore` writes: a changed profile (with its fsyncs) and an unchanged one (a no-op).

Run from the repository root: `python -m bench.store_bench [--count N] [--size BYTES] [--dir D]`.
By default it measures in a temporary directory under $TMPDIR and, when present, under /dev/shm:
fsync is all but free on tmpfs, so the second figure is the cost of the store's own work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.node.store import ProfileStore, WriteOutcome

NAMESPACE = "bench"
NAME = "profile"


def filesystem_type(path: Path) -> str:
    """The type of the filesystem `path` is on, from the longest matching mount point."""
    best, fs_type = "", "unknown"
    resolved = str(path.resolve())
    with Path("/proc/self/mounts").open() as mounts:
        for line in mounts:
            fields = line.split()
            mount_point = fields[1]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, fs_type = mount_point, fields[2]
    return fs_type


def contents(size: int) -> tuple[bytes, bytes]:
    """Two profiles of `size` bytes that differ only in their last byte, as a worst case."""
    body = b"x" * (size - 1)
    return body + b"a", body + b"b"


def per_call_us(count: int, call: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(count):
        call(i)
    return (time.perf_counter() - start) / count * 1e6


def bench_dir(directory: Path, count: int, size: int) -> None:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = ProfileStore(Path(tmp))
        a, b = contents(size)
        store.write(NAMESPACE, NAME, a)

        def changed(i: int) -> None:
            outcome = store.write(NAMESPACE, NAME, b if i % 2 == 0 else a)
            assert outcome is WriteOutcome.WRITTEN

        def unchanged(_: int) -> None:
            assert store.write(NAMESPACE, NAME, a) is WriteOutcome.UNCHANGED

        changed_us = per_call_us(count, changed)
        store.write(NAMESPACE, NAME, a)
        unchanged_us = per_call_us(count, unchanged)
        read_us = per_call_us(count, lambda _: store.read(NAMESPACE, NAME))

    print(f"{directory} ({filesystem_type(directory)}), {count} calls, {size} bytes:")
    print(f"  changed write (temp file, fsync, rename, fsync dir): {changed_us:9.1f} us/write")
    print(f"  unchanged write (compare only, no-op):               {unchanged_us:9.1f} us/write")
    print(f"  read:                                                {read_us:9.1f} us/read")


def default_dirs() -> list[Path]:
    dirs = [Path(tempfile.gettempdir())]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        dirs.append(shm)
    return dirs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="calls per measurement")
    parser.add_argument("--size", type=int, default=20 * 1024, help="profile size in bytes")
    parser.add_argument("--dir", type=Path, action="append", help="where to measure (repeatable)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.count < 1:
        parser.error("--count and --size must be positive")
    for directory in args.dir or default_dirs():
        bench_dir(directory, args.count, args.size)


if __name__ == "__main__":
    main()
