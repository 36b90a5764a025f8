"""The deployment as a cluster and an operator's tools see it: `kubectl kustomize deploy`
validated against the Kubernetes schemas (strict), checkov with every kept finding
explained, hadolint on the Dockerfile, and the alerts checked and unit-tested by promtool
(each alert fires on the series that should fire it and stays quiet on a healthy one)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "alerts" / "rules.yaml"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command of the project's venv, its tools venv, or the system (scripts/bootstrap)."""
    for candidate in (VENV_BIN / name, ROOT / ".venv-tools" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed (scripts/bootstrap installs it)"
    return found


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def test_kustomize_output_is_valid_kubernetes(tmp_path: Path) -> None:
    rendered = run(tool("kubectl"), "kustomize", str(DEPLOY))
    assert rendered.returncode == 0, rendered.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "Job", "NetworkPolicy", "Namespace"} <= kinds  # fmt: skip
    (tmp_path / "rendered.yaml").write_text(rendered.stdout)
    files = [tmp_path / "rendered.yaml", DEPLOY / "dev" / "redis.yaml",
             DEPLOY / "secret.example.yaml"]  # fmt: skip
    checked = run(tool("kubernetes-validate"), "--strict", *map(str, files))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed for resource deployment/tokenbroker" in checked.stdout


def test_checkov_finds_nothing_unexplained() -> None:
    scan = run(tool("checkov"), "-d", str(DEPLOY), "--framework", "kubernetes",
               "--skip-download", "--output", "json")  # fmt: skip
    report = json.loads(scan.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the manifests keep a few findings on purpose"
    for check in skipped:  # every kept finding says why, in the manifest
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) >= 20, check["check_id"]


