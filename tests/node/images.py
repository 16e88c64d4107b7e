"""The test node's local images, made from static binaries: nothing is ever pulled.

An OCI image is a few JSON documents and a tar layer (an "OCI image layout"); packed into one
tar file (an "OCI archive") it is what ``ctr images import`` loads. Two images:

- ``PAUSE_IMAGE``: the pod sandbox process, ``pause.c`` built with ``gcc -static``;
- ``BUSYBOX_IMAGE``: Debian's ``busybox-static`` with its applets linked into ``/bin``, for the
  test pods (``sh``, ``mkdir``, ``grep``, ``sleep``...).

Both are cached under ``~/.cache/seccomp-sync/node-images/<hash of the inputs>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAUSE_IMAGE = "localhost/seccomp-sync/pause:1"
BUSYBOX_IMAGE = "localhost/seccomp-sync/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")


@dataclass
class Layer:
    """Files of one image layer: path in the image -> (bytes, mode); symlinks; directories."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)

    def tar(self) -> bytes:
        """The layer as an uncompressed tar, byte-for-byte reproducible (mtime 0, root-owned)."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, mode in sorted(self.dirs.items()):
                info = tarfile.TarInfo(path)
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
            for path, (data, mode) in sorted(self.files.items()):
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
            for path, target in sorted(self.symlinks.items()):
                info = tarfile.TarInfo(path)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)
        return out.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_archive(path: Path, name: str, layer: Layer, config: dict[str, object]) -> None:
    """Write a one-layer linux/amd64 image named ``name`` as an OCI archive at ``path``."""
    layer_tar = layer.tar()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
    }
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(config_blob),
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": _digest(layer_tar),
                "size": len(layer_tar),
            }
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd names the imported image after this annotation.
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for blob in (layer_tar, config_blob, manifest_blob):
        entries["blobs/sha256/" + _digest(blob).removeprefix("sha256:")] = blob
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent builds
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry, data in entries.items():
            info = tarfile.TarInfo(entry)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(path)


def _pause_layer() -> Layer:
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(HERE / "pause.c")], check=True
        )
        return Layer(files={"pause": (binary.read_bytes(), 0o755)})


def _busybox_layer() -> Layer:
    applets = subprocess.run(
        [str(BUSYBOX_BINARY), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    return Layer(
        dirs={"bin": 0o755, "tmp": 0o1777, "etc": 0o755},
        files={"bin/busybox": (BUSYBOX_BINARY.read_bytes(), 0o755)},
        symlinks={f"bin/{applet}": "busybox" for applet in applets if applet != "busybox"},
    )


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    inputs = hashlib.sha256()
    for source in (Path(__file__), HERE / "pause.c", BUSYBOX_BINARY):
        inputs.update(source.read_bytes())
    return base / "seccomp-sync" / "node-images" / inputs.hexdigest()[:16]


def build() -> dict[str, Path]:
    """Build (once; cached) the pause and busybox archives; image name -> archive path."""
    out = cache_dir()
    archives = {PAUSE_IMAGE: out / "pause.tar", BUSYBOX_IMAGE: out / "busybox.tar"}
    if all(path.exists() for path in archives.values()):
        return archives
    out.mkdir(parents=True, exist_ok=True)
    write_oci_archive(
        archives[PAUSE_IMAGE], PAUSE_IMAGE, _pause_layer(), {"Entrypoint": ["/pause"]}
    )
    write_oci_archive(
        archives[BUSYBOX_IMAGE],
        BUSYBOX_IMAGE,
        _busybox_layer(),
        {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
    )
    return archives
