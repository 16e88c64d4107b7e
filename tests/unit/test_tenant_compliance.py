"""The report on profiles that predate a tenant policy, as plain data."""

from __future__ import annotations

from agent.api.model import OciSeccomp
from agent.profiles.render import render
from agent.profiles.tenancy.compliance import (
    PolicyContext,
    compliance_condition,
    compliance_findings,
    was_compliant,
)
from agent.profiles.tenancy.policy import parse_policy
from tests.tenancy.cases import RESTRICTED, policy_object

POLICY = parse_policy(policy_object({}))
CONTEXT = PolicyContext((POLICY,), {"team-a": RESTRICTED, "team-b": {}})
WEAK = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_LOG"})).content
STRICT = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO"})).content
T0, T1 = "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"


def test_only_the_policies_that_select_the_namespace_count() -> None:
    assert [f.field for f in compliance_findings(CONTEXT, "team-a", WEAK)] == ["spec.defaultAction"]
    assert compliance_findings(CONTEXT, "team-b", WEAK) == []
    assert compliance_findings(CONTEXT, "unknown", WEAK) == []
    assert compliance_findings(CONTEXT, "team-a", STRICT) == []
    assert compliance_findings(CONTEXT, "team-a", b"not json") == []


def test_the_condition_says_what_and_that_nothing_breaks() -> None:
    findings = compliance_findings(CONTEXT, "team-a", WEAK)
    condition = compliance_condition(findings, 3, None, T0)
    assert condition["type"] == "PolicyCompliant"
    assert (condition["status"], condition["reason"]) == ("False", "PredatesPolicy")
    assert condition["observedGeneration"] == 3
    assert (
        "spec.defaultAction: SCMP_ACT_LOG is not allowed in namespaces with restricted"
        in (condition["message"])
    )
    assert "stays installed and usable" in condition["message"]
    # Transition time is kept while the status stays, and moves when it changes.
    assert compliance_condition(findings, 3, [condition], T1)["lastTransitionTime"] == T0
    fixed = compliance_condition([], 4, [condition], T1)
    assert (fixed["status"], fixed["lastTransitionTime"]) == ("True", T1)


def test_an_event_is_due_only_on_the_way_into_violation() -> None:
    bad = compliance_condition(compliance_findings(CONTEXT, "team-a", WEAK), 1, None, T0)
    good = compliance_condition([], 1, None, T0)
    assert was_compliant(None)
    assert was_compliant([good])
    assert not was_compliant([bad])


def test_many_findings_are_summarised() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["mount", "bpf", "unshare", "setns", "umount2"], "action": "SCMP_ACT_ALLOW"}
        ],
    }
    content = render(OciSeccomp.model_validate(spec)).content
    condition = compliance_condition(compliance_findings(CONTEXT, "team-a", content), 1, None, T0)
    assert condition["message"].startswith("5 violation(s)")
    assert "(and 2 more)" in condition["message"]
