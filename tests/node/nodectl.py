"""A real Kubernetes node as plain processes: containerd + kubelet joined to tests/cluster.

    python3 -m tests.node.nodectl up CLUSTER_DIR NODE_DIR [--name 127.0.0.N] [--taint K[=V]:EFFECT]
                                     [--image OCI_ARCHIVE]...
    python3 -m tests.node.nodectl import NODE_DIR OCI_ARCHIVE
    python3 -m tests.node.nodectl down NODE_DIR

(``tests/node/up`` and ``tests/node/down`` call these.) Only the standard library: the scripts
run with the system's python3, before any virtualenv exists.

Why it is built this way (facts measured on a real node here):

- **A mount namespace per node.** containerd and the kubelet run in their own mount namespace in
  which ``NODE_DIR/kubelet`` is bind-mounted at ``/var/lib/kubelet``, and ``/run/containerd``,
  ``/var/log/containers``, ``/run/netns`` and ``/var/lib/cni`` (paths they hard-code) are
  private too. So every node
  on this host has the real default paths, a DaemonSet's hostPath
  ``/var/lib/kubelet/seccomp/seccomp-sync`` means each node's own directory (as on a real
  cluster), two nodes do not share the kubelet's device-plugin socket, and the volume mounts
  the kubelet makes vanish with the namespace: nothing is mounted on the host.
- **The node's name is a loopback address** (``127.0.0.N``): the kubelet takes an IP given as
  its hostname as its InternalIP (``--node-ip`` refuses loopback), so the API server reaches
  its logs and exec on the node's own address and ports.
- **Its own cgroup root** (``/seccomp-sync-node-<id>`` in every hierarchy), so that nodes do
  not share ``kubepods`` and teardown knows exactly which processes are this node's pods.
- **Loopback-only CNI** from Debian's containernetworking-plugins: pods use ``hostNetwork``;
  no bridge or route is created on the host.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.node import images

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPTS = REPO / "tests" / "cluster"
MARKER = ".testnode-state"
STATE = "node.json"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"
# Host paths the node's mount namespace covers: (host mount point, what is mounted there).
NS_MOUNTS = (
    ("/var/lib/kubelet", "kubelet"),
    ("/var/log/containers", "log-containers"),
    ("/run/containerd", None),  # a tmpfs: shim sockets and runc state live and die with the node
    # A pod without hostNetwork still makes containerd pin a network namespace and cache a CNI
    # result (its sandbox then fails: there is no pod network): tmpfs too.
    ("/run/netns", None),
    ("/var/lib/cni", None),
    # The agent's recorder socket (a hostPath): each node's own, as on a real cluster.
    ("/run/seccomp-sync", None),
)
# Marks the (empty) mount-point directories a test node created on the host, so whichever
# node's teardown runs last removes them, and a directory the host already had stays.
CREATED_XATTR = "user.seccomp-sync.testnode"
STARTUP_TIMEOUT_S = float(os.environ.get("TESTNODE_START_TIMEOUT", "120"))


class NodeError(RuntimeError):
    """The node could not be started or stopped; the message says why."""


def log(message: str) -> None:
    print(f"testnode: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, timeout: float = 60, check: bool = True) -> str:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class Paths:
    """Where everything of one node lives."""

    def __init__(self, node_dir: Path) -> None:
        self.dir = node_dir
        self.state = node_dir / STATE
        self.pki = node_dir / "pki"
        self.kubeconfig = node_dir / "kubeconfig"
        self.containerd = node_dir / "containerd"
        self.containerd_config = self.containerd / "config.toml"
        self.containerd_sock = self.containerd / "containerd.sock"
        self.cni_conf = node_dir / "cni" / "net.d"
        self.kubelet = node_dir / "kubelet"  # /var/lib/kubelet inside the node
        self.kubelet_config = node_dir / "kubelet-config.yaml"
        self.pod_logs = node_dir / "pod-logs"
        self.logs = node_dir / "logs"

    @property
    def seccomp_root(self) -> Path:
        """The kubelet's seccomp root (``/var/lib/kubelet/seccomp`` as the node sees it)."""
        return self.kubelet / "seccomp"


# --- the control plane ---------------------------------------------------------------------


