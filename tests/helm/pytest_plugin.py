"""Pytest plugin: the Helm CLI built from Go modules (tests/helm/build), and the chart's renders.

Tests take the session-scoped ``helm`` fixture. If Helm cannot be built, every test that uses it
fails with the build's output: it is never skipped (a chart nobody rendered is not tested).
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
CHART = REPO_ROOT / "deploy" / "helm" / "seccomp-sync"
# Where the chart keeps its release record: the chart creates the seccomp-sync namespace itself.
RELEASE_NAMESPACE = "kube-system"
_OUTPUT_TAIL_LINES = 80
_build_error_key = pytest.StashKey[str]()
_helm_path_key = pytest.StashKey[Path]()


class HelmError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited with {self.returncode}:\n{self.stderr}"


@dataclasses.dataclass(frozen=True)
class Helm:
    """The Helm binary, run with a private home (no user's repositories or plugins)."""

    path: Path
    home: Path

    def run(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm; raises HelmError if check and it fails."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        cmd = [str(self.path), *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT
        )
        if check and result.returncode != 0:
            raise HelmError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        chart: Path = CHART,
        extra: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The objects ``helm template`` renders, with ``values`` (a values file's content)."""
        return [doc for doc in yaml.safe_load_all(self.template_text(values, chart, extra)) if doc]

    def template_text(
        self,
        values: Mapping[str, Any] | None = None,
        chart: Path = CHART,
        extra: Sequence[str] = (),
    ) -> str:
        """What ``helm template`` prints."""
        args = ["template", "seccomp-sync", str(chart), "--namespace", RELEASE_NAMESPACE, *extra]
        if values is not None:
            values_file = self.home / "values.yaml"
            values_file.write_text(yaml.safe_dump(dict(values)))
            args += ["--values", str(values_file)]
        return self.run(*args).stdout


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_OUTPUT_TAIL_LINES:])


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Helm before any test runs (a cold build takes minutes, not counted against a test's
    timeout). A failure is reported by the fixture, so tests fail, not skip."""
    if not any("helm" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("helm: building Helm unless cached (a cold build takes minutes)")
    result = subprocess.run(
        [str(HERE / "build")], stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0:
        session.config.stash[_build_error_key] = (
            f"tests/helm/build exited with {result.returncode}\n{_tail(result.stderr)}"
        )
        return
    session.config.stash[_helm_path_key] = Path(result.stdout.strip())
    if reporter is not None and "build took" in result.stderr:
        reporter.write_line(result.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    build_error = request.config.stash.get(_build_error_key, None)
    if build_error is not None:
        pytest.fail(f"Helm could not be built:\n{build_error}", pytrace=False)
    path = request.config.stash.get(_helm_path_key, None)
    if path is None:
        pytest.fail("Helm was not built before the session (tests/helm/build)", pytrace=False)
    return Helm(path=path, home=tmp_path_factory.mktemp("helm-home"))
