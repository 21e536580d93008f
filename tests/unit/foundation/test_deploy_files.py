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


def test_postgres_and_redis_are_not_published_unless_the_override_is_used():
    services = _compose()["services"]
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    override = yaml.safe_load((ROOT / "deploy/compose.publish-db.yml").read_text())
    assert override["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert override["services"]["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    assert "deploy/compose.publish-db.yml" in (ROOT / "README.md").read_text()


def test_pulled_images_are_fully_qualified():
    """Podman's default configuration resolves no short names (`postgres:16-alpine` fails)."""
    for name, svc in _compose()["services"].items():
        if "build" in svc:
            continue
        assert re.match(r"^[a-z0-9.-]+\.[a-z]+/[^:]+:[^:]+$", svc["image"]), f"{name}: {svc['image']}"


def test_health_checks_are_declared_in_compose_for_every_core_service():
    """Podman drops a Dockerfile HEALTHCHECK when it builds in the OCI format: compose declares it."""
    services = _compose()["services"]
    for core in ("bot", "postgres", "redis"):
        assert services[core]["healthcheck"]["test"], core
    assert "/health" in " ".join(services["bot"]["healthcheck"]["test"])
    assert services["bot"]["restart"] == "unless-stopped"


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
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "docker.io/library/python:3.11-slim" for f in froms)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert "uv sync --frozen --no-dev" in text
    for path in re.findall(r"^COPY (\S+)", text, re.M):
        if not path.startswith("--"):
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"


def test_quorum_is_the_entry_process_and_no_build_cache_stays():
    """`sh -c` as PID 1 swallowed SIGTERM (10.2 s, then 137); the uv cache was 380 MB of the image."""
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.findall(r"^CMD (.+)$", text, re.M)[-1]
    assert cmd == '["quorum", "run"]'
    assert not re.search(r"^ENTRYPOINT", text, re.M)
    final = text.split("\nFROM ")[-1]  # the runtime stage: no pip/uv installs, no caches copied in
    assert "pip install" not in final and "uv sync" not in final and "COPY --from=build /opt/venv" in final
    assert "UV_NO_CACHE=1" in text and "--no-cache-dir" in text
    assert "--mount=type=secret,id=ca" in text  # a proxy's CA for the downloads, never a layer


def test_dockerignore_keeps_environments_and_caches_out_and_the_demo_data_in():
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for pattern in (".git", ".venv", "**/__pycache__", ".pytest_cache", ".mypy_cache", "var", "tests", ".env"):
        assert pattern in ignored, pattern
    assert "data" not in ignored and (ROOT / "data").is_dir()


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
