"""Two `studio worker --name Y` started at the same moment: exactly one gets the name. The claim
is one atomic step on the workers table, taken before the worker consumes any job."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLAIM = """
import sys, time
from backend.worker.main import WorkerNameTaken, check_name_free
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
try:
    check_name_free(sys.argv[2])
except WorkerNameTaken as exc:
    print("TAKEN", exc, flush=True)
    sys.exit(3)
print("CLAIMED", flush=True)
time.sleep(3)
"""


def test_two_workers_started_together_get_the_name_once(studio_env: dict[str, str]) -> None:
    for _ in range(2):
        name = f"twin-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        at = time.time() + 12
        procs = [subprocess.Popen([sys.executable, "-c", CLAIM, str(at), name], cwd=ROOT,
                                  env=studio_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 3], outs
        taken = next(o for o, _ in outs if o.startswith("TAKEN"))
        assert "already running" in taken and "--name" in taken


def test_a_dead_workers_name_can_be_claimed_again(studio_env: dict[str, str]) -> None:
    name = f"again-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    for _ in range(2):  # the first process ends (dead): the second takes the name over
        out = subprocess.run([sys.executable, "-c", CLAIM.replace("time.sleep(3)", ""), "0",
                              name], cwd=ROOT, env=studio_env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
