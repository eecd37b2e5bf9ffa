"""Outbound HTTP for tools, guarded against server-side request forgery.

A tool's URL may only reach public addresses: loopback, private, link-local (cloud metadata
services live there), shared, multicast, reserved and unspecified addresses are refused, in every
spelling (``127.1``, ``2130706433``, ``0177.0.0.1``, ``0x7f.0.0.1``, ``[::1]``,
``[::ffff:127.0.0.1]``, 6to4 and NAT64 forms), as are names that resolve to them and redirects
that lead to them. An admin may allow-list a host (e.g. an intranet service). Every request has a
total deadline and a cap on the bytes read.

DNS pinning: a name is resolved once, when it is checked, and the connection goes to exactly the
addresses that were checked (the transports below never resolve a name themselves), so a DNS
answer that changes between the check and the connection (DNS rebinding) cannot lead a tool to a
local address. The URL keeps its name: the Host header, TLS SNI and certificate verification use
it. A host nobody checked is never connected to (a redirect is checked and pinned before it is
followed). Allow-listed hosts are connected to by name.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_NAMES = frozenset({
    "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal",
})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_REDIRECTS = 5

Resolver = Callable[[str], list[str]]


class BlockedAddress(ValueError):
    """The URL leads to an address tools may not reach."""


class FetchError(RuntimeError):
    """The request failed (timeout, too large, network); the message says which."""


def _system_resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise FetchError(f"The host {host!r} could not be resolved ({exc.strerror}).") from None
    return sorted({str(info[4][0]) for info in infos})


def parse_host_ip(host: str) -> IP | None:
    """The address a host string denotes, if it is a literal one in any form a resolver or a
    browser accepts (dotted, decimal, octal, hex, shortened IPv4; bracketed IPv6 with zone)."""
    h = host.strip().strip("[]").split("%", 1)[0].rstrip(".")
    if not h:
        return None
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if all(c in "0123456789abcdefxABCDEFX." for c in h) and any(c.isdigit() for c in h):
        try:  # inet_aton accepts the legacy forms: 127.1, 2130706433, 0177.0.0.1, 0x7f.1
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
    if packed[:12] == bytes(12) and int(ip) > 1:
        return ipaddress.IPv4Address(packed[12:])
    return None


def address_blocked(ip: IP) -> str | None:
    """Why tools may not reach ``ip`` (None: they may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = address_blocked(inner)
            return f"{why} (inside the IPv6 address {ip})" if why else None
    for attr, why in (("is_loopback", "a loopback address"), ("is_link_local",
                      "a link-local address (cloud metadata lives there)"),
                      ("is_private", "a private address"), ("is_multicast", "a multicast address"),
                      ("is_unspecified", "an unspecified address"),
                      ("is_reserved", "a reserved address")):
        if getattr(ip, attr):
            return why
    if not ip.is_global:
        return "not a public address"
    return None


def host_allowed(host: str, allowed: Collection[str]) -> bool:
    h = host.strip().strip("[]").lower().rstrip(".")
    return h in {a.strip().lower().rstrip(".") for a in allowed}


@dataclass(frozen=True)
class CheckedHost:
    """A URL's host as checked: ``key`` is the host as the HTTP stack will name it when it
    connects; ``addresses`` are the only ones it may connect to (empty: allow-listed, connect
    by name)."""

    host: str
    key: str
    addresses: tuple[str, ...]


def _host_key(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def check_host(url: str, *, allowed_hosts: Collection[str] = (),
               resolve: Resolver = _system_resolve) -> CheckedHost:
    """Refuse URLs tools may not reach (``BlockedAddress`` saying why); else the host and the
    checked addresses a connection to it must use."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"Only http and https URLs are allowed (got {parts.scheme or 'none'!r}).")
    host = parts.hostname or ""
    if not host:
        raise BlockedAddress(f"The URL {url!r} has no host.")
    try:  # the name as httpx will hand it to the transport (IDNA-encoded, brackets removed)
        key = _host_key(httpx.URL(url).raw_host.decode("ascii"))
    except (httpx.InvalidURL, UnicodeError):
        raise BlockedAddress(f"The URL {url!r} is not a valid URL.") from None
    if host_allowed(host, allowed_hosts):
        return CheckedHost(host=host, key=key, addresses=())
    if host.lower().rstrip(".") in BLOCKED_NAMES or host.lower().endswith(".localhost"):
        raise BlockedAddress(f"Tools may not reach {host}: it is a local name. An admin may "
                             "allow-list the host if it is meant to be reached.")
    literal = parse_host_ip(host)
    addresses = [literal] if literal is not None else [
        ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(key)]
    if not addresses:
        raise FetchError(f"The host {host!r} could not be resolved.")
    for ip in addresses:
        why = address_blocked(ip)
        if why:
            shown = host if literal is not None else f"{host} ({ip})"
            raise BlockedAddress(f"Tools may not reach {shown}: it is {why}. An admin may "
                                 "allow-list the host if it is meant to be reached.")
    return CheckedHost(host=host, key=key, addresses=tuple(str(ip) for ip in addresses))


def check_url(url: str, *, allowed_hosts: Collection[str] = (),
              resolve: Resolver = _system_resolve) -> str:
    """Refuse URLs tools may not reach (``BlockedAddress`` saying why); return the host."""
    return check_host(url, allowed_hosts=allowed_hosts, resolve=resolve).host


# ------------------------------------------------------------------------ pinned transports

Pins = dict[str, tuple[str, ...]]  # host key -> checked addresses (empty: connect by name)


def _pinned(pins: Pins, host: str) -> tuple[str, ...] | None:
    """The addresses to connect to for ``host`` (None: by name, it is allow-listed)."""
    key = _host_key(host)
    if key not in pins:
        raise httpcore.ConnectError(f"{host} was not checked; tools connect only to checked hosts.")
    return pins[key] or None


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(self, pins: Pins) -> None:
        self.pins = pins
        self.inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        addresses = _pinned(self.pins, host)
        if addresses is None:
            return self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        error: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address,
                                              socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Tools do not connect to unix sockets.")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncPinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, pins: Pins) -> None:
        self.pins = pins
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        addresses = _pinned(self.pins, host)
        if addresses is None:
            return await self.inner.connect_tcp(host, port, timeout, local_address,
                                                socket_options)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address,
                                                    socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Tools do not connect to unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport, connecting only to the addresses in ``pins`` (no proxy, no DNS)."""

    def __init__(self, pins: Pins) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_PinnedBackend(pins))


class AsyncPinnedTransport(httpx.AsyncHTTPTransport):
    """The asynchronous :class:`PinnedTransport` (for MCP over HTTP)."""

    def __init__(self, pins: Pins) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_AsyncPinnedBackend(pins))


