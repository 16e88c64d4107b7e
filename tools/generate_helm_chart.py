"""Copy the manifests of deploy/ into the Helm chart's templates, so that the two never drift.

Usage: python -m tools.generate_helm_chart          (writes deploy/helm/seccomp-sync/templates/)
       python -m tools.generate_helm_chart --check  (exit 1 if a committed file differs)

deploy/ (kustomize) stays the one source of truth. Every object that `kubectl kustomize deploy/`
and deploy/prometheus render is copied, word for word with its comments, into a generated
template (``templates/generated-*.yaml``), with only what Helm needs added:

- the objects a value switches off are wrapped in ``{{- if ... }}`` (CONDITIONS, FILE_CONDITIONS);
- the CRDs carry ``helm.sh/resource-policy: keep``: ``helm upgrade`` updates them like any
  template, ``helm uninstall`` never deletes them (deleting a CRD deletes every SeccompProfile);
- the monitoring objects take the extra labels a Prometheus Operator selects on;
- ``{{`` and ``}}`` in the manifests (the alert rules' ``{{ $labels.namespace }}``) are escaped,
  so Helm prints them instead of evaluating them.

The two workloads, whose every setting is a value (image, resources, tolerations, the kubelet's
directory ...), are written by hand (HAND_WRITTEN); tests/helm/test_chart.py renders the chart
with its default values and compares it with deploy/, object by object.

A manifest added to a kustomization in deploy/ is picked up by the next run, with no change here
unless a value must switch it off.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CHART: Final = REPO_ROOT / "deploy" / "helm" / "seccomp-sync"
TEMPLATES: Final = CHART / "templates"
GENERATED_PREFIX: Final = "generated-"
# What the chart installs, as kustomizations: the base and the Prometheus Operator objects. A
# kustomization named in another's resources is walked once (deploy/prometheus names ../base).
KUSTOMIZATIONS: Final = (REPO_ROOT / "deploy" / "base", REPO_ROOT / "deploy" / "prometheus")
KUSTOMIZATION_NAMES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# (kind, name) of the objects templated by hand in templates/, not copied.
HAND_WRITTEN: Final = frozenset(
    {("DaemonSet", "seccomp-sync-agent"), ("Deployment", "seccomp-sync-controller")}
)
# A condition for single objects (a Helm expression), before the file's own.
CONDITIONS: Final[Mapping[tuple[str, str], str]] = {
    ("MutatingAdmissionPolicy", "seccomp-sync-profiles-ready"): ".Values.gating.enabled",
    ("MutatingAdmissionPolicyBinding", "seccomp-sync-profiles-ready"): ".Values.gating.enabled",
    # A recorded pod must wait for its node's listener (runc refuses to start it otherwise):
    # without the gate, no recording either.
    ("MutatingAdmissionPolicy", "seccomp-sync-recording"): ".Values.gating.enabled",
    ("MutatingAdmissionPolicyBinding", "seccomp-sync-recording"): ".Values.gating.enabled",
}
# A condition for every object of a file (its path relative to the repository).
FILE_CONDITIONS: Final[Mapping[str, str]] = {
    "deploy/base/tenant-policy.yaml": ".Values.tenantPolicy.enabled",
    "deploy/prometheus/servicemonitor.yaml": ".Values.monitoring.enabled",
    "deploy/prometheus/servicemonitor-controller.yaml": ".Values.monitoring.enabled",
    "deploy/prometheus/prometheusrule.yaml": ".Values.monitoring.enabled",
}
MONITORING_KINDS: Final = frozenset({"ServiceMonitor", "PrometheusRule"})
KEEP_ANNOTATION: Final = "helm.sh/resource-policy: keep"
SEPARATOR: Final = re.compile(r"^---[ \t]*$", re.M)
BRACES: Final = re.compile(r"\{\{|\}\}")


class GenerateError(Exception):
    """A manifest this generator cannot copy; the message names the file and the object."""


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise GenerateError(f"{directory}: no kustomization file ({', '.join(KUSTOMIZATION_NAMES)})")


def resource_files(directory: Path, seen: set[Path]) -> Iterator[Path]:
    """The manifest files of a kustomization, its bases' first, each once."""
    directory = directory.resolve()
    if directory in seen:
        return
    seen.add(directory)
    kustomization = yaml.safe_load(kustomization_file(directory).read_text())
    # A generated template could not follow kustomize's patches and generators: refuse them.
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unsupported:
        raise GenerateError(
            f"{kustomization_file(directory)}: {', '.join(sorted(unsupported))} not supported "
            "by tools/generate_helm_chart.py (only resources are copied into the chart)"
        )
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            yield from resource_files(path, seen)
        else:
            yield path


