"""The deployment files without a Docker engine: docker-compose.yml against the Compose
specification's JSON schema (the copy vendored by check-jsonschema, no network), and the
topology it promises checked against the project itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PACKAGES = ("spaces", "latency_models", "search", "dashboards", "nanosd_nas")


@pytest.fixture(scope="module")
def compose() -> dict:
    document: dict = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_compose_file_meets_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_compose_file_is_caught(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:", "depends_upon:", 1))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(broken)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "depends_upon" in result.stdout + result.stderr


def test_the_topology_is_database_migration_ray_api_and_worker(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "ray-head", "ray-worker", "api",
                             "study-worker"}
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    for name in ("api", "study-worker"):  # both wait for the one-shot migration
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    head = " ".join(services["ray-head"]["command"])
    port = re.search(r"--port=(\d+)", head)
    assert port and f"ray-head:{port.group(1)}" in " ".join(services["ray-worker"]["command"])
    assert f"ray-head:{port.group(1)}" in services["study-worker"]["command"]
    # every project service sees the same project home and database
    for name in ("migrate", "ray-head", "ray-worker", "api", "study-worker"):
        service = services[name]
        assert service["volumes"] == ["home:/data/home"], name
        assert service["environment"]["NANOSD_NAS_HOME"] == "/data/home", name
        assert "@postgres:5432/" in service["environment"]["NANOSD_NAS_DATABASE_URL"], name
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name  # no open cluster
    assert "NANOSD_NAS_API_TOKEN" in services["api"]["environment"]


def test_every_command_the_services_run_exists(compose):
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if not command or command[0] != "nanosd-nas":
            continue
        words = [w for w in command[1:] if not w.startswith("-")][:2]
        subcommand = [w for w in words if re.fullmatch(r"[a-z]+", w)]
        result = subprocess.run([sys.executable, "-m", "nanosd_nas", *subcommand, "--help"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, (name, result.stderr)
        for option in (w for w in command if w.startswith("--")):
            assert option.split("=")[0] in result.stdout, (name, option)


def test_the_image_installs_every_package_with_the_cpu_build_of_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in PACKAGES:
        assert f"COPY {package} {package}" in dockerfile, package
    assert re.search(r'pip install "torch==2\.13\.0" --index-url "\$\{TORCH_INDEX\}"',
                     dockerfile)
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    assert "USER nas" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "*.db", ".nanosd-nas"} <= set(ignored)
