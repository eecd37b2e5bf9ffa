"""Outbound HTTP for tools, guarded against server-side request forgery.

A tool's URL may only reach public addresses: loopback, private, link-local (cloud metadata
services live there), shared, multicast, reserved and unspecified addresses are refused, in every
spelling (``127.1``, ``2130706433``, ``0177.0.0.1``, ``0x7f.0.0.1``, ``[::1]``,
``[::ffff:127.0.0.1]``, 6to4 and NAT64 forms), as are names that resolve to them and redirects
that lead to them. An admin may allow-list a host (e.g. an intranet service). Every request has a
total deadline and a cap on the bytes read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

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


def check_url(url: str, *, allowed_hosts: Collection[str] = (),
              resolve: Resolver = _system_resolve) -> str:
    """Refuse URLs tools may not reach (``BlockedAddress`` saying why); return the host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"Only http and https URLs are allowed (got {parts.scheme or 'none'!r}).")
    host = parts.hostname or ""
    if not host:
        raise BlockedAddress(f"The URL {url!r} has no host.")
    if host_allowed(host, allowed_hosts):
        return host
    if host.lower().rstrip(".") in BLOCKED_NAMES or host.lower().endswith(".localhost"):
        raise BlockedAddress(f"Tools may not reach {host}: it is a local name. An admin may "
                             "allow-list the host if it is meant to be reached.")
    literal = parse_host_ip(host)
    addresses = [literal] if literal is not None else [
        ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host)]
    for ip in addresses:
        why = address_blocked(ip)
        if why:
            shown = host if literal is not None else f"{host} ({ip})"
            raise BlockedAddress(f"Tools may not reach {shown}: it is {why}. An admin may "
                                 "allow-list the host if it is meant to be reached.")
    return host


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
    """One guarded request: every hop (redirects included) is checked, the whole exchange must
    end within ``timeout_s`` and the body may not exceed ``max_bytes``."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(follow_redirects=False, timeout=timeout_s, transport=transport) as client:
        current, m, body, q = url, method.upper(), json_body, params
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(current, allowed_hosts=allowed_hosts, resolve=resolve)
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
