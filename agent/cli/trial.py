"""`seccomp-agent test` and `seccomp-agent record`: try a profile on a real program, or make one.

`test PROFILE -- CMD` runs CMD under PROFILE compiled for this machine. By default it observes:
what the profile would deny is reported (syscall, count, the rule or default that denies it)
and let through, so the program runs to the end; exit 0 when nothing would be denied, 1 when
something would. `--enforce` runs CMD under the real filter and exits with CMD's status.

`record -- CMD` runs CMD with every syscall observed and writes a SeccompProfile that allows
exactly those, plus what runc itself calls after loading a container's filter (the built-in
`runtime/runc@v1.4.2` list), with SCMP_ACT_ERRNO as default.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from agent.api.keys import profile_key
from agent.api.model import API_GROUP, API_VERSION, DEFAULT_NAMESPACE, KIND, OciSeccomp
from agent.cli.documents import UnreadableInputError, read_documents
from agent.cli.local_profiles import LocalProfiles
from agent.profiles.builtin_bases import builtin_profile
from agent.profiles.convert import dns_label
from agent.seccomp.compiler import Compiler
from agent.seccomp.syscalls import architecture_name, native_architecture
from agent.seccomp.trial.plan import Verdict, explain, notifies, observe_document, record_document
from agent.seccomp.trial.supervise import TrialError, build_filter, run, syscall_name
from agent.validation.validate import FLATTENED_PREFIX, validate_spec

EXIT_NOTHING_DENIED = 0
EXIT_DENIED = 1
EXIT_USAGE = 2
# What runc calls between loading the container's filter and exec'ing its process: a recorded
# profile without these would fail every container at start (SPO's runc base, shipped built-in).
RUNTIME_BASE: Final = "runtime/runc@v1.4.2"


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "seccomp-agent test [options] PROFILE -- CMD [ARGS...]"
    parser.add_argument("profile", metavar="PROFILE", help="SeccompProfile YAML or OCI JSON")
    parser.add_argument("--name", help="the profile to use when PROFILE holds several")
    parser.add_argument(
        "--enforce", action="store_true", help="enforce the profile instead of observing"
    )
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="write the report here (default: stderr, after the command's own output)",
    )


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "seccomp-agent record [options] -- CMD [ARGS...]"
    parser.add_argument("--name", help="metadata.name (default: from the command)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--no-runtime",
        action="store_true",
        help=f"do not add the syscalls runc needs to start a container ({RUNTIME_BASE})",
    )


def run_test(args: argparse.Namespace) -> int:
    command = _command(args.argv)
    if command is None:
        return EXIT_USAGE
    loaded = _load_profile(args.profile, args.name)
    if loaded is None:
        return EXIT_USAGE
    profile, prefix, label = loaded
    denials: Counter[tuple[str, str, Verdict]] = Counter()

    def observed(arch: int, number: int, _pid: int, call_args: tuple[int, ...]) -> None:
        name = syscall_name(arch, number)
        verdict = explain(profile, name, call_args, prefix)
        denials[(name, _arch_name(arch), verdict)] += 1

    document = profile.model_dump(mode="json", exclude_none=True)
    try:
        if args.enforce:
            outcome = run(command, build_filter(document), on_syscall=None)
            print(
                f"seccomp-agent: {shlex.join(command)} exited {outcome.exit_code} under {label} "
                "(enforced)",
                file=sys.stderr,
            )
            return outcome.exit_code
        observing = observe_document(profile)
        # A profile that denies nothing has nothing to notify, and then no listener exists.
        outcome = run(
            command, build_filter(observing), on_syscall=observed if notifies(observing) else None
        )
    except (TrialError, OSError) as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = _report(args.output, label, command, outcome.exit_code, denials)
    if args.report:
        Path(args.report).write_text(text)
    else:
        sys.stderr.write(text)
    return EXIT_DENIED if denials else EXIT_NOTHING_DENIED


def run_record(args: argparse.Namespace) -> int:
    command = _command(args.argv)
    if command is None:
        return EXIT_USAGE
    native = native_architecture()
    seen: dict[str, set[str]] = {}

    def observed(arch: int, number: int, _pid: int, _args: tuple[int, ...]) -> None:
        seen.setdefault(_arch_name(arch), set()).add(syscall_name(arch, number))

    try:
        outcome = run(command, build_filter(record_document(native)), on_syscall=observed)
    except (TrialError, OSError) as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    recorded = set().union(*seen.values()) if seen else set()
    runtime = set() if args.no_runtime else _runtime_names(native) - recorded
    name = args.name or dns_label(Path(command[0]).name)
    architectures = [native, *sorted(a for a in seen if a != native)]
    manifest = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": args.namespace},
        "spec": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": architectures,
            "syscalls": [{"names": sorted(recorded | runtime), "action": "SCMP_ACT_ALLOW"}],
        },
    }
    header = [
        f"# recorded by seccomp-agent from: {shlex.join(command)} (exit {outcome.exit_code})",
        f"# {len(recorded)} syscalls made ({outcome.notifications} calls observed)",
    ]
    if runtime:
        header.append(
            f"# plus {len(runtime)} runc needs to start a container ({RUNTIME_BASE}): "
            + ", ".join(sorted(runtime))
        )
    text = "\n".join(header) + "\n" + yaml.safe_dump(manifest, sort_keys=False, width=100)
    if args.output:
        Path(args.output).write_text(text)
        print(f"seccomp-agent: wrote {args.output} ({len(recorded)} syscalls)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_NOTHING_DENIED


def _command(command: Sequence[str]) -> list[str] | None:
    argv = list(command)
    if not argv:
        print("seccomp-agent: give the command after --", file=sys.stderr)
        return None
    return argv


def _load_profile(path: str, wanted: str | None) -> tuple[OciSeccomp, str, str] | None:
    """The profile (flattened when it has a base), its field prefix for reports, a label."""
    architecture = native_architecture()
    try:
        documents = read_documents(path)
    except UnreadableInputError as exc:
        print(f"seccomp-agent: {exc}", file=sys.stderr)
        return None
    with Compiler() as compiler:
        resources = [d for d in documents if d.is_resource]
        if not resources:
            report = validate_spec(
                documents[0].content,
                default_architectures=[architecture],
                compile_profile=compiler.compile,
                prefix="",
            )
            label, prefix, chain = path, "", tuple[str, ...]()
        else:
            names = [profile_key(d.content).name or "-" for d in resources]
            chosen = [d for d, name in zip(resources, names, strict=True) if wanted in (None, name)]
            if len(chosen) != 1:
                print(
                    f"seccomp-agent: {path}: give --name (one of {', '.join(names)})",
                    file=sys.stderr,
                )
                return None
            local = LocalProfiles(documents, [architecture], [architecture], compiler.compile)
            result = local.report(chosen[0])
            report, label, chain = result.report, result.ref, result.base_chain
            prefix = FLATTENED_PREFIX if chain else "spec."
    for finding in report.findings:
        print(f"{path}: {label}: {finding.render()}", file=sys.stderr)
    if not report.valid or report.profile is None:
        return None
    return report.profile, prefix, label


def _runtime_names(architecture: str) -> set[str]:
    base = builtin_profile(RUNTIME_BASE, architecture)
    return {name for rule in base.syscalls or [] for name in rule.names}


def _arch_name(token: int) -> str:
    return architecture_name(token) or hex(token)


def _report(
    output: str,
    label: str,
    command: Sequence[str],
    exit_code: int,
    denials: Counter[tuple[str, str, Verdict]],
) -> str:
    rows = sorted(denials.items(), key=lambda item: (-item[1], item[0][0]))
    if output == "json":
        document: dict[str, Any] = {
            "profile": label,
            "command": list(command),
            "exitCode": exit_code,
            "denied": [
                {
                    "syscall": name,
                    "architecture": arch,
                    "count": count,
                    "deniedBy": verdict.where,
                    "action": verdict.action,
                }
                for (name, arch, verdict), count in rows
            ],
        }
        return json.dumps(document, indent=2) + "\n"
    if not rows:
        return (
            f"seccomp-agent: {label} would deny nothing {shlex.join(command)} did "
            f"(exit {exit_code})\n"
        )
    total = sum(denials.values())
    lines = [
        f"seccomp-agent: {label} would deny {len(rows)} syscalls ({total} calls) of "
        f"{shlex.join(command)} (observed, not enforced; exit {exit_code}):"
    ]
    width = max(len(name) for (name, _, _), _ in rows)
    lines += [
        f"  {name:<{width}}  {count:>7}  {verdict.where}: {verdict.action}  ({arch})"
        for (name, arch, verdict), count in rows
    ]
    return "\n".join(lines) + "\n"
