"""Whether a stored profile satisfies the tenant policies of today: the report on objects that
predate a policy (the API server checks new and changed specs; nothing else re-checks old ones).

Pure: the policies, the namespaces' labels and the profile's rendered OCI JSON in, findings and
a status condition out. The elected status aggregator calls it (agent/controller/policy_report.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from agent.api.findings import Finding
from agent.api.model import OciSeccomp
from agent.profiles.tenancy.policy import TenantPolicy, profile_violations, selects

CONDITION_TYPE: Final = "PolicyCompliant"
MAX_LISTED: Final = 3


@dataclass(frozen=True)
class PolicyContext:
    """Every SeccompTenantPolicy, and the labels of every namespace, as last read."""

    policies: tuple[TenantPolicy, ...] = ()
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def compliance_findings(context: PolicyContext, namespace: str, content: bytes) -> list[Finding]:
    """What the policies selecting `namespace` refuse in the profile as rendered on the nodes."""
    labels = context.namespace_labels.get(namespace, {})
    selecting = [p for p in context.policies if selects(p, labels)]
    if not selecting:
        return []
    try:
        profile = OciSeccomp.model_validate(json.loads(content))
    except (ValueError, ValidationError):
        return []  # not a profile we rendered: validation reports it, not the policy
    return [f for policy in selecting for f in profile_violations(policy, profile)]


def compliance_condition(
    findings: Sequence[Finding],
    generation: int,
    previous_conditions: Sequence[Mapping[str, Any]] | None,
    now: str,
) -> dict[str, Any]:
    """The PolicyCompliant condition: False names the first violations and says nothing breaks."""
    compliant = not findings
    if compliant:
        reason, message = "Compliant", "satisfies every SeccompTenantPolicy that selects it"
    else:
        listed = "; ".join(f"{f.field}: {f.message}" for f in findings[:MAX_LISTED])
        more = f" (and {len(findings) - MAX_LISTED} more)" if len(findings) > MAX_LISTED else ""
        reason = "PredatesPolicy"
        message = (
            f"{len(findings)} violation(s) of a tenant policy made after this profile: "
            f"{listed}{more}. It stays installed and usable; the API server refuses any change "
            "to its spec that does not fix them"
        )
    since = now
    for condition in previous_conditions or []:
        unchanged = (condition.get("status") == "True") == compliant
        if condition.get("type") == CONDITION_TYPE and "lastTransitionTime" in condition:
            since = str(condition["lastTransitionTime"]) if unchanged else now
    return {
        "type": CONDITION_TYPE,
        "status": "True" if compliant else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def was_compliant(previous_conditions: Sequence[Mapping[str, Any]] | None) -> bool:
    """True unless the previous status already said False (so an Event is posted once)."""
    return not any(
        c.get("type") == CONDITION_TYPE and c.get("status") == "False"
        for c in previous_conditions or []
    )
