"""A real Prometheus scrapes a real agent and a real controller: every metric the dashboard and the
alert rules name is one of them exports, every dashboard query returns data, and every rule
evaluates cleanly."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, free_port, running_agent, wait_for
from tests.integration.conftest import apply_profile
from tests.integration.controller import ControllerProcess, running_controller
from tests.integration.profiles import DENY_MKDIR, DENY_PTRACE
from tests.integration.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "seccomp-sync.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.rules.yaml"
JOB = "seccomp-sync-agent"  # the job name the alert rules and the dashboard select on
CONTROLLER_JOB = "seccomp-sync-controller"
# Series Prometheus makes itself for every target, not the agent.
SCRAPE_SERIES = {"up"}

TYPO = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["opne"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}

# --- reading PromQL and the exposition format (enough for the queries we write) ---------------

_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string outside a selector: skipped
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?P<matchers>\{[^}]*\})?(?P<call>\s*\()?"
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def selectors(expr: str) -> list[str]:
    """The vector selectors in a PromQL expression, as `name` or `name{matchers}`."""
    text = _GROUPING.sub(" ", _RANGES.sub(" ", expr))
    found = []
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or match.group("call") or name in _KEYWORDS:
            continue
        found.append(name + (match.group("matchers") or ""))
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape of this /metrics text can produce, from its # TYPE lines."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "summary": ["", "_sum", "_count", "_created"],
        "gauge": [""],
        "untyped": [""],
        "info": ["_info"],
        "stateset": [""],
        "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
    }
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in suffixes.get(kind, [""]))
            names.add(name)
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included."""
    queries = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                queries.append((f"{panel['title']} ({target['refId']})", target["expr"]))

    walk(dashboard["panels"])
    return queries


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


# --- checks that need neither Prometheus nor a cluster ----------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[5m])))', ['a_bucket{x="y"}']),
        (
            "min by (namespace, profile) (b) == 0 unless on (namespace, profile) "
            "max by (namespace, profile) (c) == 1",
            ["b", "c"],
        ),
        ("sum(d == bool 0)", ["d"]),
        ('up{job="a-b"} == 0', ['up{job="a-b"}']),
        ("e == 0 and on (job, instance) f > 0", ["e", "f"]),
        ("increase(g_total[30m]) > 3", ["g_total"]),
        ("count by (version) (h_info)", ["h_info"]),
    ],
)
def test_selector_extraction(expr: str, expected: list[str]) -> None:
    assert selectors(expr) == expected


def test_dashboard_is_a_grafana_dashboard_on_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            # Fixed ranges only: the queries are checked against a real Prometheus below, which
            # knows no Grafana variables.
            assert "$" not in target["expr"], (panel["title"], target["expr"])
    for title, expr in dashboard_queries(dashboard):
        assert selectors(expr), f"no metric found in {title}: {expr}"


# --- a real agent, a real Prometheus ----------------------------------------------------------


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)}
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"value": result}]
        return list(result)

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_tool("prometheus", "prometheus")


@pytest.fixture
def controller(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[ControllerProcess]:
    # Its own Lease in the test's namespace: it leads at once, whatever an earlier test left.
    with running_controller(crd, namespace, tmp_path / "controller.log") as process:
        yield process


@pytest.fixture
def agent(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(
        crd, "scrape-node", tmp_path / "root", tmp_path / "agent.log", "--namespace", namespace
    ) as process:
        yield process


@pytest.fixture
def prometheus(
    prometheus_binary: str, agent: AgentProcess, controller: ControllerProcess, tmp_path: Path
) -> Iterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{agent.port}"]}],
                    },
                    {
                        "job_name": CONTROLLER_JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{controller.port}"]}],
                    },
                ],
            }
        )
    )
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    server = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"prometheus exited {process.returncode}:\n"
                f"{log_path.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(ready, timeout=30, interval=0.2, what="prometheus /-/ready")
        wait_for(
            lambda: server.value("sum(up)") == 2,
            timeout=30,
            interval=0.5,
            what="prometheus to scrape the agent and the controller (up == 1)",
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.cluster
@pytest.mark.prometheus
def test_dashboard_and_alerts_read_what_the_agent_and_controller_export(
    crd: Cluster,
    namespace: str,
    agent: AgentProcess,
    controller: ControllerProcess,
    prometheus: Prometheus,
) -> None:
    # Activity after the first scrapes, so every rate() and histogram has something to show.
    apply_profile(crd, namespace, "deny-mkdir", DENY_MKDIR)
    apply_profile(crd, namespace, "deny-ptrace", DENY_PTRACE)
    apply_profile(crd, namespace, "typo", TYPO)
    for name in ["deny-mkdir", "deny-ptrace"]:
        path = agent.profile_path(namespace, name)
        wait_for(path.exists, what=f"{path} written")
    wait_for(
        lambda: agent.metric("seccomp_sync_validation_failures_total") >= 1,
        what="the invalid profile counted",
    )
    wait_for(
        lambda: (prometheus.value("sum(seccomp_sync_files_written_total)") or 0) >= 2,
        timeout=20,
        interval=0.5,
        what="prometheus to scrape the writes",
    )
    # The controller's per-profile series follow the agents' node status: give them time to
    # appear, but check strictly below whatever this wait sees.
    per_profile = f'seccomp_sync_profile_ready{{namespace="{namespace}"}}'
    with contextlib.suppress(AssertionError):
        wait_for(lambda: len(prometheus.query(per_profile)) == 3, timeout=30, interval=0.5)
    time.sleep(3)  # a few more scrapes, so that rates span the change

    status, exposition = agent.http("/metrics")
    assert status == 200
    controller_status, controller_exposition = controller.http("/metrics")
    assert controller_status == 200
    # Every supervised part of both processes has its failure series from the start, at 0 here,
    # so SeccompSyncComponentFailing has something to evaluate before the first failure.
    for process, part in [(exposition, "syncer"), (controller_exposition, "elector")]:
        assert f'seccomp_sync_component_failures_total{{component="{part}"}} 0.0' in process
    exported = exported_names(exposition) | exported_names(controller_exposition) | SCRAPE_SERIES
    problems: list[str] = []

    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in dashboard_queries(dashboard):
        missing = sorted({metric_name(s) for s in selectors(expr)} - exported)
        if missing:
            problems.append(f"dashboard {title}: nothing exports {', '.join(missing)}")
        if not prometheus.query(expr):
            problems.append(f"dashboard {title}: no data for {expr}")

    for alert, expr in alert_expressions():
        for selector in selectors(expr):
            if metric_name(selector) not in exported:
                problems.append(f"alert {alert}: nothing exports {metric_name(selector)}")
            elif not prometheus.query(selector):
                problems.append(f"alert {alert}: no data for {selector}")

    assert problems == [], "\n".join(problems)


@pytest.mark.cluster
@pytest.mark.prometheus
def test_every_alert_rule_evaluates_without_error(prometheus: Prometheus) -> None:
    names = {name for name, _ in alert_expressions()}

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [
            rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        done = all(rule.get("lastEvaluation", "").startswith("20") for rule in rules)
        return rules if done and len(rules) == len(names) else None

    rules = wait_for(evaluated, timeout=20, interval=0.5, what="every rule evaluated once")
    assert {rule["name"] for rule in rules} == names
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert broken == {}
    # A healthy agent that just synced, and a leading controller, make none of them fire.
    firing = [rule["name"] for rule in rules if rule["state"] == "firing"]
    assert firing == []
