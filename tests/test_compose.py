"""docker-compose.yml and the Dockerfile: checked by `docker compose config` where the compose plugin
exists, and always for what the deployment relies on (no engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from onnxvec.config import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


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
    if _compose_plugin():  # docker's own check too, where the compose plugin is installed (not on this machine)
        shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env")
        command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(tmp_path / ".env"), "config", "-q"]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


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
