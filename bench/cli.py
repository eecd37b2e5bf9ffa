"""CLI start-up: `studio --help`, and a read command (`studio jobs list --json`) while the
embedded services are up (the second of two runs, so the first has started them and they linger).

Run: ``.venv/bin/python bench/cli.py [--runs 5]``. Uses its own data folder under /tmp (unless
STUDIO_DATA_DIR is given); the services it starts stop by themselves after the linger period.
Prints the median of each, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one command: on a busy machine the CPU time
    says more about the command itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if k not in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL")}
    env.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-bench-cli-"))
    env.setdefault("STUDIO_SERVICES_LINGER_S", "30")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    cold, _cpu = _time(["jobs", "list", "--json"], env)  # starts the services, makes the schema
    print(f"first read command (starts Postgres + Redis): {cold:.2f} s", file=sys.stderr)
    helps = [_time(["--help"], env) for _ in range(args.runs)]
    reads = [_time(["jobs", "list", "--json"], env) for _ in range(args.runs)]
    help_s, help_cpu = (statistics.median(x) for x in zip(*helps, strict=True))
    read_s, read_cpu = (statistics.median(x) for x in zip(*reads, strict=True))
    print(f"studio --help: median {help_s:.3f} s wall, {help_cpu:.3f} s CPU, of {args.runs} "
          "(goal < 0.5 s)")
    print(f"studio jobs list --json, services up: median {read_s:.3f} s wall, {read_cpu:.3f} s "
          f"CPU, of {args.runs} (goal < 1.5 s)")
    print(f"data folder: {env['STUDIO_DATA_DIR']}; load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"help_s": round(help_s, 3), "help_cpu_s": round(help_cpu, 3),
                      "read_s": round(read_s, 3), "read_cpu_s": round(read_cpu, 3),
                      "first_read_s": round(cold, 3), "runs": args.runs,
                      "load_avg": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
