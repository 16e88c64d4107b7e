"""One typed settings object for the agent, built once at start-up from flags and environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.runtime.settings import LogFormat, SettingsError, log_format, number_env

DEFAULT_HTTP_HOST = "0.0.0.0"  # every IPv4 address: the kubelet probes the pod IP
DEFAULT_ROOT = Path("/var/lib/kubelet/seccomp")
DEFAULT_HTTP_PORT = 8080
DEFAULT_RESYNC_SECONDS = 300.0
# Where the DaemonSet puts the recorder's socket, at the same path in the agent's container as
# on the host: runc connects to a recording profile's listenerPath from the host's mount
# namespace. Off unless asked for: an agent run by hand must not take a host path of its own.
RECORDER_SOCKET = Path("/run/seccomp-sync/recorder.sock")


@dataclass(frozen=True)
class Settings:
    node_name: str
    root: Path
    kubeconfig: Path | None
    http_host: str
    http_port: int
    namespaces: tuple[str, ...]
    log_format: LogFormat
    log_level: str
    remove_startup_taint: bool
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    recorder_socket: Path | None = None  # None: no in-cluster recording on this node
    # Where the controller publishes the fleet digests (its own namespace, as its Lease).
    fleet_namespace: str = "default"

    @property
    def managed_dir(self) -> Path:
        """The only directory the agent writes to: `<root>/seccomp-sync`."""
        return self.root / "seccomp-sync"

    @property
    def watches_all_namespaces(self) -> bool:
        return not self.namespaces


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    env = "environment variable"
    parser.add_argument("--node-name", help=f"this node's name (default: NODE_NAME {env})")
    parser.add_argument(
        "--root",
        type=Path,
        help=f"kubelet seccomp root (default: SECCOMP_SYNC_ROOT {env}, else {DEFAULT_ROOT})",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: KUBECONFIG, else in-cluster)"
    )
    parser.add_argument(
        "--http-host",
        default=None,
        help=f"address to listen on for /healthz, /readyz, /metrics (default: "
        f"SECCOMP_SYNC_HTTP_HOST {env}, else {DEFAULT_HTTP_HOST}, every IPv4 address; "
        f"'::' for IPv6, 127.0.0.1 to keep it local)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        help=f"port for /healthz, /readyz, /metrics "
        f"(default: SECCOMP_SYNC_HTTP_PORT {env}, else {DEFAULT_HTTP_PORT}; 0 picks a free port)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--fleet-namespace",
        default=None,
        help="namespace of the controller's ConfigMap seccomp-sync-fleet, whose digests let this "
        f"node send compact reports (default: POD_NAMESPACE {env}, else default, as the "
        "controller's --lease-namespace)",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--remove-startup-taint",
        action="store_true",
        help="remove the seccompsync.io/agent-not-ready taint from this node after the first "
        "full sync",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help=f"period of the level-triggered resync with the API and the disk, jittered by 10%% "
        f"(default: SECCOMP_SYNC_RESYNC_SECONDS {env}, else {DEFAULT_RESYNC_SECONDS:.0f})",
    )
    parser.add_argument(
        "--recorder-socket",
        default=None,
        help=f"unix socket where runc hands over recorded containers' seccomp listeners, at the "
        f"same path as on the host (the DaemonSet's: {RECORDER_SOCKET}; default: "
        f"SECCOMP_SYNC_RECORDER_SOCKET {env}, else none: no in-cluster recording)",
    )


def _recorder_socket(args: argparse.Namespace, environ: Mapping[str, str]) -> Path | None:
    value = args.recorder_socket
    if value is None:
        value = environ.get("SECCOMP_SYNC_RECORDER_SOCKET", "")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise SettingsError(
            f"the recorder socket must be an absolute path (the host's), not {value!r}"
        )
    return path


def build_settings(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
    """Flags win over environment variables; missing required values raise SettingsError."""
    node_name = args.node_name or environ.get("NODE_NAME", "")
    if not node_name:
        raise SettingsError("the node name is required: pass --node-name or set NODE_NAME")
    root = args.root or Path(environ.get("SECCOMP_SYNC_ROOT", str(DEFAULT_ROOT)))
    kubeconfig = args.kubeconfig or (
        Path(environ["KUBECONFIG"]) if environ.get("KUBECONFIG") else None
    )
    port = args.http_port
    if port is None:
        port = number_env(environ, "SECCOMP_SYNC_HTTP_PORT", DEFAULT_HTTP_PORT)
    resync = args.resync_seconds
    if resync is None:
        resync = number_env(environ, "SECCOMP_SYNC_RESYNC_SECONDS", DEFAULT_RESYNC_SECONDS)
    if resync <= 0:
        raise SettingsError(f"the resync period must be positive, not {resync}")
    return Settings(
        node_name=node_name,
        root=root.absolute(),
        kubeconfig=kubeconfig,
        http_host=args.http_host or environ.get("SECCOMP_SYNC_HTTP_HOST", DEFAULT_HTTP_HOST),
        http_port=port,
        namespaces=tuple(args.namespaces or ()),
        log_format=log_format(args, environ),
        log_level=args.log_level.upper(),
        remove_startup_taint=args.remove_startup_taint,
        resync_seconds=resync,
        recorder_socket=_recorder_socket(args, environ),
        fleet_namespace=args.fleet_namespace or environ.get("POD_NAMESPACE") or "default",
    )
