"""The SeccompProfile CRD on a real API server: it installs, documents itself, accepts valid
profiles and rejects each kind of invalid one with a message that names the field.

Every test works in a namespace of its own, deleted afterwards. Invalid objects are sent with
`kubectl apply --dry-run=server`, exactly as a user would, and the assertions read stderr the way
that user would.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from agent.api.keys import ProfileKey
from agent.api.layout import localhost_profile
from agent.api.model import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_ARGS,
    MAX_ERRNO,
    MAX_NAMES_PER_RULE,
    MAX_RULES,
    PLURAL,
)
from tests.cluster.pytest_plugin import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD_NAME = f"{PLURAL}.{API_GROUP}"
INT64_MAX = 2**63 - 1


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Cluster:
    """The CRDs applied the way the deploy docs say, and Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", timeout=90
    )
    return cluster


@pytest.fixture
def namespace(crd: Cluster) -> Iterator[str]:
    name = f"crd-test-{uuid.uuid4().hex[:10]}"
    crd.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        crd.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# --- helpers ------------------------------------------------------------------------------------


def profile(name: str = "web", **spec: Any) -> dict[str, Any]:
    """A SeccompProfile object; with no spec arguments, a small valid allow-list profile."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec or valid_spec(),
    }


def valid_spec() -> dict[str, Any]:
    """Uses every field once, in the ways the CRD rules allow."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "listenerPath": "/run/seccomp-agent.sock",
        "listenerMetadata": "policy=web",
        "syscalls": [
            {
                "names": ["read", "write", "openat", "close", "exit_group", "_llseek"],
                "action": "SCMP_ACT_ALLOW",
            },
            {
                # clone without namespace flags: the shape Docker's default profile uses.
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": INT64_MAX, "op": "SCMP_CMP_LE"},
                ],
            },
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }


def apply(
    cluster: Cluster, namespace: str, obj: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "-n", namespace, *flags, "-f", "-", input=json.dumps(obj), check=False
    )


def dry_run(
    cluster: Cluster, namespace: str, obj: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return apply(cluster, namespace, obj, "--dry-run=server")


def words(text: str) -> str:
    """kubectl wraps long lines: compare text with all whitespace runs as single spaces."""
    return " ".join(text.split())


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def explain(cluster: Cluster, field: str, timeout: float = 60) -> str:
    """`kubectl explain`, retried: the CRD's OpenAPI is published a moment after Established."""
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.kubectl("explain", field, check=False)
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"kubectl explain {field} still failing after {timeout}s:\n{result.stderr}")
        time.sleep(0.5)


# --- installation and documentation -------------------------------------------------------------


def test_crd_is_established_with_the_names_users_type(crd: Cluster) -> None:
    got = json.loads(crd.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert got["spec"]["scope"] == "Namespaced"
    assert got["spec"]["names"]["shortNames"] == ["scmp"]
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"
    resources = crd.kubectl("api-resources", f"--api-group={API_GROUP}", "-o", "name").stdout
    assert CRD_NAME in resources.split()


def test_apply_is_idempotent(crd: Cluster) -> None:
    again = crd.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}" in again.stdout


def test_explain_spec_teaches_the_api(crd: Cluster) -> None:
    text = words(explain(crd, "seccompprofile.spec"))
    # The spec's own description, and each field's.
    assert "the first rule without args that names it wins" in text
    assert "names the node's libseccomp does not know are skipped" in text
    for field in (
        "defaultAction",
        "defaultErrnoRet",
        "architectures",
        "flags",
        "listenerPath",
        "listenerMetadata",
        "syscalls",
        "baseProfileName",
    ):
        assert field in text
    # defaultAction: required by a rule (a base may give it), so explained rather than marked.
    assert "required unless baseProfileName gives one" in text
    base = words(explain(crd, "seccompprofile.spec.baseProfileName"))
    assert "runtime/default@moby-2026-06-30" in base
    errno = words(explain(crd, "seccompprofile.spec.defaultErrnoRet"))
    assert "Unset means 1 (EPERM)" in errno
    arches = words(explain(crd, "seccompprofile.spec.architectures"))
    assert "only the node's native architecture" in arches
    assert "SCMP_ARCH_PARISC" in arches


