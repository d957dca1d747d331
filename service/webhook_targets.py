"""Where a webhook may be sent (issue 11, point 3: SSRF).

A webhook URL is chosen by a shop admin, and the delivery worker POSTs to it from inside the deployment's
network. Left alone, that makes the worker a proxy into everything the deployment can reach: the cloud
metadata service (169.254.169.254, `metadata.google.internal`), the database, admin ports on loopback, the
private network. So a URL is checked twice:

- at registration (`check_url`): http(s) only, no userinfo (`https://user@host` hides the real host from a
  reader), no blocked name, and the name must resolve to public addresses only;
- at every attempt (`resolve_target`): the name is resolved again and every address checked, and the POST is
  sent to the address that was checked (the URL's host replaced by the IP; the `Host` header and the TLS SNI /
  certificate check keep the name). A name that resolved to a public address at registration and to
  127.0.0.1 now (DNS rebinding) is refused, and the HTTP client never resolves the name a second time.

An address is allowed only when it is globally reachable unicast (`ipaddress`'s `is_global`, which leaves out
loopback, private, link-local, CGNAT 100.64/10, documentation and reserved ranges), not multicast and not
unspecified. IPv4-mapped (`::ffff:127.0.0.1`), 6to4, Teredo and NAT64 (`64:ff9b::/96`) IPv6 addresses are
judged by the IPv4 address they carry. Numeric host forms (`2130706433`, `127.1`, `0x7f.1`) are what the
resolver makes of them (127.0.0.1 here), so they are refused like the dotted form.

`SHARECART_WEBHOOK_ALLOW_LOOPBACK=1` additionally allows loopback addresses (127/8, ::1) and the `localhost`
names, for development and the test suite, whose receivers listen on 127.0.0.1. Nothing else is ever allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_LOOPBACK_ENV = "SHARECART_WEBHOOK_ALLOW_LOOPBACK"
MAX_URL_LENGTH = 2048
# Names that must never be a target whatever they resolve to: cloud metadata endpoints and the names reserved
# for hosts inside a network (RFC 6761 .localhost, RFC 6762 .local, RFC 8375 home.arpa, ICANN's .internal).
BLOCKED_NAMES = {
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
}
BLOCKED_SUFFIXES = (".internal", ".local", ".home.arpa", ".localdomain", ".lan", ".intranet", ".corp")
LOOPBACK_NAMES = ("localhost", ".localhost")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The URL or what it resolves to may not be a webhook target. The message is for the operator's log;
    an admin is told only that the URL is not allowed (or, for an attempt, a generic failure)."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to `ip`, speak to `host` (Host header, SNI, certificate name)."""

    scheme: str
    host: str
    port: int
    ip: str
    url: str  # the original URL
    pinned_url: str  # the same URL with its host replaced by the checked IP
    host_header: str


def allow_loopback() -> bool:
    from service.settings import settings

    return settings().webhook_allow_loopback


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, loopback: bool) -> bool:
    """True for a globally reachable unicast address (and loopback when `loopback`)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(embedded, loopback=loopback)
    if ip.is_loopback:
        return loopback
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_link_local)


@dataclass(frozen=True)
class _Parsed:
    scheme: str
    host: str
    port: int
    netloc_host: str


def parse_url(url: str, *, loopback: bool) -> _Parsed:
    """The syntax half of the check: scheme, userinfo, length, blocked names. Raises TargetRefused."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise TargetRefused("the URL is too long")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetRefused(f"the URL does not parse: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("the URL must be http(s)")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL may not carry a user name or password")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise TargetRefused("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise TargetRefused("the host name is not valid") from None
    if host in BLOCKED_NAMES or host.endswith(BLOCKED_SUFFIXES):
        raise TargetRefused(f"the host {host} is internal")
    if (host == LOOPBACK_NAMES[0] or host.endswith(LOOPBACK_NAMES[1])) and not loopback:
        raise TargetRefused(f"the host {host} is loopback")
    netloc_host = parts.netloc.rpartition("@")[2]
    return _Parsed(scheme, host, port or (443 if scheme == "https" else 80), netloc_host)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in infos))


resolver = _getaddrinfo
"""How names are resolved (a module attribute, so a test can stand in a name server for names that have none)."""


async def resolve_target(url: str, *, loopback: bool | None = None) -> Target:
    """Resolve the URL's host and check every address it has; the Target pins the first one. Raises
    TargetRefused (also when the name does not resolve)."""
    loopback = allow_loopback() if loopback is None else loopback
    p = parse_url(url, loopback=loopback)
    try:
        addresses = await resolver(p.host, p.port)
    except (OSError, UnicodeError) as e:
        raise TargetRefused(f"the host {p.host} does not resolve: {e}") from None
    if not addresses:
        raise TargetRefused(f"the host {p.host} does not resolve")
    ips = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            raise TargetRefused(f"the host {p.host} resolved to {a!r}") from None
        if not address_allowed(ip, loopback=loopback):
            raise TargetRefused(f"the host {p.host} resolves to {ip}, which is not a public address")
        ips.append(ip)
    ip = ips[0]
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    parts = urlsplit(url)
    pinned = parts._replace(netloc=f"{literal}:{p.port}").geturl()
    return Target(
        scheme=p.scheme, host=p.host, port=p.port, ip=str(ip), url=url, pinned_url=pinned, host_header=p.netloc_host
    )


async def check_url(url: str) -> Target:
    """Registration: the same check as at every attempt."""
    return await resolve_target(url)
