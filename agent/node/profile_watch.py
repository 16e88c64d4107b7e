"""The agent's watch of SeccompProfiles: list, then watch, with `agent.kube.list_watch`.

kopf watches pods for the agent; profiles it watched too until a 10,000-profile cold start
showed a third of the agent's CPU in kopf's handling of each event (a task, a cause, loggers
and a patch per object, none of which the agent uses: its handler only hands the body over).
The agent's own intake already does what kopf's per-object queues did (one body per key, the
newest wins), so the objects go there straight from the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from kubernetes import client

from agent.kube.list_watch import ListWatch
from agent.node.agent import NodeAgent
from agent.node.listing import profile_list_calls

# Objects stored under an older CRD, before it bounded a whole profile, can be 1.4 MB each: a
# page of the listing holds at most this many, so a few of them never make one huge response.
LIST_PAGE_SIZE: Final = 10


def profile_watches(
    api: client.ApiClient, namespaces: Iterable[str], agent: NodeAgent
) -> list[ListWatch]:
    """One list-watch per namespace in `namespaces`, or one for all (when empty), feeding
    `agent`; each `run()` is supervised and relists after any failure."""

    def event(kind: str | None, body: Mapping[str, Any]) -> None:
        try:
            agent.on_profile_event(kind, body)
        except Exception:  # logged, counted, and a resync follows: nothing waits on a retry
            agent.event_handling_failed("profile-events")

    def listed(bodies: list[Mapping[str, Any]]) -> None:
        for body in bodies:
            event(None, body)  # an item of a listing: the agent resyncs after a relist

    return [
        ListWatch(
            f"profiles-{index}",
            list_call,
            on_list=listed,
            on_event=event,
            transform=without_bookkeeping,
            page_size=LIST_PAGE_SIZE,
            listing_in_pages=True,
        )
        for index, list_call in enumerate(profile_list_calls(api, namespaces))
    ]


def without_bookkeeping(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its managedFields and status (in the watch thread): the agent reads
    neither, and a cold start keeps thousands of bodies until their turn comes."""
    meta = body.get("metadata") or {}
    return {
        **{k: v for k, v in body.items() if k != "status"},
        "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
    }
