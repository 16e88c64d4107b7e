"""How a long-running program that talks to the API starts and ends: settings, logging, the
event loop, and the exit code for what no restart can cure."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from kubernetes.config.config_exception import ConfigException

from agent.runtime.logs import configure_logging
from agent.runtime.settings import SettingsError

log = logging.getLogger(__name__)


class ProgramSettings(Protocol):
    @property
    def log_format(self) -> str: ...
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=ProgramSettings)


def run_program(
    settings: Callable[[], S],
    serve: Callable[[S], Coroutine[Any, Any, None]],
    fatal: Mapping[type[Exception], str] | None = None,
) -> int:
    """Exit code 2 for a bad setting (said on stderr, before logging is set up), 1 for
    credentials that do not load or an error in `fatal` (logged once with its message: these
    are the operator's to fix, a traceback would only hide that), else 0 when `serve` ends."""
    try:
        built = settings()
    except SettingsError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(built.log_format, built.log_level)
    stops: dict[type[Exception], str] = {ConfigException: "cannot load Kubernetes credentials"}
    stops.update(fatal or {})
    try:
        asyncio.run(serve(built))
    except tuple(stops) as exc:
        message = next(text for kind, text in stops.items() if isinstance(exc, kind))
        log.error(message, extra={"error": str(exc)})
        return 1
    return 0
