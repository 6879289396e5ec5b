"""The message bus: one NATS connection per process, request/reply between services.

Events (JetStream streams, the outbox relay, consumers) build on the same connection and live in
`saas.common.events`.
"""

from saas.common.bus.connection import Bus
from saas.common.bus.requests import BusClient, RequestContext, Responder

__all__ = ["Bus", "BusClient", "RequestContext", "Responder"]