def pinned_async_client(url: str, *, allowed_hosts: Collection[str] = (),
                        resolve: Resolver = _system_resolve, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``url``'s host, checked now and pinned to the addresses
    checked; other hosts (a redirect elsewhere) are refused. ``kwargs``: the client's."""
    checked = check_host(url, allowed_hosts=allowed_hosts, resolve=resolve)
    return httpx.AsyncClient(transport=AsyncPinnedTransport({checked.key: checked.addresses}),
                             trust_env=False, **kwargs)


@dataclass
class FetchResult:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def fetch(method: str, url: str, *, headers: Mapping[str, str] | None = None,
          params: Mapping[str, Any] | None = None, json_body: Any = None,
          timeout_s: float = 10.0, max_bytes: int = 1_000_000,
          allowed_hosts: Collection[str] = (), resolve: Resolver = _system_resolve,
          transport: httpx.BaseTransport | None = None) -> FetchResult:
    """One guarded request: every hop (redirects included) is checked and connects only to the
    addresses checked, the whole exchange must end within ``timeout_s`` and the body may not
    exceed ``max_bytes``. ``transport`` replaces the pinned one (tests only)."""
    deadline = time.monotonic() + timeout_s
    pins: Pins = {}
    with httpx.Client(follow_redirects=False, timeout=timeout_s, trust_env=False,
                      transport=transport or PinnedTransport(pins)) as client:
        current, m, body, q = url, method.upper(), json_body, params
        for _hop in range(MAX_REDIRECTS + 1):
            checked = check_host(current, allowed_hosts=allowed_hosts, resolve=resolve)
            pins[checked.key] = checked.addresses
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError(f"The request timed out after {timeout_s:g} s.")
            try:
                request = client.build_request(m, current, headers=dict(headers or {}), params=q,
                                               json=body, timeout=left)
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchError(f"The request timed out after {timeout_s:g} s.") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"The request failed: {type(exc).__name__}.") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    current = urljoin(str(response.url), location)
                    if response.status_code in (301, 302, 303) and m != "GET":
                        m, body = "GET", None
                    q = None
                    continue
                chunks: list[bytes] = []
                size = 0
                try:
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchError(f"The response is larger than the {max_bytes:,} "
                                             "bytes a tool may read.")
                        if time.monotonic() > deadline:
                            raise FetchError(f"The request timed out after {timeout_s:g} s.")
                        chunks.append(chunk)
                except httpx.TimeoutException:
                    raise FetchError(f"The request timed out after {timeout_s:g} s.") from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"Reading the response failed: {type(exc).__name__}.") \
                        from None
                return FetchResult(status=response.status_code, headers=dict(response.headers),
                                   body=b"".join(chunks), url=str(response.url))
            finally:
                response.close()
    raise FetchError(f"More than {MAX_REDIRECTS} redirects.")
