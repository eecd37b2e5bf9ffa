"""Tools from MCP servers: a local command spoken to over stdio, or a streamable-HTTP URL (checked
by the same SSRF guard as HTTP tools and pinned to the addresses checked; a redirect to another
host is refused).

Each listing or call opens its own short session, so nothing lingers between turns.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Collection
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


def _run(coro: Any, timeout_s: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise ToolError(f"The MCP server did not answer within {timeout_s:g} s.") from None


async def _with_session(spec: McpServerSpec, fn: Callable[[Any], Any],
                        allowed_hosts: Collection[str]) -> Any:
    from mcp import ClientSession

    if spec.transport == "http":
        from mcp.client.streamable_http import streamable_http_client

        try:  # checked once; every connection of the session goes to the checked addresses
            client_ = net.pinned_async_client(spec.url, allowed_hosts=allowed_hosts,
                                              headers=spec.headers, timeout=30)
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


def list_tools(spec: McpServerSpec, *, allowed_hosts: Collection[str] = (),
               timeout_s: float = 20.0) -> list[McpToolInfo]:
    async def go(session: Any) -> list[McpToolInfo]:
        res = await session.list_tools()
        return [McpToolInfo(name=t.name, description=t.description or t.name,
                            parameters=dict(t.inputSchema or {"type": "object"}))
                for t in res.tools]

    try:
        return list(_run(_with_session(spec, go, allowed_hosts), timeout_s))
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
        return str(_run(_with_session(spec, go, allowed_hosts), timeout_s))
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
