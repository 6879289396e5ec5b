"""The message bus: one NATS connection per process, request/reply between services.

Events (JetStream streams, the outbox relay, consumers) build on the same connection and live in
`saas.common.events`.

The names below are imported when first used, so what only needs `saas.common.bus.access` (a
service's `ProcessSpec`, the `saas` command's start-up) does not load the NATS client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saas.common.bus.connection import Bus
    from saas.common.bus.requests import BusClient, RequestContext, Responder

__all__ = ["Bus", "BusClient", "RequestContext", "Responder"]

_WHERE = {
    "Bus": "saas.common.bus.connection",
    "BusClient": "saas.common.bus.requests",
    "RequestContext": "saas.common.bus.requests",
    "Responder": "saas.common.bus.requests",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
