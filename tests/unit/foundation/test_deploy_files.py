"""Docker cannot run here: check the compose file and Dockerfile by reading them."""

import re
from pathlib import Path

import yaml

from quorum.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_every_service_the_code_needs():
    services = _compose()["services"]
    assert {"bot", "postgres", "redis", "prometheus", "grafana"} <= set(services)
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    for core in ("bot", "postgres", "redis"):
        assert "profiles" not in services[core], f"{core} must start with a plain `docker compose up`"


def test_bot_environment_points_at_the_compose_services_and_known_settings():
    bot = _compose()["services"]["bot"]
    env = bot["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["API_HOST"] == "0.0.0.0" and str(env["API_PORT"]) == "8000"
    known = {name.upper() for name in Settings.model_fields}
    assert set(env) <= known, f"unknown variables: {set(env) - known}"
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "127.0.0.1:8000:8000" in bot["ports"]


def test_published_ports_bind_to_loopback_only():
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_volumes_are_declared_and_mounted_files_exist():
    compose = _compose()
    declared = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
    assert compose["services"]["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]


def test_prometheus_scrapes_the_bot_metrics_endpoint():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "bot:8000" in targets


def test_dockerfile_is_slim_non_root_with_healthcheck_and_locked_install():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert "uv sync --frozen --no-dev" in text
    for path in re.findall(r"^COPY (\S+)", text, re.M):
        if not path.startswith("--"):
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
