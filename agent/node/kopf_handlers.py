"""kopf's handler for the pods on this node: a thin, level-based translation of watch events
into a NodeAgent call (which profiles each pod pins). Profiles are not watched through kopf:
its per-event machinery was a third of a cold start's CPU (agent/node/profile_watch.py).

Standalone and write-free: no peering, no finalizers, no progress or diff-base annotations.
Handlers are `async` so they run on the event loop with the agent (kopf runs plain functions in
a thread pool).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agent.node.agent import NodeAgent

LIST_CHUNK_SIZE = 10


def build_registry(agent: NodeAgent, connection: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events only, written for people
        settings.peering.standalone = True
        settings.peering.mandatory = False
        # Bounded concurrency: a node can run hundreds of pods, and each worker only hands
        # its pod to the agent and leaves soon after, so a bounded pool still moves quickly.
        settings.queueing.worker_limit = 128
        settings.queueing.idle_timeout = 0.05
        # Page the initial listing: kopf otherwise fetches every object in one response.
        settings.watching.chunk_size = LIST_CHUNK_SIZE
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 30
        # Only this node's pods: the agent's memory and watch traffic must not grow with the
        # cluster's pod count.
        settings.watching.field_selectors["v1", "pods"] = f"spec.nodeName={agent.node_name}"

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    # kopf never retries on.event handlers: an event whose handling failed would be lost until
    # something else touched the pod. The agent logs and counts it and resyncs soon instead.
    # (Profiles are watched by the agent itself: agent/node/profile_watch.py.)
    @kopf.on.event("v1", "pods", registry=registry)
    async def pod_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        try:
            agent.on_pod_event(event["type"], body)
        except Exception:
            agent.event_handling_failed("pod-events")

    return registry


def quiet_kopf_loggers() -> None:
    """kopf logs each handler call at INFO; at scale that is noise, ours are the useful logs."""
    logging.getLogger("kopf").setLevel(logging.WARNING)
