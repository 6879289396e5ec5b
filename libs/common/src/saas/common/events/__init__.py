"""Domain events: the envelope, the catalogue, the stream, the outbox relay and consumers.

One way to publish: `await outbox.add(session, new_event(...))` inside the transaction that
changes state. One way to consume: `EventConsumer` with a handler that runs in the consumer's
transaction.
"""

from saas.common.events.envelope import (
    Actor,
    EventEnvelope,
    InvalidEvent,
    NewerVersion,
    new_event,
    parse_event,
)

__all__ = ["Actor", "EventEnvelope", "InvalidEvent", "NewerVersion", "new_event", "parse_event"]
