"""`seccomp-agent validate`: the lines, the JSON and the exit codes a CI pipeline relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.main import main
from agent.validation.validate import validate_resource

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def test_valid_examples_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["validate", str(EXAMPLES / "deny-mkdir.yaml"), str(EXAMPLES / "block-risky-syscalls.yaml")]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        f"{EXAMPLES / 'deny-mkdir.yaml'}: default/deny-mkdir: valid",
        f"{EXAMPLES / 'block-risky-syscalls.yaml'}: default/block-risky-syscalls: valid",
    ]


def test_invalid_profile_prints_one_line_per_finding_and_exits_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXAMPLES / "invalid-typo.yaml"
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: default/deny-mkdir: spec.syscalls[0].names[2]: error: `opne` is not a Linux "
        "syscall on any architecture; did you mean `open`?"
    ]


def test_json_output_and_documents_that_are_not_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        (EXAMPLES / "deny-mkdir.yaml").read_text()
        + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    )
    assert main(["validate", "--output", "json", str(path)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    first, second = result["documents"]
    assert (first["name"], first["valid"], first["findings"]) == ("deny-mkdir", True, [])
    assert second["valid"] is False
    assert second["findings"][0]["field"] == "kind"
    assert second["findings"][0]["reason"] == "NotASeccompProfile"


def profile_named(**metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": metadata,
        "spec": {"defaultAction": "SCMP_ACT_ALLOW"},
    }


NOT_A_LABEL = (
    " must be a DNS-1123 label (lower-case letters, digits and '-', at most 63): it becomes a "
    "path component on the node"
)


@pytest.mark.parametrize(
    ("metadata", "messages"),
    [
        ({"name": "web"}, []),  # the namespace defaults to `default`, as kubectl's would
        ({"name": "a" * 63, "namespace": "b" * 63}, []),
        ({"name": "a" * 64}, [("metadata.name", "longer than 63")]),
        ({"name": "Web"}, [("metadata.name", "'Web'" + NOT_A_LABEL)]),
        ({"name": "-" + "a" * 70}, [("metadata.name", f"'-{'a' * 70}'" + NOT_A_LABEL)]),
        # `$` in the pattern used to match before a final newline: such a name passed.
        ({"name": "web\n"}, [("metadata.name", "'web\\n'" + NOT_A_LABEL)]),
        ({"name": "web", "namespace": "a.b"}, [("metadata.namespace", "'a.b'" + NOT_A_LABEL)]),
        ({}, [("metadata.name", "None" + NOT_A_LABEL)]),
    ],
)
def test_names_that_become_paths_must_be_dns_labels(
    metadata: dict[str, Any], messages: list[tuple[str, str]]
) -> None:
    result = validate_resource(
        profile_named(**metadata), default_architectures=["SCMP_ARCH_X86_64"], compile_profile=None
    )
    assert [(f.field, f.message) for f in result.report.errors] == messages
    assert all(f.reason == "InvalidName" for f in result.report.errors)


@pytest.mark.parametrize(
    ("metadata", "ref"),
    [
        ({"name": "web", "namespace": "team"}, "team/web"),
        ({"name": "web"}, "default/web"),
        ({}, "default/-"),
        # null reads as absent (agent.api.keys.profile_key); it used to print as `None/None`.
        ({"name": None, "namespace": None}, "default/-"),
    ],
)
def test_a_profile_is_reported_by_its_key_in_kubectls_default_namespace(
    metadata: dict[str, Any], ref: str
) -> None:
    result = validate_resource(
        profile_named(**metadata), default_architectures=["SCMP_ARCH_X86_64"], compile_profile=None
    )
    assert result.ref == ref


def test_raw_oci_json_from_stdin_with_an_architecture(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["open", "read"], "action": "SCMP_ACT_ALLOW"}],
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(profile)))
    assert main(["validate", "--arch", "SCMP_ARCH_AARCH64", "-"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "-: -/document-0: syscalls[0].names[0]: warning: `open` does not exist on "
        "SCMP_ARCH_AARCH64; runtimes skip it",
        "-: -/document-0: valid",
    ]


@pytest.mark.parametrize("content", ["defaultAction: [unclosed", ""])
def test_unreadable_input_exits_two_without_a_traceback(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert str(path) in captured.err


def test_missing_file_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/nonexistent/profile.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_installed_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(EXAMPLES / "deny-mkdir.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("default/deny-mkdir: valid")


_NO_DESCRIPTORS = """
import resource, sys
import agent.node.settings  # imported lazily by the CLI: load it while files can still be opened
from agent.main import main

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (0, hard))  # the compile worker's pipes cannot open
sys.exit(main(["validate", "-"]))
"""


def test_a_compile_that_fails_for_want_of_descriptors_exits_three_not_invalid() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
    }
    result = subprocess.run(
        [sys.executable, "-c", _NO_DESCRIPTORS],
        input=json.dumps(profile),  # stdin is open already: reading it needs no new descriptor
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 3, result.stderr
    assert "not a verdict on the profile" in result.stderr
    assert "Too many open files" in result.stderr
    assert "Traceback" not in result.stderr


BUILTIN_LIST = (
    "runtime/default@containers-common-2025-08-25, runtime/default@moby-2026-06-30, "
    "runtime/runc@v1.4.2"
)


@pytest.mark.parametrize("command", ["validate", "render"])
def test_an_unknown_builtin_base_is_named_with_the_builtins_that_exist(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runtime/default` without a version: the list to pick from, not a regular expression
    (the API server says the same: tests/integration/test_syscall_names_policy.py)."""
    path = tmp_path / "web.yaml"
    path.write_text(
        "apiVersion: seccompsync.io/v1beta1\nkind: SeccompProfile\nmetadata: {name: web}\n"
        "spec: {baseProfileName: runtime/default}\n"
    )
    assert main([command, str(path)]) == 1
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert (
        f"{path}: default/web: spec.baseProfileName: error: no built-in base 'runtime/default'; "
        f"built-ins are: {BUILTIN_LIST}"
    ) in lines
    assert "pattern" not in captured.out + captured.err


def test_a_v1alpha1_file_is_still_read_with_a_deprecation_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(
        (EXAMPLES / "deny-mkdir.yaml")
        .read_text()
        .replace("seccompsync.io/v1beta1", "seccompsync.io/v1alpha1")
    )
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: default/deny-mkdir: apiVersion: warning: seccompsync.io/v1alpha1 is deprecated; "
        "use seccompsync.io/v1beta1 (the same fields: change apiVersion only)",
        f"{path}: default/deny-mkdir: valid",
    ]
