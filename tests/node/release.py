"""A previous release of seccomp-sync, for upgrade and rollback tests: the tree of a pinned commit
(``git archive``) and its agent image, built by that tree's own scripts/build-image.

"Previous release" means what users run today: that commit's deploy/ manifests (applied through
that tree's own tests/node/overlay and agent_deploy.py) and the image its own Dockerfile makes.
Nothing of the current tree is mixed in.

Both are cached under ``~/.cache/seccomp-sync/releases/<commit>`` (the tree and ``agent.tar``):
scripts/build-image keeps only its three newest archives, and this one must not be evicted by the
next build of the current tree. A first build costs about 75 s once the Python base is cached.

The image is imported into a node under the tag ``release-<short commit>``, never under the tag
the build gave it (a hash of its inputs): when the agent did not change between the two commits
both builds have the same hash, and an upgrade to "the same image" would roll nothing out.

    python3 -m tests.node.release [COMMIT]   # builds (or finds) it; prints the tree and archive
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The base of the upgrade work: today's main. Moving it to the last tag once releases are tagged
# makes "the previous release" literal.
PREVIOUS_RELEASE = "f56b236"
IMAGE_REPOSITORY = "localhost/seccomp-sync/agent"
_OUTPUT_TAIL_LINES = 60


class ReleaseUnavailableError(RuntimeError):
    """The commit is not in this clone (a shallow or partial one): the tests skip, saying so."""


class ReleaseBuildError(RuntimeError):
    """The commit is there, but its image could not be built: the tests fail with the output."""


@dataclass(frozen=True)
class Release:
    commit: str  # the full hash
    tree: Path  # the exported tree: its deploy/, tests/node/overlay and agent_deploy.py
    archive: Path  # its agent image, as an OCI archive

    @property
    def tag(self) -> str:
        return f"release-{self.commit[:7]}"

    @property
    def image(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.tag}"

    def built_name(self) -> str:
        """The name the build gave the image (what ``ctr images import`` creates)."""
        with tarfile.open(self.archive) as outer:
            member = outer.extractfile("index.json")
            assert member is not None
            index = json.loads(member.read())
        annotations = index["manifests"][0]["annotations"]
        # buildah writes the full name as the OCI ref name; containerd's own key wins if set.
        name: str = annotations.get(
            "io.containerd.image.name", annotations["org.opencontainers.image.ref.name"]
        )
        return name

    def kustomization(self, cluster_dir: Path, work_dir: Path) -> Path:
        """That tree's own agent_deploy.py writes its kustomization (its own free ports)."""
        result = subprocess.run(
            [sys.executable, "-m", "tests.node.agent_deploy", str(cluster_dir), str(work_dir),
             self.tag],
            cwd=self.tree, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ReleaseBuildError(
                f"{self.commit[:7]}'s tests/node/agent_deploy.py failed:\n{result.stderr}"
            )
        return Path(result.stdout.strip())


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "seccomp-sync" / "releases"


def resolve(commit: str) -> str:
    """The full hash of ``commit`` here; ReleaseUnavailableError when the clone lacks it."""
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ReleaseUnavailableError(
            f"this clone has no commit {commit} (the previous release the upgrade tests install); "
            "fetch it (`git fetch --unshallow`) to run them"
        )
    return result.stdout.strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def previous_release(commit: str = PREVIOUS_RELEASE) -> Release:
    """The release at ``commit``, exported and built once (cached); see the module's docstring."""
    full = resolve(commit)
    out = cache_root() / full
    out.mkdir(parents=True, exist_ok=True)
    release = Release(commit=full, tree=out / "tree", archive=out / "agent.tar")
    with _locked(out / ".lock"):
        if release.archive.is_file() and (release.tree / "deploy").is_dir():
            return release
        _export(full, release.tree)
        built = _build(release.tree)
        shutil.copyfile(built, release.archive.with_suffix(".tmp"))
        release.archive.with_suffix(".tmp").rename(release.archive)
    return release


def _export(commit: str, tree: Path) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=120)


def _build(tree: Path) -> Path:
    """That tree's own scripts/build-image; the archive it printed."""
    result = subprocess.run(
        [str(tree / "scripts" / "build-image")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-_OUTPUT_TAIL_LINES:])
        raise ReleaseBuildError(f"{tree}/scripts/build-image exited {result.returncode}\n{tail}")
    return Path(result.stdout.strip())


def main(argv: list[str]) -> int:
    release = previous_release(*argv[:1])
    print(f"{release.tree}\n{release.archive}\n{release.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
