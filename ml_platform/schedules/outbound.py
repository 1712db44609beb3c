"""Where a notification webhook may go, and the one way it is posted (no server-side request forgery).

A webhook URL is a person's choice of a host our servers then call, so a URL
naming (or resolving to) a loopback, private, link-local, multicast, reserved
or unspecified address, or the cloud metadata address, would let them reach
what only the servers can. Those are refused when the target is saved and
again at every send (DNS may have changed since), unless the host is listed in
``NOTIFICATION_ALLOWED_HOSTS``. The send connects to the very address that was
checked (no second lookup a rebinding DNS could answer differently), keeps the
host name for the Host header and the TLS certificate, and never follows a
redirect (http.client does not; a 3xx is an answer like any other non-2xx).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

METADATA = ipaddress.ip_address("169.254.169.254")
KINDS = [
    ("unspecified", "an unspecified"),
    ("loopback", "a loopback"),
    ("link_local", "a link-local"),
    ("multicast", "a multicast"),
    ("reserved", "a reserved"),
    ("private", "a private"),
]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValueError):
    """The URL may not be called; the message says why, without the addresses it resolved to."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    target: str  # the path and query
    address: str  # the checked address the connection goes to


def forbidden(address: IPAddress) -> str:
    """What kind of non-public address ``address`` is, or "" for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address == METADATA:
        return "the cloud metadata address"
    # Most specific first: Python counts loopback, link-local and unspecified addresses as private too.
    for kind, named in KINDS:
        if getattr(address, f"is_{kind}"):
            return f"{named} address"
    return "" if address.is_global else "a non-public address"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to now (a literal address resolves to itself)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(sockaddr[0].split("%")[0]) for *_, sockaddr in found]


def allowed_hosts() -> set[str]:
    return {host.lower().rstrip(".") for host in settings.NOTIFICATION_ALLOWED_HOSTS}


def vet(url: str) -> Destination:
    """The destination of ``url`` when every address it resolves to is public (or its host allowed), else Refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("its port is not a number from 0 to 65535") from None
    host = parts.hostname
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError, ValueError):
        raise Refused(f"its host {host} does not resolve") from None
    if not addresses:
        raise Refused(f"its host {host} does not resolve")
    if host.lower().rstrip(".") not in allowed_hosts():
        for address in addresses:
            if kind := forbidden(address):
                raise Refused(
                    f"its host {host} points at {kind}; only public addresses are called "
                    "unless NOTIFICATION_ALLOWED_HOSTS lists the host"
                )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, host, port, target, str(addresses[0]))


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    """POST ``body`` to ``url`` (vetted now, Refused otherwise): the answer's status and its first 500 characters."""
    destination = vet(url)
    kind = http.client.HTTPSConnection if destination.scheme == "https" else http.client.HTTPConnection
    connection = kind(destination.host, destination.port, timeout=timeout)

    def to_checked_address(_address, timeout=None, source_address=None, **_):
        return socket.create_connection((destination.address, destination.port), timeout, source_address)

    connection._create_connection = to_checked_address  # http.client's hook: connect where vet() looked
    try:
        connection.request("POST", destination.target, body=body, headers=headers)
        answer = connection.getresponse()
        if 300 <= answer.status < 400:
            return answer.status, f"a redirect (to {answer.getheader('Location', 'nowhere')}), not followed"
        return answer.status, answer.read(500).decode(errors="replace")
    finally:
        connection.close()
