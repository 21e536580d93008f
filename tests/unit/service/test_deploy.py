"""Monitoring config: Prometheus scrapes the bot, and every metric the dashboard queries exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from quorum.metrics import RECORD_FAMILIES, REGISTRY, STATE_FAMILIES

ROOT = Path(__file__).resolve().parents[3]


def exposed_names() -> set[str]:
    """Every sample name /metrics can carry: the record and state families, and the engine registry's."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = {f.name + sfx for f in (*RECORD_FAMILIES, *STATE_FAMILIES) for sfx in suffixes[f.type]}
    for family in REGISTRY.collect():
        names.update(family.name + sfx for sfx in suffixes.get(family.type, ("",)))
    return names


def test_prometheus_scrapes_bot_metrics() -> None:
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = cfg["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["bot:8000"]


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/quorum.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in compose


def test_dashboard_queries_only_existing_metrics() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/quorum.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    for needed in ("Equity over time", "Drawdown over time", "P&L (USD)", "Open positions", "Win rate",
                   "Model latency p50 / p95 (s)", "Model cost (USD / day)", "Errors / h"):
        assert needed in titles
    exposed = exposed_names()
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"quorum_[a-z0-9_]+", t["expr"])}
    missing = sorted(used - exposed)
    assert not missing, missing
    uids = {p["datasource"]["uid"] for p in dash["panels"]}
    assert uids == {"quorum-prometheus"}
