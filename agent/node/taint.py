"""Node gating: remove the startup taint from this node once its profiles are on disk."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.kube.client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)

STARTUP_TAINT_KEY = "seccompsync.io/agent-not-ready"
ATTEMPTS = 5


def remove_startup_taint(api: client.ApiClient, node_name: str) -> bool:
    """True if the taint was removed; optimistic concurrency, so no other taint is lost."""
    core = client.CoreV1Api(api)
    for _ in range(ATTEMPTS):
        node = core.read_node(node_name, _request_timeout=REQUEST_TIMEOUT)
        taints = (node.spec.taints if node.spec else None) or []
        kept = [t for t in taints if t.key != STARTUP_TAINT_KEY]
        if len(kept) == len(taints):
            return False
        patch = {
            "metadata": {
                "resourceVersion": node.metadata.resource_version if node.metadata else None
            },
            "spec": {"taints": [_taint_dict(t) for t in kept]},
        }
        try:
            core.patch_node(node_name, patch, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:
                continue  # the node changed under us: read it again
            raise
        log.info("removed the startup taint", extra={"node": node_name, "taint": STARTUP_TAINT_KEY})
        return True
    log.warning("could not remove the startup taint: too many conflicts", extra={"node": node_name})
    return False


def _taint_dict(taint: client.V1Taint) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": taint.key, "effect": taint.effect}
    if taint.value is not None:
        entry["value"] = taint.value
    if taint.time_added is not None:
        entry["timeAdded"] = taint.time_added.isoformat()
    return entry
