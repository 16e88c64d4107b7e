"""Parsing request heads for the probe port: plain GETs pass, everything else gets a reason."""

from __future__ import annotations

import pytest

from agent.runtime.http_request import BadRequest, Request, parse_head


def test_a_plain_get_keeps_the_connection_alive_on_http_1_1() -> None:
    assert parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a:8080\r\nAccept: */*") == Request(
        "GET", "/metrics", "HTTP/1.1", keep_alive=True
    )


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nConnection: close", False),
        (b"GET / HTTP/1.1\r\nconnection: Close", False),
        (b"GET / HTTP/1.0", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive", True),
        (b"HEAD / HTTP/1.1", True),
    ],
)
def test_connection_header_and_version_decide_keep_alive(head: bytes, keep_alive: bool) -> None:
    request = parse_head(head)
    assert isinstance(request, Request)
    assert request.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"", 400, "malformed request line"),
        (b"\x16\x03\x01\x02\x00", 400, "malformed request line"),
        (b"GET /healthz", 400, "malformed request line"),
        (b"GET  /healthz HTTP/1.1", 400, "malformed request line"),
        (b"GET /healthz HTTP/2.0", 505, "unsupported version"),
        (b"GET /healthz SPDY/3", 400, "unsupported version"),
        (b"GET healthz HTTP/1.1", 400, "malformed request target"),
        (b"GET / HTTP/1.1\r\nno colon", 400, "malformed header"),
        (b"GET / HTTP/1.1\r\n folded: value", 400, "malformed header"),
        (b"GET / HTTP/1.1\r\nContent-Length: 5", 400, "request body not accepted"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked", 400, "request body not accepted"),
        (b"POST / HTTP/1.1", 405, "method not allowed"),
    ],
)
def test_anything_but_a_bodiless_get_or_head_is_refused_with_a_reason(
    head: bytes, status: int, reason: str
) -> None:
    assert parse_head(head) == BadRequest(status, reason)
