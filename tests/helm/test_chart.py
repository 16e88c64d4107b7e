"""The Helm chart (deploy/helm/seccomp-sync): generated from deploy/, rendered by the real Helm.

No cluster: these render the chart with `helm template` and read the objects, as a reviewer of
`helm template` output would. tests/integration/test_helm.py installs it on the real API server,
tests/e2e/test_helm_node.py on the real node.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.pytest_plugin import CHART, REPO_ROOT, Helm, HelmError
from tools import generate_helm_chart

ObjectKey = tuple[str, str, str]
STARTUP_TAINT = "seccompsync.io/agent-not-ready"

# Every value set to something other than its default.
NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example/sec/agent", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull-a"}, {"name": "pull-b"}],
    "logFormat": "text",
    "kubeletRootDir": "/var/lib/k0s/kubelet",
    "hostNetwork": True,
    "gating": {"enabled": False, "graceSeconds": 45},
    "tenantPolicy": {"enabled": False},
    "monitoring": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "agent": {
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ],
        # Helm merges maps with the defaults: null removes a default key.
        "nodeSelector": {"pool": "workers", "kubernetes.io/os": None},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
                    ]
                }
            }
        },
        "priorityClassName": "platform-critical",
        "httpHost": "::",
        "httpPort": 9100,
        "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}},
        "podAnnotations": {"rollme": "1"},
        "extraEnv": [{"name": "EXTRA", "value": "agent"}],
    },
    "controller": {
        "replicas": 3,
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoExecute"}],
        "nodeSelector": {"pool": "infra"},
        "affinity": {
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "podAffinityTerm": {"topologyKey": "zone"}}
                ]
            }
        },
        "priorityClassName": "platform-high",
        "httpHost": "127.0.0.1",
        "httpPort": 9200,
        "resources": {"requests": {"cpu": "30m", "memory": "100Mi"}, "limits": {"memory": "300Mi"}},
        "podAnnotations": {"team": "sec"},
        "extraEnv": [{"name": "EXTRA", "value": "controller"}],
    },
}


@cache
def kubectl() -> Path:
    """The kubectl built beside the test control plane (tests/cluster/build, cached)."""
    out = subprocess.run(
        [str(REPO_ROOT / "tests" / "cluster" / "build")],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    return Path(out.strip()) / "kubectl"


def kustomize(directory: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(kubectl()), "kustomize", str(REPO_ROOT / directory)],  # absolute: as given
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def through_kustomize(rendered: str, work_dir: Path) -> list[dict[str, Any]]:
    """Helm's output as kustomize prints it. Kustomize's YAML library folds a ``>-`` scalar's
    more-indented lines with an extra blank line (YAML 1.2, example 8.10, says one line break):
    passed through it too, the chart's render is compared with deploy/'s value for value."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "rendered.yaml").write_text(rendered)
    (work_dir / "kustomization.yaml").write_text("resources: [rendered.yaml]\n")
    return kustomize(str(work_dir))


def by_key(objects: Iterable[dict[str, Any]]) -> dict[ObjectKey, dict[str, Any]]:
    keyed: dict[ObjectKey, dict[str, Any]] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in keyed, f"{key} rendered twice"
        keyed[key] = obj
    return keyed


