"""The deployment files without a Docker engine: docker-compose.yml against the Compose
specification's JSON schema (the copy vendored by check-jsonschema, no network), and the
topology it promises checked against the project itself."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from compose_support import COMPOSE, interpolate, required_variables

ROOT = Path(__file__).resolve().parents[2]
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
    # the study worker joins the cluster with a Ray node of its own (Ray needs one to attach)
    worker = services["study-worker"]["command"]
    assert worker[worker.index("--join-ray") + 1] == f"ray-head:{port.group(1)}"
    # the API is healthy while /api/health answers 200 (its database reachable)
    assert "/api/health" in " ".join(services["api"]["healthcheck"]["test"])
    # every project service sees the same project home and database
    for name in ("migrate", "ray-head", "ray-worker", "api", "study-worker"):
        service = services[name]
        assert service["volumes"] == ["home:/data/home"], name
        assert service["environment"]["NANOSD_NAS_HOME"] == "/data/home", name
        assert "@postgres:5432/" in service["environment"]["NANOSD_NAS_DATABASE_URL"], name
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name  # no open cluster
        # nothing reports to Ray's authors unless the operator says so
        assert service["environment"]["RAY_USAGE_STATS_ENABLED"] == "0", name
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


def test_the_header_example_sets_every_variable_the_file_requires(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the example makes its tokens with openssl")
    text = COMPOSE.read_text()
    example = [line.removeprefix("#   ") for line in text.splitlines()
               if line.startswith("#   ")]
    assert any("docker compose up" in line for line in example), example
    # The example as written, in a fresh folder, with a docker that shows what it was given
    # (its environment) instead of running; Compose reads .env beneath what the shell sets.
    script = "docker() { echo \"docker $*\"; env; }\n" + "\n".join(example)
    shown = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]},
                           cwd=tmp_path, capture_output=True, text=True, timeout=30,
                           check=True).stdout
    assert "docker compose up" in shown, shown
    dotenv = tmp_path / ".env"
    files = dotenv.read_text().splitlines() if dotenv.exists() else []
    given = dict(line.split("=", 1) for line in [*files, *shown.splitlines()] if "=" in line
                 and not line.startswith("docker "))
    required = required_variables(text)
    assert {"RAY_AUTH_TOKEN", "NANOSD_NAS_API_TOKEN"} <= required
    assert all(given.get(name) for name in required), (required, sorted(given))
    interpolate(text, given)  # what Compose does first: no variable refused


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_caches_its_dependencies_and_runs_as_a_user_owning_its_folder(tmp_path):
    steps = _instructions((ROOT / "Dockerfile").read_text())

    def first(pattern: str) -> int:
        found = [i for i, step in enumerate(steps) if re.search(pattern, step)]
        assert found, pattern
        return found[0]

    assert re.search(r'pip install "torch==2\.13\.0" --index-url "\$\{TORCH_INDEX\}"',
                     steps[first("torch==")])
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in steps
    # Dependencies from pyproject.toml alone, before any source: a source change reuses them.
    sources = [first(f"^COPY {package} {package}$") for package in PACKAGES]
    dependencies = first(r"^RUN .*pip install -r ")
    assert first(r"^COPY pyproject\.toml \./$") < dependencies < min(sources)
    project = first(r"^RUN pip install --no-deps \.")
    assert max(sources) < project and not any(
        re.search(r"pip install \.( |$)", step) for step in steps)
    # The dependency step, run here: it lists exactly pyproject's dependencies.
    code = shlex.split(steps[dependencies].removeprefix("RUN ").split("&&")[0])[2]
    listed = tmp_path / "requirements.txt"
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    subprocess.run([sys.executable, "-c", code.replace("/tmp/requirements.txt", str(listed))],
                   cwd=tmp_path, check=True, timeout=60)
    with (ROOT / "pyproject.toml").open("rb") as file:
        assert listed.read_text().splitlines() == tomllib.load(file)["project"]["dependencies"]
    # The services run as nas, which owns the working folder and the project home.
    workdir = steps[first("^WORKDIR ")].split()[1]
    owned = steps[first(r"chown nas")]
    assert first("useradd .*nas") <= first("chown nas") < first("^WORKDIR ")
    assert {workdir, "/data/home"} <= set(owned.split())
    assert [step for step in steps if step.startswith("USER ")] == ["USER nas"]
    assert first("^USER nas$") > project
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "*.db", ".nanosd-nas"} <= set(ignored)


def test_a_study_worker_that_cannot_join_the_cluster_says_why(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nanosd_nas", "worker", "--once", "--db",
                             f"sqlite:///{tmp_path / 'nas.db'}", "--join-ray", "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Ray address 127.0.0.1:1 does not answer" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
