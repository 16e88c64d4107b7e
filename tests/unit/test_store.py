"""The host store on a real disk: atomic, durable, symlink-safe writes and garbage collection."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.node.store import (
    GcResult,
    ProfileStore,
    StoreError,
    UnsafePathError,
    WriteOutcome,
    is_temp_file_name,
    temp_file_name,
)

REPO = Path(__file__).resolve().parents[2]
OLD = b'{\n  "defaultAction": "SCMP_ACT_ERRNO"\n}\n'
NEW = b'{\n  "defaultAction": "SCMP_ACT_LOG"\n}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> ProfileStore:
    return ProfileStore(root)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def managed(root: Path) -> Path:
    return root / "seccomp-sync"


def temp_files(directory: Path) -> list[str]:
    return [entry.name for entry in directory.iterdir() if is_temp_file_name(entry.name)]


def tree(directory: Path) -> dict[str, bytes | str]:
    """Every entry below `directory` without following links: file bytes, link targets, dirs."""
    found: dict[str, bytes | str] = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            found[key] = f"-> {path.readlink()}"
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = path.read_bytes()
    return found


# --- write -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("strict_umask")
def test_write_creates_the_file_with_exact_bytes_and_readable_modes(
    store: ProfileStore, root: Path
) -> None:
    assert store.write("team-a", "web", OLD) is WriteOutcome.WRITTEN

    path = root / "seccomp-sync" / "team-a" / "web.json"
    assert path.read_bytes() == OLD
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(managed(root).stat().st_mode) == 0o755
    assert store.profile_path("team-a", "web") == path
    assert store.read("team-a", "web") == OLD


def test_same_bytes_again_is_unchanged_and_touches_nothing(store: ProfileStore, root: Path) -> None:
    store.write("team-a", "web", OLD)
    path = store.profile_path("team-a", "web")
    before, dir_before = path.stat(), path.parent.stat()

    assert store.write("team-a", "web", OLD) is WriteOutcome.UNCHANGED

    after, dir_after = path.stat(), path.parent.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert dir_after.st_mtime_ns == dir_before.st_mtime_ns  # no temp file came and went
    assert path.read_bytes() == OLD


def test_new_bytes_replace_the_file_with_a_new_inode_and_leave_no_temp_files(
    store: ProfileStore,
) -> None:
    store.write("team-a", "web", OLD)
    path = store.profile_path("team-a", "web")
    # Same length as NEW, one byte different: the comparison must read bytes, not just sizes.
    newer = NEW.replace(b"LOG", b"LOX")

    for previous, content in [(OLD, NEW), (NEW, newer)]:
        # An open reader keeps the old inode alive (so it cannot be reused) and shows that the
        # old file was replaced, not rewritten in place.
        with path.open("rb") as reader:
            old_inode = os.fstat(reader.fileno()).st_ino
            assert store.write("team-a", "web", content) is WriteOutcome.WRITTEN
            assert path.stat().st_ino != old_inode
            assert reader.read() == previous
        assert path.read_bytes() == content

    assert sorted(p.name for p in path.parent.iterdir()) == ["web.json"]


def test_a_root_that_is_a_symlink_to_a_directory_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    link = tmp_path / "root-link"
    link.symlink_to(real)

    store = ProfileStore(link)
    assert store.write("team-a", "web", OLD) is WriteOutcome.WRITTEN
    assert (real / "seccomp-sync" / "team-a" / "web.json").read_bytes() == OLD
    assert store.list_managed() == {("team-a", "web")}


def test_a_missing_root_is_reported_not_created(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "absent")
    with pytest.raises(StoreError, match="does not exist") as caught:
        store.write("team-a", "web", OLD)
    assert caught.value.path == tmp_path / "absent"
    assert not (tmp_path / "absent").exists()


# --- symlinks and other planted entries ------------------------------------------------------


def test_symlink_in_place_of_the_namespace_dir_is_refused(
    store: ProfileStore, root: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    managed(root).mkdir()
    (managed(root) / "team-a").symlink_to(elsewhere)

    with pytest.raises(UnsafePathError, match="symlink") as caught:
        store.write("team-a", "web", OLD)

    assert caught.value.path == managed(root) / "team-a"
    assert str(managed(root) / "team-a") in str(caught.value)
    assert "remove it" in str(caught.value)
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(UnsafePathError):
        store.read("team-a", "web")
    with pytest.raises(UnsafePathError):
        store.remove("team-a", "web")


def test_symlink_in_place_of_the_managed_dir_is_refused(
    store: ProfileStore, root: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    managed(root).symlink_to(elsewhere)

    with pytest.raises(UnsafePathError, match="symlink") as caught:
        store.write("team-a", "web", OLD)

    assert caught.value.path == managed(root)
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(UnsafePathError):
        store.list_managed()
    with pytest.raises(UnsafePathError):
        store.collect_garbage(set())


def test_symlink_in_place_of_the_profile_is_refused_and_its_target_untouched(
    store: ProfileStore, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"host secrets\n")
    store.write("team-a", "web", OLD)
    path = store.profile_path("team-a", "web")
    path.unlink()
    path.symlink_to(victim)

    with pytest.raises(UnsafePathError, match="symlink") as caught:
        store.write("team-a", "web", NEW)
    assert caught.value.path == path
    with pytest.raises(UnsafePathError):
        store.read("team-a", "web")

    assert victim.read_bytes() == b"host secrets\n"
    assert path.readlink() == victim
    assert temp_files(path.parent) == []


def test_a_regular_file_in_place_of_the_namespace_dir_is_refused(
    store: ProfileStore, root: Path
) -> None:
    managed(root).mkdir()
    (managed(root) / "team-a").write_bytes(b"x")

    with pytest.raises(UnsafePathError, match="regular file where seccomp-sync keeps a directory"):
        store.write("team-a", "web", OLD)


@pytest.mark.timeout(10)
def test_a_fifo_or_directory_in_place_of_the_profile_is_refused(store: ProfileStore) -> None:
    store.write("team-a", "web", OLD)
    fifo = store.profile_path("team-a", "fifo")
    os.mkfifo(fifo)
    store.profile_path("team-a", "dir").mkdir()

    # Neither call may block on the FIFO waiting for a writer.
    with pytest.raises(UnsafePathError, match="FIFO"):
        store.write("team-a", "fifo", OLD)
    with pytest.raises(UnsafePathError, match="FIFO"):
        store.read("team-a", "fifo")
    with pytest.raises(UnsafePathError, match="directory where seccomp-sync keeps a regular"):
        store.write("team-a", "dir", OLD)
    with pytest.raises(UnsafePathError):
        store.remove("team-a", "dir")
    assert temp_files(fifo.parent) == []


# --- read and remove -------------------------------------------------------------------------


def test_read_of_anything_missing_is_none_and_creates_nothing(
    store: ProfileStore, root: Path
) -> None:
    assert store.read("team-a", "web") is None
    assert not managed(root).exists()
    store.write("team-a", "web", OLD)
    assert store.read("team-b", "web") is None
    assert store.read("team-a", "api") is None


def test_remove_deletes_the_file_and_the_namespace_dir_once_empty(store: ProfileStore) -> None:
    store.write("team-a", "web", OLD)
    store.write("team-a", "api", OLD)
    ns_dir = store.profile_path("team-a", "web").parent

    assert store.remove("team-a", "web") is True
    assert sorted(p.name for p in ns_dir.iterdir()) == ["api.json"]

    assert store.remove("team-a", "api") is True
    assert not ns_dir.exists()
    assert store.managed_dir.is_dir()  # the managed directory itself stays


def test_remove_of_something_missing_is_a_no_op_returning_false(
    store: ProfileStore, root: Path
) -> None:
    assert store.remove("team-a", "web") is False
    assert not managed(root).exists()
    store.write("team-a", "api", OLD)
    assert store.remove("team-a", "web") is False
    assert store.remove("team-b", "web") is False
    assert store.read("team-a", "api") == OLD


def test_remove_deletes_a_planted_symlink_but_never_its_target(
    store: ProfileStore, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"host secrets\n")
    store.write("team-a", "api", OLD)
    path = store.profile_path("team-a", "web")
    path.symlink_to(victim)

    assert store.remove("team-a", "web") is True

    assert not path.is_symlink()
    assert victim.read_bytes() == b"host secrets\n"


# --- listing and garbage collection ----------------------------------------------------------


def test_list_managed_reports_only_regular_profile_files(
    store: ProfileStore, root: Path, tmp_path: Path
) -> None:
    store.write("team-a", "web", OLD)
    store.write("team-b", "api", OLD)
    ns_dir = managed(root) / "team-a"
    (ns_dir / temp_file_name("db")).write_bytes(b"{")
    (ns_dir / "link.json").symlink_to(tmp_path)
    (ns_dir / "Upper.json").write_bytes(OLD)
    (ns_dir / "notes.txt").write_bytes(b"")
    (ns_dir / "nested.json").mkdir()
    (managed(root) / "team-c").symlink_to(ns_dir)
    (managed(root) / "Bad_NS").mkdir()
    (managed(root) / "Bad_NS" / "web.json").write_bytes(OLD)

    assert store.list_managed() == {("team-a", "web"), ("team-b", "api")}


def test_gc_removes_only_unwanted_profiles_and_crash_leftovers(
    store: ProfileStore, root: Path, tmp_path: Path
) -> None:
    store.write("team-a", "keep", OLD)
    store.write("team-a", "drop", OLD)
    store.write("team-b", "drop", OLD)
    leftover = managed(root) / "team-a" / temp_file_name("keep")
    leftover.write_bytes(OLD[:5])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.json").write_bytes(b"not ours\n")
    foreign_link = managed(root) / "team-a" / "link.json"
    foreign_link.symlink_to(outside / "target.json")
    (managed(root) / "team-c").symlink_to(outside)
    (root / "other.json").write_bytes(b"foreign\n")
    (root / "custom").mkdir()
    (root / "custom" / "x.json").write_bytes(b"foreign\n")
    foreign_before = {k: v for k, v in tree(root).items() if not k.startswith("seccomp-sync")}

    result = store.collect_garbage({("team-a", "keep"), ("team-z", "absent")})

    assert result == GcResult(
        removed_profiles=(
            managed(root) / "team-a" / "drop.json",
            managed(root) / "team-b" / "drop.json",
        ),
        removed_temp_files=(leftover,),
        removed_dirs=(managed(root) / "team-b",),
        unexpected=(foreign_link, managed(root) / "team-c"),
    )
    assert store.list_managed() == {("team-a", "keep")}
    assert store.read("team-a", "keep") == OLD
    assert (outside / "target.json").read_bytes() == b"not ours\n"
    assert foreign_link.is_symlink()
    assert {k: v for k, v in tree(root).items() if not k.startswith("seccomp-sync")} == (
        foreign_before
    )
    # A second pass has nothing left to do: collection is idempotent.
    again = store.collect_garbage({("team-a", "keep")})
    assert (again.removed_profiles, again.removed_temp_files, again.removed_dirs) == ((), (), ())


def test_gc_leaves_unknown_files_and_their_namespace_dir(store: ProfileStore, root: Path) -> None:
    store.write("team-a", "drop", OLD)
    ns_dir = managed(root) / "team-a"
    look_alike = ns_dir / ".drop.json.tmp-not-ours"
    look_alike.write_bytes(b"")
    (ns_dir / "sub").mkdir()
    (ns_dir / "sub" / "deep.json").write_bytes(OLD)

    result = store.collect_garbage(set())

    assert result.removed_profiles == (ns_dir / "drop.json",)
    assert result.removed_dirs == ()
    assert result.unexpected == (look_alike, ns_dir / "sub")
    assert (ns_dir / "sub" / "deep.json").read_bytes() == OLD


def test_gc_without_a_managed_dir_does_nothing(store: ProfileStore, root: Path) -> None:
    (root / "other.json").write_bytes(b"foreign\n")
    assert store.collect_garbage(set()) == GcResult()
    assert store.list_managed() == frozenset()
    assert tree(root) == {"other.json": b"foreign\n"}


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "Upper", "", "-a", "a-", "a\n", "a" * 64])
def test_invalid_names_are_rejected_before_any_disk_access(
    store: ProfileStore, root: Path, bad: str
) -> None:
    for namespace, name in [(bad, "web"), ("team-a", bad)]:
        with pytest.raises(ValueError, match="DNS-1123 label"):
            store.write(namespace, name, OLD)
        with pytest.raises(ValueError, match="DNS-1123 label"):
            store.read(namespace, name)
        with pytest.raises(ValueError, match="DNS-1123 label"):
            store.remove(namespace, name)
        with pytest.raises(ValueError, match="DNS-1123 label"):
            store.profile_path(namespace, name)
    assert list(root.iterdir()) == []


def test_the_longest_valid_names_fit(store: ProfileStore) -> None:
    label = "a" * 63
    assert store.write(label, label, OLD) is WriteOutcome.WRITTEN
    assert store.read(label, label) == OLD


# --- crashes and concurrency -----------------------------------------------------------------


def test_a_write_interrupted_before_its_rename_leaves_the_old_profile_intact(
    store: ProfileStore, root: Path
) -> None:
    store.write("team-a", "web", OLD)
    # What a writer killed after writing half its temp file leaves behind.
    leftover = managed(root) / "team-a" / temp_file_name("web")
    leftover.write_bytes(NEW[: len(NEW) // 2])

    assert store.read("team-a", "web") == OLD
    assert store.list_managed() == {("team-a", "web")}
    assert store.write("team-a", "web", OLD) is WriteOutcome.UNCHANGED

    result = store.collect_garbage({("team-a", "web")})
    assert result.removed_temp_files == (leftover,)
    assert not leftover.exists()
    assert store.read("team-a", "web") == OLD


_WRITER = """
import sys
from pathlib import Path
from agent.node.store import ProfileStore

