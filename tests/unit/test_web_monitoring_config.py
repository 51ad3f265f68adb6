"""deploy/prometheus and deploy/grafana: structure, and every metric they name is one the code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"


def exported_metric_names() -> set[str]:
    """Metric names declared in the code (counters also export ``_total``, histograms ``_bucket``...)."""
    names: set[str] = set()
    for path in [*PROJECT_ROOT.glob("services/**/*.py"), *PROJECT_ROOT.glob("shared/**/*.py")]:
        for match in re.finditer(r'"(cme_[a-z0-9_]+)"', path.read_text()):
            names.add(match.group(1))
    return names


def metric_names_in(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
    return {n for n in re.findall(r"\b(cme_[a-z0-9_]+)\b", without_labels)}


def known(name: str, exported: set[str]) -> bool:
    for suffix in ("", "_total", "_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in exported | {
            e.removesuffix("_total") for e in exported
        }:
            return True
    return name in exported


def test_grafana_panels_name_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "cme-dashboard.json").read_text())
    exported = exported_metric_names()
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Consumer lag by group", "Open cases by state", "Dead letters", "Delivery failures"):
        assert needed in titles
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']}"
            unknown = {n for n in names if not known(n, exported)}
            assert not unknown, f"{panel['title']}: {unknown} not exported by any service"


def test_alert_rules_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exported = exported_metric_names()
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for needed in (
        "CmeServiceDown", "CmeConsumerLagHigh", "CmeDeadLettersGrowing", "CmeDeliveryFailures",
        "CmeEscalationsUnacknowledged", "CmeOutboxBacklog", "CmeEscalationClocksNotDecided",
    ):  # fmt: skip
        assert needed in alerts
    for name, rule in alerts.items():
        unknown = {n for n in metric_names_in(rule["expr"]) if not known(n, exported)}
        assert not unknown, f"{name}: {unknown}"


def test_scrape_config_covers_every_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = {
        t["labels"]["service"] for job in config["scrape_configs"] for t in job.get("static_configs", [])
    }
    assert services == {"referral", "tracking", "escalation", "notify", "attendance", "web"}
    assert config["rule_files"] == ["alerts.yml"]
    # Every process docker-compose.yml serves (escalation's two roles included) is scraped on its port.
    targets = {
        target
        for job in config["scrape_configs"]
        for t in job.get("static_configs", [])
        for target in t["targets"]
    }
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    served = {
        f"{name}:{service['environment']['PORT']}"
        for name, service in compose.items()
        if service.get("command", [""])[-1] == "serve"
    }
    assert served and served <= targets, served - targets


# Gauges read from what the replicas share (the database, the broker): every replica of the service exports
# the same value (deploy/k8s runs two or three), so a sum counts it once per replica. They are taken with
# ``max`` first, then summed over their own labels if need be.
SHARED_GAUGES = (
    "cme_tracking_cases",
    "cme_escalation_open_deadlines",
    "cme_escalation_open_escalations",
    "cme_notify_pending_acks",
    "cme_referral_outbox_depth",
    "cme_consumer_lag",
    "cme_dead_letter_depth",
)
TAKEN_ONCE = re.compile(r"max(?: by \([^)]*\))? ?\((?:min_over_time\(|increase\()?$")


def unaggregated_shared_gauges(expr: str) -> list[str]:
    """The shared gauges ``expr`` reads other than through ``max`` (one value whatever the replicas)."""
    return [
        match.group(1)
        for match in re.finditer(rf"\b({'|'.join(SHARED_GAUGES)})\b", expr)
        if not TAKEN_ONCE.search(expr[: match.start()])
    ]


def test_shared_gauges_are_counted_once_whatever_the_replicas() -> None:
    exported = exported_metric_names()
    assert set(SHARED_GAUGES) <= exported
    dashboard = json.loads((DEPLOY / "grafana" / "cme-dashboard.json").read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    counted_per_replica = [(name, bad) for name, expr in exprs if (bad := unaggregated_shared_gauges(expr))]
    assert not counted_per_replica


def test_the_shared_gauge_check_tells_a_sum_from_a_max() -> None:
    assert unaggregated_shared_gauges("sum by (state) (cme_tracking_cases)") == ["cme_tracking_cases"]
    assert unaggregated_shared_gauges("cme_referral_outbox_depth > 500") == ["cme_referral_outbox_depth"]
    assert not unaggregated_shared_gauges("sum by (state) (max by (la_code, state) (cme_tracking_cases))")
    assert not unaggregated_shared_gauges("max(min_over_time(cme_notify_pending_acks[2d])) > 0")
    assert not unaggregated_shared_gauges("max by (group, topic) (cme_consumer_lag) > 1000")


def test_the_known_check_refuses_an_invented_metric() -> None:
    assert not known("cme_invented_metric_total", exported_metric_names())
    assert known("cme_tracking_processing_seconds_bucket", exported_metric_names())


# On PATH, or where `make test` puts it (scripts/fetch-promtool.sh).
PROMTOOL = shutil.which("promtool") or shutil.which(
    "promtool", path=str(PROJECT_ROOT / ".cache" / "promtool")
)


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: run scripts/fetch-promtool.sh (make test does)"
)
def test_promtool_accepts_the_config_and_rules() -> None:
    assert PROMTOOL is not None
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        done = subprocess.run(
            [PROMTOOL, *args], cwd=Path(DEPLOY / "prometheus"), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
