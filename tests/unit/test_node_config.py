"""The test node's pure pieces: its name, taints, configuration and image layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.node import images
from tests.node.nodectl import NodeError, Paths, check_name, kubelet_config, parse_taint


def test_name_must_be_a_loopback_ipv4_address() -> None:
    check_name("127.0.0.2")
    for bad in ("node-a", "10.0.0.1", "::1", "127.0.0"):
        with pytest.raises(NodeError, match="--name"):
            check_name(bad)


def test_taints_parse_as_register_with_taints_takes_them() -> None:
    assert parse_taint("seccompsync.io/agent-not-ready:NoSchedule") == {
        "key": "seccompsync.io/agent-not-ready",
        "effect": "NoSchedule",
    }
    assert parse_taint("k=v:NoExecute") == {"key": "k", "value": "v", "effect": "NoExecute"}
    for bad in ("k", "k:Sometimes"):
        with pytest.raises(NodeError, match="--taint"):
            parse_taint(bad)


def test_kubelet_config_keeps_everything_of_the_node_its_own(tmp_path: Path) -> None:
    config = kubelet_config(Paths(tmp_path), "127.0.0.3", 30001, 30002, "/seccomp-sync-node-x", [])
    assert config["address"] == config["healthzBindAddress"] == "127.0.0.3"
    assert (config["port"], config["healthzPort"], config["readOnlyPort"]) == (30001, 30002, 0)
    assert config["cgroupRoot"] == "/seccomp-sync-node-x"
    assert config["containerRuntimeEndpoint"] == f"unix://{tmp_path}/containerd/containerd.sock"
    assert config["podLogsDir"].startswith(str(tmp_path))
    assert config["imageGCHighThresholdPercent"] == 100  # local images are never collected


def test_oci_archive_is_reproducible_and_names_the_image(tmp_path: Path) -> None:
    layer = images.Layer(files={"hello": (b"hi", 0o755)}, symlinks={"hi": "hello"})
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    for path in (first, second):
        images.write_oci_archive(path, "localhost/x/y:1", layer, {"Cmd": ["/hello"]})
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        index_file = archive.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        manifest = index["manifests"][0]
        assert manifest["annotations"]["io.containerd.image.name"] == "localhost/x/y:1"
        blob = archive.extractfile("blobs/sha256/" + manifest["digest"].removeprefix("sha256:"))
        assert blob is not None
        layer_digest = json.load(blob)["layers"][0]["digest"].removeprefix("sha256:")
        layer_blob = archive.extractfile(f"blobs/sha256/{layer_digest}")
        assert layer_blob is not None
        with tarfile.open(fileobj=io.BytesIO(layer_blob.read())) as layer_tar:
            assert layer_tar.getnames() == ["hello", "hi"]
