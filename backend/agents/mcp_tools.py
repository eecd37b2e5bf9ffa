"""Tools from MCP servers: a local command spoken to over stdio, or a streamable-HTTP URL (checked
by the same SSRF guard as HTTP tools and pinned to the addresses checked; a redirect to another
host is refused).

Sessions are kept per server configuration and reused across turns (see the pool below).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from backend.agents import net
from backend.agents.tools import AgentTool, ToolError


@dataclass
class McpServerSpec:
    name: str
    transport: str  # stdio | http
    command: str = ""
    args: list[str] = field(default_factory=list)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transport not in ("stdio", "http"):
            raise ValueError("An MCP server is reached over 'stdio' (a command) or 'http' (a URL).")
        if self.transport == "stdio" and not self.command.strip():
            raise ValueError("Give the command that starts the MCP server, e.g. python.")
        if self.transport == "http" and not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("Give the MCP server's URL, e.g. https://tools.example.com/mcp.")


@dataclass
class McpToolInfo:
    name: str
    description: str
    parameters: dict[str, Any]


async def _with_session(spec: McpServerSpec, fn: Callable[[Any], Any],
                        allowed_hosts: Collection[str]) -> Any:
    from mcp import ClientSession

    if spec.transport == "http":
        from mcp.client.streamable_http import streamable_http_client

        try:  # checked once; every connection of the session goes to the checked addresses
            client_ = await asyncio.to_thread(
                lambda: net.pinned_async_client(spec.url, allowed_hosts=allowed_hosts,
                                                headers=spec.headers, timeout=30))
        except (net.BlockedAddress, net.FetchError) as exc:
            raise ToolError(str(exc)) from None
        async with client_ as client, \
                streamable_http_client(spec.url, http_client=client) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await fn(session)
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=spec.command, args=list(spec.args),
                                   env={k: v for k, v in os.environ.items()
                                        if k in ("PATH", "PYTHONPATH", "HOME", "LANG")})
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await fn(session)


# ------------------------------------------------------------------------- session pool
#
# Starting an MCP server (a process, or an HTTP session) costs a second or more, so sessions are
# kept per server configuration (command, arguments, URL, headers, allow-list) and reused by
# every listing and call in this process; one idle for IDLE_S is closed, and listings are kept
# for LIST_TTL_S. A reused session is pinged first: a server that died is started again before
# the call (a server that dies during a call fails that call; the next one starts it again).
# The sessions live on one event loop in a daemon thread, the way their async context managers
# want (entered and left by the same task).

IDLE_S = 120.0
LIST_TTL_S = 30.0
PING_TIMEOUT_S = 5.0

Key = tuple[Any, ...]


def _key(spec: McpServerSpec, allowed_hosts: Collection[str]) -> Key:
    return (spec.transport, spec.command, tuple(spec.args), spec.url,
            tuple(sorted(spec.headers.items())), tuple(sorted(allowed_hosts)))


class _Connection:
    """One open session, held open by its own task until ``close``."""

    def __init__(self, spec: McpServerSpec, allowed_hosts: Collection[str]) -> None:
        self.spec = spec
        self.allowed_hosts = tuple(allowed_hosts)
        self.session: Any = None
        self.error: BaseException | None = None
        self.closed = False
        self.last_used = time.monotonic()
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._hold())
        await self._ready.wait()
        if self.error is not None:
            raise self.error

    async def _hold(self) -> None:
        try:
            await _with_session(self.spec, self._serve, self.allowed_hosts)
        except BaseException as exc:  # noqa: BLE001 - the opener (or the next user) sees it
            self.error = self.error or exc
        finally:
            self.closed = True
            self._ready.set()

    async def _serve(self, session: Any) -> None:
        self.session = session
        self._ready.set()
        await self._closing.wait()

    async def alive(self) -> bool:
        if self.closed or self.session is None:
            return False
        try:
            await asyncio.wait_for(self.session.send_ping(), PING_TIMEOUT_S)
            return True
        except Exception:  # noqa: BLE001 - dead or stuck: start it again
            return False

    def abort(self) -> None:
        self._closing.set()
        self.closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # noqa: BLE001 - closing a dead session
                pass
        self.closed = True


class _Pool:
    """The process's MCP sessions and tool listings."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.connections: dict[Key, _Connection] = {}
        self.listings: dict[Key, tuple[float, list[McpToolInfo]]] = {}
        self.starts = 0  # sessions opened (servers started), for tests and logs
        self._locks: dict[Key, asyncio.Lock] = {}
        threading.Thread(target=self._run, name="mcp-sessions", daemon=True).start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.create_task(self._reap())
        self.loop.run_forever()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(IDLE_S / 4, 30))
            now = time.monotonic()
            for key, conn in list(self.connections.items()):
                if conn.closed or now - conn.last_used > IDLE_S:
                    self.connections.pop(key, None)
                    await conn.close()

    async def _connection(self, spec: McpServerSpec, allowed_hosts: Collection[str]
                          ) -> _Connection:
        key = _key(spec, allowed_hosts)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one start at a time per server
            conn = self.connections.get(key)
            if conn is not None and not await conn.alive():
                self.connections.pop(key, None)
                await conn.close()
                conn = None
            if conn is None:
                conn = _Connection(spec, allowed_hosts)
                self.starts += 1
                try:
                    await conn.open()
                except BaseException:  # failed, or the caller gave up waiting: stop it
                    conn.abort()
                    raise
                self.connections[key] = conn
            conn.last_used = time.monotonic()
            return conn

    async def _use(self, spec: McpServerSpec, allowed_hosts: Collection[str],
                   fn: Callable[[Any], Any]) -> Any:
        conn = await self._connection(spec, allowed_hosts)
        try:
            return await fn(conn.session)
        except Exception:
            if not await conn.alive():  # the server died: the next use starts it again
                self.connections.pop(_key(spec, allowed_hosts), None)
                await conn.close()
            raise
        finally:
            conn.last_used = time.monotonic()

    def run(self, spec: McpServerSpec, allowed_hosts: Collection[str],
            fn: Callable[[Any], Any], timeout_s: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._use(spec, allowed_hosts, fn), self.loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ToolError(f"The MCP server did not answer within {timeout_s:g} s.") from None


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def pool() -> _Pool:
    """This process's session pool (a new one after a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = _Pool()
        return _pool


def list_tools(spec: McpServerSpec, *, allowed_hosts: Collection[str] = (),
               timeout_s: float = 20.0) -> list[McpToolInfo]:
    async def go(session: Any) -> list[McpToolInfo]:
        res = await session.list_tools()
        return [McpToolInfo(name=t.name, description=t.description or t.name,
                            parameters=dict(t.inputSchema or {"type": "object"}))
                for t in res.tools]

    p = pool()
    key = _key(spec, allowed_hosts)
    cached = p.listings.get(key)
    if cached is not None and time.monotonic() - cached[0] < LIST_TTL_S:
        return list(cached[1])
    try:
        tools = list(p.run(spec, allowed_hosts, go, timeout_s))
        p.listings[key] = (time.monotonic(), tools)
        return list(tools)
    except ToolError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server, in words
        raise ToolError(f"The MCP server {spec.name!r} could not be reached: "
                        f"{_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"[:300]


def call_tool(spec: McpServerSpec, name: str, arguments: dict[str, Any], *,
              allowed_hosts: Collection[str] = (), timeout_s: float = 20.0) -> str:
    async def go(session: Any) -> str:
        res = await session.call_tool(name, arguments,
                                      read_timeout_seconds=timedelta(seconds=timeout_s))
        parts = []
        for block in res.content:
            text = getattr(block, "text", None)
            parts.append(text if text is not None else json.dumps(block.model_dump(),
                                                                  default=str))
        text = "\n".join(parts)
        if res.isError:
            raise ToolError(text or f"The MCP tool {name!r} failed.")
        return text

    try:
        return str(pool().run(spec, allowed_hosts, go, timeout_s))
    except ToolError:
        raise
    except Exception as exc:  # noqa: BLE001
        inner: BaseException = exc
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        if isinstance(inner, ToolError):
            raise inner from None
        raise ToolError(f"The MCP tool {name!r} failed: {_describe(exc)}") from None


def mcp_tool(spec: McpServerSpec, info: McpToolInfo, *, allowed_hosts: Collection[str] = (),
             timeout_s: float = 20.0) -> AgentTool:
    def run(args: dict[str, Any]) -> str:
        return call_tool(spec, info.name, args, allowed_hosts=allowed_hosts, timeout_s=timeout_s)

    return AgentTool(name=info.name, description=info.description, parameters=info.parameters,
                     run=run, kind="mcp",
                     secrets=tuple(v for v in spec.headers.values() if len(v) > 3))
