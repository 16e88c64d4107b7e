"""The authoring commands: `validate`, `render`, `convert`, `test` and `record`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from agent.api.findings import ValidationReport
from agent.cli import authoring, trial
from agent.cli.authoring import add_convert_arguments, add_render_arguments
from agent.cli.documents import Document, UnreadableInputError, read_documents
from agent.cli.local_profiles import LocalProfiles
from agent.cli.trial import add_record_arguments, add_test_arguments
from agent.profiles.tenancy.policy import KIND as POLICY_KIND
from agent.profiles.tenancy.policy import (
    PolicyFileError,
    TenantPolicy,
    parse_policy,
    profile_violations,
)
from agent.seccomp.compiler import Compiler, TransientCompileError
from agent.seccomp.syscalls import native_architecture
from agent.validation.validate import ResourceReport, validate_spec

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_NO_VERDICT = 3  # the compiler failed for a reason unrelated to the profile

COMMANDS = ("validate", "render", "convert", "test", "record")
COMMANDS_WITH_ARGV = ("test", "record")  # everything after `--` is the command's own


def run_command(args: argparse.Namespace) -> int:
    """Run one of `COMMANDS` with its parsed arguments."""
    if args.command == "validate":
        return _validate(args)
    if args.command == "test":
        return trial.run_test(args)
    if args.command == "record":
        return trial.run_record(args)
    if args.command == "render":
        return authoring.run_render(args)
    return authoring.run_convert(args)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `COMMANDS` on the `seccomp-agent` parser."""
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
    validate.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="also check every profile against the SeccompTenantPolicy objects in FILE "
        "(repeatable), as the API server does in a namespace they select; offline there are "
        "no namespace labels, so each policy applies to every profile",
    )
    add_render_arguments(
        commands.add_parser(
            "render",
            help="print the flattened OCI JSON a node gets (bases resolved)",
            description="Bases come from the other files given (same namespace) or the "
            "built-ins. Exit 0: rendered; 1: invalid; 2: unreadable input.",
        )
    )
    add_convert_arguments(
        commands.add_parser(
            "convert",
            help="convert Docker/OCI/SPO profiles into SeccompProfile manifests",
            description="Docker format is resolved for --arch, --caps and --kernel; what is "
            "dropped is listed in the output. Every result is validated. Exit 0: all "
            "converted; 1: something could not be; 2: unreadable input.",
        )
    )
    add_test_arguments(
        commands.add_parser(
            "test",
            help="run a command under a profile and report what it would deny",
            description="Observes by default: denials are reported, not enforced, and the "
            "command runs to the end. Exit 0: nothing would be denied; 1: something would; "
            "2: usage error or invalid profile. With --enforce: the command's exit status.",
        )
    )
    add_record_arguments(
        commands.add_parser(
            "record",
            help="run a command and write a profile allowing exactly the syscalls it made",
            description="Every syscall of the command, its threads and child processes is "
            "observed (seccomp user notification: none is lost). The profile allows those "
            "plus what runc needs to start a container; default SCMP_ACT_ERRNO.",
        )
    )


def _validate(args: argparse.Namespace) -> int:
    # --arch names the nodes' architectures; without it, compile for this machine but make no
    # claim about byte order (the profile may be meant for another kind of node).
    architectures: list[str] = args.arch or [native_architecture()]
    node_architectures: list[str] = args.arch or []
    try:
        documents = [doc for path in args.paths for doc in read_documents(path)]
        policies = [p for path in args.policy or [] for p in _read_policies(path)]
    except UnreadableInputError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Compiler() as compiler:
        # Profiles with a baseProfileName take their base from the other files, or a built-in.
        local = LocalProfiles(documents, architectures, node_architectures, compiler.compile)
        try:
            reports = [(doc, _report(doc, local)) for doc in documents]
        except TransientCompileError as exc:
            print(
                "seccomp-agent: could not compile (not a verdict on the profile; try again): "
                f"{exc}",
                file=sys.stderr,
            )
            return EXIT_NO_VERDICT
    reports = [(doc, _with_policies(doc, report, policies)) for doc, report in reports]
    if args.output == "json":
        print(json.dumps(_as_json(reports), indent=2))
    else:
        for doc, report in reports:
            for line in _text_lines(doc, report):
                print(line)
    return EXIT_VALID if all(r.report.valid for _, r in reports) else EXIT_INVALID


def _report(doc: Document, local: LocalProfiles) -> ResourceReport:
    """A SeccompProfile's report (its base resolved among the files), or a raw OCI file's."""
    if doc.is_resource:
        return local.report(doc)
    report = validate_spec(
        doc.content,
        default_architectures=local.architectures,
        compile_profile=local.compile_profile,
        prefix="",  # no `spec.` around a raw file: its fields are named as they are in it
        node_architectures=local.node_architectures,
    )
    return ResourceReport("-", f"document-{doc.index}", report)


def _read_policies(path: str) -> list[TenantPolicy]:
    policies = []
    for doc in read_documents(path):
        try:
            policies.append(parse_policy(doc.content))
        except PolicyFileError as exc:
            raise UnreadableInputError(
                f"{path}: document {doc.index}: not a valid {POLICY_KIND}: {exc}"
            ) from None
    return policies


def _with_policies(
    doc: Document, result: ResourceReport, policies: Sequence[TenantPolicy]
) -> ResourceReport:
    """The report plus what the policies refuse, for every profile whose spec parsed."""
    profile = result.report.profile
    if profile is None or not policies:
        return result
    # A raw OCI file has no `spec.` around it: name its fields as they are in the file.
    prefix = "spec." if doc.is_resource else ""
    refused = [
        replace(f, field=prefix + f.field.removeprefix("spec."))
        for policy in policies
        for f in profile_violations(policy, profile)
    ]
    findings = result.report.findings + tuple(refused)
    return replace(result, report=ValidationReport(findings, profile))


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
