"""Who the client is: the peer's address, or what trusted proxies say it is (pure rules).

`X-Forwarded-For` is a list any client can start: each proxy appends the address it received the
request from. Only the entries appended by proxies we trust mean anything, so the list is read
from the right: while the hop in hand is a trusted proxy, the entry it appended (the next one to
the left) is believed; the first hop that is not a trusted proxy is the client. With no trusted
proxies configured (`TRUSTED_PROXIES`, CIDRs) the header is ignored and the peer is the client.
The same goes for `X-Forwarded-Proto`: believed only from a trusted peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in cidrs
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        ip = _parse(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address, given the peer's and the `X-Forwarded-For` values in order."""
        if not self.networks or not self.trusts(peer):
            return peer
        hop = peer
        for entry in reversed([e.strip() for v in forwarded_for for e in v.split(",")]):
            if not self.trusts(hop):
                break
            if _parse(entry) is None:  # not an address: nothing left of it can be believed
                break
            hop = entry
        return hop

    def forwarded_tls(self, peer: str | None, forwarded_proto: Sequence[str]) -> bool:
        """Whether a trusted proxy says the client came over TLS."""
        if not forwarded_proto or not self.trusts(peer):
            return False
        last = forwarded_proto[-1].split(",")[-1].strip().lower()
        return last == "https"


def _parse(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None
