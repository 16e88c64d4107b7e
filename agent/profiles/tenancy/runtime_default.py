"""The syscalls the runtime's default profile allows an unprivileged container (names only).

Generated data (`runtime_default.json`, by `python -m tools.generate_runtime_default` from
Docker's default profile); the same list is the `runtimeDefaultAllowed` variable of the API
server's policy.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Final

RESOURCE: Final = "runtime_default.json"


@functools.cache
def runtime_default_allowed() -> frozenset[str]:
    text = resources.files(__package__).joinpath(RESOURCE).read_text(encoding="utf-8")
    return frozenset(json.loads(text)["names"])


@functools.cache
def runtime_default_source() -> str:
    text = resources.files(__package__).joinpath(RESOURCE).read_text(encoding="utf-8")
    return str(json.loads(text)["source"])
