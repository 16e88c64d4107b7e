"""Resolve a `baseProfileName` into a flattened base profile, or the reason it cannot be used.

Shared by the agent (bases are the catalog's valid records) and the CLI (bases are the files
given): both hand in a lookup for same-namespace profiles; built-ins come from
`agent.builtin_bases`, flattened for the architecture given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.base_graph import Chain, base_key, is_builtin
from agent.builtin_bases import UnknownBuiltinError, builtin_profile
from agent.catalog import ProfileCatalog, ProfileKey
from agent.compose import (
    BASE_INVALID,
    BASE_NOT_FOUND,
    UNKNOWN_BUILTIN,
    ResolvedBase,
)
from agent.model import OciSeccomp


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


def catalog_lookup(catalog: ProfileCatalog) -> BaseLookup:
    """Bases as the agent knows them: a valid record's file is the base's flattened profile."""

    def lookup(key: ProfileKey) -> BaseState | None:
        record = catalog.records.get(key)
        if record is None:
            return None
        if record.errors or record.rendered is None:
            first = record.errors[0] if record.errors else None
            return BaseState(None, f"{first.field}: {first.message}" if first else "not valid")
        return BaseState(OciSeccomp.model_validate_json(record.rendered.content))

    return lookup
