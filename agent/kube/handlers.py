"""kopf handlers: thin, level-based translations of watch events into NodeAgent calls.

Standalone and write-free: no peering, no finalizers, no progress or diff-base annotations.
With hundreds of agents, any write onto a profile would be hundreds of writers on one object.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agent.catalog import ProfileKey
from agent.model import API_GROUP, API_VERSION, PLURAL
from agent.node_agent import NodeAgent
from agent.pod_refs import profiles_used_by

CRD_NAME = f"{PLURAL}.{API_GROUP}"


def build_registry(agent: NodeAgent, connection: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events only, written for people
        settings.peering.standalone = True
        settings.peering.mandatory = False
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 30
        settings.execution.max_workers = 8
        # Only this node's pods: the agent's memory and watch traffic must not grow with the
        # cluster. Only our own CRD: it is the signal that the initial listing is complete.
        settings.watching.field_selectors["v1", "pods"] = f"spec.nodeName={agent.node_name}"
        settings.watching.field_selectors["apiextensions.k8s.io", "customresourcedefinitions"] = (
            f"metadata.name={CRD_NAME}"
        )

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    @kopf.index(API_GROUP, API_VERSION, PLURAL, registry=registry)
    def profile_index(
        namespace: str | None, name: str, uid: str, **_: Any
    ) -> dict[ProfileKey, str]:
        # kopf runs no other handler until every index holds the complete initial listing;
        # the CRD handler below relies on that to know when the listing is complete.
        return {ProfileKey(namespace or "", name): uid}

    @kopf.index("v1", "pods", registry=registry)
    def pod_index(body: kopf.Body, uid: str, **_: Any) -> dict[ProfileKey, str]:
        # Indexed so that the initial sync waits for this node's pods too: a deleted profile
        # that a pod here still uses must not be garbage-collected at start-up.
        return dict.fromkeys(profiles_used_by(body), uid)

    @kopf.on.event("v1", "pods", registry=registry)
    def pod_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        agent.on_pod_event(event["type"], body)

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def profile_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        await agent.on_profile_event(event["type"], body)

    @kopf.on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        field="metadata.name",
        value=CRD_NAME,
        registry=registry,
    )
    def crd_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        # The first call comes only after the profile index is complete (see above): the
        # moment the initial listing is known in full, even when there are no profiles.
        if event["type"] != "DELETED":
            listed: kopf.Index[ProfileKey, str] = kwargs["profile_index"]
            pinned: kopf.Index[ProfileKey, str] = kwargs["pod_index"]
            agent.on_listing_complete(
                set(listed), relisted=event["type"] is None, pinned=frozenset(pinned)
            )

    return registry


def quiet_kopf_loggers() -> None:
    """kopf logs each handler call at INFO; at scale that is noise, ours are the useful logs."""
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.WARNING)
