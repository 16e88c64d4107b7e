"""What the programs' settings share: the error a bad setting raises, and reading the log format
and numbers from the environment with messages that name the variable."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Literal, cast

LogFormat = Literal["text", "json"]
LOG_FORMAT_ENV = "SECCOMP_SYNC_LOG_FORMAT"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which flag or variable to set."""


def log_format(args: argparse.Namespace, environ: Mapping[str, str]) -> LogFormat:
    """`--log-format`, else SECCOMP_SYNC_LOG_FORMAT, else text."""
    value = args.log_format or environ.get(LOG_FORMAT_ENV, "text")
    if value not in ("text", "json"):
        raise SettingsError(f"{LOG_FORMAT_ENV} must be text or json, not {value!r}")
    return cast(LogFormat, value)


def int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


def float_env(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
