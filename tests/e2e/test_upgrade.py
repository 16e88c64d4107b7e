"""Upgrades, rollbacks, a bad image, a controller that is down, and uninstalling, on a real node.

The previous release is real: the deploy/ manifests and the agent image of a pinned commit
(tests/node/release.py), applied through that commit's own overlay. With two profiles and two
pods running under them, each rollout is sampled about twice a second: every file's content
hash on the node, the pods' UIDs and restart counts, the node's taints, every profile's status
and the agent pods on the node. What docs/upgrades.md promises is checked on every sample, and
the samples are printed when a check fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.pytest_plugin import Cluster
from tests.e2e import gating, pods
from tests.e2e.test_node_seccomp import agent_pods, ready_agent, remove_agent
from tests.integration.conftest import apply_profile, replace_profile
from tests.integration.crds import install_crds
from tests.integration.profiles import DENY_MKDIR
from tests.integration.test_release_gates import release_command
from tests.node import agent_deploy
from tests.node.pytest_plugin import AgentImage, Node
from tests.node.release import Release, ReleaseBuildError, ReleaseUnavailableError, previous_release

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(600)]

STARTUP_TAINT = "seccompsync.io/agent-not-ready"
DENY_CHMOD = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ],
}
PROFILES = {"deny-mkdir": DENY_MKDIR, "deny-chmod": DENY_CHMOD}
ROLLOUT_TIMEOUT = "180s"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def release(node_with_image: Node) -> Release:
    """The previous release, built (cached) and its image on the node under its own tag."""
    try:
        found = previous_release()
    except ReleaseUnavailableError as err:
        pytest.skip(str(err))
    except ReleaseBuildError as err:
        pytest.fail(str(err), pytrace=False)
    node_with_image.import_image(found.archive)
    node_with_image.ctr("images", "tag", "--force", found.built_name(), found.image)
    return found


@dataclasses.dataclass
class Setup:
    node: Node
    namespace: str
    current: Path  # the current release's kustomization directory
    files: dict[str, str]  # profile file (relative to the node's seccomp-sync dir) -> sha256
    pods: dict[str, tuple[str, int]]  # pod -> (uid, restart count)


def rollout(cluster: Cluster, timeout: str = ROLLOUT_TIMEOUT) -> None:
    for workload in (
        f"daemonset/{agent_deploy.DAEMONSET}",
        f"deployment/{agent_deploy.CONTROLLER}",
    ):
        cluster.kubectl(
            "-n", agent_deploy.NAMESPACE, "rollout", "status", workload, f"--timeout={timeout}",
            timeout=240,
        )  # fmt: skip


def managed_files(node: Node) -> dict[str, str]:
    root = node.seccomp_root / "seccomp-sync"
    found = {}
    for path in sorted(root.rglob("*.json")):
        try:
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:  # removed between the listing and the read: recorded missing
            continue
    return found


def profile_states(cluster: Cluster, namespace: str) -> dict[str, str]:
    out = cluster.kubectl("-n", namespace, "get", "seccompprofiles", "-o", "json").stdout
    return {
        item["metadata"]["name"]: str(item.get("status", {}).get("state"))
        for item in json.loads(out)["items"]
    }


def profile_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "seccompprofile", name, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status", {})
    return status


def all_ready(cluster: Cluster, namespace: str) -> bool:
    states = profile_states(cluster, namespace)
    return len(states) == len(PROFILES) and set(states.values()) == {"Installed"}


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    files: dict[str, str]
    pods: dict[str, tuple[str, int, bool]]  # name -> (uid, restarts, running)
    tainted: bool
    profiles: dict[str, str]  # name -> status.state
    agents_ready: int  # Ready agent pods on the node

    def line(self, files: dict[str, str]) -> str:
        changed = sorted(k for k in files if self.files.get(k) != files[k])
        return (
            f"{self.at:6.1f}s files={len(self.files)} changed={changed} pods={self.pods} "
            f"tainted={self.tainted} profiles={self.profiles} agents_ready={self.agents_ready}"
        )


class Sampler:
    """Samples the node and the cluster in a thread, about twice a second, until stopped."""

    def __init__(self, setup: Setup, cluster: Cluster) -> None:
        self.setup, self.cluster = setup, cluster
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        from kubernetes import client

        with self.cluster.api_client() as api:
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            while not self._stop.is_set():
                try:
                    self.samples.append(self._sample(core, custom))
                except Exception as exc:  # an API hiccup is recorded, not fatal to the sampler
                    self.errors.append(f"{time.monotonic() - self._started:.1f}s: {exc}"[:300])
                time.sleep(0.4)

    def _sample(self, core: Any, custom: Any) -> Sample:
        ns, node = self.setup.namespace, self.setup.node.name
        pod_states = {}
        for name in self.setup.pods:
            pod = core.read_namespaced_pod(name, ns, _request_timeout=5)
            status = (pod.status.container_statuses or [None])[0]
            running = bool(status and status.state and status.state.running)
            pod_states[name] = (pod.metadata.uid, status.restart_count if status else -1, running)
        node_obj = core.read_node(node, _request_timeout=5)
        tainted = any(t.key == STARTUP_TAINT for t in node_obj.spec.taints or [])
        listing = custom.list_namespaced_custom_object(
            "seccompsync.io", "v1alpha1", ns, "seccompprofiles", _request_timeout=5
        )
        profiles = {
            item["metadata"]["name"]: str((item.get("status") or {}).get("state"))
            for item in listing["items"]
        }
        agents = core.list_namespaced_pod(
            agent_deploy.NAMESPACE, label_selector=agent_deploy.AGENT_LABEL,
            field_selector=f"spec.nodeName={node}", _request_timeout=5,
        )  # fmt: skip
        ready = sum(
            1
            for pod in agents.items
            if not pod.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        )
        return Sample(
            at=time.monotonic() - self._started,
            files=managed_files(self.setup.node),
            pods=pod_states,
            tainted=tainted,
            profiles=profiles,
            agents_ready=ready,
        )

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(2)  # a little after the rollout: a late removal would show
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self, final_files: dict[str, str], ready_throughout: bool = True) -> None:
        """What docs/upgrades.md promises, on every sample; prints them all when it fails.
        ``ready_throughout=False``: profiles may be not Ready for a while (an agent from before
        6430d7a reports "not synced" at its start); how long is printed."""
        setup = self.setup
        problems = []
        switched: set[str] = set()
        not_ready: list[float] = []
        for sample in self.samples:
            for path, before in setup.files.items():
                now = sample.files.get(path)
                if now is None:
                    problems.append(f"{sample.at:.1f}s: {path} missing")
                elif now not in (before, final_files.get(path)):
                    problems.append(f"{sample.at:.1f}s: {path} has content of neither release")
                elif now != before:
                    switched.add(path)
                elif path in switched:
                    problems.append(f"{sample.at:.1f}s: {path} went back to the old rendering")
            for name, (uid, restarts) in setup.pods.items():
                if sample.pods[name] != (uid, restarts, True):
                    problems.append(f"{sample.at:.1f}s: pod {name} disturbed: {sample.pods[name]}")
            if sample.tainted:
                problems.append(f"{sample.at:.1f}s: the node has the startup taint again")
            if set(sample.profiles.values()) != {"Installed"}:
                not_ready.append(sample.at)
                if ready_throughout:
                    problems.append(f"{sample.at:.1f}s: profiles not all Ready: {sample.profiles}")
            if sample.agents_ready < 1:
                problems.append(f"{sample.at:.1f}s: {sample.agents_ready} Ready agent(s)")
        if not_ready:
            print(f"profiles not all Ready in {len(not_ready)} of {len(self.samples)} samples, "
                  f"from {min(not_ready):.1f}s to {max(not_ready):.1f}s")  # fmt: skip
        table = "\n".join(s.line(setup.files) for s in self.samples)
        assert len(self.samples) >= 10, f"only {len(self.samples)} samples: {self.errors}"
        assert problems == [], "\n".join(problems[:20]) + f"\nsamples:\n{table}"


def deploy_previous(cluster: Cluster, release: Release, work_dir: Path) -> float:
    """The previous release's own overlay, applied but for its CRDs; returns the seconds to rollout.

    Its CRDs are left out: this session's control plane already stores v1beta1, and the API server
    refuses a CRD that drops a stored version (as it would on a cluster rolled back that way:
    docs/api-versions.md). The current CRDs still serve its v1alpha1, so its agent and controller
    run as they did. The CRDs' own upgrade, v1alpha1 storage to v1beta1 with the migration, is
    tested on a control plane of its own (tests/integration/test_storage_migration.py).
    """
    started = time.monotonic()
    directory = release.kustomization(cluster.state_dir, work_dir)
    rendered = cluster.kubectl("kustomize", str(directory), timeout=120).stdout
    kept = [
        document
        for document in yaml.safe_load_all(rendered)
        if document and document.get("kind") != "CustomResourceDefinition"
    ]
    manifest = work_dir / "previous-without-crds.yaml"
    manifest.write_text(yaml.safe_dump_all(kept))
    cluster.kubectl("apply", "-f", str(manifest), timeout=120)
    rollout(cluster)
    return time.monotonic() - started


def current_overlay(cluster: Cluster, image: AgentImage, work_dir: Path) -> Path:
    return agent_deploy.write_kustomization(
        work_dir,
        image.tag,
        agent_deploy.api_port(cluster.kubeconfig, cluster.kubectl_path),
        agent_deploy.free_port(),
    )


def wait_gating(cluster: Cluster, node: Node) -> None:
    probe_ns = f"e-probe-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", probe_ns)
    try:
        pods.poll(
            lambda: gating.new_pod_is_gated(cluster, probe_ns, node.name),
            60,
            "the gating policy to take effect",
            interval=0.5,
        )
    finally:
        cluster.kubectl("delete", "namespace", probe_ns, "--wait=false")


@pytest.fixture(scope="module")
def setup(
    crd: Cluster,
    node_with_image: Node,
    agent_image: AgentImage,
    release: Release,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    """The previous release installed, two profiles and two pods running under them."""
    remove_agent(crd)
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    seconds = deploy_previous(crd, release, tmp_path_factory.mktemp("previous"))
    print(f"\ninstall of the previous release ({release.commit[:7]}): {seconds:.1f}s")
    ready_agent(crd, node_with_image.name, release.image)
    wait_gating(crd, node_with_image)
    namespace = f"e-up-{uuid.uuid4().hex[:6]}"
    crd.kubectl("create", "namespace", namespace)
    try:
        for name, spec in PROFILES.items():
            apply_profile(crd, namespace, name, spec)
            pods.create(
                crd,
                namespace,
                pods.probe_pod(
                    f"app-{name}", node_with_image.name, pods.localhost_profile(namespace, name)
                ),
            )
        for name in PROFILES:
            pods.wait_probe_done(crd, namespace, f"app-{name}")
        pods.poll(lambda: all_ready(crd, namespace), 60, "both profiles Ready")
        pod_ids = {}
        for name in PROFILES:
            pod = pods.get(crd, namespace, f"app-{name}")
            pod_ids[pod["metadata"]["name"]] = (
                pod["metadata"]["uid"],
                int(pods.container_status(pod)["restartCount"]),
            )
        yield Setup(
            node=node_with_image,
            namespace=namespace,
            current=current_overlay(crd, agent_image, tmp_path_factory.mktemp("current")),
            files=managed_files(node_with_image),
            pods=pod_ids,
        )
    finally:
        crd.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        remove_agent(crd)
        crd.kubectl(
            "delete", "seccompnodestatus", node_with_image.name, "--ignore-not-found",
            check=False,
        )  # fmt: skip


def test_upgrade_and_rollback_never_disturb_a_pod_or_its_file(
    setup: Setup, crd: Cluster, agent_image: AgentImage, release: Release
) -> None:
    assert len(setup.files) == len(PROFILES)
    with Sampler(setup, crd) as upgrade:
        started = time.monotonic()
        crd.kubectl("apply", "-k", str(setup.current), timeout=120)
        rollout(crd)
        upgrade_seconds = time.monotonic() - started
    print(f"\nupgrade {release.commit[:7]} -> current: {upgrade_seconds:.1f}s (apply to rollout)")
    assert ready_agent(crd, setup.node.name, agent_image.name)
    final = managed_files(setup.node)
    upgrade.check(final)

    with Sampler(setup, crd) as rollback:
        started = time.monotonic()
        for workload in (
            f"daemonset/{agent_deploy.DAEMONSET}",
            f"deployment/{agent_deploy.CONTROLLER}",
        ):
            crd.kubectl("-n", agent_deploy.NAMESPACE, "rollout", "undo", workload)
        rollout(crd)
        rollback_seconds = time.monotonic() - started
    print(f"rollback (rollout undo) -> {release.commit[:7]}: {rollback_seconds:.1f}s")
    assert ready_agent(crd, setup.node.name, release.image)
    # The previous release's agent announces itself "not synced" at its start (fixed since).
    rollback.check(setup.files, ready_throughout=False)

    # Forward again, for the tests that follow: the undo of the undo.
    for workload in (
        f"daemonset/{agent_deploy.DAEMONSET}",
        f"deployment/{agent_deploy.CONTROLLER}",
    ):
        crd.kubectl("-n", agent_deploy.NAMESPACE, "rollout", "undo", workload)
    rollout(crd)


def test_bad_image_stops_the_rollout_and_the_node_catches_up(
    setup: Setup, crd: Cluster, agent_image: AgentImage, tmp_path: Path
) -> None:
    node, ns = setup.node, setup.namespace
    old = ready_agent(crd, node.name, agent_image.name)
    bad = agent_image.name.rsplit(":", 1)[0] + ":no-such-tag"
    patch = agent_deploy.agent_rollout_patch(bad, agent_deploy.free_port())
    crd.kubectl(
        "-n", agent_deploy.NAMESPACE, "patch", f"daemonset/{agent_deploy.DAEMONSET}",
        "--type=json", "-p", json.dumps(patch),
    )  # fmt: skip

    def new_pod_stuck() -> str | None:
        for pod in agent_pods(crd, node.name):
            if pod["spec"]["containers"][0]["image"] == bad:
                for status in pod["status"].get("initContainerStatuses") or []:
                    reason = (status.get("state", {}).get("waiting") or {}).get("reason")
                    if reason in ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"):
                        return str(reason)
        return None

    assert (
        pods.poll(new_pod_stuck, 60, "the new agent pod to fail its image") == "ErrImageNeverPull"
    )
    stalled = crd.kubectl(
        "-n", agent_deploy.NAMESPACE, "rollout", "status", f"daemonset/{agent_deploy.DAEMONSET}",
        "--timeout=10s", check=False, timeout=60,
    )  # fmt: skip
    assert stalled.returncode != 0, stalled.stdout
    # The surge: the old agent still runs and still writes. A change made now reaches the node.
    assert (
        ready_agent(crd, node.name, agent_image.name)["metadata"]["uid"] == old["metadata"]["uid"]
    )
    changed = {**DENY_CHMOD, "syscalls": [{**DENY_CHMOD["syscalls"][0], "errnoRet": 13}]}
    replace_profile(crd, ns, "deny-chmod", changed)
    pods.poll(lambda: all_ready(crd, ns), 60, "the change Ready while the rollout is stuck")
    for path, sha in setup.files.items():
        if "deny-mkdir" in path:
            assert managed_files(node)[path] == sha

    # Now the old agent's pod goes too (evicted, deleted): the node has no running agent. Its
    # files stay; a profile changed meanwhile is reported behind on that node, by name.
    crd.kubectl(
        "-n", agent_deploy.NAMESPACE, "delete", "pod", old["metadata"]["name"], "--wait=true",
        timeout=120,
    )  # fmt: skip
    before = managed_files(node)
    replace_profile(crd, ns, "deny-chmod", DENY_CHMOD)

    def behind() -> dict[str, Any] | None:
        status = profile_status(crd, ns, "deny-chmod")
        return status if status.get("state") != "Installed" and status.get("failingNodes") else None

    status = pods.poll(behind, 60, "the profile's status to name the node that is behind")
    assert status["failingNodes"] == [
        {
            "node": node.name,
            "state": "Pending",
            "reason": "Outdated",
            "message": "the node still has an earlier version of the profile",
        }
    ]
    assert f"waiting for {node.name}" in status["conditions"][0]["message"]
    assert managed_files(node) == before  # nothing removed, nothing changed
    for name, (uid, restarts) in setup.pods.items():
        pod = pods.get(crd, ns, name)
        assert (pod["metadata"]["uid"], pods.container_status(pod)["restartCount"]) == (
            uid,
            restarts,
        )

    # The tag fixed: the rollout completes and the node catches up.
    fixed = current_overlay(crd, agent_image, tmp_path / "fixed")
    crd.kubectl("apply", "-k", str(fixed), timeout=120)
    rollout(crd)
    pods.poll(lambda: all_ready(crd, ns), 60, "the node to catch up")
    assert managed_files(node) != before
    assert_restarts_under(crd, ns, "app-deny-mkdir")


def assert_restarts_under(crd: Cluster, namespace: str, name: str) -> None:
    pods.restart_container(crd, namespace, name)
    log = pods.wait_probe_done(crd, namespace, name)
    assert "mkdir=failed" in log


def scale_controller(crd: Cluster, replicas: int) -> None:
    crd.kubectl(
        "-n", agent_deploy.NAMESPACE, "scale", f"deployment/{agent_deploy.CONTROLLER}",
        f"--replicas={replicas}",
    )  # fmt: skip
    crd.kubectl(
        "-n", agent_deploy.NAMESPACE, "rollout", "status", f"deployment/{agent_deploy.CONTROLLER}",
        f"--timeout={ROLLOUT_TIMEOUT}", timeout=240,
    )  # fmt: skip
    if replicas == 0:

        def gone() -> bool:
            out = crd.kubectl(
                "-n", agent_deploy.NAMESPACE, "get", "pods", "-o", "name",
                "-l", agent_deploy.CONTROLLER_LABEL,
            ).stdout  # fmt: skip
            return out.strip() == ""

        pods.poll(gone, 60, "the controller's pods to be gone")


def gated_probe(crd: Cluster, node: Node, namespace: str, name: str) -> None:
    profile = pods.localhost_profile(namespace, "deny-mkdir")
    pods.create(crd, namespace, pods.probe_pod(name, node.name, profile))
    assert gating.gates_of(pods.get(crd, namespace, name)) == [gating.GATE]


def test_controller_down_gated_pods_wait_and_the_documented_command_releases_them(
    setup: Setup, crd: Cluster
) -> None:
    node, ns = setup.node, setup.namespace
    scale_controller(crd, 0)
    try:
        gated_probe(crd, node, ns, "waits-for-controller")
        gated_probe(crd, node, ns, "released-by-hand")
        time.sleep(15)  # far longer than the controller takes to release a pod (under 1 s)
        for name in ("waits-for-controller", "released-by-hand"):
            pod = pods.get(crd, ns, name)
            assert gating.gates_of(pod) == [gating.GATE]
            assert not pod["spec"].get("nodeName")

        # By hand, as docs/upgrades.md says (for the test's namespace): one pod only here.
        command = release_command(ns).replace(
            "--field-selector=spec.nodeName=",
            "--field-selector=metadata.name=released-by-hand,spec.nodeName=",
        )
        run_documented(crd, command)
        assert "mkdir=failed" in pods.wait_probe_done(crd, ns, "released-by-hand")
        assert gating.gates_of(pods.get(crd, ns, "waits-for-controller")) == [gating.GATE]
    finally:
        scale_controller(crd, 1)
    # Back: the controller releases the pod that waited.
    assert "mkdir=failed" in pods.wait_probe_done(crd, ns, "waits-for-controller")
    assert pods.container_status(pods.get(crd, ns, "waits-for-controller"))["restartCount"] == 0


def run_documented(crd: Cluster, command: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{crd.kubectl_path.parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(crd.kubeconfig),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_uninstall_keeps_running_pods_and_releases_gated_ones_then_cleans_up(
    setup: Setup, crd: Cluster
) -> None:
    """Last in this module: it removes the CRDs (and puts them back for later modules)."""
    node, ns = setup.node, setup.namespace
    scale_controller(crd, 0)  # so that a pod is still gated when the product goes
    gated_probe(crd, node, ns, "gated-at-uninstall")
    files = managed_files(node)
    kept = crd.kubectl("get", "crd", "-l", "app.kubernetes.io/component=crd", "-o", "name")
    # One per file of crds/ (four since the recording's): every one carries the label.
    crd_files = list((REPO / "crds").glob("*.yaml"))
    assert len(kept.stdout.split()) == len(crd_files) == 4, (
        "every CRD must carry the label uninstall keeps"
    )
    try:
        crd.kubectl(
            "delete", "-k", str(setup.current), "-l", "app.kubernetes.io/component!=crd",
            "--wait=true", timeout=240,
        )  # fmt: skip
        assert crd.kubectl("get", "namespace", agent_deploy.NAMESPACE, check=False).returncode != 0
        left = crd.kubectl("get", *agent_deploy.CLUSTER_OBJECTS, "--ignore-not-found", "-o", "name")
        assert left.stdout.strip() == ""
        assert sorted(profile_states(crd, ns)) == sorted(PROFILES)  # the profiles stay
        assert managed_files(node) == files
        assert not gating.new_pod_is_gated(crd, ns, node.name)
        # Running pods keep running and can restart: their files are on the node.
        for name, (uid, _) in setup.pods.items():
            assert pods.get(crd, ns, name)["metadata"]["uid"] == uid
        assert_restarts_under(crd, ns, "app-deny-mkdir")

        # The way out for the pod gated at uninstall time, as documented.
        pod = pods.get(crd, ns, "gated-at-uninstall")
        assert gating.gates_of(pod) == [gating.GATE] and not pod["spec"].get("nodeName")
        run_documented(crd, release_command(ns))
        assert "mkdir=failed" in pods.wait_probe_done(crd, ns, "gated-at-uninstall")

        # Clean-up, as documented: the profiles (this test's namespace: the control plane is
        # shared with tests running in parallel), then the CRDs (dry run, for the same reason:
        # it names exactly ours, and nothing holds them, as no profile has a finalizer).
        crd.kubectl("-n", ns, "delete", "seccompprofiles", "--all", "--wait=true", timeout=120)
        assert profile_states(crd, ns) == {}
        dry_run = crd.kubectl("delete", "-k", str(REPO / "crds"), "--dry-run=server", "-o", "name")
        assert sorted(dry_run.stdout.split()) == [
            "customresourcedefinition.apiextensions.k8s.io/seccompnodestatuses.seccompsync.io",
            "customresourcedefinition.apiextensions.k8s.io/seccompprofilerecordings.seccompsync.io",
            "customresourcedefinition.apiextensions.k8s.io/seccompprofiles.seccompsync.io",
            "customresourcedefinition.apiextensions.k8s.io/seccomptenantpolicies.seccompsync.io",
        ]
        assert managed_files(node) == files  # no agent ran: the files are the user's to remove
    finally:
        install_crds(crd)  # the apply -k of the next test puts back what uninstall removed
