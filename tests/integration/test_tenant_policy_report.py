"""A profile stored before a tenant policy that it breaks: a real agent (the elected status
aggregator) reports it in the profile's status, as a metric and as an Event, and keeps the file
on the node, so pods that use it keep working."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import running_agent, wait_for
from tests.integration.conftest import apply_profile
from tests.integration.controller import running_controller
from tests.tenancy.cases import RESTRICTED, policy_object

pytestmark = pytest.mark.cluster

WEAK = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}
STRICT = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
}


def conditions(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout
    status = json.loads(out).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def test_a_profile_that_predates_a_policy_is_reported_and_stays_installed(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    apply_profile(crd, namespace, "weak", WEAK)
    apply_profile(crd, namespace, "strict", STRICT)
    # Then the namespace is made restricted, and a strict policy selects it.
    crd.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    policy = policy_object({}, name=f"report-{uuid.uuid4().hex[:6]}")
    policy["spec"]["namespaceSelector"]["matchLabels"]["seccompsync.io/tenant-test"] = namespace
    crd.kubectl("label", "namespace", namespace, f"seccompsync.io/tenant-test={namespace}")
    crd.kubectl("apply", "-f", "-", input=json.dumps(policy))
    node = f"node-{uuid.uuid4().hex[:6]}"
    try:
        with (
            running_agent(
                crd, node, tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
            ) as agent,
            # The controller's elected replica aggregates status, and with it this report.
            running_controller(crd, namespace, tmp_path / "controller.log") as controller,
        ):

            def reported() -> dict[str, Any] | None:
                found = conditions(crd, namespace, "weak").get("PolicyCompliant")
                return found if found and found["status"] == "False" else None

            condition = wait_for(reported, timeout=60, what="the PolicyCompliant condition")
            assert condition["reason"] == "PredatesPolicy"
            assert condition["message"].startswith(
                "1 violation(s) of a tenant policy made after this profile: spec.defaultAction: "
                "SCMP_ACT_ALLOW is not allowed in namespaces with restricted pod security"
            )
            assert "It stays installed and usable" in condition["message"]
            # Nothing breaks: the profile is Ready and its file is on the node.
            wait_for(
                lambda: conditions(crd, namespace, "weak")["Ready"]["status"] == "True",
                timeout=60,
                what="the profile to be Ready",
            )
            assert agent.profile_path(namespace, "weak").is_file()
            # The compliant one says so.
            assert conditions(crd, namespace, "strict")["PolicyCompliant"]["status"] == "True"
            assert controller.metric("seccomp_sync_profile_policy_violations") == 1

            def event() -> str | None:
                out = crd.kubectl(
                    "get",
                    "events",
                    "-n",
                    namespace,
                    "--field-selector",
                    "reason=PolicyViolation,involvedObject.name=weak",
                    "-o",
                    "json",
                ).stdout
                items = json.loads(out)["items"]
                return items[0]["message"] if items else None

            assert "spec.defaultAction: SCMP_ACT_ALLOW" in wait_for(
                event, timeout=30, what="the PolicyViolation event"
            )
    finally:
        crd.kubectl("delete", "seccomptenantpolicy", policy["metadata"]["name"], check=False)
