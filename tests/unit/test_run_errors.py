"""`seccomp-agent run` refuses bad settings with one clear line and a non-zero exit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.main import main

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`run` configures the root logger for the process; put it back for other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str) -> int:
    return main(["run", "--node-name", "node-a", "--http-port", "0", *args])


def test_missing_node_name_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main(["run", "--root", "/tmp"]) == 2
    assert "--node-name or set NODE_NAME" in capsys.readouterr().err


def test_missing_root_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    assert run("--root", str(tmp_path / "absent"), "--kubeconfig", str(kubeconfig)) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "Traceback" not in err


def test_unreadable_kubeconfig_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    assert run("--root", str(tmp_path), "--kubeconfig", str(broken)) == 1
    err = capsys.readouterr().err
    assert "cannot load Kubernetes credentials" in err
    assert "Traceback" not in err
