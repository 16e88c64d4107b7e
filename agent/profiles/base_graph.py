"""Which profile is built on which: the base -> children index and the chain walk.

The agent asks two questions of it: "this profile changed, whose files must be rendered again?"
(`dependents`, transitively, bases before their children) and "what does this profile's chain
look like, and may it be used?" (`walk_chain`: cycles and over-long chains are refused with the
chain in the message). Pure data: no I/O, no Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.model import BUILTIN_BASE_PREFIX
from agent.profiles.compose import BASE_CHAIN_TOO_DEEP, BASE_CYCLE

# A profile, its base, and at most this many more bases above those. Deep enough for
# "org baseline -> team baseline -> app", shallow enough that a change to one base cannot fan
# out into long re-render cascades nobody can follow.
MAX_BASE_DEPTH: Final = 5


def is_builtin(base_name: str) -> bool:
    return base_name.startswith(BUILTIN_BASE_PREFIX)


def base_key(child: ProfileKey, base_name: str) -> ProfileKey:
    """A base named without a namespace lives in the child's namespace."""
    return ProfileKey(child.namespace, base_name)


def chain_label(child: ProfileKey, base_name: str) -> str:
    return base_name if is_builtin(base_name) else str(base_key(child, base_name))


@dataclass(frozen=True)
class Chain:
    """A profile's bases, nearest first, and why the chain cannot be used (if it cannot)."""

    links: tuple[str, ...]
    reason: str | None = None
    message: str | None = None


def walk_chain(start: ProfileKey, base_of: Callable[[ProfileKey], str | None]) -> Chain:
    """Follow `baseProfileName` from `start` up to a built-in or a profile without a base."""
    seen = [start]
    links: list[str] = []
    current = start
    while (name := base_of(current)) is not None:
        links.append(chain_label(current, name))
        if len(links) > MAX_BASE_DEPTH:
            path = " -> ".join([str(start), *links])
            return Chain(
                tuple(links),
                BASE_CHAIN_TOO_DEEP,
                f"the base chain {path} is longer than {MAX_BASE_DEPTH} bases",
            )
        if is_builtin(name):
            break
        current = base_key(current, name)
        if current in seen:
            path = " -> ".join([str(start), *links])
            return Chain(tuple(links), BASE_CYCLE, f"the base chain is a cycle: {path}")
        seen.append(current)
    return Chain(tuple(links))


@dataclass
class BaseGraph:
    """Each child's base and the body to validate it again with when a base changes.

    Only profiles with a base are held here (with their body): a profile without a base never
    needs re-rendering because of another object.
    """

    _base_of: dict[ProfileKey, str] = field(default_factory=dict)
    _bodies: dict[ProfileKey, Mapping[str, Any]] = field(default_factory=dict)
    _children: dict[ProfileKey, set[ProfileKey]] = field(default_factory=dict)

    def set(self, key: ProfileKey, base_name: str | None, body: Mapping[str, Any]) -> None:
        """Record the current object for `key` (its base, if any)."""
        self.forget(key)
        if base_name is None:
            return
        self._base_of[key] = base_name
        self._bodies[key] = body
        if not is_builtin(base_name):
            self._children.setdefault(base_key(key, base_name), set()).add(key)

    def forget(self, key: ProfileKey) -> None:
        old = self._base_of.pop(key, None)
        self._bodies.pop(key, None)
        if old is not None and not is_builtin(old):
            parent = base_key(key, old)
            children = self._children.get(parent, set())
            children.discard(key)
            if not children:
                self._children.pop(parent, None)

    def base_of(self, key: ProfileKey) -> str | None:
        return self._base_of.get(key)

    def body_of(self, key: ProfileKey) -> Mapping[str, Any] | None:
        return self._bodies.get(key)

    def chain(self, key: ProfileKey) -> Chain:
        return walk_chain(key, self.base_of)

    def dependents(self, key: ProfileKey) -> list[ProfileKey]:
        """Every profile built on `key`, directly or not: bases before their children.

        Breadth-first from `key`, each profile once, so a cycle ends the walk instead of
        looping; the profiles in a cycle are then refused by `walk_chain`.
        """
        order: list[ProfileKey] = []
        frontier = [key]
        seen = {key}
        while frontier:
            following: list[ProfileKey] = []
            for parent in frontier:
                for child in sorted(self._children.get(parent, ())):
                    if child not in seen:
                        seen.add(child)
                        order.append(child)
                        following.append(child)
            frontier = following
        return order

    def __len__(self) -> int:
        return len(self._base_of)
