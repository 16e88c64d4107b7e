"""`seccomp-agent`: validate profiles, run the node agent, or run the controller."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agent.documents import Document, UnreadableInputError, read_documents
from agent.validation.compiler import Compiler
from agent.validation.syscall_names import native_architecture
from agent.validation.validate import CompileFn, ResourceReport, validate_resource, validate_spec

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args)
    if args.command == "run":
        from agent.runner import run_agent  # the agent's heavy imports only when running it

        return run_agent(args)
    if args.command == "controller":
        from agent.controller.app import run_controller

        return run_controller(args)
    parser.print_help()
    return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seccomp-agent", description="Ship validated seccomp profiles to Kubernetes nodes."
    )
    commands = parser.add_subparsers(dest="command")
    validate = commands.add_parser(
        "validate",
        help="validate SeccompProfile objects or OCI profile files",
        description="Exit 0: all valid (warnings allowed); 1: something is invalid; "
        "2: usage error or unreadable input.",
    )
    validate.add_argument(
        "paths", nargs="+", metavar="PATH", help="YAML of SeccompProfile objects, OCI JSON, or -"
    )
    validate.add_argument(
        "--arch",
        action="append",
        metavar="ARCH",
        help="compile for this SCMP_ARCH_* when a profile names none (repeatable; "
        "default: this machine's)",
    )
    validate.add_argument("--output", choices=["text", "json"], default="text")
    from agent.settings import add_run_arguments

    add_run_arguments(commands.add_parser("run", help="run the node agent"))
    from agent.controller.settings import add_controller_arguments

    add_controller_arguments(
        commands.add_parser(
            "controller", help="aggregate profile status and release gated pods (elected)"
        )
    )
    return parser


def _validate(args: argparse.Namespace) -> int:
    # --arch names the nodes' architectures; without it, compile for this machine but make no
    # claim about byte order (the profile may be meant for another kind of node).
    architectures: list[str] = args.arch or [native_architecture()]
    node_architectures: list[str] = args.arch or []
    try:
        documents = [doc for path in args.paths for doc in read_documents(path)]
    except UnreadableInputError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Compiler() as compiler:
        reports = [
            (doc, _validate_document(doc, architectures, node_architectures, compiler.compile))
            for doc in documents
        ]
    if args.output == "json":
        print(json.dumps(_as_json(reports), indent=2))
    else:
        for doc, report in reports:
            for line in _text_lines(doc, report):
                print(line)
    return EXIT_VALID if all(r.report.valid for _, r in reports) else EXIT_INVALID


def _validate_document(
    doc: Document,
    architectures: Sequence[str],
    node_architectures: Sequence[str],
    compile_profile: CompileFn,
) -> ResourceReport:
    if doc.is_resource:
        return validate_resource(
            doc.content,
            default_architectures=architectures,
            compile_profile=compile_profile,
            node_architectures=node_architectures,
        )
    report = validate_spec(
        doc.content,
        default_architectures=architectures,
        compile_profile=compile_profile,
        prefix="",
        node_architectures=node_architectures,
    )
    return ResourceReport("-", f"document-{doc.index}", report)


def _text_lines(doc: Document, result: ResourceReport) -> list[str]:
    head = f"{doc.source}: {result.ref}"
    lines = [f"{head}: {finding.render()}" for finding in result.report.findings]
    if result.report.valid:
        lines.append(f"{head}: valid")
    return lines


def _as_json(reports: list[tuple[Document, ResourceReport]]) -> dict[str, Any]:
    return {
        "valid": all(r.report.valid for _, r in reports),
        "documents": [
            {
                "path": doc.source,
                "document": doc.index,
                "namespace": result.namespace,
                "name": result.name,
                "valid": result.report.valid,
                "findings": [asdict(f) for f in result.report.findings],
            }
            for doc, result in reports
        ],
    }
