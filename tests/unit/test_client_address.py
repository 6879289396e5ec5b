"""Who the client is behind proxies: only trusted hops' word is taken, read from the right."""

from __future__ import annotations

import pytest

from saas.gateway.client_address import TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"])


def test_without_trusted_proxies_the_header_is_ignored():
    assert TrustedProxies().client("203.0.113.5", ["198.51.100.1"]) == "203.0.113.5"


def test_from_an_untrusted_peer_the_header_is_ignored():
    assert PROXIES.client("203.0.113.5", ["198.51.100.1"]) == "203.0.113.5"


def test_behind_one_trusted_proxy_the_last_entry_is_the_client():
    assert PROXIES.client("10.0.0.2", ["198.51.100.1"]) == "198.51.100.1"


def test_a_client_cannot_forge_its_way_past_the_proxies():
    # The client sent "X-Forwarded-For: 1.1.1.1"; the ingress appended the real address.
    assert PROXIES.client("10.0.0.2", ["1.1.1.1, 198.51.100.1"]) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    header = ["6.6.6.6, 198.51.100.1, 10.0.0.7", "10.0.0.9"]  # two headers, in order
    assert PROXIES.client("10.0.0.2", header) == "198.51.100.1"


def test_ipv6_proxies_and_clients():
    assert PROXIES.client("fd00::2", ["2001:db8::7"]) == "2001:db8::7"


@pytest.mark.parametrize("junk", ["unknown", "", "1.2.3.4.5", "<script>"])
def test_junk_in_the_chain_stops_the_walk_at_the_last_trusted_hop(junk):
    assert PROXIES.client("10.0.0.2", [f"198.51.100.1, {junk}"]) == "10.0.0.2"


def test_a_chain_of_nothing_but_proxies_ends_at_the_leftmost():
    assert PROXIES.client("10.0.0.2", ["10.0.0.3"]) == "10.0.0.3"


def test_forwarded_proto_is_believed_only_from_a_trusted_peer():
    assert PROXIES.forwarded_tls("10.0.0.2", ["https"])
    assert not PROXIES.forwarded_tls("203.0.113.5", ["https"])
    assert not PROXIES.forwarded_tls("10.0.0.2", ["https, http"])
