"""`seccomp-agent test` and `record` on real programs (Debian's coreutils, python), and runc.

No cluster: these run local commands under real seccomp filters. The runc tests check that a
recorded profile lets the same program start and run in a real container, and that taking one
recorded syscall out makes `test` report exactly that syscall.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.tools import require_tool
from tests.runc_bundle import RuncBundle

AGENT = [sys.executable, "-m", "agent"]
SETPRIV_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PYTHON = "/usr/bin/python3"  # Debian's, the same inside the runc container (bind-mounted /usr)


REPO = Path(__file__).resolve().parents[2]


def agent(*args: str, as_nobody: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI; with `as_nobody` (an interpreter command uid 65534 can run), as that user."""
    command = [*AGENT, *args] if as_nobody is None else [*SETPRIV_NOBODY, *as_nobody, *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *site.getsitepackages()])},
    )


def interpreter_for_nobody() -> list[str] | None:
    """A Python uid 65534 can run, with this one's packages: sys.executable, or, when that
    lives where the user cannot go (a virtualenv on an interpreter under /root), the system's
    python3 of the same version (site-packages come through PYTHONPATH)."""
    nested = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True)"
    version = f"import sys; assert sys.version_info[:2] == {tuple(sys.version_info[:2])}"
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [*SETPRIV_NOBODY, python, "-c", f"{version}; {nested}"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return [python, "-m", "agent"]
    return None


def profile_file(tmp_path: Path, spec: dict[str, Any], name: str = "p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "seccompsync.io/v1beta1",
                "kind": "SeccompProfile",
                "metadata": {"name": name, "namespace": "t"},
                "spec": spec,
            }
        )
    )
    path.chmod(0o644)
    return path


