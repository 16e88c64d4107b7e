"""`seccomp-agent render` and `seccomp-agent convert`: the commands for people writing profiles."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from agent.api.keys import profile_key
from agent.api.model import DEFAULT_NAMESPACE
from agent.cli.documents import Document, UnreadableInputError, read_documents
from agent.cli.local_profiles import LocalProfiles
from agent.profiles.builtin_bases import BUILTINS
from agent.profiles.convert import Conversion, ConversionError, Target, convert_document, dns_label
from agent.profiles.convert.docker import DEFAULT_CONTAINER_CAPABILITIES, parse_kernel
from agent.profiles.render import render
from agent.seccomp.compiler import Compiler
from agent.seccomp.syscalls import native_architecture

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="FILE", help="SeccompProfile YAML (bases among them), or -"
    )
    parser.add_argument("--name", help="render only this profile (NAME or NAMESPACE/NAME)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="also take profiles (bases, or the one to render) from this cluster, in the "
        "namespaces of the files given or of --name; the files win over the cluster's copies",
    )
    parser.add_argument(
        "--arch", metavar="ARCH", help="the node's SCMP_ARCH_* (default: this machine's)"
    )


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="FILE",
        help="Docker/moby JSON, an OCI profile or config.json, or SPO SeccompProfile YAML",
    )
    parser.add_argument("--arch", help="the nodes' SCMP_ARCH_* (default: this machine's)")
    parser.add_argument(
        "--caps",
        default="default",
        help="the containers' capabilities, comma-separated; `default` is the runtime's default "
        "set (no capabilities added), `none` is none; e.g. default,CAP_SYS_PTRACE",
    )
    parser.add_argument(
        "--kernel", help="the nodes' kernel (e.g. 6.1) for minKernel; default: assume met"
    )
    parser.add_argument("--name", help="metadata.name (default: from the file name)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="metadata.namespace")


def run_render(args: argparse.Namespace) -> int:
    """Print the flattened OCI JSON a node would get, byte for byte."""
    architecture = args.arch or native_architecture()
    if not args.paths and not (args.kubeconfig and args.name):
        print("seccomp-agent: give FILE..., or --kubeconfig with --name", file=sys.stderr)
        return EXIT_USAGE
    try:
        documents = [doc for path in args.paths for doc in read_documents(path)]
        if args.kubeconfig is not None:
            documents += _cluster_documents(args.kubeconfig, documents, args.name)
    except UnreadableInputError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from_files = [d for d in documents if d.is_resource and not d.source.startswith("cluster:")]
    candidates = from_files or documents
    chosen = [d for d in candidates if d.is_resource and _selected(d, args.name)]
    if not chosen:
        print(f"seccomp-agent: no SeccompProfile {args.name or ''} in the input", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    with Compiler() as compiler:
        profiles = LocalProfiles(documents, [architecture], [architecture], compiler.compile)
        for doc in chosen:
            result = profiles.report(doc)
            for finding in result.report.findings:
                print(f"{doc.source}: {result.ref}: {finding.render()}", file=sys.stderr)
            if not result.report.valid or result.report.profile is None:
                status = EXIT_INVALID
                continue
            if len(chosen) > 1:
                print(f"# {result.ref}", file=sys.stderr)
            if result.base_chain:
                print(f"{result.ref}: bases: {' -> '.join(result.base_chain)}", file=sys.stderr)
            sys.stdout.write(render(result.report.profile).content.decode())
    return status


def run_convert(args: argparse.Namespace) -> int:
    """Print SeccompProfile manifests (YAML) converted from the inputs, validated."""
    try:
        target = Target(
            args.arch or native_architecture(),
            _capabilities(args.caps),
            parse_kernel(args.kernel) if args.kernel else None,
        )
        documents = [doc for path in args.paths for doc in read_documents(path)]
    except (UnreadableInputError, ConversionError) as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The names another document's SPO baseProfileName may mean (a nameless one is no base).
    siblings = {profile_key(d.content).name for d in documents if isinstance(d.content, dict)}
    siblings.discard("")
    conversions: list[tuple[Document, Conversion]] = []
    status = EXIT_OK
    for doc in documents:
        try:
            conversion = convert_document(
                doc.content,
                target,
                name=args.name or _name_from(doc),
                namespace=args.namespace,
                builtins=BUILTINS,
                sibling_names=siblings,
            )
        except ConversionError as exc:
            print(f"{doc.source}: cannot convert: {exc}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        conversions.append((doc, conversion))
    converted = [Document(doc.source, doc.index, c.manifest) for doc, c in conversions]
    with Compiler() as compiler:
        arch = [target.architecture]
        profiles = LocalProfiles(converted, arch, arch, compiler.compile)
        for (doc, conversion), manifest in zip(conversions, converted, strict=True):
            result = profiles.report(manifest)
            for finding in result.report.findings:
                print(f"{doc.source}: {result.ref}: {finding.render()}", file=sys.stderr)
            if not result.report.valid:
                status = EXIT_INVALID
                continue
            sys.stdout.write(_yaml(doc, conversion))
    return status


def _cluster_documents(
    kubeconfig: Path, documents: list[Document], wanted: str | None
) -> list[Document]:
    from agent.cli.fetch import fetch_profiles  # the Kubernetes client only when asked for

    namespaces = {
        profile_key(d.content, default_namespace=DEFAULT_NAMESPACE).namespace
        for d in documents
        if d.is_resource
    }
    if wanted and "/" in wanted:
        namespaces.add(wanted.split("/", 1)[0])
    try:
        objects = fetch_profiles(kubeconfig, namespaces or {DEFAULT_NAMESPACE})
    except Exception as exc:  # unreachable cluster, bad credentials: a usage problem here
        raise UnreadableInputError(f"{kubeconfig}: cannot list SeccompProfiles: {exc}") from exc
    return [
        Document(f"cluster:{profile_key(o).namespace}", index, o) for index, o in enumerate(objects)
    ]


def _yaml(doc: Document, conversion: Conversion) -> str:
    head = [f"# converted by seccomp-agent from {doc.source} ({conversion.kind})"]
    head += [f"# {note}" for note in conversion.notes]
    if conversion.dropped:
        head.append(f"# dropped {len(conversion.dropped)}:")
        head += [f"#   {line}" for line in conversion.dropped]
    body = yaml.safe_dump(conversion.manifest, sort_keys=False, width=100)
    return "---\n" + "\n".join(head) + "\n" + body


def _capabilities(text: str) -> frozenset[str]:
    caps: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item == "default":
            caps |= DEFAULT_CONTAINER_CAPABILITIES
        elif item == "none":
            continue
        elif re.fullmatch(r"CAP_[A-Z_]+", item.upper()):
            caps.add(item.upper())
        else:
            raise ConversionError(f"--caps: {item!r} is not default, none or CAP_*")
    return frozenset(caps)


def _name_from(doc: Document) -> str:
    return dns_label(Path(doc.source).stem if doc.source != "-" else "converted")


def _selected(doc: Document, wanted: str | None) -> bool:
    if wanted is None:
        return True
    key = profile_key(doc.content, default_namespace=DEFAULT_NAMESPACE)
    return bool(key.name) and wanted in (key.name, str(key))
