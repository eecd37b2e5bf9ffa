"""docker-compose.yml and the Dockerfile agree with the code: services, health checks, the
commands they run exist in the ``studio`` CLI. (Docker itself does not run here.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from backend.cli import app

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_has_every_service_with_health_checks() -> None:
    assert {"postgres", "redis", "studio", "api", "worker-cpu", "worker-gpu"} <= set(SERVICES)
    assert SERVICES["postgres"]["image"].startswith("pgvector/pgvector:pg16")
    for name in ("postgres", "redis", "studio", "api"):
        assert "test" in SERVICES[name]["healthcheck"], name
    for name in ("studio", "api", "worker-cpu", "worker-gpu", "migrate"):
        deps = SERVICES[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        assert "studio-data:/data" in SERVICES[name]["volumes"], name
    devices = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "gpu" in SERVICES["worker-gpu"]["command"]


def _studio_commands() -> list[list[str]]:
    found = []
    for svc in SERVICES.values():
        cmd = svc.get("command")
        if isinstance(cmd, list) and cmd and cmd[0] == "studio":
            found.append(cmd[1:])
        elif isinstance(cmd, list) and cmd[:2] == ["sh", "-c"]:
            for part in cmd[2].split("&&"):
                words = shlex.split(part)
                if words and words[0] == "studio":
                    found.append(words[1:])
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd_line = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    found.append(yaml.safe_load(cmd_line.removeprefix("CMD "))[1:])
    return found


def test_compose_commands_exist_in_the_cli() -> None:
    runner = CliRunner()
    commands = _studio_commands()
    assert len(commands) >= 5
    for args in commands:
        # ${VAR:-default} is compose's; the CLI sees the default
        args = [a.split(":-", 1)[1].rstrip("}") if a.startswith("${") else a for a in args]
        options = [a for a in args if a.startswith("--")]
        result = runner.invoke(app, [*_verbs(args), "--help"])
        assert result.exit_code == 0, (args, result.output)
        for opt in options:
            assert opt in result.output, (args, opt)


def _verbs(args: list[str]) -> list[str]:
    verbs = []
    for a in args:
        if a.startswith("-"):
            break
        verbs.append(a)
    return verbs


def test_dockerfile_installs_torch_first() -> None:
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("RUN")]
    torch_at = next(i for i, ln in enumerate(lines) if "torch==2.13.0" in ln)
    project_at = next(i for i, ln in enumerate(lines) if "-e ." in ln)
    assert torch_at < project_at
