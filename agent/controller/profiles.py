"""The controller's own view of a SeccompProfile: what its current generation renders to.

Nodes compile for their own architecture; the controller needs only the content hash that a
valid node writes for this generation, so it runs the same pure validation without the
compile (a compile failure shows in the nodes' reports as Invalid). A profile built on a base
(`spec.baseProfileName`) renders to its composition with that base, exactly as on a node: the
base is another profile's view (same namespace) or a built-in, and a change to a base renders
every profile built on it again.

A built-in base is flattened for the node's architecture, so a profile whose chain ends in one
renders to another hash on each architecture. For those profiles only, and only for the
architectures the nodes report, the view also carries what a node of each other architecture
renders: computed once per (profile version, architecture) when the profile (or a base) changes
or an architecture first appears, never per status pass. A profile without a built-in in its
chain renders to the same bytes everywhere and costs nothing more.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import OciSeccomp
from agent.controller.profile_status import ProfileView
from agent.profiles.base_graph import BaseGraph, is_builtin
from agent.profiles.base_resolution import BaseState, resolve_base
from agent.profiles.compose import ResolvedBase
from agent.profiles.render import render
from agent.seccomp.syscalls import native_architecture
from agent.validation.validate import ResolveBaseFn, validate_resource

log = logging.getLogger(__name__)


def profile_view(
    body: Mapping[str, Any],
    resolve_base: ResolveBaseFn | None = None,
    architecture: str | None = None,
) -> ProfileView:
    """Validate and render one object for a node of `architecture` (default: this machine's)
    (pure; about 1 ms)."""
    meta = body.get("metadata") or {}
    architecture = architecture or native_architecture()
    result = validate_resource(
        body,
        default_architectures=[architecture],
        compile_profile=None,
        resolve_base=resolve_base,
    )
    report = result.report
    rendered = render(report.profile) if report.valid and report.profile else None
    reason = None
    if rendered is None and report.errors:
        first = report.errors[0]
        reason = f"{first.field}: {first.message}"
    return ProfileView(
        key=profile_key(body),
        generation=int(meta.get("generation") or 0),
        expected_sha=rendered.sha256 if rendered else None,
        deleting=bool(meta.get("deletionTimestamp")),
        uid=str(meta.get("uid") or ""),
        content=rendered.content if rendered else None,
        invalid_reason=reason,
        base_chain=result.base_chain,
        architecture=architecture,
    )


def base_name_of(body: Mapping[str, Any]) -> str | None:
    spec = body.get("spec")
    name = spec.get("baseProfileName") if isinstance(spec, Mapping) else None
    return name if isinstance(name, str) and name else None


@dataclass
class ProfileViews:
    """Every profile's view, with children rendered on their bases. Pure; the controller keeps
    the bodies of profiles with a base only (to render them again when a base changes)."""

    views: dict[ProfileKey, ProfileView] = field(default_factory=dict)
    graph: BaseGraph = field(default_factory=BaseGraph)
    native: str = field(default_factory=native_architecture)
    # The other architectures the nodes report, and for each the views of the profiles that
    # render differently there (the bases their children are composed with, on that node).
    others: dict[str, dict[ProfileKey, ProfileView]] = field(default_factory=dict)
    unrenderable: set[str] = field(default_factory=set)  # named by a report, unknown here

    def add_architectures(self, architectures: Iterable[str]) -> list[ProfileView]:
        """Nodes of these architectures appeared: the views that change for them."""
        new = sorted(set(architectures) - set(self.others) - {self.native})
        if not new:
            return []
        for architecture in new:
            self.others[architecture] = {}
        on_builtins = [key for key in self.views if self._on_builtin(key)]
        on_builtins.sort(key=lambda key: len(self.graph.chain(key).links))
        rendered = []
        for key in on_builtins:
            body = self.graph.body_of(key)
            if body is not None:
                rendered.append(self._render(key, body))
        return rendered

    def replace(self, bodies: Iterable[Mapping[str, Any]]) -> list[ProfileView]:
        """A full listing: every view, bases before the profiles built on them."""
        self.views, self.graph = {}, BaseGraph()
        self.others = {architecture: {} for architecture in self.others}
        children: list[tuple[ProfileKey, Mapping[str, Any]]] = []
        for body in bodies:
            key = profile_key(body)
            base = base_name_of(body)
            self.graph.set(key, base, body)
            if base is None:
                self.views[key] = profile_view(body)
            else:
                children.append((key, body))
        # Shortest chains first, so each base is rendered before what is built on it.
        children.sort(key=lambda item: len(self.graph.chain(item[0]).links))
        for key, body in children:
            self._render(key, body)
        return list(self.views.values())

    def put(self, body: Mapping[str, Any]) -> list[ProfileView]:
        """One object added or changed: its view, and those of every profile built on it."""
        key = profile_key(body)
        self.graph.set(key, base_name_of(body), body)
        return [self._render(key, body), *self._render_dependents(key)]

    def drop(self, key: ProfileKey) -> list[ProfileView]:
        """One object deleted: the views of the profiles built on it, rendered again."""
        self.views.pop(key, None)
        for views in self.others.values():
            views.pop(key, None)
        dependents = self._render_dependents(key)
        self.graph.forget(key)
        return dependents

    def _render_dependents(self, key: ProfileKey) -> list[ProfileView]:
        rendered = []
        for child in self.graph.dependents(key):
            body = self.graph.body_of(child)
            if body is not None:
                rendered.append(self._render(child, body))
        return rendered

    def _render(self, key: ProfileKey, body: Mapping[str, Any]) -> ProfileView:
        resolve = functools.partial(self._resolve, key, architecture=self.native)
        view = profile_view(body, resolve, self.native)
        if self._on_builtin(key):
            shas: list[tuple[str, str | None]] = []
            for architecture, views in sorted(self.others.items()):
                resolve = functools.partial(self._resolve, key, architecture=architecture)
                try:
                    other = profile_view(body, resolve, architecture)
                except Exception as exc:  # a report names an architecture we cannot render for
                    if architecture not in self.unrenderable:  # said once, not per profile
                        self.unrenderable.add(architecture)
                        log.warning(
                            "cannot render profiles for a node architecture; its nodes count "
                            "as not holding profiles on built-in bases",
                            extra={"architecture": architecture, "error": str(exc)[:200]},
                        )
                    views.pop(key, None)
                    shas.append((architecture, None))
                    continue
                views[key] = other
                shas.append((architecture, other.expected_sha))
            view = dataclasses.replace(view, per_architecture=True, other_architectures=tuple(shas))
        else:
            for views in self.others.values():
                views.pop(key, None)
        self.views[key] = view
        return view

    def _on_builtin(self, key: ProfileKey) -> bool:
        return any(is_builtin(link) for link in self.graph.chain(key).links)

    def _resolve(self, key: ProfileKey, name: str, architecture: str) -> ResolvedBase:
        lookup = functools.partial(self._lookup, architecture=architecture)
        return resolve_base(key, name, self.graph.chain(key), lookup, architecture)

    def _lookup(self, key: ProfileKey, architecture: str) -> BaseState | None:
        # A base on a built-in is itself flattened for the node's architecture.
        view = self.others.get(architecture, {}).get(key) or self.views.get(key)
        if view is None:
            return None
        if view.content is None:
            return BaseState(None, view.invalid_reason or "not valid")
        return BaseState(OciSeccomp.model_validate_json(view.content))
