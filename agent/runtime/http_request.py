"""Parse the head of an HTTP/1.x request: pure, bounded, and strict about what it accepts.

The agent's port serves three GET endpoints to the kubelet and Prometheus. It needs no request
bodies, no chunked encoding and no upgrades, so anything beyond a plain GET or HEAD is refused
with a short reason instead of being half-understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

HEAD_END: Final = b"\r\n\r\n"
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/1\.[01]$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    version: str
    keep_alive: bool


@dataclass(frozen=True)
class BadRequest:
    """Why a request head was refused: `status` for the reply, `reason` for logs and metrics."""

    status: int
    reason: str


def parse_head(head: bytes) -> Request | BadRequest:
    """Parse a request head (request line and headers, without the final blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        return BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _VERSION.match(version):
        return BadRequest(505 if version.startswith(b"HTTP/") else 400, "unsupported version")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            return BadRequest(400, "malformed header")
        headers[name.lower()] = value.strip()
    if b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0":
        # No endpoint takes a body; reading one would only give a client a way to hold us.
        return BadRequest(400, "request body not accepted")
    if method not in (b"GET", b"HEAD"):
        return BadRequest(405, "method not allowed")
    if not target.startswith(b"/"):
        return BadRequest(400, "malformed request target")
    connection = headers.get(b"connection", b"").lower()
    keep_alive = b"close" not in connection and (
        version == b"HTTP/1.1" or b"keep-alive" in connection
    )
    path = target.split(b"?", 1)[0].decode("ascii", "replace")
    return Request(method.decode(), path, version.decode(), keep_alive)
