"""Report profiles that break a tenant policy made after them: the PolicyCompliant condition in
their status, the seccomp_sync_profile_policy_violations metric, and one Warning Event when a
profile becomes non-compliant. Nothing is removed: the profile stays on the nodes.

Runs inside the elected controller's status aggregator, which calls `report` for each profile
status it writes. The policies and the namespaces' labels are read every REFRESH_SECONDS while
leading (`read_policies`: two paged LISTs, none of namespaces while no policy exists):
policies change rarely, and a missed change only delays a report, never enforcement, which is
the API server's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION
from agent.controller.metrics import ControllerMetrics
from agent.controller.profile_status import ProfileView
from agent.kube.pager import list_items
from agent.profiles.tenancy.compliance import (
    PolicyContext,
    compliance_condition,
    compliance_findings,
    was_compliant,
)
from agent.profiles.tenancy.policy import PLURAL, PolicyFileError, parse_policy, selects
from agent.runtime.events import EventSink

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 30.0


class PolicyReporter:
    def __init__(
        self,
        read: Callable[[], PolicyContext],
        events: EventSink,
        metrics: ControllerMetrics,
        on_change: Callable[[], None],
    ) -> None:
        """`read` returns the policies and labels (`read_policies`, or a fake); `on_change` is
        called when they changed: every profile's report may have changed with them."""
        self._read = read
        self._events = events
        self._metrics = metrics
        self._on_change = on_change
        self._context = PolicyContext()

    async def run(self) -> None:
        """While leading: read the policies and labels, and re-report everything on a change."""
        while True:
            try:
                context = await asyncio.to_thread(self._read)
            except Exception as exc:  # API errors of any kind: keep the last view, try again
                log.warning(
                    "could not read tenant policies",
                    extra={"status": getattr(exc, "status", None), "error": str(exc)[:300]},
                )
            else:
                if context != self._context:
                    self._context = context
                    log.info("tenant policies changed", extra={"policies": len(context.policies)})
                    self._on_change()
            await asyncio.sleep(REFRESH_SECONDS)

    def report(
        self,
        view: ProfileView,
        status: dict[str, Any],
        previous_conditions: list[Mapping[str, Any]] | None,
        now: str,
    ) -> dict[str, Any]:
        """The status plus PolicyCompliant, when a policy selects the profile's namespace."""
        namespace, name = view.key.namespace, view.key.name
        labels = self._context.namespace_labels.get(namespace, {})
        if view.content is None or not self._selected(labels):
            self._metrics.profile_policy_violations.labels(namespace, name).set(0)
            return status
        findings = compliance_findings(self._context, namespace, view.content)
        self._metrics.profile_policy_violations.labels(namespace, name).set(len(findings))
        condition = compliance_condition(findings, view.generation, previous_conditions, now)
        if findings and was_compliant(previous_conditions):
            asyncio.get_running_loop().run_in_executor(
                None,
                self._events.warn,
                namespace,
                name,
                view.uid,
                "PolicyViolation",
                condition["message"],
            )
        return {**status, "conditions": [*status["conditions"], condition]}

    def _selected(self, labels: Mapping[str, str]) -> bool:
        return any(selects(p, labels) for p in self._context.policies)


def read_policies(api: client.ApiClient) -> PolicyContext:
    """The tenant policies, and the labels of the namespaces (only while a policy exists)."""
    policies = []
    listing = list_items(
        client.CustomObjectsApi(api).list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL
    )
    for item in listing:
        try:
            policies.append(parse_policy(item))
        except PolicyFileError as exc:  # the CRD schema should make this impossible
            log.warning(
                "ignoring a tenant policy that does not parse",
                extra={"policy": item.get("metadata", {}).get("name"), "error": str(exc)},
            )
    if not policies:
        return PolicyContext()
    labels: dict[str, dict[str, str]] = {}
    for namespace in list_items(client.CoreV1Api(api).list_namespace):
        meta = namespace.get("metadata") or {}
        if meta.get("name"):
            labels[str(meta["name"])] = {
                str(k): str(v) for k, v in (meta.get("labels") or {}).items()
            }
    return PolicyContext(tuple(policies), labels)
