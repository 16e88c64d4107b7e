"""A runc bundle (a `runc spec` config.json and a rootfs) and runs of it as containerd would:
the pod's Localhost profile file as the spec's linux.seccomp, the CRI's annotations. Shared by
the runtime tests and bench/recording_bench.py; everything here runs Debian's real runc."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

Config = dict[str, Any]


def cri_annotations(namespace: str, pod: str, pod_uid: str, container: str) -> dict[str, str]:
    """What containerd's CRI puts on a pod container's spec (the recorder reads these)."""
    return {
        "io.kubernetes.cri.sandbox-namespace": namespace,
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-uid": pod_uid,
        "io.kubernetes.cri.container-name": container,
    }


class RuncBundle:
    """One bundle directory; `configure` rewrites its config.json for the next run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"

    @classmethod
    def create(
        cls, path: Path, directories: Iterable[str] = ("tmp",), runc: str = "runc"
    ) -> RuncBundle:
        """`runc spec` in ``path``, with these directories under the rootfs."""
        bundle = cls(path)
        for directory in directories:
            (bundle.rootfs / directory).mkdir(parents=True, exist_ok=True)
        bundle.rootfs.mkdir(parents=True, exist_ok=True)
        subprocess.run([runc, "spec"], cwd=path, check=True)
        return bundle

    def add(self, source: str | Path, destination: str) -> None:
        """Copy a host file (a static busybox, say) to ``destination`` in the rootfs."""
        target = self.rootfs / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)

    def compile(
        self, c_source: str, destination: str, gcc: str = "gcc", optimize: str = "-O1"
    ) -> None:
        """A static program from C source, at ``destination`` in the rootfs."""
        source = self.path / (Path(destination).name + ".c")
        source.write_text(c_source)
        target = self.rootfs / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([gcc, "-static", optimize, "-o", str(target), str(source)], check=True)

    def empty_tmp(self) -> None:
        """Each run starts with an empty /tmp (a probe that made a directory made it here)."""
        shutil.rmtree(self.rootfs / "tmp", ignore_errors=True)
        (self.rootfs / "tmp").mkdir()

    def configure(
        self,
        args: list[str],
        seccomp: Mapping[str, Any] | None,
        *,
        annotations: Mapping[str, str] | None = None,
        writable_root: bool = False,
        adjust: Callable[[Config], None] | None = None,
    ) -> None:
        """The next run's process and filter (None: no seccomp); ``adjust`` edits the rest."""
        config: Config = json.loads((self.path / "config.json").read_text())
        config["process"]["args"] = args
        config["process"]["terminal"] = False
        if writable_root:
            config["root"]["readonly"] = False
        if annotations is not None:
            config["annotations"] = dict(annotations)
        if seccomp is None:
            config["linux"].pop("seccomp", None)
        else:
            config["linux"]["seccomp"] = dict(seccomp)
        if adjust is not None:
            adjust(config)
        (self.path / "config.json").write_text(json.dumps(config))

    def command(self, prefix: str) -> list[str]:
        """`runc run` under a fresh container id."""
        return ["runc", "run", f"{prefix}-{uuid.uuid4().hex[:8]}"]

    def run(self, prefix: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the configured process to its end; its output and exit status, unchecked."""
        return subprocess.run(
            self.command(prefix), cwd=self.path, capture_output=True, text=True, timeout=timeout
        )

    def start(self, prefix: str) -> subprocess.Popen[str]:
        """Start the configured process; the caller waits for it."""
        return subprocess.Popen(
            self.command(prefix),
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
