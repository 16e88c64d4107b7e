"""Write the generated parts of the CRDs in crds/: the deprecated v1alpha1 version and the list of
built-in bases.

Usage: python -m tools.generate_crds          (rewrites crds/*.yaml in place)

Each CRD serves two versions with the same schema: v1beta1 (stored, written by hand, with its
comments) and v1alpha1 (deprecated, served so that clients and agents of the previous release
keep working during an upgrade). Because the schemas are the same, the API server converts
between them by changing apiVersion alone (conversion strategy None, no webhook to run). The
v1alpha1 block is a copy of the v1beta1 block made here, never edited by hand, so the two cannot
drift; tests/unit/test_crd_versions.py checks that the committed files equal this output.

spec.baseProfileName's list of built-ins (in SeccompProfile and SeccompProfileRecording) comes from
agent.profiles.builtin_bases, so that the API server refuses a base the agent does not ship with
the same list the agent would print.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CRDS_DIR: Final = REPO_ROOT / "crds"
STORAGE_VERSION: Final = "v1beta1"
DEPRECATED_VERSION: Final = "v1alpha1"
GROUP: Final = "seccompsync.io"

_VERSION_INDENT: Final = "    "
_BEGIN_COPY: Final = f"{_VERSION_INDENT}# BEGIN generated {DEPRECATED_VERSION}"
_END_COPY: Final = f"{_VERSION_INDENT}# END generated {DEPRECATED_VERSION}"


class CrdLayoutError(ValueError):
    """A CRD file is not laid out the way this generator expects."""


def crd_files() -> list[Path]:
    return sorted(CRDS_DIR.glob("*.yaml"))


def generate(text: str, builtins: Sequence[str]) -> str:
    """The CRD file's text with every generated part written afresh."""
    return _with_deprecated_copy(_with_builtin_bases(text, builtins))


def _with_deprecated_copy(text: str) -> str:
    header = f"{_VERSION_INDENT}- name: {STORAGE_VERSION}\n"
    start = text.find(header)
    if start < 0:
        raise CrdLayoutError(f"no `- name: {STORAGE_VERSION}` item under spec.versions")
    end = text.find(_BEGIN_COPY, start)
    if end < 0:
        end = len(text)
        if not text.endswith("\n"):
            raise CrdLayoutError("the file does not end with a newline")
    block = text[start:end]
    expected_head = f"{header}{_VERSION_INDENT}  served: true\n{_VERSION_INDENT}  storage: true\n"
    if not block.startswith(expected_head):
        raise CrdLayoutError(
            f"the {STORAGE_VERSION} item must start with name, served: true, storage: true "
            "(in that order), and spec.versions must be the file's last key"
        )
    kind = _kind(text)
    warning = (
        f"{GROUP}/{DEPRECATED_VERSION} {kind} is deprecated; use {GROUP}/{STORAGE_VERSION} "
        "(the same fields: change apiVersion only)"
    )
    copy_head = (
        f"{_VERSION_INDENT}- name: {DEPRECATED_VERSION}\n"
        f"{_VERSION_INDENT}  served: true\n"
        f"{_VERSION_INDENT}  storage: false\n"
        f"{_VERSION_INDENT}  deprecated: true\n"
        f'{_VERSION_INDENT}  deprecationWarning: "{warning}"\n'
    )
    copy = (
        f"{_BEGIN_COPY}: the {STORAGE_VERSION} item above with another name, written\n"
        f"{_VERSION_INDENT}# by tools/generate_crds.py (edit {STORAGE_VERSION}, then run it)\n"
        f"{copy_head}{block[len(expected_head) :]}"
        f"{_END_COPY}\n"
    )
    return text[:start] + block + copy


def _kind(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("kind: ") and line.startswith("    kind: "):
            return stripped.removeprefix("kind: ")
    raise CrdLayoutError("no spec.names.kind")


def _with_builtin_bases(text: str, builtins: Sequence[str]) -> str:
    begin = text.find("# BEGIN generated builtin bases")
    if begin < 0:
        return text  # only the SeccompProfile and SeccompProfileRecording CRDs name bases
    end = text.find("# END generated builtin bases", begin)
    if end < 0:
        raise CrdLayoutError("`# BEGIN generated builtin bases` without its END marker")
    line_start = text.rfind("\n", 0, begin) + 1
    indent = text[line_start:begin]
    line_end = text.find("\n", end) + 1
    return text[:line_start] + builtin_bases_rule(builtins, indent) + text[line_end:]


def builtin_bases_rule(builtins: Sequence[str], indent: str) -> str:
    """The CEL rule on spec.baseProfileName: a runtime/ name must be one the agent ships."""
    names = sorted(builtins)
    quoted = ", ".join(f"'{n}'" for n in names)
    listing = ", ".join(names)
    lines = [
        "# BEGIN generated builtin bases (by tools/generate_crds.py, from builtin_bases)",
        "- rule: >-",
        f"    !self.startsWith('runtime/') || self in [{quoted}]",
        # Word for word what agent.profiles.builtin_bases.UnknownBuiltinError says.
        "  messageExpression: >-",
        f'    "no built-in base \'" + self + "\'; built-ins are: {listing}"',
        "  reason: FieldValueInvalid",
        "# END generated builtin bases",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


def builtin_names() -> list[str]:
    from agent.profiles.builtin_bases import BUILTINS

    return sorted(BUILTINS)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    builtins = builtin_names()
    for path in crd_files():
        text = path.read_text(encoding="utf-8")
        try:
            new = generate(text, builtins)
        except CrdLayoutError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        else:
            print(f"{path.relative_to(REPO_ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
