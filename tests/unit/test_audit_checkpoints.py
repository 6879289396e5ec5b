"""Tenant keys as NATS subject tokens: any key, one safe token, and back."""

import re

import pytest

from saas.audit.checkpoints import subject_for, subject_token, tenant_key_of

TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")  # no '.', '*', '>', white space, never empty


@pytest.mark.parametrize(
    "key", ["", "acme", "a.b.c", "*", ">", "with space", "tab\there", "ünïcødé", "x" * 100]
)
def test_any_tenant_key_becomes_one_safe_token_and_back(key):
    token = subject_token(key)
    assert TOKEN.fullmatch(token)
    assert tenant_key_of(token) == key
    assert subject_for(key) == f"audit.checkpoint.{token}"


def test_distinct_keys_never_share_a_subject():
    keys = ["", "a", "A", "a.b", "a_b", "a-b", "ab"]
    assert len({subject_for(k) for k in keys}) == len(keys)


@pytest.mark.parametrize("token", ["", "acme", "k!!", "k" + "_w"])
def test_tokens_that_were_never_issued_are_refused(token):
    with pytest.raises(ValueError):
        tenant_key_of(token)
