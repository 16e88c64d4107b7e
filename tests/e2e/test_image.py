"""The agent image built here from the unmodified Dockerfile (scripts/build-image)."""

from __future__ import annotations

import base64
import json
import re
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.node.pytest_plugin import AgentImage

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # what the build was given
IMAGE_CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"  # Debian's, from the base's package
PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.S)


def certificates(pem: bytes) -> set[bytes]:
    """The DER bytes of every certificate in a PEM bundle."""
    return {base64.b64decode(b"".join(body.split())) for body in PEM.findall(pem)}


def image_parts(archive: Path) -> tuple[dict[str, Any], list[tarfile.TarFile]]:
    """The image config and its layers (opened from the OCI archive)."""
    outer = tarfile.open(archive)  # noqa: SIM115 (the layers read from it are returned)

    def blob(digest: str) -> bytes:
        member = outer.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
        assert member is not None
        return member.read()

    index = json.loads(blob_file(outer, "index.json"))
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = []
    for layer in manifest["layers"]:
        member = outer.extractfile("blobs/sha256/" + layer["digest"].removeprefix("sha256:"))
        layers.append(tarfile.open(fileobj=member, mode="r|*"))  # noqa: SIM115 (returned)
    return config, layers


def blob_file(outer: tarfile.TarFile, name: str) -> bytes:
    member = outer.extractfile(name)
    assert member is not None
    return member.read()


def test_image_runs_as_the_dockerfile_says(agent_image: AgentImage) -> None:
    config, _ = image_parts(agent_image.archive)
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"] == ["seccomp-agent"]
    assert config["config"]["Cmd"] == ["run"]
    assert config["os"] == "linux"


def test_every_module_has_byte_code_python_will_use(agent_image: AgentImage) -> None:
    """The root filesystem is read-only: a module whose .pyc Python rejects is compiled again in
    memory at every start (slower, and about 60 MB more RSS for the agent). A timestamp-based
    .pyc is rejected when the builder rounded its source's mtime; hash-based ones never are."""
    sources: dict[str, int] = {}
    headers: dict[str, tuple[int, int]] = {}
    for name, mtime, data in image_members(agent_image.archive):
        if not name.startswith(("opt/seccomp-sync/lib/", "usr/lib/python3.11/")):
            continue
        if name.endswith(".py"):
            sources[name] = mtime
        elif name.endswith(".pyc"):
            headers[name] = struct.unpack("<II", data[4:12])  # flags, source mtime
    rejected = []
    for source, mtime in sources.items():
        directory, base = source.rsplit("/", 1)
        header = headers.get(f"{directory}/__pycache__/{base[:-3]}.cpython-311.pyc")
        if header is None or (header[0] == 0 and header[1] != mtime):
            rejected.append(source)
    assert len(sources) > 1000
    assert rejected == []


def test_build_time_ca_is_not_in_the_image(agent_image: AgentImage) -> None:
    """The host's CA bundle was mounted into the build's RUN steps only: the certificates it
    has beyond Debian's own set (this machine's local CA) appear in no file of any layer."""
    host = certificates(HOST_CA_BUNDLE.read_bytes())
    image_bundle = b"".join(data for name, data in image_files(agent_image.archive)
                            if name == IMAGE_CA_BUNDLE)  # fmt: skip
    assert image_bundle, f"the image has no {IMAGE_CA_BUNDLE} (Debian's ca-certificates)"
    local_cas = host - certificates(image_bundle)
    needles = [base64.b64encode(der)[:64] for der in local_cas] + list(local_cas)
    leaked = [
        name
        for name, data in image_files(agent_image.archive)
        if any(needle in data for needle in needles)
    ]
    assert leaked == [], f"a build-time CA certificate is in the image: {leaked}"


def image_members(archive: Path) -> Iterator[tuple[str, int, bytes]]:
    """(path, mtime, content) of every regular file in every layer."""
    _, layers = image_parts(archive)
    for layer in layers:
        for member in layer:
            if member.isfile():
                handle = layer.extractfile(member)
                assert handle is not None
                yield member.name.removeprefix("./"), int(member.mtime), handle.read()


def image_files(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every regular file in every layer."""
    for name, _, data in image_members(archive):
        yield name, data
