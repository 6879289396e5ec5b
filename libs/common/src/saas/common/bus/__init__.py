"""The message bus: one NATS connection per process, request/reply between services.

Events (JetStream, outbox, consumers) live beside it in this package.
"""

from saas.common.bus.connection import Bus
from saas.common.bus.principal import Principal
from saas.common.bus.requests import BusClient, RequestContext, Responder

__all__ = ["Bus", "BusClient", "Principal", "RequestContext", "Responder"]
