"""The rate-limit rules as pure functions: the policy table, GCRA, the header fields."""

from __future__ import annotations

import pytest

from saas.gateway.ratelimit.gcra import Decision, LocalLimiter, gcra, retry_after_seconds
from saas.gateway.ratelimit.headers import rate_limit_headers
from saas.gateway.ratelimit.policy import (
    Limit,
    Policies,
    Policy,
    Rate,
    account_partition,
    address_partition,
    limits_for,
    parse_rate,
    tenant_of,
)
from saas.gateway.settings import GatewaySettings

POLICIES = Policies.from_settings(GatewaySettings())


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("300/minute", Rate(300, 60)),
        ("20/60", Rate(20, 60)),
        ("20/60s", Rate(20, 60)),
        (" 5 / hour ", Rate(5, 3600)),
        ("1/0.5", Rate(1, 0.5)),
        ("10/day", Rate(10, 86400)),
    ],
)
def test_rates_read_as_a_count_per_period(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "300", "0/minute", "5/0", "5/fortnight", "-1/60", "a/b"])
def test_what_is_not_a_rate_is_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_settings_refuse_a_rate_that_does_not_read():
    with pytest.raises(ValueError, match="RATE_LIMIT_USER|rate_limit_user"):
        GatewaySettings(rate_limit_user="lots")


def names(limits: list[Limit]) -> list[tuple[str, str]]:
    return [(limit.policy.name, limit.partition) for limit in limits]


def test_login_counts_per_address_and_per_account():
    limits = limits_for(
        POLICIES,
        method="POST",
        path="/api/v1/auth/login",
        address="203.0.113.9",
        email=" Ada@Example.COM",
    )
    assert names(limits) == [
        ("auth-address", "203.0.113.9"),
        ("auth-account", account_partition("ada@example.com")),
    ]


def test_register_and_reset_requests_count_per_account_too_but_reset_confirmation_only_per_address():
    for path in ("/api/v1/auth/register", "/api/v1/auth/password-reset/request"):
        limits = limits_for(POLICIES, method="POST", path=path, address="1.2.3.4", email="a@b.co")
        assert [n for n, _ in names(limits)] == ["auth-address", "auth-account"]
    confirm = limits_for(
        POLICIES,
        method="POST",
        path="/api/v1/auth/password-reset/confirm",
        address="1.2.3.4",
        email="a@b.co",
    )
    assert names(confirm) == [("auth-address", "1.2.3.4")]


def test_an_authenticated_request_counts_per_user_and_under_a_tenant_per_tenant():
    me = limits_for(
        POLICIES, method="GET", path="/api/v1/users/me", address="1.2.3.4", user_id="u1"
    )
    assert names(me) == [("user", "u1")]
    members = limits_for(
        POLICIES, method="GET", path="/api/v1/tenants/Acme/members", address="1.2.3.4", user_id="u1"
    )
    assert names(members) == [("user", "u1"), ("tenant", "acme")]


def test_without_a_valid_token_a_request_counts_per_address():
    limits = limits_for(POLICIES, method="GET", path="/api/v1/users/me", address="1.2.3.4")
    assert names(limits) == [("anonymous", "1.2.3.4")]


def test_a_get_of_an_auth_path_is_no_auth_attempt():
    limits = limits_for(POLICIES, method="GET", path="/api/v1/auth/login", address="1.2.3.4")
    assert names(limits) == [("anonymous", "1.2.3.4")]


@pytest.mark.parametrize(
    ("path", "slug"),
    [
        ("/api/v1/tenants/acme", "acme"),
        ("/api/v1/tenants/acme/audit-events/verify", "acme"),
        ("/api/v1/tenants/", None),
        ("/api/v1/tenants", None),
        ("/api/v1/users/me", None),
    ],
)
def test_the_tenant_of_a_path(path, slug):
    assert tenant_of(path) == slug


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4():
    assert address_partition("2001:db8:1:2:aaaa::1") == address_partition("2001:db8:1:2:bbbb::9")
    assert address_partition("2001:db8:1:2::1") != address_partition("2001:db8:1:3::1")
    assert address_partition("::ffff:198.51.100.7") == "198.51.100.7"


