"""The CRDs serve v1beta1 (stored) and v1alpha1 (deprecated) with one schema, written once.

Same schema means the API server converts between the versions by rewriting apiVersion (strategy
None): no conversion webhook. If the two ever differed, an object written as one version would
silently lose or gain fields when read as the other; these tests make that a build failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.model import API_GROUP, API_VERSION, DEPRECATED_API_VERSIONS
from agent.profiles.builtin_bases import BUILTINS, UnknownBuiltinError
from tools import generate_crds

CRD_FILES = generate_crds.crd_files()


def _crd(path: Path) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert len(documents) == 1, f"{path} should hold exactly one CRD"
    crd: dict[str, Any] = documents[0]
    return crd


def test_every_crd_is_checked() -> None:
    assert {p.name for p in CRD_FILES} == {
        "seccompprofile.yaml",
        "seccompnodestatus.yaml",
        "seccomptenantpolicy.yaml",
        "seccompprofilerecording.yaml",
    }


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_committed_crd_equals_the_generated_one(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert generate_crds.generate(text, sorted(BUILTINS)) == text, (
        f"{path.name} differs from what `python -m tools.generate_crds` writes: edit the "
        f"{API_VERSION} version only, then run it"
    )


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_both_versions_are_served_with_one_schema_and_v1beta1_stored(path: Path) -> None:
    crd = _crd(path)
    assert crd["spec"]["group"] == API_GROUP == generate_crds.GROUP
    assert generate_crds.STORAGE_VERSION == API_VERSION
    assert (generate_crds.DEPRECATED_VERSION,) == DEPRECATED_API_VERSIONS
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert list(versions) == [API_VERSION, *DEPRECATED_API_VERSIONS]
    current, old = versions[API_VERSION], versions["v1alpha1"]
    assert current["served"] and current["storage"] and not current.get("deprecated")
    assert old["served"] and not old["storage"] and old["deprecated"]
    assert f"use {API_GROUP}/{API_VERSION}" in old["deprecationWarning"]
    assert crd["spec"].get("conversion", {"strategy": "None"}) == {"strategy": "None"}
    ignored = {"name", "storage", "deprecated", "deprecationWarning"}
    assert {k: v for k, v in old.items() if k not in ignored} == {
        k: v for k, v in current.items() if k not in ignored
    }


def test_builtin_base_rule_lists_every_builtin() -> None:
    crd = _crd(generate_crds.CRDS_DIR / "seccompprofile.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    base = schema["properties"]["spec"]["properties"]["baseProfileName"]
    [rule] = base["x-kubernetes-validations"]
    for name in BUILTINS:
        assert f"'{name}'" in rule["rule"]
    # The API server and `seccomp-agent validate` say the same words (CEL: one concatenation).
    said = rule["messageExpression"].replace('" + self + "', "runtime/default").strip('"')
    assert said == str(UnknownBuiltinError("runtime/default"))


def test_generator_refuses_a_crd_it_cannot_copy() -> None:
    text = "spec:\n  versions:\n    - name: v1beta1\n      storage: true\n      served: true\n"
    with pytest.raises(generate_crds.CrdLayoutError, match="must start with name, served"):
        generate_crds.generate(text, [])
