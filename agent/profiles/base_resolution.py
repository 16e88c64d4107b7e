"""Resolve a `baseProfileName` into a flattened base profile, or the reason it cannot be used.

Shared by the node agent (bases are its catalog's valid records), the controller (its views)
and the CLI (bases are the files given): each hands in a lookup for same-namespace profiles;
built-ins come from `agent.profiles.builtin_bases`, flattened for the architecture given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.profiles.base_graph import Chain, base_key, is_builtin
from agent.profiles.builtin_bases import UnknownBuiltinError, builtin_profile
from agent.profiles.compose import (
    BASE_INVALID,
    BASE_NOT_FOUND,
    UNKNOWN_BUILTIN,
    ResolvedBase,
)


@dataclass(frozen=True)
class BaseState:
    """A same-namespace base as the resolver's owner knows it."""

    profile: OciSeccomp | None  # flattened, when valid
    problem: str | None = None  # why it is not valid


BaseLookup = Callable[[ProfileKey], BaseState | None]  # None: no such object


def resolve_base(
    child: ProfileKey, base_name: str, chain: Chain, lookup: BaseLookup, architecture: str
) -> ResolvedBase:
    """What `child`'s base `base_name` is, given the chain already walked from `child`."""
    if chain.reason is not None:
        return ResolvedBase(base_name, chain.links, reason=chain.reason, message=chain.message)
    if is_builtin(base_name):
        try:
            profile = builtin_profile(base_name, architecture)
        except UnknownBuiltinError as exc:
            return ResolvedBase(base_name, chain.links, reason=UNKNOWN_BUILTIN, message=str(exc))
        return ResolvedBase(base_name, chain.links, profile=profile)
    key = base_key(child, base_name)
    state = lookup(key)
    if state is None:
        return ResolvedBase(
            base_name,
            chain.links,
            reason=BASE_NOT_FOUND,
            message=f"the base SeccompProfile {key} does not exist; the last valid file stays "
            "on disk until it does",
        )
    if state.profile is None:
        return ResolvedBase(
            base_name,
            chain.links,
            reason=BASE_INVALID,
            message=f"the base SeccompProfile {key} is invalid ({state.problem}); the last "
            "valid file stays on disk",
        )
    return ResolvedBase(base_name, chain.links, profile=state.profile)
