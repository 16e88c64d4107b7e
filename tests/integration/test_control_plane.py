"""The test control plane behaves like a real cluster where the agent's tests
rely on it: fake Nodes stay Ready, the scheduler binds pods, the garbage
collector and the namespace controller run, RBAC and ServiceAccount tokens
work, and a restart keeps the data."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.nodes import ready_status

if TYPE_CHECKING:
    # Only for annotations: the fixture comes from the plugin, so this module
    # does not need the repo root on sys.path.
    from tests.cluster.pytest_plugin import Cluster

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Poll condition until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def is_not_found(call: Callable[[], object]) -> bool:
    try:
        call()
    except ApiException as err:
        if err.status == 404:
            return True
        raise
    return False


@pytest.fixture
def core(cluster: Cluster) -> Iterator[client.CoreV1Api]:
    with cluster.api_client() as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods need it)."""
    name = unique("test")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: not is_not_found(lambda: core.read_namespaced_service_account("default", name)),
        f"default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture
def ready_node(core: client.CoreV1Api) -> Iterator[str]:
    """A fake, schedulable Node reporting Ready, with no kubelet behind it."""
    name = unique("fake-node")
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name}),
            status=ready_status(),
        )
    )
    # Set the status explicitly through the status subresource, as a kubelet
    # would, rather than rely on create keeping it. A patch, not a
    # read-modify-replace: controllers (ttl) update new Nodes concurrently.
    status = core.api_client.sanitize_for_serialization(ready_status())
    core.patch_node_status(name, {"status": status})
    yield name
    core.delete_node(name)


def node_is_ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_fake_node_stays_ready(core: client.CoreV1Api, ready_node: str) -> None:
    node = core.read_node(ready_node)
    assert node_is_ready(node)
    assert node.status.allocatable == {"cpu": "4", "memory": "8Gi", "pods": "110"}

    # Long enough for the controller-manager's node monitor (5s period) to
    # have looked at it, were the node-lifecycle controller running.
    time.sleep(6)
    node = core.read_node(ready_node)
    assert node_is_ready(node)
    assert not node.spec.taints, f"node got tainted: {node.spec.taints}"


def test_scheduler_binds_pod_to_fake_node(
    core: client.CoreV1Api, namespace: str, ready_node: str
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="pause"),
        spec=client.V1PodSpec(
            # Pin to this test's node: other fake nodes may exist in the session.
            node_selector={"kubernetes.io/hostname": ready_node},
            containers=[
                client.V1Container(
                    name="pause",
                    image="registry.k8s.io/pause:3.10",
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": "100m", "memory": "16Mi"}
                    ),
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    assert pod.spec.tolerations is None

    node_name = wait_for(
        lambda: core.read_namespaced_pod("pause", namespace).spec.node_name,
        "the scheduler to bind the pod",
    )
    assert node_name == ready_node
    scheduled = [
        c
        for c in core.read_namespaced_pod("pause", namespace).status.conditions or []
        if c.type == "PodScheduled"
    ]
    assert scheduled and scheduled[0].status == "True"


def test_garbage_collector_deletes_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"})
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            ),
            data={"k": "v"},
        ),
    )

    core.delete_namespaced_config_map("owner", namespace)

    wait_for(
        lambda: is_not_found(lambda: core.read_namespaced_config_map("dependent", namespace)),
        "the garbage collector to delete the dependent ConfigMap",
    )


def test_namespace_deletion_removes_its_objects(core: client.CoreV1Api) -> None:
    name = unique("doomed")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )

    core.delete_namespace(name)

    # The namespace object only goes away after the namespace controller has
    # deleted everything in it and removed the "kubernetes" finalizer.
    wait_for(
        lambda: is_not_found(lambda: core.read_namespace(name)),
        f"namespace {name} to be deleted",
        timeout=60,
    )
    assert is_not_found(lambda: core.read_namespaced_config_map("content", name))


def test_rbac_is_enforced_for_service_accounts(cluster: Cluster, namespace: str) -> None:
    sa = f"system:serviceaccount:{namespace}:default"

    def can_list_configmaps() -> str:
        # `auth can-i` exits 1 for "no"; its stdout is the answer.
        result = cluster.kubectl(
            "auth", "can-i", "list", "configmaps", "-n", namespace, "--as", sa, check=False
        )
        return result.stdout.strip()

    assert can_list_configmaps() == "no"
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:default",
    )
    assert wait_for(lambda: can_list_configmaps() == "yes", "the RoleBinding to take effect")


def username_for_token(cluster: Cluster, token: str) -> str:
    """Who the apiserver thinks a bearer token is (no client certificate sent)."""
    with cluster.api_client() as admin:
        config = client.Configuration()
        config.host = admin.configuration.host
        config.ssl_ca_cert = admin.configuration.ssl_ca_cert
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
        with client.ApiClient(config) as as_token:
            review = client.AuthenticationV1Api(as_token).create_self_subject_review(
                client.V1SelfSubjectReview()
            )
    return review.status.user_info.username


def test_service_account_tokens_authenticate(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    # TokenRequest, signed by the apiserver.
    token = cluster.kubectl("-n", namespace, "create", "token", "default").stdout.strip()
    assert username_for_token(cluster, token) == f"system:serviceaccount:{namespace}:default"

    # Legacy token Secret, filled in by the controller-manager's token
    # controller: proves it has the signing key and the root CA.
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="default-token", annotations={"kubernetes.io/service-account.name": "default"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    secret = wait_for(
        lambda: (
            (s := core.read_namespaced_secret("default-token", namespace)).data
            and "token" in s.data
            and s
        ),
        "the token controller to fill in the Secret",
    )
    assert "ca.crt" in secret.data
    legacy_token = base64.b64decode(secret.data["token"]).decode()
    assert username_for_token(cluster, legacy_token) == f"system:serviceaccount:{namespace}:default"


def test_restart_keeps_data_and_address(cluster: Cluster) -> None:
    # Last in this file: it interrupts the control plane for everyone.
    name = unique("survivor")
    with cluster.api_client() as api_client:
        client.CoreV1Api(api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    kubeconfig_before = cluster.kubeconfig.read_text()

    cluster.restart()

    # Same server address and credentials: kubeconfigs handed out earlier
    # keep working.
    assert cluster.kubeconfig.read_text() == kubeconfig_before
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        assert core.read_namespace(name).status.phase == "Active"
        core.delete_namespace(name)
