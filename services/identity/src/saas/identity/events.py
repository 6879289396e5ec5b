"""Identity's events: where a change came from, and the one call that publishes it.

Every change is written with `publish(session, origin, payload)` in the transaction that makes it,
through identity's outbox. `Origin` carries who acted, the request id (the events'
`correlation_id`) and the client's address, so handlers never assemble envelopes by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.bus import RequestContext
from saas.common.events import Actor, new_event
from saas.common.events.outbox import Outbox
from saas.identity.store.tables import SCHEMA

SOURCE = "saas/identity"
OUTBOX = Outbox(SCHEMA)


@dataclass(frozen=True)
class Origin:
    actor: Actor
    correlation_id: str | None = None
    ip_address: str | None = None

    @classmethod
    def of_request(cls, ctx: RequestContext, user_id: str | None = None) -> Origin:
        """A request: the user if known (else the service itself), its id and the client address."""
        actor = Actor.user(user_id) if user_id else Actor.system("identity")
        return cls(actor, ctx.request_id, ctx.client_ip)

    @classmethod
    def system(cls, what: str, correlation_id: str | None = None) -> Origin:
        return cls(Actor.system(what), correlation_id)

    def as_user(self, user_id: str) -> Origin:
        """The same request, now known to be this user's (after a login, say)."""
        return replace(self, actor=Actor.user(user_id))


async def publish(
    session: AsyncSession,
    origin: Origin,
    *payloads: BaseModel,
    tenant_id: str | None = None,
    subject: str | None = None,
) -> None:
    await OUTBOX.add(
        session,
        *(
            new_event(
                payload,
                source=SOURCE,
                actor=origin.actor,
                tenant_id=tenant_id,
                subject=subject,
                correlation_id=origin.correlation_id,
            )
            for payload in payloads
        ),
    )
