"""Oversize SeccompProfiles against the real control plane and a real agent process.

Today's CRD bounds a whole profile (tests/unit/test_profile_size.py), but objects stored under
the CRD before it did can be 1.4 MB each. The agent must report them as Invalid, naming the
field and the limit, without building models of them, and keep serving every other profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION, KIND, PLURAL
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import running_agent, wait_for
from tests.integration.conftest import apply_profile
from tests.integration.crds import crd_without_size_totals
from tests.integration.profiles import DENY_MKDIR, oversize_spec

pytestmark = pytest.mark.cluster


def _body(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_the_shipped_crd_refuses_a_profile_over_the_whole_profile_totals(
    crd: Cluster, namespace: str
) -> None:
    result = crd.kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(_body(namespace, "big", oversize_spec())),
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "spec.syscalls: Invalid value" in result.stderr
    assert "more than 2048 syscalls in all" in " ".join(result.stderr.split())


def test_oversize_objects_from_an_older_crd_are_reported_invalid_by_size(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(crd.api_client())
    with crd_without_size_totals(crd, namespace):
        for index in range(3):
            custom.create_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                _body(namespace, f"big{index}", oversize_spec(index)),
                _request_timeout=60,
            )
    apply_profile(crd, namespace, "small", DENY_MKDIR)

    with running_agent(
        crd, "node-big", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as agent:
        wait_for(lambda: agent.profile_path(namespace, "small").exists(), what="small profile")
        assert not agent.profile_path(namespace, "big0").exists()

        def problems() -> dict[str, dict[str, str]]:
            out = crd.kubectl("get", "seccompnodestatus", "node-big", "-o", "json", check=False)
            if out.returncode != 0:
                return {}
            status = json.loads(out.stdout).get("status") or {}
            return {p["profile"]: p for p in status.get("problems") or []}

        wait_for(lambda: len(problems()) == 3, what="three problems in the node status")
        problem = problems()[f"{namespace}/big0"]
        assert problem["state"] == "Invalid"
        assert problem["reason"] == "TooLarge"
        assert problem["message"].startswith("spec: the profile is 1.3 MiB; the limit is 256 KiB")
        assert agent.metric('seccomp_sync_validation_failures_total{reason="TooLarge"}') == 3
        agent.assert_running()
