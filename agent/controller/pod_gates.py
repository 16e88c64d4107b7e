"""The gate handler's writes (`gates.PodGates`): release a pod (one JSON patch), and tell its
owner why not. Through the API, or into an in-memory fake for tests of what the handler
decides."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.controller.gated_pods import GatedPod
from agent.kube.client import REQUEST_TIMEOUT
from agent.kube.events import EventRecorder

log = logging.getLogger(__name__)

COMPONENT: Final = "seccomp-sync-controller"


class ApiPodGates:
    def __init__(self, api: client.ApiClient, identity: str) -> None:
        self._core = client.CoreV1Api(api)
        # No "controller NAME:" prefix: only the leader posts, and the message is the pod's.
        self._events = EventRecorder(
            api, api_version="v1", kind="Pod", instance=identity, component=COMPONENT
        )

    def release(self, pod: GatedPod, ops: list[dict[str, Any]]) -> bool:
        try:
            # The API server answers with the whole patched pod; only the status code matters
            # here. Read raw, it is not built into the client's models (about a millisecond of
            # CPU per pod, under the interpreter lock the other releases need too).
            response = cast(  # what `_preload_content=False` returns, whatever the annotation
                urllib3.BaseHTTPResponse,
                self._core.patch_namespaced_pod(
                    pod.name,
                    pod.namespace,
                    ops,
                    _request_timeout=REQUEST_TIMEOUT,
                    _preload_content=False,
                ),
            )
            response.drain_conn()  # read to the end, so the connection can serve the next one
            response.release_conn()
        except ApiException as exc:
            # 404: deleted; 409/422: its resourceVersion moved on (the `test` op failed). The
            # watch delivers the new version, and the decision is made again on it.
            level = logging.INFO if exc.status in (404, 409, 422) else logging.WARNING
            log.log(
                level,
                "could not release pod",
                extra={"pod": pod.ref, "status": exc.status, "reason": exc.reason},
            )
            return False
        except Exception as exc:  # timed out, refused, reset: the next pass (1 s) tries again
            log.warning(
                "could not release pod",
                extra={"pod": pod.ref, "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
            return False
        return True

    def warn(self, pod: GatedPod, reason: str, message: str) -> None:
        self._events.warn(pod.namespace, pod.name, pod.uid, reason, message)


@dataclass
class RecordedPodGates:
    """The fake: every release patch and Event kept by pod; pods in `changed` refuse release
    (as the API does when the pod moved on since the decision)."""

    released: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # pod ref -> ops
    events: list[tuple[str, str, str]] = field(default_factory=list)  # pod ref, reason, message
    changed: set[str] = field(default_factory=set)

    def release(self, pod: GatedPod, ops: list[dict[str, Any]]) -> bool:
        if pod.ref in self.changed:
            return False
        self.released[pod.ref] = ops
        return True

    def warn(self, pod: GatedPod, reason: str, message: str) -> None:
        self.events.append((pod.ref, reason, message))
