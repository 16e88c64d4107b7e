"""The tenant policy in Python: the verdicts the API server's CEL must agree with (the same cases
run against the real API server in tests/integration/test_tenant_policy.py), the generated
allowlist, and `seccomp-agent validate --policy`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.model import OciSeccomp
from agent.main import main
from agent.profiles.tenancy.policy import (
    RecordingMode,
    TenantPolicy,
    parse_policy,
    pod_violations,
    profile_namespace,
    profile_violations,
    recording_violations,
    selects,
)
from agent.profiles.tenancy.runtime_default import runtime_default_allowed, runtime_default_source
from tests.tenancy.cases import (
    POD_CASES,
    PROFILE_CASES,
    RECORDING_CASES,
    RESTRICTED,
    PodCase,
    ProfileCase,
    RecordingCase,
    policy_object,
)
from tools import generate_runtime_default

REPO = Path(__file__).resolve().parents[2]
SHIPPED_POLICY = REPO / "deploy" / "policies" / "restricted-pod-security.yaml"


def first_refusal(policy: TenantPolicy, labels: dict[str, str], spec: dict[str, Any]) -> str | None:
    if not selects(policy, labels):
        return None
    found = profile_violations(policy, OciSeccomp.model_validate(spec))
    return f"{found[0].field}: {found[0].message}" if found else None


@pytest.mark.parametrize("case", PROFILE_CASES, ids=lambda c: c.id)
def test_profile_verdicts(case: ProfileCase) -> None:
    policy = parse_policy(policy_object(case.policy))
    assert first_refusal(policy, case.labels, case.spec) == case.refusal


def pod_object(case: PodCase, namespace: str) -> dict[str, Any]:
    def context(kind: str) -> dict[str, Any]:
        path = case.profiles.get(kind)
        if path is None:
            return {}
        profile = {"type": "Localhost", "localhostProfile": path.format(own=namespace)}
        return {"securityContext": {"seccompProfile": profile}}

    container = {"name": "app", "image": "registry.k8s.io/pause:3.10", **context("container")}
    spec: dict[str, Any] = {"containers": [container], **context("pod")}
    if "init" in case.profiles:
        spec["initContainers"] = [
            {"name": "init", "image": "registry.k8s.io/pause:3.10", **context("init")}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize("case", POD_CASES, ids=lambda c: c.id)
def test_pod_verdicts(case: PodCase) -> None:
    policy = parse_policy(policy_object(case.policy))
    found = pod_violations(policy, "team-a", pod_object(case, "team-a"))
    got = f"{found[0].field}: {found[0].message}" if found else None
    assert got == case.refusal


@pytest.mark.parametrize("case", RECORDING_CASES, ids=lambda c: c.id)
def test_recording_verdicts(case: RecordingCase) -> None:
    policy = parse_policy(policy_object(case.policy))
    found = recording_violations(policy, "web", case.spec)
    assert (f"{found[0].field}: {found[0].message}" if found else None) == case.refusal


def test_every_profile_reference_of_a_pod_is_checked() -> None:
    policy = parse_policy(policy_object({}))
    other = {"type": "Localhost", "localhostProfile": "seccomp-sync/team-b/p.json"}
    pod = {
        "spec": {
            "securityContext": {"seccompProfile": other},
            "containers": [{"name": "a", "securityContext": {"seccompProfile": other}}],
            "initContainers": [{"name": "b", "securityContext": {"seccompProfile": other}}],
            "ephemeralContainers": [{"name": "c", "securityContext": {"seccompProfile": other}}],
        }
    }
    fields = [f.field.split(".securityContext")[0] for f in pod_violations(policy, "team-a", pod)]
    assert fields == [
        "spec",
        "spec.containers[0]",
        "spec.initContainers[0]",
        "spec.ephemeralContainers[0]",
    ]


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        ("seccomp-sync/a/p.json", "a"),
        ("./seccomp-sync/./a/p.json", "a"),
        ("seccomp-sync//a/p.json", "a"),
        ("seccomp-sync", None),
        ("other/a/p.json", None),
        ("seccomp-sync-x/a/p.json", None),
    ],
)
def test_the_namespace_a_path_names_as_the_kubelet_resolves_it(
    path: str, namespace: str | None
) -> None:
    assert profile_namespace(path) == namespace


def test_every_finding_is_listed_not_only_the_first() -> None:
    policy = parse_policy(policy_object({}))
    spec = OciSeccomp.model_validate(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount", "read", "bpf"], "action": "SCMP_ACT_ALLOW"}],
        }
    )
    found = profile_violations(policy, spec)
    assert [f.field for f in found] == [
        "spec.defaultAction",
        "spec.syscalls[0].names[0]",
        "spec.syscalls[0].names[2]",
    ]
    assert {f.reason for f in found} == {"WeakerThanRuntimeDefault"}


def test_the_shipped_default_policy_is_the_strict_one() -> None:
    shipped = parse_policy(yaml.safe_load(SHIPPED_POLICY.read_text()))
    assert shipped.spec.atLeastRuntimeDefault
    assert selects(shipped, RESTRICTED)
    assert not selects(shipped, {"pod-security.kubernetes.io/enforce": "baseline"})
    assert "SCMP_ACT_NOTIFY" not in shipped.spec.allowedActions
    assert shipped.spec.allowedListenerPathPrefixes == []
    assert shipped.spec.allowedProfileNamespaces == []
    # It spells out exactly the CRD's defaults.
    assert shipped.spec == parse_policy(policy_object({})).spec


# --- the allowlist: generated data --------------------------------------------------------------


def test_regenerating_the_allowlist_gives_the_committed_files(shared_profiles_dir: Path) -> None:
    profile = json.loads((shared_profiles_dir / "moby-default.json").read_text())
    names = generate_runtime_default.allowed_names(profile)
    committed_json = generate_runtime_default.JSON_PATH.read_text(encoding="utf-8")
    source = json.loads(committed_json)["source"]
    detail = source.removeprefix(generate_runtime_default.SOURCE + ", ").split(";")[0]
    assert committed_json == generate_runtime_default.json_document(detail, names), (
        "runtime_default.json is stale or hand-edited: run the generator"
    )
    manifest = generate_runtime_default.MANIFEST_PATH.read_text(encoding="utf-8")
    assert generate_runtime_default.replace_generated(manifest, names) == manifest, (
        "deploy/base/tenant-policy.yaml's runtimeDefaultAllowed is stale: run the generator"
    )


def test_the_allowlist_is_what_an_unprivileged_container_may_call() -> None:
    allowed = runtime_default_allowed()
    assert "moby/profiles" in runtime_default_source()
    # Plain, argument-conditioned (clone, personality) and kernel-gated (ptrace) rules count.
    assert {"read", "openat", "clone", "personality", "ptrace", "socket"} <= allowed
    # Capability-gated rules do not: restricted pods drop every capability.
    assert not {"mount", "umount2", "unshare", "setns", "bpf", "chroot", "reboot"} & allowed
    # clone3 is ENOSYS for unprivileged containers (ERRNO rule, excludes CAP_SYS_ADMIN).
    assert "clone3" not in allowed


def test_generator_refuses_something_that_is_not_a_profile() -> None:
    with pytest.raises(generate_runtime_default.ProfileError, match="no syscalls list"):
        generate_runtime_default.allowed_names({"defaultAction": "SCMP_ACT_ERRNO"})


# --- seccomp-agent validate --policy -------------------------------------------------------------


def test_validate_with_the_shipped_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "p.yaml"
    profiles.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "seccompsync.io/v1beta1",
                    "kind": "SeccompProfile",
                    "metadata": {"name": name, "namespace": "team-a"},
                    "spec": spec,
                }
                for name, spec in [
                    (
                        "ok",
                        {
                            "defaultAction": "SCMP_ACT_ERRNO",
                            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
                        },
                    ),
                    (
                        "mounts",
                        {
                            "defaultAction": "SCMP_ACT_ERRNO",
                            "syscalls": [{"names": ["read", "mount"], "action": "SCMP_ACT_ALLOW"}],
                        },
                    ),
                ]
            ]
        )
    )
    assert main(["validate", "--policy", str(SHIPPED_POLICY), str(profiles)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{profiles}: team-a/ok: valid",
        f"{profiles}: team-a/mounts: spec.syscalls[0].names[1]: error: mount is not allowed in "
        "namespaces with restricted pod security (SeccompTenantPolicy restricted-pod-security, "
        "atLeastRuntimeDefault: the runtime's default profile does not allow it to an "
        "unprivileged container)",
    ]
    # Without the policy the same profiles are valid.
    assert main(["validate", str(profiles)]) == 0


def test_validate_policy_on_a_raw_oci_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "p.json"
    raw.write_text(json.dumps({"defaultAction": "SCMP_ACT_LOG"}))
    assert main(["validate", "--policy", str(SHIPPED_POLICY), str(raw)]) == 1
    out = capsys.readouterr().out
    assert (
        ": defaultAction: error: SCMP_ACT_LOG is not allowed in namespaces with restricted" in out
    )


def test_validate_refuses_a_policy_file_that_is_not_a_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "policy.yaml"
    policy = policy_object({"allowedActions": ["SCMP_ACT_MAYBE"]})
    bad.write_text(yaml.safe_dump(policy))
    assert main(["validate", "--policy", str(bad), str(SHIPPED_POLICY)]) == 2
    err = capsys.readouterr().err
    assert "document 0: not a valid SeccompTenantPolicy: spec.allowedActions.0:" in err


def test_every_admission_policy_selects_and_words_alike() -> None:
    """The namespace selection and the message frame are copied between the policies (YAML
    anchors cannot cross documents): they must stay the same."""
    manifest = REPO / "deploy" / "base" / "tenant-policy.yaml"
    policies = [
        d
        for d in yaml.safe_load_all(manifest.read_text())
        if d["kind"] == "ValidatingAdmissionPolicy"
    ]
    assert len(policies) == 3  # profiles, pods, recordings
    shared = [
        {
            v["name"]: v["expression"]
            for v in p["spec"]["variables"]
            if v["name"] in {"labels", "selected", "where"}
        }
        for p in policies
    ]
    assert len(shared[0]) == 3
    assert shared[0] == shared[1] == shared[2]


def test_the_crd_and_the_python_model_agree_on_enums_and_defaults() -> None:
    from typing import get_args

    from agent.api.model import Action, Flag
    from agent.profiles.tenancy.policy import DEFAULT_ACTIONS, DEFAULT_FLAGS

    crd = yaml.safe_load((REPO / "crds" / "seccomptenantpolicy.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = spec["properties"]
    assert fields["allowedActions"]["items"]["enum"] == list(get_args(Action))
    assert fields["allowedFlags"]["items"]["enum"] == list(get_args(Flag))
    assert fields["allowedActions"]["default"] == list(DEFAULT_ACTIONS)
    assert fields["allowedFlags"]["default"] == list(DEFAULT_FLAGS)
    assert fields["allowedListenerPathPrefixes"]["default"] == []
    assert fields["allowedProfileNamespaces"]["default"] == []
    assert fields["atLeastRuntimeDefault"]["default"] is False
    assert fields["recording"]["enum"] == list(get_args(RecordingMode))
    assert "default" not in fields["recording"]  # it follows atLeastRuntimeDefault
    assert set(fields) == set(TenantPolicy.model_fields["spec"].annotation.model_fields)  # type: ignore[union-attr]
