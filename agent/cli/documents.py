"""Read profile documents from files or stdin: multi-document YAML, or a raw OCI JSON profile."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class UnreadableInputError(Exception):
    """The input could not be read or parsed at all (a usage problem, not an invalid profile)."""


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    content: Any

    @property
    def is_resource(self) -> bool:
        """Objects with kind/apiVersion are Kubernetes objects; anything else is a raw profile."""
        return isinstance(self.content, dict) and (
            "kind" in self.content or "apiVersion" in self.content
        )


def read_documents(source: str) -> list[Document]:
    """All non-empty documents in `source` (a path, or `-` for stdin)."""
    text = _read_text(source)
    try:
        if text.lstrip().startswith("{"):
            contents: list[Any] = [json.loads(text)]
        else:
            contents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UnreadableInputError(f"{source}: cannot parse: {_first_line(exc)}") from exc
    if not contents:
        raise UnreadableInputError(f"{source}: no documents")
    return [Document(source, index, content) for index, content in enumerate(contents)]


def _read_text(source: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(f"{source}: cannot read: {exc}") from exc


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
