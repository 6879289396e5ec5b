"""The event contract as an AsyncAPI 3.0 document, generated from the catalogue."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from saas.common import __version__
from saas.common.events.catalogue import CATALOGUE, EventType
from saas.common.events.envelope import MAX_EVENT_BYTES, Actor
from saas.common.events.stream import EVENTS_STREAM

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    return schema


def _message_name(t: EventType) -> str:
    return t.model.__name__


def _envelope_schema(t: EventType) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"CloudEvents 1.0 envelope of `{t.type}`; `data` is version {t.version} of its payload.",
        "required": ["id", "source", "type", "specversion", "time", "dataversion", "actor", "data"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "format": "uuid",
                "description": "Event id; also the Nats-Msg-Id header.",
            },
            "source": {"type": "string", "examples": [f"saas/{t.owner}"]},
            "type": {"const": t.type},
            "specversion": {"const": "1.0"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": ["string", "null"]},
            "datacontenttype": {"const": "application/json"},
            "dataversion": {"const": t.version},
            "tenant_id": {
                "type": ["string", "null"],
                "description": "The tenant the event belongs to, if any.",
            },
            "actor": {"$ref": REF.format(model="Actor")},
            "correlation_id": {
                "type": ["string", "null"],
                "description": "The request id that caused it.",
            },
            "data": {"$ref": REF.format(model=_message_name(t))},
        },
    }


def build_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Actor": _schema(Actor, {})}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for t in sorted(CATALOGUE.values(), key=lambda t: t.type):
        name = _message_name(t)
        schemas[name] = _schema(t.model, schemas)
        schemas[f"{name}Event"] = _envelope_schema(t)
        messages[name] = {
            "name": t.type,
            "title": name,
            "summary": t.summary,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string", "description": "Equals the event id."}
                },
            },
            "payload": {"$ref": REF.format(model=f"{name}Event")},
        }
        channels[t.type] = {
            "address": t.type,
            "description": f"{t.summary} Published by {t.owner}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{t.type}"},
            "summary": f"{t.owner} publishes {t.type}",
            "messages": [{"$ref": f"#/channels/{t.type}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SaaS domain events",
            "version": __version__,
            "description": (
                f"Every domain event, on NATS JetStream stream `{EVENTS_STREAM}`; the subject is the event type. "
                "Events are published at least once from a transactional outbox; the `Nats-Msg-Id` header "
                "(the event id) lets JetStream drop duplicates, and consumers should also record processed "
                "ids. Order is kept per tenant. Consume with a durable pull consumer of your own, filtered "
                f"on the subjects you need, acknowledging after your own commit. Events are at most {MAX_EVENT_BYTES} bytes."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:14222",
                "protocol": "nats",
                "description": "`make dev`'s NATS server",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