store = ProfileStore(Path(sys.argv[1]))
versions = [bytes([65 + i]) * (50_000 + 30_011 * i) for i in range(4)]
store.write("team-a", "web", versions[0])
print("ready", flush=True)
i = 0
while True:
    i += 1
    store.write("team-a", "web", versions[i % len(versions)])
"""


@pytest.mark.timeout(60)
def test_sigkill_at_random_points_never_leaves_a_partial_profile(
    store: ProfileStore, root: Path
) -> None:
    versions = {bytes([65 + i]) * (50_000 + 30_011 * i) for i in range(4)}
    rng = random.Random()
    deadline = time.monotonic() + 2.0
    rounds = 0
    while rounds < 3 or time.monotonic() < deadline:
        rounds += 1
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            # Readers racing the writer only ever see complete versions, too.
            until = time.monotonic() + rng.uniform(0.0, 0.08)
            while time.monotonic() < until:
                assert store.read("team-a", "web") in versions
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert store.read("team-a", "web") in versions

    store.collect_garbage({("team-a", "web")})
    assert sorted(p.name for p in (managed(root) / "team-a").iterdir()) == ["web.json"]
    assert store.read("team-a", "web") in versions


@pytest.mark.timeout(60)
def test_concurrent_writes_removes_and_gc_do_not_trip_over_each_other(
    store: ProfileStore,
) -> None:
    # Without the directory lock, GC would delete in-flight temp files and `remove` would
    # rmdir a namespace directory another writer is about to create a file in.
    errors: list[BaseException] = []
    stop = time.monotonic() + 0.7
    names = [f"p{i}" for i in range(6)]

    def churn(name: str) -> None:
        try:
            while time.monotonic() < stop:
                store.write("shared", name, OLD)
                store.write("shared", name, NEW)
                store.remove("shared", name)
        except BaseException as exc:
            errors.append(exc)

    def collect() -> None:
        try:
            while time.monotonic() < stop:
                store.collect_garbage({("shared", name) for name in names})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(name,)) for name in names]
    threads.append(threading.Thread(target=collect))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert store.list_managed() == frozenset()
    assert not (store.managed_dir / "shared").exists()


def test_write_many_is_per_item_atomic_and_isolates_failures(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.write("a", "same", b"same\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "seccomp-sync" / "evil").symlink_to(outside)
    results = store.write_many(
        [
            ("a", "one", b"1\n"),
            ("a", "same", b"same\n"),
            ("evil", "x", b"x\n"),
            ("b", "two", b"2\n"),
        ]
    )
    assert results[0] is WriteOutcome.WRITTEN
    assert results[1] is WriteOutcome.UNCHANGED
    assert isinstance(results[2], UnsafePathError)
    assert results[3] is WriteOutcome.WRITTEN
    assert store.read("a", "one") == b"1\n"
    assert store.read("b", "two") == b"2\n"
    assert list(outside.iterdir()) == []
    assert stat.S_IMODE((tmp_path / "seccomp-sync" / "b" / "two.json").stat().st_mode) == 0o644
    leftovers = [p for p in (tmp_path / "seccomp-sync").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