def test_an_account_is_the_same_whatever_its_case_or_spaces_and_is_never_stored_in_clear():
    assert account_partition("  Ada@Example.com ") == account_partition("ada@example.com")
    assert "ada" not in account_partition("ada@example.com")


# -- GCRA ----------------------------------------------------------------------------------------
FIVE_A_MINUTE = Rate(5, 60)


def run(times: list[float], rate: Rate = FIVE_A_MINUTE) -> list[Decision]:
    tat = None
    decisions = []
    for now in times:
        decision, new_tat = gcra(tat, now, rate)
        if decision.allowed:
            tat = new_tat
        decisions.append(decision)
    return decisions


def test_a_burst_of_the_limit_is_allowed_and_counts_down_then_refused():
    decisions = run([100.0] * 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert decisions[0].reset == pytest.approx(12)  # one request's share comes back in 12 s
    assert decisions[4].reset == pytest.approx(60)


def test_retry_after_is_honest_neither_early_nor_late():
    refused = run([100.0] * 6)[-1]
    assert refused.retry_after == pytest.approx(12)
    assert not run([100.0] * 5 + [111.9])[-1].allowed
    assert run([100.0] * 5 + [112.0])[-1].allowed
    assert retry_after_seconds([Decision(False, 0, 60, 11.2)]) == 12


def test_after_a_quiet_period_the_whole_burst_is_back():
    decisions = run([0.0] * 5 + [60.0] * 5 + [60.0])
    assert [d.allowed for d in decisions] == [True] * 10 + [False]


def test_a_steady_rate_at_the_limit_is_never_refused():
    assert all(d.allowed for d in run([float(i * 12) for i in range(50)]))


def test_a_refused_request_counts_against_no_limit_in_memory():
    clock = [0.0]
    limiter = LocalLimiter(clock=lambda: clock[0])
    strict = Limit(Policy("strict", Rate(1, 60)), "x")
    loose = Limit(Policy("loose", Rate(100, 60)), "x")
    assert [d.allowed for d in limiter.check([strict, loose])] == [True, True]
    refused = limiter.check([strict, loose])
    assert [d.allowed for d in refused] == [False, True]
    assert limiter.check([loose])[0].remaining == 98  # only the allowed request counted


def test_the_local_limiter_stays_bounded():
    clock = [0.0]
    limiter = LocalLimiter(max_keys=10, clock=lambda: clock[0])
    policy = Policy("p", Rate(1, 60))
    for i in range(100):
        limiter.check([Limit(policy, str(i))])
    assert len(limiter._tats) <= 10


# -- header fields -------------------------------------------------------------------------------
def test_the_header_fields_name_each_policy_with_quota_window_remaining_and_reset():
    user = Limit(Policy("user", Rate(600, 60)), "u1")
    tenant = Limit(Policy("tenant", Rate(3000, 60)), "acme")
    headers = dict(
        rate_limit_headers([user, tenant], [Decision(True, 599, 0.1), Decision(True, 2990, 0.2)])
    )
    assert headers[b"ratelimit-policy"] == b'"user";q=600;w=60, "tenant";q=3000;w=60'
    assert headers[b"ratelimit"] == b'"user";r=599;t=1, "tenant";r=2990;t=1'
    assert b"retry-after" not in headers


def test_a_refusal_says_when_to_come_back_rounded_up():
    limit = Limit(Policy("anonymous", Rate(5, 60)), "1.2.3.4")
    headers = dict(rate_limit_headers([limit], [Decision(False, 0, 59.5, 11.01)]))
    assert headers[b"retry-after"] == b"12"
    assert headers[b"ratelimit"] == b'"anonymous";r=0;t=60'
