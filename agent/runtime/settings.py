"""What the programs' settings share: the error a bad setting raises, and reading the log format
and numbers from the environment with messages that name the variable."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Literal, TypeVar, cast

LogFormat = Literal["text", "json"]
LOG_FORMAT_ENV = "SECCOMP_SYNC_LOG_FORMAT"
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which flag or variable to set."""


def log_format(args: argparse.Namespace, environ: Mapping[str, str]) -> LogFormat:
    """`--log-format`, else SECCOMP_SYNC_LOG_FORMAT, else text."""
    value = args.log_format or environ.get(LOG_FORMAT_ENV, "text")
    if value not in ("text", "json"):
        raise SettingsError(f"{LOG_FORMAT_ENV} must be text or json, not {value!r}")
    return cast(LogFormat, value)


def number_env(environ: Mapping[str, str], name: str, default: N) -> N:
    """The variable `name` read as a number of `default`'s type (int or float), else `default`."""
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        what = "a whole number" if isinstance(default, int) else "a number of seconds"
        raise SettingsError(f"{name} must be {what}, not {raw!r}") from None
