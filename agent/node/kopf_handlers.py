"""kopf handlers: thin, level-based translations of watch events into NodeAgent calls, which
only record the event and mark its key dirty (the work happens in the agent's own workers).

Standalone and write-free: no peering, no finalizers, no progress or diff-base annotations.
With hundreds of agents, any write onto a profile would be hundreds of writers on one object.
Handlers are `async` so they run on the event loop with the agent (kopf runs plain functions in
a thread pool).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.node.agent import NodeAgent

LIST_CHUNK_SIZE = 10


class _NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf computes each event's "essence" (a deep copy of the body, minus system fields) to
    tell changes apart for on.create/on.update handlers. The agent has only on.event handlers,
    which never look at it: building none saves a deep copy of every profile at a cold start
    (about 5% of its CPU). kopf stores an essence only after on.create/on.update handlers, so
    nothing is written to objects, with this storage or the default."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def build_registry(agent: NodeAgent, connection: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events only, written for people
        settings.peering.standalone = True
        settings.peering.mandatory = False
        settings.persistence.diffbase_storage = _NoEssence()
        # Bounded concurrency: a cold start lists thousands of objects at once, and unbounded
        # per-object workers would make memory grow with the cluster. Each only hands its
        # body to the agent and leaves soon after, so a bounded pool still moves quickly.
        settings.queueing.worker_limit = 128
        settings.queueing.idle_timeout = 0.05
        # Page the initial listing: kopf otherwise fetches every object in one response, so a
        # few objects near etcd's 1.5 MB limit would make one huge allocation at a cold start.
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
    # something else touched the object. The agent logs and counts it and resyncs soon instead.
    # Nothing waits here for the profile's validation: the agent's worker picks the key up.
    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def profile_event(event: kopf.RawEvent, **_: Any) -> None:
        try:
            # The raw dict, not kopf's `Body`: a view whose every key lookup goes through kopf's
            # field resolution; the agent's walks over each spec (size, cost, copy) through it
            # were several percent of a cold start's CPU. Both are read only.
            agent.on_profile_event(event["type"], event["object"])
        except Exception:
            agent.event_handling_failed("profile-events")

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