def identity(document: str, source: str) -> tuple[str, str] | None:
    """(kind, name) of one YAML document, None for a document of comments only."""
    data = yaml.safe_load(document)
    if data is None:
        return None
    if not isinstance(data, dict) or "kind" not in data or "name" not in data.get("metadata", {}):
        raise GenerateError(f"{source}: a document that is not a Kubernetes object")
    return str(data["kind"]), str(data["metadata"]["name"])


def insert_after(document: str, line: str, text: str, where: str) -> str:
    """``text`` after the first line that is exactly ``line``."""
    pattern = re.compile("^" + re.escape(line) + "\n", re.M)
    if not pattern.search(document):
        raise GenerateError(f"{where}: no line {line!r} to add to")
    return pattern.sub(lambda match: match.group(0) + text, document, count=1)


def template_document(document: str, source: str) -> str:
    """One object of ``source`` as a Helm template ("" for a hand-written object)."""
    ident = identity(document, source)
    if ident is None:
        return document
    if ident in HAND_WRITTEN:
        return ""
    kind, name = ident
    where = f"{source}: {kind} {name}"
    text = BRACES.sub(lambda match: '{{ "' + match.group(0) + '" }}', document)
    if kind == "CustomResourceDefinition":
        if re.search(r"^  annotations:", text, re.M):
            raise GenerateError(f"{where}: has annotations; teach the generator to merge them")
        text = insert_after(text, "metadata:", f"  annotations:\n    {KEEP_ANNOTATION}\n", where)
    if kind in MONITORING_KINDS:
        extra = (
            "    {{- with .Values.monitoring.labels }}\n"
            "    {{- toYaml . | nindent 4 }}\n"
            "    {{- end }}\n"
        )
        text = insert_after(text, "  labels:", extra, where)
    for condition in (CONDITIONS.get(ident), FILE_CONDITIONS.get(source)):
        if condition:
            text = f"{{{{- if {condition} }}}}\n{text.rstrip()}\n{{{{- end }}}}\n"
    return text


def template_file(path: Path) -> tuple[str, str] | None:
    """(template file name, content) for one manifest file; None when it holds only
    hand-written objects."""
    source = path.relative_to(REPO_ROOT).as_posix()
    documents = [
        template_document(document.strip("\n") + "\n", source)
        for document in SEPARATOR.split(path.read_text())
        if document.strip()
    ]
    body = "---\n".join(document for document in documents if document.strip())
    if not body.strip():
        return None
    name = GENERATED_PREFIX + "-".join(path.relative_to(REPO_ROOT).with_suffix("").parts[-2:])
    header = (
        f"# GENERATED from {source} by tools/generate_helm_chart.py: edit that file, then run\n"
        "# `python -m tools.generate_helm_chart`.\n"
    )
    return f"{name}.yaml", header + body


def generate() -> dict[str, str]:
    """Every generated template: file name -> content."""
    seen: set[Path] = set()
    files: dict[str, str] = {}
    for kustomization in KUSTOMIZATIONS:
        for path in resource_files(kustomization, seen):
            template = template_file(path)
            if template is None:
                continue
            name, content = template
            if name in files:
                raise GenerateError(f"{path}: two manifests would both be templates/{name}")
            files[name] = content
    return files


def write(files: Mapping[str, str]) -> list[str]:
    """Write the templates, remove stale generated ones; returns what changed."""
    changed = []
    for stale in TEMPLATES.glob(GENERATED_PREFIX + "*"):
        if stale.name not in files:
            stale.unlink()
            changed.append(f"removed {stale.name}")
    for name, content in files.items():
        path = TEMPLATES / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            changed.append(f"wrote {name}")
    return changed


def differences(files: Mapping[str, str]) -> list[str]:
    """The generated templates that are missing, stale or differ from ``files``."""
    on_disk = {path.name: path.read_text() for path in TEMPLATES.glob(GENERATED_PREFIX + "*")}
    return sorted(
        name for name in set(on_disk) | set(files) if on_disk.get(name) != files.get(name)
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    try:
        files = generate()
    except GenerateError as err:
        print(f"generate_helm_chart: {err}", file=sys.stderr)
        return 1
    if args.check:
        stale = differences(files)
        for name in stale:
            print(f"deploy/helm/seccomp-sync/templates/{name} is out of date", file=sys.stderr)
        if stale:
            print("run: python -m tools.generate_helm_chart", file=sys.stderr)
        return 1 if stale else 0
    for change in write(files):
        print(f"deploy/helm/seccomp-sync/templates: {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
