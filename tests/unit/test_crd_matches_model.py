"""The CRD in crds/seccompprofile.yaml says what agent/api/model.py says: no drift, no silent gaps.

The API server enforces the CRD; the agent enforces the model. Where they differ, an object is
either accepted by the cluster and then refused by every agent, or refused for no reason. These
tests need no cluster: they read the YAML and compare it with the model's own constants and with
the JSON schema pydantic derives from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from agent.api import model
from agent.api.keys import ProfileKey
from agent.api.layout import localhost_profile
from agent.api.model import (
    API_GROUP,
    API_VERSION,
    BASE_PROFILE_NAME_PATTERN,
    DEPRECATED_API_VERSIONS,
    DNS1123_LABEL_MAX,
    DNS1123_LABEL_PATTERN,
    KIND,
    MAX_ARCHITECTURES,
    MAX_ARGS,
    MAX_BASE_PROFILE_NAME_LENGTH,
    MAX_ERRNO,
    MAX_NAMES_PER_RULE,
    MAX_PATH_LENGTH,
    MAX_RULES,
    MAX_SYSCALL_NAME_LENGTH,
    PLURAL,
    SYSCALL_NAME_PATTERN,
    UINT64_MAX,
    Action,
    Architecture,
    Flag,
    Operator,
    ProfileSpec,
)
from agent.validation.docker_format import DOCKER_RULE_KEYS, DOCKER_SPEC_KEYS

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "seccompprofile.yaml"
INT64_MAX = 2**63 - 1
# The OpenAPI keywords both schemas can express; compared one by one.
BOUND_KEYWORDS = (
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)
# Known, documented differences: Kubernetes stores integers as int64, so the CRD cannot accept the
# top half of the uint64 range the OCI format (and the model) allow. The field descriptions say so.
API_SERVER_LIMITS = {
    ("syscalls", "args", "value", "maximum"),
    ("syscalls", "args", "valueTwo", "maximum"),
}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_PATH.open() as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    assert len(documents) == 1, f"{CRD_PATH} should hold exactly one document"
    return documents[0]


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    # The deprecated versions are generated copies (tests/unit/test_crd_versions.py).
    assert [v["name"] for v in versions] == [API_VERSION, *DEPRECATED_API_VERSIONS]
    return versions[0]


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def spec(root: dict[str, Any]) -> dict[str, Any]:
    return root["properties"]["spec"]


def at(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    """Walk properties, stepping into `items` for arrays: at(spec, "syscalls", "args", "op")."""
    node = schema
    for name in path:
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][name]
    return node


def rules(schema: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in schema.get("x-kubernetes-validations", [])]


# --- identity -----------------------------------------------------------------------------------


def test_names_and_scope_match_the_model(crd: dict[str, Any], version: dict[str, Any]) -> None:
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{PLURAL}.{API_GROUP}"
    assert crd["spec"]["group"] == API_GROUP
    assert names["kind"] == KIND
    assert names["listKind"] == f"{KIND}List"
    assert names["plural"] == PLURAL
    assert names["singular"] == KIND.lower()
    assert names["shortNames"] == ["scmp"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns_read_the_status_fields(
    version: dict[str, Any], root: dict[str, Any]
) -> None:
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Status": ".status.state",
        "Ready": ".status.readyNodes",
        "Waiting": ".status.waitingPods",
        "Age": ".metadata.creationTimestamp",
        "Profile": ".status.localhostProfile",
    }
    status = root["properties"]["status"]["properties"]
    for path in columns.values():
        section, _, field = path.lstrip(".").partition(".")
        if section == "status":
            assert field in status, f"printer column {path} names no status field"


# --- enums --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "literal"),
    [
        (("defaultAction",), Action),
        (("syscalls", "action"), Action),
        (("syscalls", "args", "op"), Operator),
    ],
    ids=["defaultAction", "syscalls.action", "args.op"],
)
def test_scalar_enums_equal_the_model_literals(
    spec: dict[str, Any], path: tuple[str, ...], literal: Any
) -> None:
    assert sorted(at(spec, *path)["enum"]) == sorted(get_args(literal))


@pytest.mark.parametrize(
    ("field", "literal", "max_items"),
    [("architectures", Architecture, MAX_ARCHITECTURES), ("flags", Flag, 4)],
)
def test_list_enums_equal_the_model_literals(
    spec: dict[str, Any], field: str, literal: Any, max_items: int
) -> None:
    schema = at(spec, field)
    assert sorted(schema["items"]["enum"]) == sorted(get_args(literal))
    assert schema["maxItems"] == max_items
    assert schema["x-kubernetes-list-type"] == "set"


def test_architectures_runc_cannot_load_are_absent_and_explained(spec: dict[str, Any]) -> None:
    schema = at(spec, "architectures")
    for name in ("PARISC", "PARISC64", "M68K", "SH", "SHEB"):
        assert f"SCMP_ARCH_{name}" not in schema["items"]["enum"]
        assert f"SCMP_ARCH_{name}" in schema["description"]
    assert "runc" in schema["description"]


# --- bounds -------------------------------------------------------------------------------------


def test_syscall_rule_bounds_equal_the_model_constants(spec: dict[str, Any]) -> None:
    assert at(spec, "syscalls")["maxItems"] == MAX_RULES
    names = at(spec, "syscalls", "names")
    assert names["minItems"] == 1
    assert names["maxItems"] == MAX_NAMES_PER_RULE
    assert names["items"]["minLength"] == 1
    assert names["items"]["maxLength"] == MAX_SYSCALL_NAME_LENGTH
    assert names["items"]["pattern"] == SYSCALL_NAME_PATTERN
    assert at(spec, "syscalls")["items"]["required"] == ["names", "action"]


def test_arg_bounds_equal_the_model_constants(spec: dict[str, Any]) -> None:
    args = at(spec, "syscalls", "args")
    assert args["maxItems"] == MAX_ARGS
    index = at(spec, "syscalls", "args", "index")
    assert (index["minimum"], index["maximum"]) == (0, MAX_ARGS - 1)
    assert sorted(args["items"]["required"]) == ["index", "op", "value"]


@pytest.mark.parametrize("path", [("defaultErrnoRet",), ("syscalls", "errnoRet")])
def test_errno_bounds_equal_the_model_constant(spec: dict[str, Any], path: tuple[str, ...]) -> None:
    schema = at(spec, *path)
    assert schema["type"] == "integer"
    assert (schema["minimum"], schema["maximum"]) == (0, MAX_ERRNO)


@pytest.mark.parametrize("field", ["value", "valueTwo"])
def test_uint64_fields_document_the_int64_limit(spec: dict[str, Any], field: str) -> None:
    schema = at(spec, "syscalls", "args", field)
    assert schema["type"] == "integer"
    assert schema["format"] == "int64"
    assert schema["minimum"] == 0
    # The model allows the full uint64 range; the API server cannot store more than int64.
    assert UINT64_MAX > INT64_MAX
    assert schema.get("maximum", INT64_MAX) <= INT64_MAX
    assert str(INT64_MAX) in schema["description"]


def test_listener_strings_are_bounded_like_the_model(spec: dict[str, Any]) -> None:
    assert at(spec, "listenerPath")["minLength"] == 1
    assert at(spec, "listenerPath")["maxLength"] == MAX_PATH_LENGTH
    assert at(spec, "listenerMetadata")["maxLength"] == MAX_PATH_LENGTH


def test_spec_requires_default_action_or_a_base_and_the_object_requires_spec(
    root: dict[str, Any], spec: dict[str, Any]
) -> None:
    assert root["required"] == ["spec"]
    # defaultAction may come from the base, so it is required by a rule, not by `required`.
    assert "required" not in spec
    assert "has(self.defaultAction) || has(self.baseProfileName)" in rules(spec)
    # Every rule reading defaultAction must tolerate its absence (CEL fails on a missing key).
    for rule in rules(spec):
        if "self.defaultAction " in rule or "self.defaultAction in" in rule:
            assert "has(self.defaultAction)" in rule, rule


def test_base_profile_name_is_bounded_like_the_model(spec: dict[str, Any]) -> None:
    schema = at(spec, "baseProfileName")
    assert schema["pattern"] == BASE_PROFILE_NAME_PATTERN
    assert schema["maxLength"] == MAX_BASE_PROFILE_NAME_LENGTH
    assert "runtime/default@moby-2026-06-30" in schema["description"]


# --- the whole spec against pydantic's JSON schema ----------------------------------------------


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and unwrap `X | None` (anyOf [X, null]): the CRD expresses None as absence."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        assert len(options) == 1, f"unexpected union in the model: {node}"
        node = _resolve(options[0], defs)
    return node


def _compare(
    model_node: dict[str, Any],
    crd_node: dict[str, Any],
    defs: dict[str, Any],
    path: tuple[str, ...],
) -> Iterator[str]:
    model_node = _resolve(model_node, defs)
    where = ".".join(path) or "spec"
    if model_node.get("type") != crd_node.get("type"):
        crd_type, model_type = crd_node.get("type"), model_node.get("type")
        yield f"{where}: type {crd_type!r} in the CRD, {model_type!r} in the model"
        return
    for keyword in BOUND_KEYWORDS:
        if (*path, keyword) in API_SERVER_LIMITS:
            continue
        model_value, crd_value = model_node.get(keyword), crd_node.get(keyword)
        if keyword == "enum" and model_value and crd_value:
            # Order carries no meaning in an enum.
            model_value, crd_value = sorted(model_value), sorted(crd_value)
        if model_value != crd_value:
            yield (
                f"{where}: {keyword} is {crd_node.get(keyword)!r} in the CRD, "
                f"{model_node.get(keyword)!r} in the model"
            )
    if model_node.get("type") == "array":
        # Items have no name of their own: report them under the array's path.
        yield from _compare(model_node["items"], crd_node["items"], defs, path)
    if model_node.get("type") == "object":
        model_props = model_node.get("properties", {})
        # Docker-format keys are declared only to be refused (test_docker_keys_are_refused...).
        crd_props = {
            k: v for k, v in crd_node.get("properties", {}).items() if k not in _docker_keys(path)
        }
        if set(model_props) != set(crd_props):
            yield (
                f"{where}: fields {sorted(crd_props)} in the CRD, "
                f"{sorted(model_props)} in the model"
            )
        if sorted(model_node.get("required", [])) != sorted(crd_node.get("required", [])):
            yield (
                f"{where}: required {crd_node.get('required')} in the CRD, "
                f"{model_node.get('required')} in the model"
            )
        for name in sorted(set(model_props) & set(crd_props)):
            yield from _compare(model_props[name], crd_props[name], defs, (*path, name))


def _docker_keys(path: tuple[str, ...]) -> tuple[str, ...]:
    return {(): DOCKER_SPEC_KEYS, ("syscalls",): DOCKER_RULE_KEYS}.get(path, ())


def test_spec_schema_equals_the_model_json_schema(spec: dict[str, Any]) -> None:
    """Every field, type, enum and bound of ProfileSpec, whatever constant it comes from."""
    model_schema = ProfileSpec.model_json_schema()
    differences = list(_compare(model_schema, spec, model_schema.get("$defs", {}), ()))
    assert differences == [], "CRD and agent/api/model.py disagree:\n" + "\n".join(differences)


@pytest.mark.parametrize(
    ("path", "keys"),
    [((), DOCKER_SPEC_KEYS), (("syscalls",), DOCKER_RULE_KEYS)],
    ids=["spec", "syscalls"],
)
def test_docker_keys_are_declared_and_refused_by_a_rule_naming_them(
    spec: dict[str, Any], path: tuple[str, ...], keys: tuple[str, ...]
) -> None:
    """Undeclared keys are pruned by the API server when a client skips validation; the
    profile would then silently lose its capability gates. So each is kept, and refused."""
    node = at(spec, *path)
    node = node["items"] if node.get("type") == "array" else node
    model_fields = (model.SyscallRule if path else ProfileSpec).model_fields
    declared = set(node["properties"]) - set(model_fields)
    assert declared == set(keys)
    refusals = {v.get("fieldPath"): v for v in node["x-kubernetes-validations"]}
    for key in keys:
        rule = refusals[f".{key}"]
        assert rule["rule"].startswith(f"!has(self.{key})"), rule
        assert rule["reason"] == "FieldValueForbidden"
        assert "Docker-format" in rule["message"]
        assert "containerd drops unknown keys silently" in rule["message"]


# --- CEL: the rules of agent/validation/semantics.py that a schema cannot express ---------------


def test_cross_field_rules_are_present(root: dict[str, Any], spec: dict[str, Any]) -> None:
    spec_rules = " ".join(rules(spec))
    assert "self.defaultAction != 'SCMP_ACT_NOTIFY'" in spec_rules
    assert "has(self.defaultErrnoRet)" in spec_rules
    assert "has(self.listenerMetadata)" in spec_rules
    assert "r.action != 'SCMP_ACT_NOTIFY'" in spec_rules
    rule_rules = " ".join(rules(at(spec, "syscalls")["items"]))
    assert "has(self.errnoRet)" in rule_rules
    assert "'write' in self.names" in rule_rules
    assert "exists_one" in " ".join(rules(at(spec, "syscalls", "args")))
    for errno_rule in [
        r for r in rules(spec) + rules(at(spec, "syscalls")["items"]) if "errnoRet" in r
    ]:
        for action in model.ACTIONS_WITH_ERRNO:
            assert f"'{action}'" in errno_rule


def test_whole_profile_totals_equal_the_model_constants(spec: dict[str, Any]) -> None:
    spec_rules = " ".join(rules(spec))
    assert f"self.syscalls.map(r, size(r.names)).sum() <= {model.MAX_TOTAL_NAMES}" in spec_rules
    assert (
        f"!has(self.syscalls) || self.syscalls.map(r, has(r.args) ? size(r.args) : 0).sum() <= "
        f"{model.MAX_TOTAL_ARGS}" in spec_rules
    )


def test_name_rules_use_the_model_dns_label(root: dict[str, Any]) -> None:
    root_rules = rules(root)
    # Declared only so that the rules' fieldPath `.metadata.name` is valid and their cost bounded.
    assert set(root["properties"]["metadata"]["properties"]) == {"name"}
    assert root["properties"]["metadata"]["properties"]["name"]["maxLength"] == 253
    assert {v.get("fieldPath") for v in root["x-kubernetes-validations"]} == {".metadata.name"}
    assert f"size(self.metadata.name) <= {DNS1123_LABEL_MAX}" in root_rules
    assert f"self.metadata.name.matches('{DNS1123_LABEL_PATTERN}')" in root_rules


def test_every_cel_rule_has_a_message(crd: dict[str, Any]) -> None:
    for where, schema in _schemas(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], ()):
        for validation in schema.get("x-kubernetes-validations", []):
            assert validation.get("message") or validation.get("messageExpression"), where


# --- documentation ------------------------------------------------------------------------------


def _schemas(node: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield ".".join(path) or "<root>", node
    for name, child in node.get("properties", {}).items():
        yield from _schemas(child, (*path, name))
    if "items" in node:
        yield from _schemas(node["items"], (*path, "[]"))


# The API server forbids anything on the root `metadata` schema but its name/generateName
# properties, and `kubectl explain` shows the built-in ObjectMeta documentation there anyway.
UNDOCUMENTABLE = {"metadata"}


def test_every_field_has_a_description(root: dict[str, Any]) -> None:
    missing = [
        where
        for where, schema in _schemas(root, ())
        if where not in UNDOCUMENTABLE and not schema.get("description", "").strip()
    ]
    assert missing == [], f"fields without a description (kubectl explain shows nothing): {missing}"


def test_descriptions_teach_the_runtime_gotchas(spec: dict[str, Any]) -> None:
    assert "EPERM" in at(spec, "defaultErrnoRet")["description"]
    assert "skipped" in at(spec, "syscalls", "names")["description"]
    assert "first rule without args" in at(spec, "syscalls")["description"]
    assert "native architecture" in at(spec, "architectures")["description"]
    assert "ORed" in at(spec, "syscalls", "args")["description"]


def test_status_has_room_for_readiness(root: dict[str, Any]) -> None:
    status = root["properties"]["status"]
    assert set(status["properties"]) >= {
        "observedGeneration",
        "localhostProfile",
        "conditions",
        "nodesInstalled",
        "nodesExpected",
        "state",
        "failingNodes",
        "readyNodes",
    }
    assert status["properties"]["state"]["enum"] == [
        "Installed",
        "Partial",
        "Pending",
        "Invalid",
        "Terminating",
    ]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert status["properties"]["failingNodes"]["maxItems"] == 10
    assert localhost_profile(ProfileKey("ns", "p")) == "seccomp-sync/ns/p.json"
    assert (
        "seccomp-sync/<namespace>/<name>.json"
        in status["properties"]["localhostProfile"]["description"]
    )
