"""`GET /.well-known/jwks.json`: identity's public keys, for anyone verifying access tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import Jwks
from saas.gateway.dependencies import AnonymousIdentity
from saas.gateway.problems import UPSTREAM, problems

router = APIRouter(tags=["auth"])


@router.get("/.well-known/jwks.json", response_model=Jwks, responses=problems(*UPSTREAM))
async def jwks(identity: AnonymousIdentity, response: Response) -> Jwks:
    """The JSON Web Key Set whose keys verify access tokens (by `kid`). New keys appear here
    before they sign anything; retired ones stay until their tokens have expired."""
    response.headers["Cache-Control"] = "public, max-age=60"
    return await identity("jwks", Empty(), Jwks)
