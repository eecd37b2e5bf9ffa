"""A Redis killed while the services are in use is started again by the keeper (issue 23 item
13): no new studio process is needed to bring it back."""

from __future__ import annotations

import os
import signal
import time


def test_the_keeper_starts_a_killed_redis_again(studio_env: dict[str, str]) -> None:
    from backend.config import get_settings
    from backend.db import get_engine
    from backend.embedded import embedded_redis

    get_engine()  # this process uses the services (the keeper watches them)
    server = embedded_redis(get_settings())
    assert server.ping()
    pid = server.server_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    back = False
    while time.monotonic() < deadline:
        time.sleep(0.2)
        new = server.server_pid()
        if new is not None and new != pid and server.ping():
            back = True
            break
    assert back, "the embedded Redis was not started again"
