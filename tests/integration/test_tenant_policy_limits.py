"""The tenant policy at the largest profile the API server stores: checked to the last name,
within the API server's CEL cost limits. A module of its own, so that one policy exists while it
runs: every SeccompTenantPolicy costs each profile write one evaluation (about a second for a
1.5 MiB profile on a 2-core machine, milliseconds for ordinary profiles)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.conftest import profile_object
from tests.integration.test_tenant_policy import Scenario, apply, denial, fresh_scenario, remove

pytestmark = pytest.mark.cluster

# --- cost: the largest profile the API server stores --------------------------------------------

# The CRD allows 512 rules of 1024 names, but etcd stores at most about 1.5 MiB: 512 rules of 500
# three-letter names fit, 520 do not (checked below), so nothing larger can reach the policy. The
# names check runs in slices of 64 rules (RULES_PER_CHECK), whose worst case is 64 full rules.
LARGEST_NAMES_PER_RULE = 500


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
    # kubectl create, not apply: the same admission, without the 1.5 MiB last-applied annotation
    # (which would halve what fits) or server-side apply's field tracking over 256,000 items,
    # which is slow on a busy 2-core machine and says nothing about the policy.
    largest = big(scenario.namespace, "largest", 512, LARGEST_NAMES_PER_RULE)
    assert len(json.dumps(largest)) > 1_400_000
    assert apply(crd, largest, "create") is None
    # An update that leaves the spec alone compares two 1.5 MiB specs, within the budget too.
    crd.kubectl("label", "scmp", "largest", "-n", scenario.namespace, "team=a", timeout=120)
    # Two slices at their worst case: 128 rules of 1024 names.
    assert apply(crd, big(scenario.namespace, "full-rules", 128, 1024), "create") is None
    # The check really reaches the last name of the last rule, and its message too.
    refused = big(scenario.namespace, "largest-mount", 512, LARGEST_NAMES_PER_RULE, last="mount")
    message = denial(
        apply(crd, refused, "create", "--dry-run=server"), "seccomp-sync-tenant-profiles"
    )
    assert message == scenario.message(
        f"spec.syscalls[511].names[{LARGEST_NAMES_PER_RULE - 1}]: mount is not allowed in "
        "namespaces with restricted pod security (SeccompTenantPolicy restricted-pod-security, "
        "atLeastRuntimeDefault: the runtime's default profile does not allow it to an "
        "unprivileged container)"
    )
    # Larger does not fit in etcd: the profile above is the largest there can be.
    too_large = apply(crd, big(scenario.namespace, "too-large", 512, 520), "create")
    assert too_large is not None
    assert "request is too large" in too_large
