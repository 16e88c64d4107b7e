"""Settings of `seccomp-agent controller`, built once from flags and environment."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.runtime.settings import LogFormat, SettingsError, log_format

DEFAULT_HTTP_PORT = 8080
DEFAULT_GRACE_SECONDS = 120.0
LEASE_NAME = "seccomp-sync-controller"


@dataclass(frozen=True)
class ControllerSettings:
    identity: str
    kubeconfig: Path | None
    http_host: str
    http_port: int
    lease_namespace: str
    lease_name: str
    lease_seconds: float
    renew_deadline: float
    retry_seconds: float
    grace_seconds: float
    log_format: LogFormat
    log_level: str


def add_controller_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: KUBECONFIG, else in-cluster)"
    )
    parser.add_argument(
        "--identity", help="this replica's name in the Lease (default: POD_NAME, else hostname)"
    )
    parser.add_argument("--http-host", default="0.0.0.0", help="address for the HTTP port")
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="/healthz, /readyz, /metrics"
    )
    parser.add_argument(
        "--lease-namespace", help="namespace of the Lease (default: POD_NAMESPACE, else default)"
    )
    parser.add_argument("--lease-name", default=LEASE_NAME)
    parser.add_argument("--lease-seconds", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-seconds", type=float, default=2.0)
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="how long a gated pod waits for lagging nodes before they are excluded from its "
        f"node affinity (default {DEFAULT_GRACE_SECONDS:g})",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default=None)
    parser.add_argument("--log-level", default="INFO")


def build_controller_settings(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> ControllerSettings:
    if not args.retry_seconds < args.renew_deadline < args.lease_seconds:
        raise SettingsError(
            "--retry-seconds < --renew-deadline < --lease-seconds must hold, got "
            f"{args.retry_seconds:g}, {args.renew_deadline:g}, {args.lease_seconds:g}"
        )
    if args.grace_seconds < 0:
        raise SettingsError(f"--grace-seconds must be 0 or more, not {args.grace_seconds:g}")
    kubeconfig = args.kubeconfig or (
        Path(environ["KUBECONFIG"]) if environ.get("KUBECONFIG") else None
    )
    identity = args.identity or environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return ControllerSettings(
        identity=identity,
        kubeconfig=kubeconfig,
        http_host=args.http_host,
        http_port=args.http_port,
        lease_namespace=args.lease_namespace or environ.get("POD_NAMESPACE") or "default",
        lease_name=args.lease_name,
        lease_seconds=args.lease_seconds,
        renew_deadline=args.renew_deadline,
        retry_seconds=args.retry_seconds,
        grace_seconds=args.grace_seconds,
        log_format=log_format(args, environ),
        log_level=args.log_level.upper(),
    )


def add_migrate_arguments(parser: argparse.ArgumentParser) -> None:
    """`seccomp-agent migrate-storage` (agent.controller.storage_migration)."""
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: KUBECONFIG, else in-cluster)"
    )
