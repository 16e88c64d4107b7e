"""The API server refuses what no node could enforce, at `kubectl apply`: a syscall name that is
on no architecture (deploy/base/syscall-names.yaml, a ValidatingAdmissionPolicy) and a built-in
base that does not exist (the CRD's own rule). Both within CEL's cost limits at the largest
profile the CRD accepts."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.profiles.builtin_bases import BUILTINS
from agent.seccomp.syscalls import ALL_SYSCALL_NAMES
from tests.cluster.pytest_plugin import Cluster
from tests.integration.conftest import profile_object

pytestmark = pytest.mark.cluster

# tools.generate_syscall_policy writes it (tests/integration/tools.py shadows `tools` here).
MANIFEST_PATH = Path(__file__).resolve().parents[2] / "deploy" / "base" / "syscall-names.yaml"
POLICY_NAME = "seccomp-sync-syscall-names"
MOST_RULES = 512  # the CRD's maxItems of syscalls
MOST_NAMES = 2048  # the CRD's bound on names in all
DENIED = f"ValidatingAdmissionPolicy '{POLICY_NAME}' with binding '{POLICY_NAME}' denied request: "
# The longest real names: the most string to compare per look-up.
LONGEST = sorted(ALL_SYSCALL_NAMES, key=lambda n: (-len(n), n))


def create(cluster: Cluster, obj: dict[str, Any], *extra: str) -> str | None:
    """None when admitted, else kubectl's error output."""
    result = cluster.kubectl(
        "create", *extra, "-f", "-", input=json.dumps(obj), check=False, timeout=120
    )
    return None if result.returncode == 0 else result.stderr


def rules_spec(rules: int, per_rule: int, last: str | None = None) -> dict[str, Any]:
    names = [LONGEST[i % len(LONGEST)] for i in range(per_rule)]
    syscalls = [{"names": list(names), "action": "SCMP_ACT_ERRNO"} for _ in range(rules)]
    if last is not None:
        syscalls[-1]["names"][-1] = last
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}


@pytest.fixture(scope="module")
def space(crd: Cluster) -> Iterator[str]:
    """A namespace with a profile that names `opne` from before the policy, then the policy,
    for this module only (other modules write such profiles to test the agent's own check)."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    crd.kubectl("create", "namespace", namespace)
    legacy = profile_object(namespace, "legacy", rules_spec(1, 2, last="opne"))
    assert create(crd, legacy) is None
    crd.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(MANIFEST_PATH))
    probe = profile_object(namespace, "probe", rules_spec(1, 1, last="opne"))
    deadline = time.monotonic() + 30
    while create(crd, probe, "--dry-run=server") is None:
        assert time.monotonic() < deadline, "the syscall-names policy never took effect"
        time.sleep(0.3)
    yield namespace
    crd.kubectl("delete", "-f", str(MANIFEST_PATH), "--ignore-not-found")
    crd.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_name_on_no_architecture_is_refused_naming_it(crd: Cluster, space: str) -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close", "opne", "reed"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    refused = create(crd, profile_object(space, "typo", spec))
    assert refused is not None and DENIED in refused, refused
    message = refused.split(DENIED, 1)[1]
    assert message.startswith(
        "spec.syscalls[1].names[1]: opne, spec.syscalls[1].names[2]: reed: not a Linux syscall"
    ), message


def test_every_known_name_is_admitted_including_those_old_libseccomps_lack(
    crd: Cluster, space: str
) -> None:
    names = sorted(ALL_SYSCALL_NAMES)
    assert {"mseal", "listmount", "statmount"} <= set(names)  # newer than libseccomp 2.5.4
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": names, "action": "SCMP_ACT_ALLOW"}
    ]}  # fmt: skip
    assert create(crd, profile_object(space, "everything", spec)) is None


def test_the_largest_profiles_the_crd_accepts_are_checked_within_the_cost_limit(
    crd: Cluster, space: str
) -> None:
    # The most rules (512 of 4 names) and the fullest rules (2 of 1,024): 2,048 names each.
    started = time.monotonic()
    most_rules = rules_spec(MOST_RULES, MOST_NAMES // MOST_RULES)
    assert create(crd, profile_object(space, "most-rules", most_rules)) is None
    took = time.monotonic() - started
    assert create(crd, profile_object(space, "full-rules", rules_spec(2, 1024))) is None
    # The check reaches the last name of the last rule, and its message names it.
    refused = create(
        crd,
        profile_object(space, "last", rules_spec(MOST_RULES, 4, last="opne")),
        "--dry-run=server",
    )
    assert refused is not None and DENIED in refused, refused
    assert f"spec.syscalls[{MOST_RULES - 1}].names[3]: opne: not a Linux syscall" in refused
    # Every name unknown: the message would be longer than the API server allows, so it gives
    # the static one; the profile is refused all the same.
    unknown = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["x" * 64] * 1024, "action": "SCMP_ACT_ERRNO"}] * 2,
    }
    refused = create(crd, profile_object(space, "unknown", unknown), "--dry-run=server")
    assert refused is not None and DENIED in refused, refused
    assert "not a Linux syscall on any architecture" in refused
    print(f"\nall 2,048 names unknown: {refused.split(DENIED, 1)[1][:300]}")
    # A write that leaves the spec alone costs one comparison of the two specs.
    crd.kubectl("label", "scmp", "most-rules", "-n", space, "size=largest", timeout=120)
    print(f"\ncreate of the 512-rule, 2,048-name profile took {took:.2f} s")


def test_an_object_from_before_the_policy_may_change_except_its_spec(
    crd: Cluster, space: str
) -> None:
    crd.kubectl("label", "scmp", "legacy", "-n", space, "team=a")
    legacy = json.loads(crd.kubectl("get", "scmp", "legacy", "-n", space, "-o", "json").stdout)
    legacy["spec"]["defaultAction"] = "SCMP_ACT_LOG"
    result = crd.kubectl("replace", "-f", "-", input=json.dumps(legacy), check=False)
    assert result.returncode != 0 and "opne: not a Linux syscall" in result.stderr


def test_an_unknown_builtin_base_is_refused_with_the_list_of_builtins(
    crd: Cluster, space: str
) -> None:
    spec = {"baseProfileName": "runtime/default"}
    result = crd.kubectl(
        "apply", "-f", "-", input=json.dumps(profile_object(space, "web", spec)), check=False
    )
    assert result.returncode != 0
    assert "spec.baseProfileName: Invalid value" in result.stderr, result.stderr
    assert "no built-in base 'runtime/default'; built-ins are: " in result.stderr
    for name in BUILTINS:
        assert name in result.stderr
    assert "should match" not in result.stderr  # no raw pattern
    for name in BUILTINS:
        ok = profile_object(space, "on-" + name.split("@")[1].replace(".", "-")[:40], {
            "baseProfileName": name
        })  # fmt: skip
        assert create(crd, ok, "--dry-run=server") is None


def test_manifest_path_is_in_the_base() -> None:
    assert MANIFEST_PATH.name in (Path(MANIFEST_PATH.parent) / "kustomization.yaml").read_text()