def without_helm_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the chart adds for Helm alone (the CRDs' resource policy)."""
    meta = dict(obj["metadata"])
    annotations = dict(meta.get("annotations", {}))
    annotations.pop("helm.sh/resource-policy", None)
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    return {**obj, "metadata": meta}


def one(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: rendered {len(found)} times"
    return found[0]


def pod_spec(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} in {args}"
    return args[args.index(name) + 1]


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- one source of truth ---------------------------------------------------------------------


def test_generated_templates_are_those_of_deploy() -> None:
    """Run `python -m tools.generate_helm_chart` after changing deploy/ or crds/."""
    assert generate_helm_chart.differences(generate_helm_chart.generate()) == []


def test_default_values_render_what_kustomize_renders(helm: Helm, tmp_path: Path) -> None:
    """Object by object, field by field: the hand-written workloads included."""
    rendered = through_kustomize(helm.template_text(), tmp_path)
    chart = by_key(without_helm_metadata(o) for o in rendered)
    base = by_key(kustomize("deploy"))
    assert sorted(chart) == sorted(base)
    for key, obj in base.items():
        assert chart[key] == obj, f"{key} differs between the chart and deploy/"


def test_monitoring_renders_what_deploy_prometheus_adds(helm: Helm, tmp_path: Path) -> None:
    rendered = through_kustomize(helm.template_text({"monitoring": {"enabled": True}}), tmp_path)
    chart = by_key(without_helm_metadata(o) for o in rendered)
    prometheus = by_key(kustomize("deploy/prometheus"))
    assert sorted(chart) == sorted(prometheus)
    for key, obj in prometheus.items():
        assert chart[key] == obj, f"{key} differs between the chart and deploy/prometheus"


def test_the_crds_are_kept_on_uninstall_and_equal_those_of_crds(helm: Helm) -> None:
    crds = [o for o in helm.template() if o["kind"] == "CustomResourceDefinition"]
    on_disk = {
        doc["metadata"]["name"]: doc
        for path in sorted((REPO_ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(on_disk)
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert without_helm_metadata(crd) == on_disk[crd["metadata"]["name"]]


# --- helm lint -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, NON_DEFAULT], ids=["defaults", "non-default"])
def test_helm_lint_strict(helm: Helm, values: dict[str, Any] | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        values_file = helm.home / "lint-values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["--values", str(values_file)]
    out = helm.run(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


# --- every value reaches its objects ---------------------------------------------------------


@pytest.fixture(scope="module")
def non_default(helm: Helm) -> list[dict[str, Any]]:
    return helm.template(NON_DEFAULT)


def test_image_and_pull_secrets_reach_both_workloads(non_default: list[dict[str, Any]]) -> None:
    agent = pod_spec(non_default, "DaemonSet", "seccomp-sync-agent")
    controller = pod_spec(non_default, "Deployment", "seccomp-sync-controller")
    containers = [*agent["initContainers"], *agent["containers"], *controller["containers"]]
    assert [(c["image"], c["imagePullPolicy"]) for c in containers] == [
        ("registry.example/sec/agent:1.2.3", "Always")
    ] * 3
    for spec in (agent, controller):
        assert spec["imagePullSecrets"] == [{"name": "pull-a"}, {"name": "pull-b"}]


def test_default_image_tag_is_the_charts_app_version(helm: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    agent = pod_spec(helm.template(), "DaemonSet", "seccomp-sync-agent")
    assert agent["containers"][0]["image"] == f"ghcr.io/seccomp-sync/agent:{app_version}"


def test_kubelet_root_dir_reaches_the_host_path_and_the_agent(
    non_default: list[dict[str, Any]],
) -> None:
    agent = pod_spec(non_default, "DaemonSet", "seccomp-sync-agent")
    directory = "/var/lib/k0s/kubelet/seccomp/seccomp-sync"
    volumes = {v["name"]: v for v in agent["volumes"]}
    assert volumes["profiles"]["hostPath"] == {"path": directory, "type": "DirectoryOrCreate"}
    container, init = agent["containers"][0], agent["initContainers"][0]
    assert flag(container["args"], "--root") == "/var/lib/k0s/kubelet/seccomp"
    for c in (container, init):
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["profiles"] == directory
    # The recorder's socket directory does not move with the kubelet's root: runc finds it there.
    assert volumes["recorder"]["hostPath"] == {
        "path": "/run/seccomp-sync",
        "type": "DirectoryOrCreate",
    }
    assert init["command"] == ["chown", "65532:65532", directory, "/run/seccomp-sync"]


def test_scheduling_values_reach_their_workloads(non_default: list[dict[str, Any]]) -> None:
    agent = pod_spec(non_default, "DaemonSet", "seccomp-sync-agent")
    controller = pod_spec(non_default, "Deployment", "seccomp-sync-controller")
    assert agent["tolerations"] == [
        *NON_DEFAULT["agent"]["tolerations"],
        {"key": STARTUP_TAINT, "operator": "Exists"},
    ]
    assert controller["tolerations"] == NON_DEFAULT["controller"]["tolerations"]
    assert agent["nodeSelector"] == {"pool": "workers"}
    assert controller["nodeSelector"] == {"pool": "infra", "kubernetes.io/os": "linux"}
    assert agent["affinity"] == NON_DEFAULT["agent"]["affinity"]
    # Merged with the default anti-affinity (Helm merges maps; `affinity: null` drops it).
    assert controller["affinity"] == {
        **NON_DEFAULT["controller"]["affinity"],
        **yaml.safe_load((CHART / "values.yaml").read_text())["controller"]["affinity"],
    }
    assert agent["priorityClassName"] == "platform-critical"
    assert controller["priorityClassName"] == "platform-high"
    assert one(non_default, "Deployment", "seccomp-sync-controller")["spec"]["replicas"] == 3


def test_resources_env_annotations_and_ports_reach_their_containers(
    non_default: list[dict[str, Any]],
) -> None:
    for kind, name, key in (
        ("DaemonSet", "seccomp-sync-agent", "agent"),
        ("Deployment", "seccomp-sync-controller", "controller"),
    ):
        workload = one(non_default, kind, name)
        container = workload["spec"]["template"]["spec"]["containers"][0]
        values = NON_DEFAULT[key]
        assert container["resources"] == values["resources"]
        assert env(container)["EXTRA"] == key
        assert env(container)["SECCOMP_SYNC_LOG_FORMAT"] == "text"
        assert workload["spec"]["template"]["metadata"]["annotations"] == values["podAnnotations"]
        assert flag(container["args"], "--http-host") == values["httpHost"]
        assert flag(container["args"], "--http-port") == str(values["httpPort"])
        assert container["ports"] == [
            {"name": "metrics", "containerPort": values["httpPort"], "protocol": "TCP"}
        ]
        assert workload["spec"]["template"]["spec"]["hostNetwork"] is True
        assert workload["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_grace_period_reaches_the_controller(non_default: list[dict[str, Any]]) -> None:
    controller = pod_spec(non_default, "Deployment", "seccomp-sync-controller")
    assert flag(controller["containers"][0]["args"], "--grace-seconds") == "45"


def test_switches_remove_exactly_their_objects(
    helm: Helm, non_default: list[dict[str, Any]]
) -> None:
    """Gating off: no MutatingAdmissionPolicy (pods are not held, nor recorded); the agents'
    own-node policy stays. Tenant policy off: the three tenant policies and bindings go.
    Monitoring on: three more."""
    default = by_key(helm.template())
    changed = by_key(non_default)
    assert sorted(set(default) - set(changed)) == [
        ("MutatingAdmissionPolicy", "", "seccomp-sync-profiles-ready"),
        ("MutatingAdmissionPolicy", "", "seccomp-sync-recording"),
        ("MutatingAdmissionPolicyBinding", "", "seccomp-sync-profiles-ready"),
        ("MutatingAdmissionPolicyBinding", "", "seccomp-sync-recording"),
        ("ValidatingAdmissionPolicy", "", "seccomp-sync-tenant-pods"),
        ("ValidatingAdmissionPolicy", "", "seccomp-sync-tenant-profiles"),
        ("ValidatingAdmissionPolicy", "", "seccomp-sync-tenant-recordings"),
        ("ValidatingAdmissionPolicyBinding", "", "seccomp-sync-tenant-pods"),
        ("ValidatingAdmissionPolicyBinding", "", "seccomp-sync-tenant-profiles"),
        ("ValidatingAdmissionPolicyBinding", "", "seccomp-sync-tenant-recordings"),
    ]
    assert sorted(set(changed) - set(default)) == [
        ("PrometheusRule", "seccomp-sync", "seccomp-sync"),
        ("ServiceMonitor", "seccomp-sync", "seccomp-sync-agent"),
        ("ServiceMonitor", "seccomp-sync", "seccomp-sync-controller"),
    ]
    assert ("ValidatingAdmissionPolicy", "", "seccomp-sync-agent-own-node") in changed
    for key in sorted(set(changed) - set(default)):
        assert changed[key]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_alert_templates_reach_prometheus_unevaluated(non_default: list[dict[str, Any]]) -> None:
    rule = one(non_default, "PrometheusRule", "seccomp-sync")
    summaries = [r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "{{ $labels.namespace }}/{{ $labels.profile }}" in summaries[0]


# --- the agent tolerates its startup taint, whatever the user lists --------------------------


@pytest.mark.parametrize(
    ("tolerations", "expected"),
    [
        ([], [{"key": STARTUP_TAINT, "operator": "Exists"}]),
        ([{"operator": "Exists"}], [{"operator": "Exists"}]),
        (
            [{"key": STARTUP_TAINT, "operator": "Exists"}],
            [{"key": STARTUP_TAINT, "operator": "Exists"}],
        ),
        (
            [{"key": STARTUP_TAINT, "operator": "Exists", "effect": "NoExecute"}],
            [
                {"key": STARTUP_TAINT, "operator": "Exists", "effect": "NoExecute"},
                {"key": STARTUP_TAINT, "operator": "Exists"},
            ],
        ),
        (
            [{"key": "gpu", "operator": "Exists"}],
            [{"key": "gpu", "operator": "Exists"}, {"key": STARTUP_TAINT, "operator": "Exists"}],
        ),
    ],
    ids=["none", "everything", "exactly-it", "one-effect-only", "another-taint"],
)
def test_agent_always_tolerates_its_startup_taint(
    helm: Helm, tolerations: list[dict[str, str]], expected: list[dict[str, str]]
) -> None:
    agent = pod_spec(
        helm.template({"agent": {"tolerations": tolerations}}), "DaemonSet", "seccomp-sync-agent"
    )
    assert agent["tolerations"] == expected


# --- wrong values fail at helm template / install ---------------------------------------------


WRONG_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "replicas-string": (
        {"controller": {"replicas": "two"}},
        "at '/controller/replicas': got string, want integer",
    ),
    "unknown-key": (
        {"agent": {"tolerationz": []}},
        "at '/agent': additional properties 'tolerationz' not allowed",
    ),
    "unknown-top-level": ({"imagePullSecret": "x"}, "'imagePullSecret' not allowed"),
    "log-format": ({"logFormat": "yaml"}, "at '/logFormat'"),
    "relative-root": ({"kubeletRootDir": "var/lib/kubelet"}, "at '/kubeletRootDir'"),
    "pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    "negative-grace": ({"gating": {"graceSeconds": -1}}, "at '/gating/graceSeconds'"),
    "toleration-operator": (
        {"agent": {"tolerations": [{"operator": "exists"}]}},
        "at '/agent/tolerations/0/operator'",
    ),
}


@pytest.mark.parametrize(("values", "message"), WRONG_VALUES.values(), ids=WRONG_VALUES.keys())
def test_schema_refuses_wrong_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError) as refused:
        helm.template(values)
    assert "values don't meet the specifications of the schema" in refused.value.stderr
    assert message in refused.value.stderr


def test_release_namespace_seccomp_sync_is_refused_with_the_fix(helm: Helm) -> None:
    with pytest.raises(HelmError) as refused:
        helm.run("template", "seccomp-sync", str(CHART), "--namespace", "seccomp-sync")
    assert "install the release into another namespace" in refused.value.stderr


def test_null_drops_a_default_map(helm: Helm) -> None:
    """Helm merges a map value with the default: `affinity: null` is how to drop it."""
    objects = helm.template({"controller": {"affinity": None, "nodeSelector": None}})
    controller = pod_spec(objects, "Deployment", "seccomp-sync-controller")
    assert "affinity" not in controller
    assert "nodeSelector" not in controller