def test_explain_reaches_syscall_args(crd: Cluster) -> None:
    text = words(explain(crd, "seccompprofile.spec.syscalls.args"))
    assert "they are ANDed" in text
    assert "ORed" in text
    for field in ("index", "value", "valueTwo", "op"):
        assert field in text
    value = words(explain(crd, "seccompprofile.spec.syscalls.args.value"))
    assert "9223372036854775807" in value


# --- valid profiles -----------------------------------------------------------------------------


def test_valid_profile_passes_server_dry_run(crd: Cluster, namespace: str) -> None:
    result = dry_run(crd, namespace, profile())
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def test_real_world_profiles_are_accepted(
    crd: Cluster, namespace: str, shared_profiles_dir: Path
) -> None:
    """security-profiles-operator's examples: the same OCI spec under another API group."""
    examples: list[dict[str, Any]] = []
    for path in sorted(shared_profiles_dir.glob("spo-*.yaml")):
        with path.open() as f:
            examples.extend(d for d in yaml.safe_load_all(f) if d and d.get("kind") == KIND)
    assert len(examples) >= 5, f"expected the SPO examples in {shared_profiles_dir}"
    rejected = {}
    for example in examples:
        name = example["metadata"]["name"].replace(".", "-")
        result = dry_run(crd, namespace, profile(name, **example["spec"]))
        if result.returncode != 0:
            rejected[name] = result.stderr
    assert rejected == {}


