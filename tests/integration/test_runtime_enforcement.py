"""The runtime really enforces the file the agent wrote: Debian's runc runs a probe under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import running_agent, wait_for
from tests.integration.conftest import apply_profile
from tests.integration.tools import require_tool
from tests.runc_bundle import RuncBundle

pytestmark = [pytest.mark.cluster, pytest.mark.runc]

PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    int made = mkdir("/tmp/made-by-probe", 0755);
    printf("mkdir=%d errno=%d\n", made, made < 0 ? errno : 0);
    int removed = rmdir("/tmp/does-not-exist");
    printf("rmdir=%d errno=%d\n", removed, removed < 0 ? errno : 0);
    printf("pid=%d\n", (int)getpid());
    return 0;
}
"""

DENY_MKDIR_EACCES = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> RuncBundle:
    runc = require_tool("runc", "runc")
    bundle = RuncBundle.create(tmp_path_factory.mktemp("bundle"), runc=runc)
    bundle.compile(PROBE_C, "/probe")
    return bundle


def run_probe(bundle: RuncBundle, seccomp: dict[str, object] | None) -> str:
    bundle.configure(["/probe"], seccomp, writable_root=True)
    bundle.empty_tmp()
    result = bundle.run("probe")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_runc_blocks_what_the_agent_wrote(
    crd: Cluster, namespace: str, tmp_path: Path, bundle: RuncBundle
) -> None:
    unconfined = run_probe(bundle, None)
    assert "mkdir=0 errno=0" in unconfined

    with running_agent(
        crd, "node-a", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        apply_profile(crd, namespace, "deny-mkdir", DENY_MKDIR_EACCES)
        path = agent.profile_path(namespace, "deny-mkdir")
        wait_for(path.exists, what="profile on disk")
        # What kubelet hands runc: the file's content, read as the OCI seccomp object.
        written = json.loads(path.read_bytes())

    confined = run_probe(bundle, written)
    assert "mkdir=-1 errno=13" in confined  # denied with the profile's errno (EACCES)
    assert "rmdir=-1 errno=2" in confined  # other syscalls run and fail on their own (ENOENT)
    assert "pid=1" in confined  # write() and getpid() are allowed
