"""Profiles given to the CLI as files, with their bases resolved among them (or built-ins).

The CLI's counterpart of the agent's catalog: `seccomp-agent validate` and `render` validate a
profile with `baseProfileName` exactly as a node would, taking its base from the other
documents given (same namespace) or from the built-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import DEFAULT_NAMESPACE
from agent.cli.documents import Document
from agent.profiles.base_graph import walk_chain
from agent.profiles.base_resolution import BaseState, resolve_base
from agent.profiles.compose import ResolvedBase
from agent.validation.validate import CompileFn, ResourceReport, validate_resource


@dataclass
class LocalProfiles:
    documents: Sequence[Document]
    architectures: Sequence[str]
    node_architectures: Sequence[str]
    compile_profile: CompileFn | None
    _by_key: dict[ProfileKey, Document] = field(default_factory=dict, init=False)
    _reports: dict[ProfileKey, ResourceReport] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for doc in self.documents:
            key = self.key_of(doc)
            if key is not None:
                self._by_key.setdefault(key, doc)

    @staticmethod
    def key_of(doc: Document) -> ProfileKey | None:
        """The profile's key among the files; None for a document without metadata."""
        if not doc.is_resource or not isinstance(doc.content.get("metadata"), dict):
            return None
        return profile_key(doc.content, default_namespace=DEFAULT_NAMESPACE)

    def report(self, doc: Document) -> ResourceReport:
        """Validation of one SeccompProfile document, its base resolved among the files."""
        key = self.key_of(doc)
        if key is not None and self._by_key.get(key) is doc and key in self._reports:
            return self._reports[key]
        result = validate_resource(
            doc.content,
            default_architectures=self.architectures,
            compile_profile=self.compile_profile,
            node_architectures=self.node_architectures,
            resolve_base=None if key is None else lambda name: self._resolve(key, name),
        )
        if key is not None and self._by_key.get(key) is doc:
            self._reports[key] = result
        return result

    def _base_of(self, key: ProfileKey) -> str | None:
        doc = self._by_key.get(key)
        spec = doc.content.get("spec") if doc is not None else None
        name = spec.get("baseProfileName") if isinstance(spec, dict) else None
        return name if isinstance(name, str) else None

    def _lookup(self, key: ProfileKey) -> BaseState | None:
        doc = self._by_key.get(key)
        if doc is None:
            return None
        report = self.report(doc).report
        if report.valid:
            return BaseState(report.profile)
        first = report.errors[0] if report.errors else None
        return BaseState(None, f"{first.field}: {first.message}" if first else "not valid")

    def _resolve(self, key: ProfileKey, name: str) -> ResolvedBase:
        chain = walk_chain(key, self._base_of)
        return resolve_base(key, name, chain, self._lookup, self.architectures[0])