def test_profile_round_trips_unchanged(crd: Cluster, namespace: str) -> None:
    """Nothing pruned, no default injected: the stored spec is the profile the agent renders."""
    obj = profile()
    result = apply(crd, namespace, obj, "--server-side")
    assert result.returncode == 0, result.stderr
    stored = json.loads(crd.kubectl("get", "scmp", "web", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == obj["spec"]


def test_status_subresource_and_printer_columns(crd: Cluster, namespace: str) -> None:
    assert apply(crd, namespace, profile("nginx-strict")).returncode == 0
    local = localhost_profile(ProfileKey(namespace, "nginx-strict"))
    status = {
        "observedGeneration": 1,
        "localhostProfile": local,
        "state": "Partial",
        "readyNodes": "2/3",
        "nodesInstalled": 2,
        "nodesExpected": 3,
        "failingNodes": [
            {"node": "node-3", "state": "Failed", "reason": "WriteFailed", "message": "disk full"}
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Partial",
                "message": "installed on 2 of 3 nodes",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    crd.kubectl(
        "patch", "scmp", "nginx-strict", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    stored = json.loads(
        crd.kubectl("get", "scmp", "nginx-strict", "-n", namespace, "-o", "json").stdout
    )
    assert stored["status"] == status
    # The main resource ignores status: the agents own it.
    patched = crd.kubectl(
        "patch", "scmp", "nginx-strict", "-n", namespace, "--type=merge",
        "-p", json.dumps({"status": {"state": "Installed"}}),
    )  # fmt: skip
    assert patched.returncode == 0
    table = crd.kubectl("get", "scmp", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "READY", "WAITING", "AGE", "PROFILE"]
    assert table[1].split()[:3] == ["nginx-strict", "Partial", "2/3"]
    assert table[1].split()[-1] == local
    # PROFILE repeats namespace and name, so only ordinary lengths fit a 120-column terminal
    # (about 2*len(name) + len(namespace) <= 68): a test namespace and a short name do.
    assert max(len(line) for line in table) <= 120, table
    # `kubectl get seccomp-sync` lists every kind in the category, profiles included.
    category = crd.kubectl("get", "seccomp-sync", "-n", namespace, "-o", "name").stdout
    assert f"{KIND.lower()}.{API_GROUP}/nginx-strict" in category.split()


def test_profiles_go_away_with_their_namespace(crd: Cluster) -> None:
    namespace = f"crd-test-{uuid.uuid4().hex[:10]}"
    crd.kubectl("create", "namespace", namespace)
    try:
        assert apply(crd, namespace, profile()).returncode == 0
        crd.kubectl("delete", "namespace", namespace, "--wait=false")

        def gone() -> bool:
            result = crd.kubectl("get", "scmp", "web", "-n", namespace, check=False)
            return result.returncode != 0 and "NotFound" in result.stderr

        eventually(gone, 120, f"the namespace controller to delete scmp/web in {namespace}")
        eventually(
            lambda: crd.kubectl("get", "namespace", namespace, check=False).returncode != 0,
            120,
            f"namespace {namespace} to be deleted",
        )
    finally:
        crd.kubectl(
            "delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False
        )


# --- invalid profiles ---------------------------------------------------------------------------


def _rule(**fields: Any) -> dict[str, Any]:
    return {"names": ["openat"], "action": "SCMP_ACT_ALLOW", **fields}


def _arg(index: int = 0, **fields: Any) -> dict[str, Any]:
    return {"index": index, "value": 1, "op": "SCMP_CMP_EQ", **fields}


def _spec(*rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", **fields}
    if rules:
        spec["syscalls"] = list(rules)
    return spec


def _without_default_action() -> dict[str, Any]:
    spec = _spec(_rule())
    del spec["defaultAction"]
    return spec


# (id, metadata.name, spec, phrases that must all appear in kubectl's stderr)
INVALID: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (
        "unknown action",
        "web",
        _spec(_rule(action="SCMP_ACT_DENY")),
        ['spec.syscalls[0].action: Unsupported value: "SCMP_ACT_DENY"', '"SCMP_ACT_ALLOW"'],
    ),
    (
        "unknown default action",
        "web",
        _spec(defaultAction="ALLOW"),
        ['spec.defaultAction: Unsupported value: "ALLOW"'],
    ),
    (
        "architecture runc cannot load",
        "web",
        _spec(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_PARISC"]),
        ['spec.architectures[1]: Unsupported value: "SCMP_ARCH_PARISC"'],
    ),
    (
        "repeated architecture",
        "web",
        _spec(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86_64"]),
        ['spec.architectures[1]: Duplicate value: "SCMP_ARCH_X86_64"'],
    ),
    (
        "unknown flag",
        "web",
        _spec(flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]),
        ['spec.flags[0]: Unsupported value: "SECCOMP_FILTER_FLAG_NEW_LISTENER"'],
    ),
    (
        "unknown operator",
        "web",
        _spec(_rule(args=[_arg(op="SCMP_CMP_MASKED_NE")])),
        ['spec.syscalls[0].args[0].op: Unsupported value: "SCMP_CMP_MASKED_NE"'],
    ),
    (
        "arg index 6",
        "web",
        _spec(_rule(args=[_arg(MAX_ARGS)])),
        ["spec.syscalls[0].args[0].index: Invalid value: 6", "less than or equal to 5"],
    ),
    (
        "seven args",
        "web",
        _spec(_rule(args=[_arg(i % MAX_ARGS) for i in range(MAX_ARGS + 1)])),
        ["spec.syscalls[0].args: Too many: 7: must have at most 6 items"],
    ),
    (
        "negative arg value",
        "web",
        _spec(_rule(args=[_arg(value=-100)])),
        ["spec.syscalls[0].args[0].value: Invalid value: -100", "greater than or equal to 0"],
    ),
    (
        "errno 4096",
        "web",
        _spec(_rule(action="SCMP_ACT_ERRNO", errnoRet=MAX_ERRNO + 1)),
        ["spec.syscalls[0].errnoRet: Invalid value: 4095", "less than or equal to 4094"],
    ),
    (
        "default errno 4096",
        "web",
        _spec(defaultErrnoRet=MAX_ERRNO + 1),
        ["spec.defaultErrnoRet: Invalid value: 4095", "less than or equal to 4094"],
    ),
    (
        "empty names",
        "web",
        _spec(_rule(names=[])),
        ["spec.syscalls[0].names: Invalid value: 0", "should have at least 1 items"],
    ),
    (
        "too many names",
        "web",
        _spec(_rule(names=["openat"] * (MAX_NAMES_PER_RULE + 1))),
        ["spec.syscalls[0].names: Too many: 1025: must have at most 1024 items"],
    ),
    (
        "empty syscall name",
        "web",
        _spec(_rule(names=["read", ""])),
        ['spec.syscalls[0].names[1]: Invalid value: ""', "at least 1 chars long"],
    ),
    (
        "syscall name with upper case and a space",
        "web",
        _spec(_rule(names=["Open At"])),
        ['spec.syscalls[0].names[0]: Invalid value: "Open At"', "should match"],
    ),
    (
        "errnoRet with SCMP_ACT_ALLOW",
        "web",
        _spec(_rule(errnoRet=1)),
        [
            "spec.syscalls[0].errnoRet: Forbidden: errnoRet only applies to SCMP_ACT_ERRNO or "
            "SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"
        ],
    ),
    (
        "defaultErrnoRet with an ALLOW default",
        "web",
        _spec(_rule(action="SCMP_ACT_ERRNO"), defaultAction="SCMP_ACT_ALLOW", defaultErrnoRet=1),
        [
            "spec.defaultErrnoRet: Forbidden: defaultErrnoRet only applies to SCMP_ACT_ERRNO or "
            "SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"
        ],
    ),
    (
        "NOTIFY as default action",
        "web",
        _spec(defaultAction="SCMP_ACT_NOTIFY", listenerPath="/run/agent.sock"),
        ["spec.defaultAction: Forbidden: SCMP_ACT_NOTIFY cannot be the default action"],
    ),
    (
        "NOTIFY on write",
        "web",
        _spec(
            _rule(names=["read", "write"], action="SCMP_ACT_NOTIFY"),
            listenerPath="/run/agent.sock",
        ),
        ["spec.syscalls[0].names: Forbidden: SCMP_ACT_NOTIFY on `write` deadlocks the runtime"],
    ),
    (
        "NOTIFY without listenerPath",
        "web",
        _spec(_rule(), _rule(names=["mount"], action="SCMP_ACT_NOTIFY")),
        ["spec.listenerPath: Required value: a rule uses SCMP_ACT_NOTIFY, which needs"],
    ),
    (
        "listenerMetadata without listenerPath",
        "web",
        _spec(listenerMetadata="policy=web"),
        ["spec.listenerMetadata: Forbidden: listenerMetadata is only sent to a listener"],
    ),
    (
        "empty listenerPath",
        "web",
        _spec(listenerPath=""),
        ['spec.listenerPath: Invalid value: ""', "at least 1 chars long"],
    ),
    (
        "repeated arg index",
        "web",
        _spec(_rule(args=[_arg(0), _arg(1), _arg(0, value=2)])),
        [
            "spec.syscalls[0].args: Invalid value:",
            "argument index 0 is constrained more than once in this rule",
            "ORed, not ANDed",
        ],
    ),
    (
        "missing defaultAction",
        "web",
        _without_default_action(),
        ["spec.defaultAction: Required value"],
    ),
    (
        "too many rules",
        "web",
        _spec(*[_rule(names=[f"syscall_{i}"]) for i in range(MAX_RULES + 1)]),
        ["spec.syscalls: Too many: 513: must have at most 512 items"],
    ),
    (
        "too many argument conditions in all",
        "web",
        _spec(*[_rule(args=[_arg(i) for i in range(MAX_ARGS)]) for _ in range(86)]),
        ["spec.syscalls: Invalid value", "more than 512 argument conditions in all"],
    ),
    (
        "too many syscall names in all",
        "web",
        _spec(*[_rule(names=["read"] * MAX_NAMES_PER_RULE) for _ in range(3)]),
        ["spec.syscalls: Invalid value", "more than 2048 syscalls in all"],
    ),
    (
        "Docker-format field",
        "web",
        _spec(archMap=[{"architecture": "SCMP_ARCH_X86_64"}]),
        ["spec.archMap: Forbidden: archMap is Docker-format", "`architectures`"],
    ),
    (
        "name with dots",
        "Bad.Name",
        _spec(),
        ["metadata.name: Invalid value:", "must be a DNS-1123 label"],
    ),
    (
        "name with dots, lower case",
        "web.v2",
        _spec(),
        ["metadata.name: Invalid value:", "must be a DNS-1123 label", "no dots"],
    ),
    (
        "name longer than 63",
        "p" * 64,
        _spec(),
        ["metadata.name: Invalid value:", "at most 63 characters"],
    ),
]


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_profile_is_rejected_naming_the_field(
    crd: Cluster, namespace: str, name: str, spec: dict[str, Any], expected: list[str]
) -> None:
    result = dry_run(crd, namespace, profile(name, **copy.deepcopy(spec)))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for phrase in expected:
        assert phrase in words(result.stderr), f"{phrase!r} not in:\n{result.stderr}"


def test_missing_spec_is_rejected(crd: Cluster, namespace: str) -> None:
    obj = profile()
    del obj["spec"]
    result = dry_run(crd, namespace, obj)
    assert result.returncode != 0
    assert "spec: Required value" in result.stderr


def test_values_above_int64_are_rejected_not_mangled(crd: Cluster, namespace: str) -> None:
    """The OCI format allows uint64, Kubernetes stores int64: the top half must fail loudly.

    Silently storing 2^64-1 as a float would hand the agent a different number than was written.
    """
    for value in (INT64_MAX + 1, 2**64 - 1):
        spec = _spec(_rule(args=[_arg(op="SCMP_CMP_MASKED_EQ", value=value)]))
        result = dry_run(crd, namespace, profile("web", **spec))
        assert result.returncode != 0, f"{value} accepted: {result.stdout}"
        assert "spec.syscalls[0].args[0].value" in result.stderr, result.stderr
        assert "must be of type int64" in result.stderr, result.stderr


# --- Docker-format keys: refused by the API server whatever the client ---------------------------
#
# An undeclared key is pruned, not refused, when the client skips validation: the stored profile
# would have lost its capability gates (a CAP_SYS_ADMIN-only `mount` rule becomes a plain ALLOW).
# The CRD declares every Docker key so that it reaches the CEL rules that refuse it.

DOCKER_SPEC: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrno": "EPERM",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
    "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM"},
        {"name": "open", "names": ["open"], "action": "SCMP_ACT_ALLOW"},
    ],
}
DOCKER_REFUSALS = [
    "spec.archMap: Forbidden: archMap is Docker-format",
    "spec.defaultErrno: Forbidden: defaultErrno is Docker-format",
    "spec.syscalls[1].includes: Forbidden: includes is Docker-format",
    "spec.syscalls[2].excludes: Forbidden: excludes is Docker-format",
    "spec.syscalls[3].errno: Forbidden: errno is Docker-format",
    "spec.syscalls[4].name: Forbidden: name is Docker-format",
]


@pytest.mark.parametrize(
    "flags",
    [("--validate=false",), ("--server-side", "--validate=false")],
    ids=["client-side-apply", "server-side-apply"],
)
def test_docker_keys_are_refused_when_kubectl_skips_validation(
    crd: Cluster, namespace: str, flags: tuple[str, ...]
) -> None:
    result = apply(crd, namespace, profile("docker", **copy.deepcopy(DOCKER_SPEC)), *flags)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for phrase in DOCKER_REFUSALS:
        assert phrase in words(result.stderr), f"{phrase!r} not in:\n{result.stderr}"
    assert "containerd drops unknown keys silently" in words(result.stderr)
    got = crd.kubectl("get", PLURAL, "-n", namespace, "-o", "name").stdout
    assert got.strip() == ""


def test_docker_keys_are_refused_for_a_plain_api_create(crd: Cluster, namespace: str) -> None:
    """The Python client sends no fieldValidation: only the schema and CEL stand in the way."""
    api = kubernetes.client.CustomObjectsApi(crd.api_client())
    for key, value in [("archMap", DOCKER_SPEC["archMap"]), ("defaultErrno", "EPERM")]:
        obj = profile(f"docker-{key.lower()}", defaultAction="SCMP_ACT_ERRNO", **{key: value})
        with pytest.raises(kubernetes.client.ApiException) as caught:
            api.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, obj, _request_timeout=30
            )
        assert caught.value.status == 422
        assert f"spec.{key}: Forbidden: {key} is Docker-format" in caught.value.body
    gated = profile("docker-gate", **copy.deepcopy(DOCKER_SPEC))
    with pytest.raises(kubernetes.client.ApiException) as caught:
        api.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, gated, _request_timeout=30
        )
    assert caught.value.status == 422
    for phrase in DOCKER_REFUSALS:
        assert phrase in caught.value.body


def test_empty_docker_gates_are_harmless_and_accepted(crd: Cluster, namespace: str) -> None:
    """`"includes": {}` is common in pasted profiles and changes nothing: the agent ignores it."""
    spec = _spec(_rule(names=["read"], includes={}, excludes={}))
    result = apply(crd, namespace, profile("gates", **spec), "--validate=false")
    assert result.returncode == 0, result.stderr