def test_dockerfile_lints_clean() -> None:
    linted = run(tool("hadolint"), str(ROOT / "Dockerfile"))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_prometheus_rule_is_the_rule_file() -> None:
    spec = importlib.util.spec_from_file_location("render", ROOT / "scripts" / "render_alerts.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert (DEPLOY / "prometheus-rule.yaml").read_text() == render.render()
    rule = yaml.safe_load((DEPLOY / "prometheus-rule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_rules_pass_promtool_check() -> None:
    checked = run(tool("promtool"), "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- alert unit tests: (name, series, minute to evaluate, alerts expected then) --------------

ALERTS = [a["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for a in g["rules"]]
HEALTHY = {  # a fleet of two replicas doing fine: nothing fires
    'tokenbroker_circuit_state{dependency="upstream",instance="a"}': "0x40",
    'tokenbroker_circuit_state{dependency="redis",instance="a"}': "0x40",
    'tokenbroker_mints_total{outcome="minted",policy="p",instance="a"}': "0+600x40",
    'tokenbroker_mints_total{outcome="upstream_error",policy="p",instance="a"}': "0+3x40",
    'tokenbroker_mints_total{outcome="rate_limited",policy="p",instance="a"}': "0+12x40",
    'tokenbroker_store_errors_total{instance="a"}': "0x40",
    'tokenbroker_policy_version{instance="a"}': "4x40",
    'tokenbroker_policy_version{instance="b"}': "4x40",
    'tokenbroker_mint_duration_seconds_bucket{le="0.05",instance="a"}': "0+600x40",
    'tokenbroker_mint_duration_seconds_bucket{le="2.5",instance="a"}': "0+600x40",
    'tokenbroker_mint_duration_seconds_bucket{le="5",instance="a"}': "0+600x40",
    'tokenbroker_mint_duration_seconds_bucket{le="+Inf",instance="a"}': "0+600x40",
    'tokenbroker_jwks_fetches_total{provider="auth0",result="ok",instance="a"}': "0+1x40",
    'tokenbroker_jwks_fetches_total{provider="auth0",result="error",instance="a"}': "0x40",
    'tokenbroker_audit_entries_total{fate="written",instance="a"}': "0+600x40",
    'tokenbroker_audit_entries_total{fate="dropped",instance="a"}': "0x40",
    'tokenbroker_call_ends_total{reason="client",instance="a"}': "0+5x40",
    'tokenbroker_call_ends_total{reason="upstream",instance="a"}': "0x40",
    'tokenbroker_call_usage_lost_total{instance="a"}': "0x40",
    'tokenbroker_model_days_to_shutdown{model="gpt-live-1",instance="a"}': "90x40",
}
CASES: list[tuple[str, dict[str, str], int, list[dict[str, str]]]] = [
    ("upstream circuit open", {'tokenbroker_circuit_state{dependency="upstream",instance="a"}':
                               "0 0 2x20"}, 10, [{"alertname": "TokenbrokerUpstreamFailing"}]),
    ("upstream errors above 5 %", {'tokenbroker_mints_total{outcome="upstream_error",policy="p",'
                                   'instance="a"}': "0+60x40"}, 10,
     [{"alertname": "TokenbrokerUpstreamFailing"}]),
    ("redis errors", {'tokenbroker_store_errors_total{instance="a"}': "0 0 0+7x30"}, 10,
     [{"alertname": "TokenbrokerRedisErrors"}]),
    ("a replica on an old policy", {'tokenbroker_policy_version{instance="b"}': "4 4 3x30"}, 10,
     [{"alertname": "TokenbrokerPolicyVersionSkew"}]),
    ("slow mints", {'tokenbroker_mint_duration_seconds_bucket{le="0.05",instance="a"}': "0x40",
                    'tokenbroker_mint_duration_seconds_bucket{le="2.5",instance="a"}': "0+300x40"},
     20, [{"alertname": "TokenbrokerMintLatencyHigh"}]),
    ("a JWKS unreachable", {'tokenbroker_jwks_fetches_total{provider="auth0",result="error",'
                            'instance="a"}': "0+1x40"}, 20,
     [{"alertname": "TokenbrokerJwksFetchErrors", "provider": "auth0"}]),
    ("audit entries dropped", {'tokenbroker_audit_entries_total{fate="dropped",instance="a"}':
                               "0 0 0 50x30"}, 5,
     [{"alertname": "TokenbrokerAuditEntriesDropped"}]),
    ("many refusals", {'tokenbroker_mints_total{outcome="rate_limited",policy="p",instance="a"}':
                       "0+400x40"}, 30, [{"alertname": "TokenbrokerRefusalsHigh"}]),
    ("calls unwatched", {'tokenbroker_call_ends_total{reason="upstream",instance="a"}':
                         "0 0 0 1x30"}, 5, [{"alertname": "TokenbrokerCallsUnwatched"}]),
    ("usage lost", {'tokenbroker_call_usage_lost_total{instance="a"}': "0 0 0 3x30"}, 5,
     [{"alertname": "TokenbrokerCallsUnwatched"}]),
    ("a model 10 days from shutdown", {'tokenbroker_model_days_to_shutdown{model='
                                       '"gpt-realtime-2.1-mini",instance="a"}': "10x40"}, 5,
     [{"alertname": "TokenbrokerModelShutdownSoon", "model": "gpt-realtime-2.1-mini"}]),
]  # fmt: skip


def _annotations() -> dict[str, dict[str, str]]:
    return {a["alert"]: a["annotations"] for g in yaml.safe_load(RULES.read_text())["groups"]
            for a in g["rules"]}  # fmt: skip


def _labels() -> dict[str, dict[str, str]]:
    return {a["alert"]: a.get("labels", {}) for g in yaml.safe_load(RULES.read_text())["groups"]
            for a in g["rules"]}  # fmt: skip


def _group(series: dict[str, str], minute: int, firing: list[dict[str, str]]) -> dict[str, Any]:
    """One promtool test group: every alert evaluated at ``minute``; ``firing`` expected."""
    annotations, labels = _annotations(), _labels()
    tests = []
    for name in ALERTS:
        expected = [
            {"exp_labels": {**labels[name], **{k: v for k, v in f.items() if k != "alertname"}},
             "exp_annotations": annotations[name]}
            for f in firing if f["alertname"] == name
        ]  # fmt: skip
        tests.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected})
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": tests}  # fmt: skip


@pytest.mark.parametrize(("name", "change", "minute", "firing"), CASES, ids=[c[0] for c in CASES])
def test_each_alert_fires_on_its_cause_alone(
    tmp_path: Path, name: str, change: dict[str, str], minute: int, firing: list[dict[str, str]]
) -> None:
    document = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
                "tests": [_group({**HEALTHY, **change}, minute, firing)]}  # fmt: skip
    path = tmp_path / "rules.test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    tested = run(tool("promtool"), "test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_healthy_fleet_fires_nothing(tmp_path: Path) -> None:
    document = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
                "tests": [_group(HEALTHY, minute, []) for minute in (5, 20, 39)]}  # fmt: skip
    path = tmp_path / "rules.test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    tested = run(tool("promtool"), "test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert len(ALERTS) == 9