class Cluster:
    def __init__(self, cluster_dir: Path) -> None:
        self.dir = cluster_dir
        self.kubeconfig = cluster_dir / "kubeconfig"
        self.kubectl_path = cluster_dir / "bin" / "kubectl"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        return run(
            [
                str(self.kubectl_path),
                "--kubeconfig",
                str(self.kubeconfig),
                "--request-timeout=10s",
                *args,
            ],
            check=check,
            timeout=timeout,
        )

    def config(self) -> dict[str, Any]:
        view = json.loads(self.kubectl("config", "view", "--raw", "-o", "json"))
        cluster: dict[str, Any] = view["clusters"][0]["cluster"]
        return cluster


def build_binaries() -> Path:
    """tests/cluster/build: the kubelet is built and cached beside the control plane."""
    result = subprocess.run(
        [str(CLUSTER_SCRIPTS / "build")], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise NodeError(f"tests/cluster/build failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip())


# --- identity ------------------------------------------------------------------------------


def pick_name(cluster: Cluster) -> str:
    """The lowest 127.0.0.N that no Node of this cluster has."""
    taken = set(cluster.kubectl("get", "nodes", "-o", "name").split())
    for last in range(1, 255):
        name = f"127.0.0.{last}"
        if f"node/{name}" not in taken:
            return name
    raise NodeError("no free 127.0.0.N node name in this cluster")


def check_name(name: str) -> None:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise NodeError(
            f"--name {name!r}: must be an IPv4 loopback address (127.0.0.N): the kubelet takes "
            "its name as its InternalIP, which the API server uses to reach its logs and exec"
        )


def write_identity(paths: Paths, cluster: Cluster, name: str) -> None:
    """A client certificate CN=system:node:NAME, O=system:nodes signed by the cluster's CA."""
    paths.pki.mkdir(parents=True, exist_ok=True)
    key, csr, cert = paths.pki / "node.key", paths.pki / "node.csr", paths.pki / "node.crt"
    ext = paths.pki / "node.ext"
    ext.write_text("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    request = [
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", f"/O=system:nodes/CN=system:node:{name}",
    ]  # fmt: skip
    run(request)
    ca = cluster.dir / "pki"
    sign = [
        "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.crt"),
        "-CAkey", str(ca / "ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
        "-days", "30", "-extfile", str(ext), "-out", str(cert),
    ]  # fmt: skip
    run(sign)
    server = cluster.config()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [
            {
                "name": f"system:node:{name}",
                "user": {"client-certificate": str(cert), "client-key": str(key)},
            }
        ],
        "contexts": [
            {"name": "node", "context": {"cluster": "test", "user": f"system:node:{name}"}}
        ],
        "current-context": "node",
    }
    paths.kubeconfig.write_text(json.dumps(kubeconfig, indent=2))


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


# --- cgroups -------------------------------------------------------------------------------


def cgroup_mounts() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the unified v2 one)."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            mounts.append(Path(fields[1]))
    return mounts


def create_cgroup_root(root: str) -> None:
    for mount in cgroup_mounts():
        target = mount / root.lstrip("/")
        target.mkdir(exist_ok=True)
        # A new v1 cpuset is empty, and tasks cannot join an empty cpuset.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (mount / knob).exists() and not (target / knob).read_text().strip():
                (target / knob).write_text((mount / knob).read_text())


def cgroup_pids(root: str) -> set[int]:
    pids: set[int] = set()
    for mount in cgroup_mounts():
        base = mount / root.lstrip("/")
        if base.is_dir():
            for procs in base.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(pid) for pid in procs.read_text().split())
    return pids


def remove_cgroup_root(root: str) -> list[str]:
    """rmdir the node's cgroup trees, deepest first; returns what could not be removed."""
    left = []
    for mount in cgroup_mounts():
        base = mount / root.lstrip("/")
        if not base.is_dir():
            continue
        dirs = sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, base]:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as err:
                left.append(f"{directory}: {err.strerror}")
    return left


# --- processes -----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ours(pid: int, node_dir: Path) -> bool:
    """pid is still the process we started (pid reuse): its command line names NODE_DIR."""
    return alive(pid) and str(node_dir) in cmdline(pid)