DENY_MKDIR = {
    "baseProfileName": "runtime/default@moby-2026-06-30",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


def observe(
    profile: Path, argv: list[str], as_nobody: list[str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`seccomp-agent test` in observe mode; the JSON report (the command keeps stdout)."""
    report = profile.parent / f"report-{uuid.uuid4().hex[:6]}.json"
    result = agent(
        "test",
        "--output",
        "json",
        "--report",
        str(report),
        str(profile),
        "--",
        *argv,
        as_nobody=as_nobody,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def denied(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["syscall"]: d for d in report["denied"]}


def test_observe_reports_each_denial_and_lets_the_program_finish(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, DENY_MKDIR)
    targets = [str(tmp_path / name) for name in ("a", "b", "c")]
    result, report = observe(profile, ["mkdir", *targets])
    assert result.returncode == 1, result.stderr  # something would be denied
    assert all(Path(t).is_dir() for t in targets)  # observed, not enforced: mkdir ran to the end
    mkdir = denied(report)["mkdir"]
    assert mkdir["count"] == 3
    assert mkdir["deniedBy"] == "flattened.syscalls[0]"
    assert mkdir["action"] == "SCMP_ACT_ERRNO(13)"
    assert report["exitCode"] == 0


def test_enforce_runs_the_program_under_the_profile(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, DENY_MKDIR)
    result = agent("test", "--enforce", str(profile), "--", "mkdir", str(tmp_path / "x"))
    assert result.returncode == 1  # mkdir's own status: it failed
    assert "Permission denied" in result.stderr  # EACCES, the profile's errno
    assert not (tmp_path / "x").exists()


def test_nothing_denied_exits_zero(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, DENY_MKDIR)
    result = agent("test", str(profile), "--", "ls", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "would deny nothing" in result.stderr


def test_threads_and_child_processes_are_followed_and_nothing_is_lost(tmp_path: Path) -> None:
    # 500 denied calls from a thread, and more from a grandchild process: the kernel's
    # SCMP_ACT_LOG audit path would report about 10 of them; user notification loses none.
    script = (
        "import os, subprocess, threading\n"
        "def spam():\n"
        "    for i in range(500):\n"
        f"        try: os.rmdir({str(tmp_path / 'missing')!r})\n"
        "        except FileNotFoundError: pass\n"
        "t = threading.Thread(target=spam); t.start(); t.join()\n"
        f"subprocess.run(['sh', '-c', 'mkdir {tmp_path}/from-child'], check=True)\n"
    )
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }
    profile = profile_file(tmp_path, spec)

    _, result = observe(profile, [PYTHON, "-c", script])
    report = denied(result)
    assert report["rmdir"]["count"] == 500
    assert report["rmdir"]["deniedBy"] == "spec.syscalls[0]"
    assert report["mkdir"]["count"] == 1
    assert report["mkdir"]["action"] == "SCMP_ACT_KILL_PROCESS"
    assert (tmp_path / "from-child").is_dir()


def test_works_unprivileged_with_no_new_privs(tmp_path: Path) -> None:
    as_nobody: list[str] | None = None
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv(1): cannot drop to an unprivileged user")
        as_nobody = interpreter_for_nobody()
        if as_nobody is None:
            pytest.skip(f"no Python {sys.version_info[:2]} that uid 65534 can run on this machine")
    # pytest's own tmp directories are private to root: use one everybody can enter.
    shared = Path(tempfile.mkdtemp(prefix="seccomp-trial-"))
    shared.chmod(0o777)
    try:
        profile = profile_file(shared, DENY_MKDIR)
        target = shared / "by-nobody"
        result, report = observe(profile, ["mkdir", str(target)], as_nobody=as_nobody)
        assert result.returncode == 1, result.stderr
        assert denied(report)["mkdir"]["count"] == 1
        assert target.is_dir() and target.stat().st_uid == (65534 if as_nobody else os.geteuid())
    finally:
        shutil.rmtree(shared)


# --- record, then run under runc ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> RuncBundle:
    """A runc bundle whose rootfs is the host's /usr (read-only): the same binaries."""
    runc = require_tool("runc", "runc")
    bundle = RuncBundle.create(
        tmp_path_factory.mktemp("trial-bundle"),
        directories=("usr", "etc", "tmp", "proc", "dev", "sys"),
        runc=runc,
    )
    for link in ("bin", "lib", "lib64", "sbin"):
        (bundle.rootfs / link).symlink_to(f"usr/{link}")
    return bundle


def bind_host_usr_and_etc(config: dict[str, Any]) -> None:
    config["process"]["env"] = ["PATH=/usr/bin:/bin"]
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/usr", "/etc")] + [
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
        {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]},
    ]


def run_in_runc(
    bundle: RuncBundle, argv: list[str], seccomp: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    bundle.configure(argv, seccomp, adjust=bind_host_usr_and_etc)
    return bundle.run("trial")


PROGRAMS = {
    "coreutils-ls": ["ls", "-l", "/usr/share/doc/coreutils"],
    "python": [
        PYTHON,
        "-c",
        "import json, hashlib; print(json.dumps(hashlib.sha256(b'x').hexdigest()))",
    ],
}


@pytest.mark.runc
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_recorded_profile_runs_the_program_under_runc_and_test_catches_a_removed_syscall(
    tmp_path: Path, bundle: RuncBundle, program: str
) -> None:
    argv = PROGRAMS[program]
    recorded = agent("record", "--name", program, "-o", str(tmp_path / "rec.yaml"), "--", *argv)
    assert recorded.returncode == 0, recorded.stderr
    manifest = yaml.safe_load((tmp_path / "rec.yaml").read_text())
    assert agent("validate", str(tmp_path / "rec.yaml")).returncode == 0
    spec = manifest["spec"]
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO"
    names = spec["syscalls"][0]["names"]
    assert {"execve", "openat", "read", "exit_group"} <= set(names)

    # The file a node would get (no base: the spec as it is) lets the program run under runc.
    contained = run_in_runc(bundle, argv, spec)
    assert contained.returncode == 0, contained.stderr
    assert contained.stdout

    # Without one syscall the program made, `test` reports exactly that one, by the default.
    removed = "openat"
    narrower = {
        **spec,
        "syscalls": [{**spec["syscalls"][0], "names": [n for n in names if n != removed]}],
    }
    result, full = observe(profile_file(tmp_path, narrower), argv)
    assert result.returncode == 1, result.stderr
    report = denied(full)
    assert list(report) == [removed]
    assert report[removed]["deniedBy"] == "spec.defaultAction"
    assert report[removed]["action"] == "SCMP_ACT_ERRNO(1)"
