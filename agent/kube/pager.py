"""The one way to LIST: page by page, each request with the one timeout, items as plain data.

Every listing goes through here (the node's resync, the controller's reads and list-watches,
the CLI's fetch), so none of them can forget the limit, the continue token or the timeout, and
none holds more than one page of raw JSON at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

from agent.kube.client import REQUEST_TIMEOUT

PAGE_SIZE: Final = 500
# Headers (`_headers=`) that ask a listing for its objects' metadata alone: its size then does
# not grow with the objects' specs and statuses. (A watch names another type: `list_watch`.)
METADATA_ONLY: Final = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
}


class Page(NamedTuple):
    items: list[dict[str, Any]]
    resource_version: str  # the same on every page of one listing: a watch starts from it


def list_pages(
    list_call: Callable[..., Any], *args: Any, page_size: int = PAGE_SIZE, **params: Any
) -> Iterator[Page]:
    """Call `list_call(*args, **params)` (a list method of the official client) for one page
    after another. The JSON is read as it is, not into the client's models: cheaper, and the
    same plain data whatever the kind."""
    token: str | None = None
    while True:
        response = list_call(
            *args,
            **params,
            limit=page_size,
            _continue=token,
            _request_timeout=REQUEST_TIMEOUT,
            _preload_content=False,
        )
        page = json.loads(response.data)
        meta = page.get("metadata") or {}
        # `items` is null, not [], in an empty list of metadata only.
        yield Page(page.get("items") or [], str(meta.get("resourceVersion") or ""))
        token = meta.get("continue") or None
        if token is None:
            return


def list_items(
    list_call: Callable[..., Any], *args: Any, **params: Any
) -> Iterator[dict[str, Any]]:
    """Every item of a listing (see `list_pages`), one page in memory at a time."""
    for page in list_pages(list_call, *args, **params):
        yield from page.items
