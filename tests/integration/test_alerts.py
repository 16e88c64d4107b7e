"""The alert rules, checked and unit-tested with Debian's promtool; the PrometheusRule of the
Prometheus Operator overlay holds exactly the same groups as the plain rules file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.tools import require_tool

pytestmark = pytest.mark.prometheus

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.rules.yaml"
RULES_TEST = PROMETHEUS_DIR / "alerts.test.yaml"
PROMETHEUS_RULE = PROMETHEUS_DIR / "prometheusrule.yaml"
GENERATOR = PROMETHEUS_DIR / "generate-prometheusrule"
ANNOTATIONS = {"summary", "description", "runbook"}
SEVERITIES = {"warning", "critical"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_file_is_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_and_stays_silent_as_the_unit_tests_say(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown firing in alerts.test.yaml"
    assert names - silent == set(), "alerts never shown staying silent in alerts.test.yaml"


def test_every_alert_tells_a_person_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"].get("severity") in SEVERITIES, rule["alert"]
        assert set(rule["annotations"]) >= ANNOTATIONS, rule["alert"]
        for key in ANNOTATIONS:
            assert len(rule["annotations"][key].strip()) > 20, (rule["alert"], key)


def test_the_rules_the_brief_names_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= {
        "SeccompProfileInvalid",
        "SeccompProfileNotReady",
        "SeccompSyncAgentDown",
        "SeccompSyncAgentNotReady",
        "SeccompSyncInitialSyncIncomplete",
        "SeccompSyncDriftRepairs",
        "SeccompSyncUnsafePath",
    }


def test_prometheus_rule_holds_exactly_the_plain_rules() -> None:
    plain = yaml.safe_load(RULES.read_text())
    operator = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"]["groups"] == plain["groups"], (
        "prometheusrule.yaml differs from alerts.rules.yaml: run "
        "deploy/prometheus/generate-prometheusrule"
    )
    overlay = yaml.safe_load((PROMETHEUS_DIR / "kustomization.yaml").read_text())
    assert "prometheusrule.yaml" in overlay["resources"]


def test_prometheus_rule_is_what_the_generator_writes(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    shutil.copy(GENERATOR, tmp_path / GENERATOR.name)
    result = run(str(tmp_path / GENERATOR.name))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / PROMETHEUS_RULE.name).read_text() == PROMETHEUS_RULE.read_text(), (
        "prometheusrule.yaml was edited by hand or is stale: run "
        "deploy/prometheus/generate-prometheusrule"
    )
