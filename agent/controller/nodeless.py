"""Node reports whose Node does not exist: counted for nothing, and said so once.

An agent run outside a node (a laptop, a CI job with a kubeconfig) or a report left after its
Node went without an owner reference would otherwise stand for a node nobody can schedule to:
READY would never reach n/n and gated pods would wait for it. `ClusterState.counted_reports`
leaves them out; this part tells the operator, once per report, with a Warning Event on the
SeccompNodeStatus, a log line and a gauge, so the leftover can be found and deleted.

A report and its Node come through two watches, so either may arrive first; a report is only
called nodeless after it has been so for `GRACE_SECONDS`, so a node that joins is not warned of.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from agent.controller.metrics import ControllerMetrics
from agent.controller.state import ClusterState
from agent.runtime.events import EventSink

log = logging.getLogger(__name__)

GRACE_SECONDS: Final = 10.0
CHECK_SECONDS: Final = 2.0
EVENT_REASON: Final = "NoSuchNode"


class NodelessReports:
    """Runs while this controller leads (only the leader posts Events)."""

    def __init__(self, state: ClusterState, events: EventSink, metrics: ControllerMetrics) -> None:
        self._state = state
        self._events = events
        self._metrics = metrics
        self._since: dict[str, float] = {}  # node name -> when first seen without its Node
        self._warned: set[str] = set()

    async def run(self) -> None:
        try:
            while True:
                self.check(time.monotonic())
                await asyncio.sleep(CHECK_SECONDS)
        finally:
            self._metrics.nodeless_reports.set(0)

    def check(self, now: float) -> list[str]:
        """Update the gauge; warn about each report nodeless for the grace period, once.
        Returns the nodes warned about now."""
        if not (self._state.reports_listed and self._state.nodes_listed):
            return []
        nodeless = {report.node: report for report in self._state.nodeless_reports()}
        self._metrics.nodeless_reports.set(len(nodeless))
        # A report that got its Node, or is gone, is forgotten: should it lose its Node again,
        # that is news again.
        for node in set(self._since) - set(nodeless):
            self._since.pop(node, None)
            self._warned.discard(node)
        warned = []
        for node, report in sorted(nodeless.items()):
            since = self._since.setdefault(node, now)
            if node in self._warned or now - since < GRACE_SECONDS:
                continue
            self._warned.add(node)
            warned.append(node)
            message = (
                f"there is no Node {node}: this report counts for no SeccompProfile (READY and "
                "the scheduling gate leave it out). If no such node will join, delete it: "
                f"kubectl delete seccompnodestatus {node}"
            )
            log.warning("node report without a Node", extra={"node": node})
            self._events.warn("", node, report.uid, EVENT_REASON, message)
        return warned