def stop_pid(pid: int, grace_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def mount_ns(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/mnt").readlink())
    except OSError:
        return None


def start_detached(cmd: list[str], log_path: Path) -> int:
    """Start cmd in its own session (it outlives the caller and its signals); return its pid."""
    with log_path.open("a") as out:
        out.write(f"\n===== start {time.strftime('%Y-%m-%dT%H:%M:%S')}: {cmd[0]} =====\n")
        out.flush()
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    return process.pid


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


# --- host mount points ---------------------------------------------------------------------


def ensure_mount_points() -> None:
    for host_path, _ in NS_MOUNTS:
        path = Path(host_path)
        if not path.exists():
            path.mkdir(parents=True)
            os.setxattr(path, CREATED_XATTR, b"1")


def other_node_processes() -> bool:
    """Does any kubelet or containerd run (another test node, or the host's own)?"""
    for pid in all_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").readlink().name in ("kubelet", "containerd"):
                return True
    return False


def remove_mount_points() -> None:
    """Remove the empty mount points a test node created, once no node uses them."""
    if other_node_processes():
        return
    for host_path, _ in NS_MOUNTS:
        path = Path(host_path)
        try:
            created = os.getxattr(path, CREATED_XATTR) == b"1"
        except OSError:
            continue
        if created:
            with contextlib.suppress(OSError):  # not empty: something else uses it now
                path.rmdir()
    # /var/lib and /var/log exist on every Debian system; nothing else was created.


# --- configuration -------------------------------------------------------------------------


def containerd_config(paths: Paths) -> str:
    # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails the sandbox
    # ("can't get final child's PID from pipe: EOF") when asked to lower its OOM score.
    return f"""version = 2
root = "{paths.containerd}/root"
state = "{paths.containerd}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths.containerd_sock}"
[ttrpc]
  address = "{paths.containerd_sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNC}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf}"
"""


def loopback_conflist() -> str:
    return json.dumps(
        {"cniVersion": "0.4.0", "name": "seccomp-sync-loopback", "plugins": [{"type": "loopback"}]}
    )


def parse_taint(text: str) -> dict[str, str]:
    """``key[=value]:Effect`` as ``--register-with-taints`` takes it."""
    key_value, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise NodeError(f"--taint {text!r}: expected KEY[=VALUE]:NoSchedule|PreferNoSchedule|...")
    key, _, value = key_value.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def kubelet_config(
    paths: Paths, name: str, port: int, healthz_port: int, cgroup_root: str, taints: list[str]
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine has cgroup v1 (hybrid); v1.36 refuses it unless told otherwise.
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{paths.containerd_sock}",
        "address": name,
        "port": port,
        "healthzBindAddress": name,
        "healthzPort": healthz_port,
        "readOnlyPort": 0,
        # The test API server has no kubelet client certificate to present.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        # The local images cannot be pulled again: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "10Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "podLogsDir": str(paths.pod_logs),
        "registerWithTaints": [parse_taint(taint) for taint in taints],
        "serializeImagePulls": False,
        "maxPods": 50,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


# --- up ------------------------------------------------------------------------------------


def wait_for(what: str, check: Any, timeout_s: float, diagnose: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise NodeError(f"{what} not ready after {timeout_s:.0f}s: {problem}\n{diagnose()}")
        time.sleep(0.2)


def ctr(paths: Paths, *args: str, timeout: float = 120, check: bool = True) -> str:
    return run(
        ["ctr", "--address", str(paths.containerd_sock), "--namespace", "k8s.io", *args],
        timeout=timeout,
        check=check,
    )


def import_image(paths: Paths, archive: Path) -> None:
    # --all-platforms: the archive is the image; never filter (or fetch) anything.
    ctr(paths, "images", "import", "--all-platforms", str(archive), timeout=600)


def up(
    cluster_dir: Path, node_dir: Path, name: str | None, taints: list[str], extra: list[Path]
) -> str:
    started = time.monotonic()
    if os.geteuid() != 0:
        raise NodeError(
            "a node needs root: containerd, runc and the kubelet mount, create cgroups and "
            "make a mount namespace"
        )
    paths = Paths(node_dir)
    cluster = Cluster(cluster_dir)
    if not cluster.kubeconfig.exists():
        raise NodeError(f"{cluster_dir} has no kubeconfig: start it with tests/cluster/up first")
    node_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / MARKER).touch()
    if len(str(paths.containerd_sock)) + len(".ttrpc") > 100:
        raise NodeError(
            f"NODE_DIR {node_dir} is too long for a unix socket path; use a shorter one"
        )
    with locked(node_dir / ".lock"):
        if paths.state.exists():
            state = json.loads(paths.state.read_text())
            if ours(state["containerd_pid"], node_dir) and ours(state["kubelet_pid"], node_dir):
                wait_ready(cluster, paths, state["name"])
                log(f"{state['name']} already running")
                return str(state["name"])
            raise NodeError(
                f"{node_dir} holds a node that is no longer running: tests/node/down it first"
            )
        bin_dir = build_binaries()
        archives = images.build()
        # Held until the Node is registered, so that two nodes starting at once never pick
        # the same name.
        with locked(cluster_dir / ".testnode-names.lock"):
            if name is None:
                name = pick_name(cluster)
            elif cluster.kubectl("get", "node", name, "-o", "name", check=False):
                raise NodeError(f"--name {name}: this cluster has a Node of that name already")
            check_name(name)
            write_identity(paths, cluster, name)
            node_id = hashlib.sha256(str(node_dir).encode()).hexdigest()[:12]
            state: dict[str, Any] = {
                "name": name,
                "cluster_dir": str(cluster_dir),
                "cgroup_root": f"/seccomp-sync-node-{node_id}",
            }
            paths.state.write_text(json.dumps(state))
            start_processes(paths, state, bin_dir, archives, extra, taints)
            wait_ready(cluster, paths, name)
    log(f"{name} Ready in {time.monotonic() - started:.1f}s (state in {node_dir})")
    return name


def start_processes(
    paths: Paths,
    state: dict[str, Any],
    bin_dir: Path,
    archives: dict[str, Path],
    extra: list[Path],
    taints: list[str],
) -> None:
    """Start containerd and the kubelet, recording each in ``state`` (NODE_DIR/node.json) at
    once, so that ``down`` can clean up after a start that failed half-way."""

    def save(**values: Any) -> None:
        state.update(values)
        paths.state.write_text(json.dumps(state, indent=2))

    name, cgroup_root = state["name"], state["cgroup_root"]
    for directory in (paths.containerd, paths.cni_conf, paths.kubelet, paths.pod_logs, paths.logs):
        directory.mkdir(parents=True, exist_ok=True)
    (paths.dir / "log-containers").mkdir(exist_ok=True)
    paths.containerd_config.write_text(containerd_config(paths))
    (paths.cni_conf / "10-loopback.conflist").write_text(loopback_conflist())
    create_cgroup_root(cgroup_root)
    ensure_mount_points()

    # containerd becomes the first process of the node's mount namespace (unshare without
    # --fork execs, so the pid we get is containerd's); the kubelet joins it with nsenter.
    mounts = []
    for host_path, source in NS_MOUNTS:
        if source is None:
            mounts.append(f"mount -t tmpfs -o mode=0711 tmpfs {host_path}")
        else:
            mounts.append(f"mount --bind {paths.dir / source} {host_path}")
    script = " && ".join([*mounts, f'exec containerd --config "{paths.containerd_config}"'])
    containerd_pid = start_detached(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        paths.logs / "containerd.log",
    )
    save(containerd_pid=containerd_pid)

    def containerd_up() -> str | None:
        if not alive(containerd_pid):
            raise NodeError(f"containerd exited:\n{tail(paths.logs / 'containerd.log')}")
        result = subprocess.run(
            ["ctr", "--address", str(paths.containerd_sock), "version"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return None if result.returncode == 0 else result.stderr.strip()

    wait_for("containerd", containerd_up, 30, lambda: tail(paths.logs / "containerd.log"))
    save(mount_ns=mount_ns(containerd_pid))
    for archive in [*archives.values(), *extra]:
        import_image(paths, archive)

    port, healthz_port = free_port(name), free_port(name)
    config = kubelet_config(paths, name, port, healthz_port, cgroup_root, taints)
    paths.kubelet_config.write_text(json.dumps(config, indent=2))
    kubelet = [
        "nsenter", f"--mount=/proc/{containerd_pid}/ns/mnt", "--", str(bin_dir / "kubelet"),
        "--config", str(paths.kubelet_config), "--kubeconfig", str(paths.kubeconfig),
        "--hostname-override", name, "--root-dir", "/var/lib/kubelet", "--v", "1",
    ]  # fmt: skip
    kubelet_pid = start_detached(kubelet, paths.logs / "kubelet.log")
    save(kubelet_pid=kubelet_pid, port=port, healthz_port=healthz_port)


def wait_ready(cluster: Cluster, paths: Paths, name: str) -> None:
    state = json.loads(paths.state.read_text())

    def ready() -> str | None:
        if not alive(state["kubelet_pid"]):
            raise NodeError(f"kubelet exited:\n{tail(paths.logs / 'kubelet.log')}")
        out = cluster.kubectl("get", "node", name, "-o", "json", check=False)
        if not out:
            return "Node not registered"
        conditions = json.loads(out)["status"].get("conditions", [])
        for condition in conditions:
            if condition["type"] == "Ready":
                if condition["status"] == "True":
                    return None
                return f"{condition.get('reason')}: {condition.get('message')}"
        return "no Ready condition"

    wait_for(f"node {name}", ready, STARTUP_TIMEOUT_S, lambda: tail(paths.logs / "kubelet.log"))


# --- down ----------------------------------------------------------------------------------


def down(node_dir: Path) -> None:
    if not node_dir.is_dir():
        return
    paths = Paths(node_dir)
    if not (node_dir / MARKER).exists():
        raise NodeError(f"{node_dir} was not created by tests/node/up; not touching it")
    with locked(node_dir / ".lock"):
        if paths.state.exists():
            teardown(paths, json.loads(paths.state.read_text()))
    run(["rm", "-rf", "--one-file-system", str(node_dir)])
    remove_mount_points()


def teardown(paths: Paths, state: dict[str, Any]) -> None:
    node_dir = paths.dir
    kubelet_pid, containerd_pid = state.get("kubelet_pid"), state.get("containerd_pid")
    if kubelet_pid and ours(kubelet_pid, node_dir):
        stop_pid(kubelet_pid, grace_s=10)
    if containerd_pid and ours(containerd_pid, node_dir):
        # Containers outlive containerd: stop them through it first.
        tasks = ctr(paths, "tasks", "ls", "-q", check=False, timeout=30).split()
        for task in tasks:
            ctr(paths, "tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=30)
        for task in tasks:
            ctr(paths, "tasks", "delete", "--force", task, check=False, timeout=30)
        stop_pid(containerd_pid, grace_s=10)
    # Whatever is left: the pods' processes (in the node's cgroups) and shims (in its mount
    # namespace, naming its containerd socket). Both identify this node's processes only.
    cgroup_root = state.get("cgroup_root")
    for _ in range(50):
        leftovers = cgroup_pids(cgroup_root) if cgroup_root else set()
        namespace = state.get("mount_ns")
        if namespace:
            leftovers |= {
                pid for pid in all_pids() if mount_ns(pid) == namespace and ours(pid, node_dir)
            }
        if not leftovers:
            break
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if cgroup_root:
        left = remove_cgroup_root(cgroup_root)
        if left:
            log("cgroups left behind: " + "; ".join(left))
    cluster = Cluster(Path(state["cluster_dir"]))
    name = state.get("name")
    if name and cluster.kubeconfig.exists():
        # The Node (no node-lifecycle controller would ever mark it NotReady) and its pods;
        # quietly skipped when the control plane is already gone.
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)
        cluster.kubectl(
            "delete", "pods", "--all-namespaces", "--field-selector", f"spec.nodeName={name}",
            "--force", "--grace-period=0", "--wait=false", check=False,
        )  # fmt: skip


# --- command line --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests/node", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start a node; prints its name")
    up_cmd.add_argument("cluster_dir", type=Path)
    up_cmd.add_argument("node_dir", type=Path)
    up_cmd.add_argument("--name", help="127.0.0.N (default: the lowest unused in the cluster)")
    up_cmd.add_argument("--taint", action="append", default=[], help="register with KEY[=V]:EFFECT")
    up_cmd.add_argument("--image", action="append", default=[], type=Path, help="OCI archive")
    import_cmd = sub.add_parser("import", help="import an OCI archive into the node's containerd")
    import_cmd.add_argument("node_dir", type=Path)
    import_cmd.add_argument("archive", type=Path)
    down_cmd = sub.add_parser("down", help="stop the node and remove everything it made")
    down_cmd.add_argument("node_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            name = up(
                args.cluster_dir.resolve(),
                args.node_dir.resolve(),
                args.name,
                args.taint,
                [path.resolve() for path in args.image],
            )
            print(name)
        elif args.command == "import":
            started = time.monotonic()
            import_image(Paths(args.node_dir.resolve()), args.archive.resolve())
            log(f"imported {args.archive} in {time.monotonic() - started:.1f}s")
        else:
            down(args.node_dir.resolve())
    except NodeError as err:
        log(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
