"""CLI wording for bad input: one line that says what to change (issue 23 item 16)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def studio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_a_negative_id_is_called_what_it_is(studio_env: dict[str, str]) -> None:
    out = studio(studio_env, "jobs", "show", "-5")
    assert out.returncode == 2
    assert "No such option" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "Error: JOB_ID must be a positive whole number, not -5 "
        "(see `studio jobs show --help`)"]


def test_nan_and_inf_are_not_numbers_here(studio_env: dict[str, str]) -> None:
    for value in ("nan", "inf", "-Infinity"):
        out = studio(studio_env, "jobs", "demo", "--step-seconds", value)
        assert out.returncode == 2
        assert "3600" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines() == [
            f"Error: --step-seconds must be a number, not {value!r} "
            "(see `studio jobs demo --help`)"]
    out = studio(studio_env, "jobs", "demo", "--step-seconds=nan")
    assert "--step-seconds must be a number, not 'nan'" in out.stderr


def test_a_folder_given_as_schema_is_called_a_folder(studio_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    out = studio(studio_env, "prompts", "create", "wording-schema", "--template", "Hi {name}",
                 "--format", "json", "--schema", str(tmp_path), "--json")
    assert out.returncode == 1
    assert "folder" in out.stdout and "not valid JSON" not in out.stdout, out.stdout


def test_api_on_a_taken_port_says_so_in_one_line(studio_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = studio(studio_env, "api", "--host", "127.0.0.1", "--port", str(port))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port" in lines[0]
