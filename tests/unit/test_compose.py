"""docker-compose.yml and the Dockerfile: checked by `docker compose config` wherever the docker client
is (`make test` fetches the compose plugin where it is missing), and always for what the deployment
relies on. No engine runs here, so the image itself is built and run by hand (README, Scaling out)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from onnxvec.config import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


PLUGIN = PROJECT_ROOT / ".tools" / "cli-plugins" / "docker-compose"


def _docker_compose_env(tmp_path: Path) -> dict[str, str]:
    """The environment in which `docker compose` works: docker's own plugin, else the one in .tools/."""
    env = dict(os.environ)
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        assert PLUGIN.exists(), "docker has no compose plugin; `make compose-plugin` fetches one"
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(PLUGIN)
        env["DOCKER_CONFIG"] = str(plugins.parent)
    return env


def test_compose_services_are_healthchecked_scalable_and_migrated_first(tmp_path: Path) -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "scheduler"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg")
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["migrate"]["command"] == ["onnxvec", "db", "upgrade"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` needs both absent
    assert "--no-beat" in worker["command"] and "--no-beat" not in services["scheduler"]["command"]
    assert set(spec["volumes"]) == {"pgdata", "redisdata"}


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config_accepts_the_file_and_reads_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((PROJECT_ROOT / ".env.example").read_text().replace("change-me", "s3cret-pw"))
    command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=_docker_compose_env(tmp_path))
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "scheduler"}
    for name in ("migrate", "api", "worker", "scheduler"):
        assert ":s3cret-pw@postgres:5432/" in services[name]["environment"]["DATABASE_URL"], name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret-pw"
    assert services["api"]["ports"][0]["published"] == "8080"
    ping = services["worker"]["healthcheck"]["test"][-1]
    # celery names itself after the container's hostname; `config` prints $ escaped for compose again
    assert "celery@$$(hostname)" in ping


def test_env_example_names_real_settings() -> None:
    keys = {line.split("=", 1)[0] for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()}
    keys.discard("")
    keys = {k for k in keys if not k.startswith("#")}
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    assert keys == used, (keys, used)
    fields = set(Settings.model_fields)
    for key in keys:
        assert key.startswith("POSTGRES_") or key.removeprefix("ONNXVEC_").lower() in fields, key


def test_dockerfile_pulls_the_default_models_at_build_time() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    settings = Settings()
    assert f"onnxvec models pull {settings.embedding_model}" in dockerfile
    assert f"onnxvec models pull {settings.chat_model}" in dockerfile
    for path in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for item in path.split():
            assert (PROJECT_ROOT / item).exists(), item
