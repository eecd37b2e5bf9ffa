"""An API key's request rate: at most N requests in any 60 seconds (a sliding window).

Each key keeps the times of its counted requests of the last window in a Redis sorted set; one
Lua script drops the ones that left the window, counts the rest and adds the new request only
when fewer than N remain, atomically (concurrent API processes cannot both take the last place).
Unlike a fixed per-minute window, this never lets 2N requests through across a minute boundary.
Only requests that are served are counted: callers take a place once the request is known to be
valid and its target exists, so refused requests (404, 400, 403) cost nothing.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

WINDOW_S = 60.0

# KEYS[1]: the key's set. ARGV: now (ms), window (ms), limit, a unique member.
# Returns {1, 0} when taken, {0, ms until the oldest counted request leaves the window} if not.
_TAKE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return {0, wait}
"""


def redis_key(api_key_id: int) -> str:
    return f"studio:keys:rate:{api_key_id}"


def take(r: Any, api_key_id: int, limit: int, *, now: float | None = None,
         window_s: float = WINDOW_S) -> float:
    """Count one request of the key if it has a place left: 0.0; else the seconds until one
    frees (nothing is counted). ``now``: seconds since the epoch (tests)."""
    now_ms = (time.time() if now is None else now) * 1000.0
    taken, wait_ms = r.eval(_TAKE, 1, redis_key(api_key_id), f"{now_ms:.3f}",
                            f"{window_s * 1000.0:.3f}", int(limit), uuid.uuid4().hex)
    return 0.0 if int(taken) else max(1.0, math.ceil(float(wait_ms) / 1000.0))
