"""Validate one profile body on this node, against its base as the catalog holds it now.

Object size must not drive memory, nor one profile's cost another's wait: an oversize spec is
refused by its size alone (nothing copied, modelled or checked), large ones take turns two at a
time, and cheap ones compile on threads of their own (`agent.node.lanes`). The body is copied to
plain data in the validating thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.node.catalog import ProfileCatalog, ProfileRecord, catalog_lookup, kept
from agent.node.lanes import ValidationLanes
from agent.node.store import StoreError
from agent.profiles.base_resolution import resolve_base
from agent.profiles.compose import ResolvedBase
from agent.profiles.render import render, render_document
from agent.seccomp.compiler import ArchCompileResult
from agent.validation.size import LARGE_SPEC_BYTES, json_size, size_findings
from agent.validation.validate import CompileFn, validate_resource

LARGE_VALIDATIONS_AT_ONCE: Final = 2


OnDisk = Callable[[ProfileKey], bytes | None]
"""What this node's file for a profile holds now (None: no file); may raise `StoreError`."""


class Validator:
    """`validate(key, body)` -> the record to accept; raises `TransientCompileError` when the
    compiler failed for a reason unrelated to the profile (no verdict)."""

    def __init__(
        self,
        catalog: ProfileCatalog,
        architectures: Sequence[str],
        compile_profile: CompileFn | None,
        lanes: ValidationLanes,
        on_disk: OnDisk = lambda _key: None,
    ) -> None:
        """`on_disk` lets a profile whose file already holds its rendering skip the compile."""
        self._catalog = catalog
        self._architectures = architectures
        self._compile_profile = compile_profile
        self._on_disk = on_disk
        self._lanes = lanes
        self._large = asyncio.Semaphore(LARGE_VALIDATIONS_AT_ONCE)

    async def validate(self, key: ProfileKey, body: Mapping[str, Any]) -> ProfileRecord:
        meta = body.get("metadata", {})
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        base = self._resolve_base(key, body)
        spec = body.get("spec")
        too_large = size_findings(spec)
        if too_large:
            return ProfileRecord(key, uid, generation, None, tuple(too_large))
        architectures = spec.get("architectures") if isinstance(spec, Mapping) else None
        compile_profile = self._compile_profile
        if compile_profile is not None:
            compile_profile = unless_on_disk(compile_profile, lambda: self._on_disk(key))

        def validate() -> ProfileRecord:  # in a thread: essentials() copies the spec
            result = validate_resource(
                essentials(body),
                default_architectures=self._architectures,
                compile_profile=compile_profile,
                node_architectures=self._architectures,
                resolve_base=None if base is None else lambda _name: base,
            )
            report = result.report
            # With a base, report.profile is the flattened composition: the file and its hash.
            rendered = render(report.profile) if report.valid and report.profile else None
            fleet_sha = None
            if rendered is None and report.profile is not None:
                # Refused by this node's own checks alone (the compile, its cost budget, this
                # node's architectures)? The controller validates as below, so it counts this
                # version in the fleet digest, and so does this node (see fleet_sha). Pure and
                # about a millisecond, for invalid profiles only.
                without = validate_resource(
                    essentials(body),
                    default_architectures=self._architectures[:1],
                    compile_profile=None,
                    resolve_base=None if base is None else lambda _name: base,
                ).report
                if without.valid and without.profile is not None:
                    fleet_sha = render(without.profile).sha256
            # Keep only what status and Events show: a bad profile can have thousands of findings.
            errors, warnings = kept(report.errors), kept(report.warnings)
            return ProfileRecord(
                key, uid, generation, rendered, errors, warnings, result.base_chain, fleet_sha
            )

        if base is not None and base.profile is not None:
            # What is compiled is the composition: about the base's size, not the child's.
            spec = base.profile.model_dump(mode="json", exclude_none=True)
            architectures = spec.get("architectures") or architectures
        arch_count = len(architectures or self._architectures)
        if json_size(spec, stop_after=LARGE_SPEC_BYTES) <= LARGE_SPEC_BYTES:
            return await self._lanes.run(spec, arch_count, validate)
        async with self._large:
            return await self._lanes.run(spec, arch_count, validate)

    def _resolve_base(self, key: ProfileKey, body: Mapping[str, Any]) -> ResolvedBase | None:
        spec = body.get("spec")
        name = spec.get("baseProfileName") if isinstance(spec, Mapping) else None
        bases = self._catalog.bases
        if not isinstance(name, str):
            bases.set(key, None, {})
            return None
        # Kept to validate the child again when its base changes (children only).
        bases.set(key, name, essentials(body))
        lookup = catalog_lookup(self._catalog)
        return resolve_base(key, name, bases.chain(key), lookup, self._architectures[0])


def unless_on_disk(compile_profile: CompileFn, on_disk: Callable[[], bytes | None]) -> CompileFn:
    """`compile_profile`, skipped when the file on disk already holds exactly the bytes this
    profile renders to. The agent writes a file only after its content compiled, so the same
    bytes need no second compile: a restart finds every file in place, and compiling them all
    again was most of its work. Every other check still runs; anything else compiles."""

    def compile_or_skip(
        document: Mapping[str, Any], architectures: Sequence[str]
    ) -> list[ArchCompileResult]:
        try:
            content = on_disk()
        except StoreError:  # not a file we can trust (the syncer reports it): compile
            content = None
        if content is not None and content == render_document(document).content:
            return [ArchCompileResult(arch, None, None) for arch in architectures]
        return compile_profile(document, architectures)

    return compile_or_skip


def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object validation reads, as plain data: not status, annotations or
    managedFields, which can be as large as the spec and are of no use here."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta},
        "spec": plain(body.get("spec")),
    }


def plain(value: Any) -> Any:
    """Bodies may be mapping views; validation wants plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
