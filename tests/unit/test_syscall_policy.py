"""deploy/base/syscall-names.yaml is what tools/generate_syscall_policy.py writes from the agent's
syscall table: the API server and the agent agree on which names are typos."""

from __future__ import annotations

import itertools
import re

import yaml

from agent.seccomp.syscalls import ALL_SYSCALL_NAMES
from tools import generate_syscall_policy


def test_committed_policy_equals_the_generated_one() -> None:
    committed = generate_syscall_policy.MANIFEST_PATH.read_text(encoding="utf-8")
    assert committed == generate_syscall_policy.manifest(ALL_SYSCALL_NAMES), (
        "deploy/base/syscall-names.yaml is stale: run `python -m tools.generate_syscall_policy`"
    )


def test_policy_knows_exactly_the_agents_names_and_checks_every_rule() -> None:
    text = generate_syscall_policy.MANIFEST_PATH.read_text(encoding="utf-8")
    policy, binding = [d for d in yaml.safe_load_all(text) if d]
    [known] = [v for v in policy["spec"]["variables"] if v["name"] == "known"]
    assert set(re.findall(r"'([a-z0-9_]+)': true", known["expression"])) == ALL_SYSCALL_NAMES
    slices = [
        tuple(map(int, re.search(r"i >= (\d+) && i < (\d+)", v["expression"]).groups()))  # type: ignore[union-attr]
        for v in policy["spec"]["validations"]
    ]
    # Contiguous slices from rule 0 to the CRD's maximum of 512 rules.
    assert slices[0][0] == 0 and slices[-1][1] == 512
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }


def test_the_base_kustomization_deploys_it() -> None:
    kustomization = generate_syscall_policy.MANIFEST_PATH.parent / "kustomization.yaml"
    resources = yaml.safe_load(kustomization.read_text(encoding="utf-8"))["resources"]
    assert generate_syscall_policy.MANIFEST_PATH.name in resources
