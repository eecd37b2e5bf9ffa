"""The `studio` command: doctor, jobs, db dump/restore, settings errors. Run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def studio(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"studio {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_doctor_json_reports_services(studio_env: dict[str, str]) -> None:
    report = json.loads(studio(studio_env, "doctor", "--json", check=False).stdout)
    assert report["postgres"].startswith("16")
    assert report["pgvector"]
    assert report["redis"]
    assert report["torch"].startswith("2.")
    assert report["schema_revision"] == report["schema_head"]
    assert report["cuda"] is False or report["gpus"]


def test_demo_job_runs_inline_without_worker_and_shows_up(studio_env: dict[str, str]) -> None:
    out = studio(studio_env, "jobs", "demo", "--steps", "3", "--step-seconds", "0", "--wait", "--json")
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    listed = json.loads(studio(studio_env, "jobs", "list", "--json", "--kind", "demo").stdout)
    assert job["id"] in [j["id"] for j in listed]
    shown = json.loads(studio(studio_env, "jobs", "show", str(job["id"]), "--json").stdout)
    assert [p[0] for p in shown["metrics"]["loss"]] == [0, 1, 2]
    assert shown["log"][-1]["message"] == "Demo job finished"
    missing = studio(studio_env, "jobs", "show", "999999", "--json", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout) == {"error": "No job #999999."}


def test_dump_and_restore_round_trip(studio_env: dict[str, str], tmp_path: Path) -> None:
    job = json.loads(studio(studio_env, "jobs", "demo", "--steps", "1", "--step-seconds", "0",
                            "--wait", "--json").stdout)
    dump = tmp_path / "backup.sql"
    with dump.open("wb") as fh:
        subprocess.run([sys.executable, "-m", "backend.cli", "db", "dump"], cwd=ROOT, env=studio_env,
                       stdout=fh, check=True, timeout=120)
    assert b"CREATE TABLE public.jobs" in dump.read_bytes()
    cancel = studio(studio_env, "jobs", "cancel", str(job["id"]), "--json", check=False)
    assert cancel.returncode == 1 and "already ended" in json.loads(cancel.stdout)["error"]
    # change something, then restore and see it back as it was
    from sqlalchemy import text

    from backend.db import dispose_engines, get_engine

    with get_engine().begin() as conn:
        conn.execute(text("UPDATE jobs SET title = 'changed' WHERE id = :i"), {"i": job["id"]})
    dispose_engines()
    studio(studio_env, "db", "restore", str(dump))
    with get_engine().connect() as conn:
        title = conn.execute(text("SELECT title FROM jobs WHERE id = :i"), {"i": job["id"]}).scalar()
    assert title == job["title"] != "changed"
    bad = tmp_path / "bad.sql"
    bad.write_text("UPDATE jobs SET title = 'half';\nTHIS IS NOT SQL;\n")
    res = studio(studio_env, "db", "restore", str(bad), check=False)
    assert res.returncode == 1 and "nothing was changed" in res.stderr
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE title = 'half'")).scalar() == 0


def test_bad_setting_stops_with_one_clear_line(studio_env: dict[str, str]) -> None:
    env = dict(studio_env, STUDIO_STUDIO_PORT="not-a-port")
    res = studio(env, "doctor", check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "Invalid setting STUDIO_STUDIO_PORT: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_fresh_data_dir_gets_its_schema_on_first_command(studio_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in studio_env.items() if k not in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL")}
    env["STUDIO_DATA_DIR"] = str(tmp_path / "fresh")
    assert json.loads(studio(env, "jobs", "list", "--json").stdout) == []


def test_outdated_shared_schema_is_refused_with_what_to_do(studio_env: dict[str, str],
                                                          empty_database: str) -> None:
    from backend import migrate

    url = empty_database
    migrate.upgrade("0001", url=url)
    res = studio(dict(studio_env, STUDIO_DATABASE_URL=url), "jobs", "list", check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"The database schema is at 0001 but this code needs {migrate.head_revision()}. "
        "Run `studio db upgrade` (back it up first with `studio db dump > backup.sql`)."
    )
    assert migrate.current_revision(url) == "0001"  # nothing was changed behind its owner's back


def test_doctor_on_a_new_data_folder_brings_the_embedded_database_to_the_schema(
        studio_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in studio_env.items() if k not in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL")}
    env["STUDIO_DATA_DIR"] = str(tmp_path / "new")
    res = studio(env, "doctor", "--json", check=False)
    report = json.loads(res.stdout)
    assert res.returncode == 0, report["problems"]
    assert report["ok"] and report["schema_revision"] == report["schema_head"] is not None
    assert report["pgvector"] and report["embedded_postgres"]
    assert report["schema_action"].startswith("upgraded the schema from empty to ")
