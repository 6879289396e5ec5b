"""Real accounts for tests that need a caller: registered, logged in and given a role by identity
over the bus, exactly as tenancy makes a tenant's creator its owner."""

from __future__ import annotations

import uuid

import jwt

from saas.common.bus import BusClient
from saas.common.contracts.identity import (
    Accepted,
    AddOwner,
    LoginRequest,
    Membership,
    RegisterRequest,
    TokenPair,
)

PASSWORD = "a long and uncommon passphrase 4 tests"


async def signed_in(client: BusClient) -> tuple[str, str]:
    """A new account's user id and access token."""
    email = f"tester-{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    await client.request("identity", "register", RegisterRequest(**credentials), Accepted)
    pair = await client.request("identity", "login", LoginRequest(**credentials), TokenPair)
    user_id = jwt.decode(pair.access_token, options={"verify_signature": False})["sub"]
    return user_id, pair.access_token


async def owner_token(client: BusClient, tenant_id: str) -> str:
    """An access token of a new account that owns `tenant_id`."""
    user_id, token = await signed_in(client)
    request = AddOwner(tenant_id=tenant_id, user_id=user_id)
    await client.request("identity", "internal.add_owner", request, Membership)
    return token
