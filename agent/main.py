"""`seccomp-agent`: one command for the three programs; each subcommand belongs to one of them.

`run` is the node agent (`agent.node`), `controller` the controller (`agent.controller`), the
rest the authoring CLI (`agent.cli`). A program's heavy imports happen only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent.cli.main import COMMANDS, COMMANDS_WITH_ARGV, EXIT_USAGE, add_commands, run_command
from agent.controller.settings import add_controller_arguments, add_migrate_arguments
from agent.node.settings import add_run_arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if arguments[:1] and arguments[0] in COMMANDS_WITH_ARGV and "--" in arguments:
        split = arguments.index("--")
        arguments, command = arguments[:split], arguments[split + 1 :]
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command in COMMANDS_WITH_ARGV:
        args.argv = command
    if args.command in COMMANDS:
        return run_command(args)
    if args.command == "run":
        from agent.node.main import run_agent

        return run_agent(args)
    if args.command == "controller":
        from agent.controller.main import run_controller

        return run_controller(args)
    if args.command == "migrate-storage":
        from agent.controller.storage_migration import run_migration

        return run_migration(args)
    parser.print_help()
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seccomp-agent", description="Ship validated seccomp profiles to Kubernetes nodes."
    )
    commands = parser.add_subparsers(dest="command")
    add_commands(commands)
    add_run_arguments(commands.add_parser("run", help="run the node agent"))
    add_controller_arguments(
        commands.add_parser(
            "controller", help="aggregate profile status and release gated pods (elected)"
        )
    )
    add_migrate_arguments(
        commands.add_parser(
            "migrate-storage",
            help="after an upgrade: rewrite every stored object at the CRDs' storage version "
            "and trim status.storedVersions (needs cluster-wide rights; see deploy/migration)",
            description="Idempotent. Exit 0: every CRD migrated (or nothing to do); 1: some "
            "object could not be rewritten (listed), storedVersions left as they were.",
        )
    )
    return parser
