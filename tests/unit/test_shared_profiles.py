"""What each real-world profile in tests/data/profiles yields, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.seccomp.compiler import Compiler
from agent.validation.validate import ResourceReport, validate_resource, validate_spec

X86_64 = ["SCMP_ARCH_X86_64"]


@pytest.fixture(scope="module")
def compiler() -> Any:
    with Compiler() as c:
        yield c


@pytest.mark.parametrize("filename", ["moby-default.json", "containers-common-default.json"])
def test_docker_format_defaults_are_refused_because_containerd_would_misread_them(
    shared_profiles_dir: Path, filename: str
) -> None:
    spec = json.loads((shared_profiles_dir / filename).read_text())
    report = validate_spec(spec, default_architectures=X86_64, compile_profile=None)
    assert not report.valid
    fields = {f.field for f in report.errors if f.reason == "DockerFormat"}
    # archMap would be dropped, and capability-gated rules (includes.caps) would become ALLOWs.
    assert "spec.archMap" in fields
    gated = [i for i, rule in enumerate(spec["syscalls"]) if rule.get("includes")]
    assert gated, "the shared profile is expected to have capability-gated rules"
    assert {f"spec.syscalls[{i}].includes" for i in gated} <= fields
    assert all(
        "containerd drops unknown keys silently" in f.message
        for f in report.errors
        if f.reason == "DockerFormat"
    )


def test_containers_common_errno_names_are_refused(shared_profiles_dir: Path) -> None:
    spec = json.loads((shared_profiles_dir / "containers-common-default.json").read_text())
    report = validate_spec(spec, default_architectures=X86_64, compile_profile=None)
    fields = {f.field: f.message for f in report.errors}
    assert "defaultErrnoRet" in fields["spec.defaultErrno"]
    assert any(field.endswith(".errno") for field in fields)


def _spo_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(
    ("filename", "fields"),
    [
        # SPO names its base profile after the runc version: `runc-v1.4.2` is a valid object
        # name but not a DNS label, and the name becomes a file name on the node.
        ("spo-baseprofile-runc.yaml", ["apiVersion", "metadata.name"]),
        ("spo-seccompprofile.yaml", ["apiVersion"]),
    ],
)
def test_spo_objects_are_refused_with_a_pointer_to_our_api_group(
    shared_profiles_dir: Path, filename: str, fields: list[str], compiler: Compiler
) -> None:
    for document in _spo_documents(shared_profiles_dir / filename):
        result = validate_resource(
            document, default_architectures=X86_64, compile_profile=compiler.compile
        )
        assert not result.report.valid
        assert [f.field for f in result.report.errors] == fields
        assert "security-profiles-operator object" in result.report.errors[0].message


@pytest.mark.parametrize("filename", ["spo-baseprofile-runc.yaml", "spo-seccompprofile.yaml"])
def test_spo_specs_are_valid_once_moved_to_our_api_group(
    shared_profiles_dir: Path, filename: str, compiler: Compiler
) -> None:
    results: list[ResourceReport] = []
    for document in _spo_documents(shared_profiles_dir / filename):
        name = document["metadata"]["name"].replace(".", "-")
        moved = {
            **document,
            "apiVersion": "seccompsync.io/v1beta1",
            "metadata": {**document["metadata"], "name": name},
        }
        results.append(
            validate_resource(moved, default_architectures=X86_64, compile_profile=compiler.compile)
        )
    assert results
    for result in results:
        assert result.report.valid, [f.render() for f in result.report.errors]
