"""`seccomp-agent convert` and `render`: real-world inputs in, valid SeccompProfiles out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.main import main
from agent.profiles.builtin_bases import BUILTINS
from agent.profiles.convert import ConversionError, Target, convert_document, dns_label
from agent.profiles.convert.docker import DEFAULT_CONTAINER_CAPABILITIES, resolve

X86_64 = "SCMP_ARCH_X86_64"


def shared_inputs(shared: Path) -> list[Path]:
    return sorted(p for p in shared.iterdir() if p.suffix in (".json", ".yaml"))


def test_every_shared_profile_converts_and_the_output_validates(
    shared_profiles_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = shared_inputs(shared_profiles_dir)
    assert len(inputs) >= 4
    for source in inputs:
        assert main(["convert", "--arch", X86_64, str(source)]) == 0, source
        out = capsys.readouterr().out
        converted = tmp_path / f"{source.stem}.yaml"
        converted.write_text(out)
        documents = [d for d in yaml.safe_load_all(out) if d]
        assert documents and all(d["apiVersion"] == "seccompsync.io/v1beta1" for d in documents)
        assert main(["validate", "--arch", X86_64, str(converted)]) == 0, out
        capsys.readouterr()


def names(spec: dict[str, Any]) -> set[str]:
    return {
        n
        for r in spec.get("syscalls", [])
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }


def moby(shared: Path) -> dict[str, Any]:
    return dict(json.loads((shared / "moby-default.json").read_text()))


def test_capabilities_decide_the_gated_rules_and_each_drop_is_explained(
    shared_profiles_dir: Path,
) -> None:
    doc = moby(shared_profiles_dir)
    plain = resolve(doc, Target(X86_64))
    admin = resolve(doc, Target(X86_64, DEFAULT_CONTAINER_CAPABILITIES | {"CAP_SYS_ADMIN"}))
    none = resolve(doc, Target(X86_64, frozenset()))
    assert "mount" not in names(plain.spec) and "mount" in names(admin.spec)
    assert "chroot" in names(plain.spec) and "chroot" not in names(none.spec)
    assert any("mount" in d and "needs CAP_SYS_ADMIN" in d for d in plain.dropped)
    # excludes.caps: clone3 fails with ENOSYS unless the container holds CAP_SYS_ADMIN.
    clone3 = [r for r in plain.spec["syscalls"] if "clone3" in r["names"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert not [r for r in admin.spec["syscalls"] if r["action"] == "SCMP_ACT_ERRNO"]


def test_architecture_and_kernel_are_resolved(shared_profiles_dir: Path) -> None:
    doc = moby(shared_profiles_dir)
    arm = resolve(doc, Target("SCMP_ARCH_AARCH64"))
    assert arm.spec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arm_fadvise64_64" in names(arm.spec) and "arch_prctl" not in names(arm.spec)
    old = resolve(doc, Target(X86_64, kernel=(4, 4)))
    assert "ptrace" not in names(old.spec)
    assert any("ptrace" in d and "needs a kernel >= 4.8" in d for d in old.dropped)
    assumed = resolve(doc, Target(X86_64))
    assert "ptrace" in names(assumed.spec)
    assert any("minKernel" in n for n in assumed.notes)


def test_errno_names_become_numbers(shared_profiles_dir: Path) -> None:
    doc = json.loads((shared_profiles_dir / "containers-common-default.json").read_text())
    spec = resolve(doc, Target(X86_64)).spec
    assert spec["defaultErrnoRet"] == 38
    assert all("errno" not in r for r in spec["syscalls"])


def test_oci_config_json_yields_its_linux_seccomp() -> None:
    config = {"ociVersion": "1.0.2", "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}}
    conversion = convert_document(
        config, Target(X86_64), name="from-config", namespace="ns", builtins=BUILTINS
    )
    assert conversion.kind == "oci"
    assert conversion.manifest["spec"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert conversion.manifest["metadata"] == {"name": "from-config", "namespace": "ns"}


def spo(base: str) -> dict[str, Any]:
    return {
        "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "app"},
        "spec": {
            "baseProfileName": base,
            "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["uname"]}],
        },
    }


@pytest.mark.parametrize("base", ["runc-v1.4.2", "oci://ghcr.io/security-profiles/runc:v1.4.2"])
def test_spo_runc_base_maps_to_the_builtin(base: str) -> None:
    conversion = convert_document(
        spo(base), Target(X86_64), name="x", namespace="ns", builtins=BUILTINS
    )
    assert conversion.manifest["spec"]["baseProfileName"] == "runtime/runc@v1.4.2"
    assert conversion.manifest["metadata"]["namespace"] == "ns"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("web", "web"),
        ("a" * 63, "a" * 63),
        ("a" * 64, "a" * 63),
        ("My_App.v2", "my-app-v2"),
        ("-web-", "web"),
        # `$` in the pattern matched before a final newline: the name was kept as it was.
        ("web\n", "web"),
        ("...", "converted"),
    ],
)
def test_names_become_the_nearest_dns_label(text: str, label: str) -> None:
    assert dns_label(text) == label


def test_spo_base_without_a_builtin_is_refused_with_the_reason() -> None:
    with pytest.raises(ConversionError, match=r"runc 1\.1\.5, which no built-in base matches"):
        convert_document(
            spo("runc-v1.1.5"), Target(X86_64), name="x", namespace="ns", builtins=BUILTINS
        )
    with pytest.raises(ConversionError, match="neither a built-in base"):
        convert_document(
            spo("elsewhere"), Target(X86_64), name="x", namespace="ns", builtins=BUILTINS
        )
    kept = convert_document(
        spo("team-base"),
        Target(X86_64),
        name="x",
        namespace="ns",
        builtins=BUILTINS,
        sibling_names={"team-base"},
    )
    assert kept.manifest["spec"]["baseProfileName"] == "team-base"


def test_convert_refuses_unknown_capability_words(
    shared_profiles_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(shared_profiles_dir / "moby-default.json")
    assert main(["convert", "--caps", "sys_admin!", path]) == 2
    assert "--caps" in capsys.readouterr().err


def test_render_prints_the_flattened_file_of_a_child_given_with_its_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = tmp_path / "p.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "seccompsync.io/v1beta1",
                    "kind": "SeccompProfile",
                    "metadata": {"name": name, "namespace": "ns"},
                    "spec": spec,
                }
                for name, spec in (
                    (
                        "base",
                        {
                            "defaultAction": "SCMP_ACT_ERRNO",
                            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
                        },
                    ),
                    ("app", {"baseProfileName": "base", "defaultErrnoRet": 38}),
                )
            ]
        )
    )
    assert main(["render", str(manifests), "--name", "app", "--arch", X86_64]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert "bases: ns/base" in out.err
    # validate resolves the same base among the files given.
    assert main(["validate", str(manifests)]) == 0


def test_example_on_a_builtin_base_validates_without_the_bases_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "web-on-runtime-default.yaml"
    assert main(["validate", "--arch", X86_64, str(example)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{example}: default/web: valid"]
    assert main(["render", "--arch", X86_64, str(example)]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered["syscalls"][0] == {
        "names": ["mkdir", "mkdirat"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": 13,
    }
    assert "read" in {n for rule in rendered["syscalls"] for n in rule["names"]}
