"""The tenant policy at the largest profile the CRD accepts: checked to the last name, within
the API server's CEL cost limits. A module of its own, so that one policy exists while it runs:
every SeccompTenantPolicy costs each profile write one evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.conftest import profile_object
from tests.integration.test_tenant_policy import (
    Scenario,
    apply,
    denial,
    fresh_scenario,
    remove,
    tenant_admission,  # noqa: F401 - its autouse fixture installs the policies here too
)

pytestmark = pytest.mark.cluster

# --- cost: the largest profile the CRD accepts -------------------------------------------------

# The CRD bounds a whole profile to 2,048 syscall names in all (and 512 rules, 1,024 names per
# rule): 512 rules of 4 names is the most rules, 2 rules of 1,024 names the fullest rules. The
# names check runs in slices of 64 rules (RULES_PER_CHECK); its static cost is judged at the
# schema's per-list maximums, so those slices are still needed.
MOST_RULES = 512
NAMES_PER_RULE_AT_MOST_RULES = 4


def big(namespace: str, name: str, rules: int, names: int, last: str = "brk") -> dict[str, Any]:
    syscalls = [{"names": ["brk"] * names, "action": "SCMP_ACT_ALLOW"} for _ in range(rules)]
    syscalls[-1]["names"][-1] = last
    return profile_object(
        namespace, name, {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": syscalls}
    )


@pytest.fixture(scope="module")
def scenario(crd: Cluster) -> Iterator[Scenario]:
    made = fresh_scenario(crd, "largest")
    yield made
    remove(crd, made)


def test_largest_profile_is_checked_to_its_last_name_within_the_cost_budget(
    crd: Cluster, scenario: Scenario
) -> None:
    # kubectl create, not apply: the same admission, without the last-applied annotation.
    largest = big(scenario.namespace, "largest", MOST_RULES, NAMES_PER_RULE_AT_MOST_RULES)
    assert apply(crd, largest, "create") is None
    # An update that leaves the spec alone compares the two specs, within the budget too.
    crd.kubectl("label", "scmp", "largest", "-n", scenario.namespace, "team=a", timeout=120)
    # The fullest rules: 2 of 1,024 names.
    assert apply(crd, big(scenario.namespace, "full-rules", 2, 1024), "create") is None
    # The check really reaches the last name of the last rule, and its message too.
    refused = big(
        scenario.namespace, "largest-mount", MOST_RULES, NAMES_PER_RULE_AT_MOST_RULES, "mount"
    )
    message = denial(
        apply(crd, refused, "create", "--dry-run=server"), "seccomp-sync-tenant-profiles"
    )
    assert message == scenario.message(
        f"spec.syscalls[{MOST_RULES - 1}].names[{NAMES_PER_RULE_AT_MOST_RULES - 1}]: mount is "
        "not allowed in namespaces with restricted pod security (SeccompTenantPolicy "
        "restricted-pod-security, atLeastRuntimeDefault: the runtime's default profile does not "
        "allow it to an unprivileged container)"
    )
    # One name more is refused by the CRD itself, before any policy runs.
    too_many = apply(crd, big(scenario.namespace, "too-many", MOST_RULES, 5), "create")
    assert too_many is not None
    assert "more than 2048 syscalls in all" in too_many
