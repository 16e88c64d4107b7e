"""List, then watch from that version, forever: one resource, in a daemon thread.

The official client's watch is blocking, so it runs in a thread and hands every listing and
event to the event loop. The listing is paged (`agent.kube.pager`); every request carries a
timeout, so a hung connection ends and is retried instead of stalling the stream; any failure
(connection refused, 5xx, 410 Gone) lists again after a short backoff, so nothing an outage
dropped is missed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from agent.kube.client import REQUEST_TIMEOUT
from agent.kube.pager import METADATA_ONLY, PAGE_SIZE, list_pages
from agent.runtime.waiting import daemon_thread

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
# The API server ends each watch after this long, and we watch again from the last version.
WATCH_SECONDS = 60
# A quiet watch sends nothing for up to WATCH_SECONDS: its read timeout must outlast that
# window, or every quiet watch would end in a client timeout. It is the one request timeout
# counted from the window's end.
WATCH_TIMEOUT: Final = (REQUEST_TIMEOUT[0], WATCH_SECONDS + REQUEST_TIMEOUT[1])
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
# A metadata-only watch names the type of each event's object, not a list's: asked with the
# list's type, the watch delivered no event at all and the client raised no error (tried on
# the test control plane), so a Node watch would have been silently empty.
METADATA_ONLY_EVENTS: Final = {
    "Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
}


class ListWatch:
    """`run()` until cancelled; `on_list(items)` replaces the state, `on_event(type, obj)`
    updates it. Both are called on the event loop, in order.

    With `listing_in_pages`, `on_list` is called once per page of a listing instead, as it
    arrives: then it means "these objects exist", and a consumer that must notice objects gone
    between two listings has to compare them itself. Memory holds one page, not the listing.
    """

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        on_list: Callable[[list[Any]], None],
        on_event: Callable[[str, Any], None],
        *,
        field_selector: str | None = None,
        metadata_only: bool = False,
        transform: Callable[[Obj], Any] | None = None,
        page_size: int = PAGE_SIZE,
        listing_in_pages: bool = False,
    ) -> None:
        """`metadata_only`: objects come as their metadata alone (PartialObjectMetadata)."""
        self.name = name
        self._list = list_call
        self._on_list = on_list
        self._on_event = on_event
        self._selector: dict[str, Any] = (
            {"field_selector": field_selector} if field_selector else {}
        )
        self._list_headers = {"_headers": METADATA_ONLY} if metadata_only else {}
        self._watch_headers = {"_headers": METADATA_ONLY_EVENTS} if metadata_only else {}
        # Runs in the watch thread, so per-object work (validation) stays off the loop.
        self._transform = transform
        self._page_size = page_size
        self._in_pages = listing_in_pages
        self.failures = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        done = daemon_thread(f"watch-{self.name}", lambda: self._loop(loop, stop))
        try:
            await done
        finally:
            stop.set()

    def _loop(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                version = self._list_once(loop)
                attempt = 0
                while not stop.is_set():
                    version = self._watch_once(loop, stop, version)
            except ApiException as exc:
                if exc.status != 410:
                    self._failed(f"HTTP {exc.status} {exc.reason}")
            except Exception as exc:  # connection refused, reset, timeouts: list and watch again
                self._failed(f"{type(exc).__name__}: {exc}")
            stop.wait(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
            attempt += 1

    def _failed(self, error: str) -> None:
        self.failures += 1
        log.warning("watch failed; listing again", extra={"watch": self.name, "error": error})

    def _list_once(self, loop: asyncio.AbstractEventLoop) -> str:
        items, version = [], ""
        pages = list_pages(
            self._list, page_size=self._page_size, **self._selector, **self._list_headers
        )
        for page in pages:
            prepared = [self._prepare(item) for item in page.items]
            version = page.resource_version
            if self._in_pages:
                loop.call_soon_threadsafe(self._on_list, prepared)
            else:
                items += prepared
        if not self._in_pages:
            loop.call_soon_threadsafe(self._on_list, items)
        return version

    def _watch_once(
        self, loop: asyncio.AbstractEventLoop, stop: threading.Event, version: str
    ) -> str:
        stream = RawWatch().stream(  # type: ignore[no-untyped-call]
            self._list,
            **self._selector,
            **self._watch_headers,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_TIMEOUT,
        )
        for event in stream:
            if stop.is_set():
                break
            kind = event.get("type")
            obj = event.get("raw_object") or event.get("object") or {}
            if kind == "ERROR":
                raise ApiException(status=int(obj.get("code") or 500), reason=obj.get("reason"))
            version = str(obj.get("metadata", {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                loop.call_soon_threadsafe(self._on_event, kind, self._prepare(obj))
        return version

    def _prepare(self, obj: Obj) -> Any:
        return self._transform(obj) if self._transform is not None else obj


class RawWatch(watch.Watch):
    """The client's watch, handing each object over as the JSON it arrived in.

    The client would also build its own model of every object (pydantic, then thrown away: we
    read the plain data): about a millisecond of CPU per pod, under the interpreter lock. When
    1,000 gated pods are released, their 1,000 changes arrive at once, and building those models
    took the lock from the very threads sending the releases."""

    def get_return_type(self, func: Callable[..., Any]) -> None:
        # No type: the client's `unmarshal_event` then parses the JSON and stops there. (Its
        # `deserialize=False` would skip the same work, but then an ERROR event, 410 Gone
        # included, fails inside the client with a KeyError instead of an ApiException.)
        return None
