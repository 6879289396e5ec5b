"""Who may do what on the bus: one NATS user per service, with the least it needs.

The bus is not a trusted network. Every client authenticates (a user and password), and each
service's user may only:

- answer its own requests (`svc.<service>.>`, and reply to whoever asked: `allow_responses`);
- make the requests it names (`calls`); the gateway may call every service, never an
  `internal` operation (those are for services only);
- publish the event types the catalogue says it owns, and its consumers' dead letters;
- use its own durable consumers on EVENTS (create, fetch, acknowledge): another service cannot
  read, and so steal, its events;
- read the streams' configuration (the drift check);
- receive only on its own inbox prefix (`_INBOX_<user>`), so no one else sees its replies.

Stream administration (`saas migrate`), dead-letter replay and integrity checks from a shell use
the operators' user (`ops`); developers' tools and other teams' subscribers use a reader (`dev`)
that may create consumers of EVENTS and read them, and do nothing else.

The dev stack runs NATS with exactly these users (`saas bus users` writes the configuration), so
the tests prove the permissions; infra/nats has the same, with passwords from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EVENTS = "EVENTS"
DEADLETTER = "DEADLETTER"
CHECKPOINTS = "AUDIT_CHECKPOINTS"
OPS_USER = "ops"
DEV_USER = "dev"


def inbox_prefix(user: str | None) -> str:
    return f"_INBOX_{user}" if user else "_INBOX"


@dataclass(frozen=True)
class BusAccess:
    """What one service's NATS user may do (declared next to its `ProcessSpec`)."""

    user: str
    events_of: str | None = None  # the catalogue owner whose event types it publishes
    calls: tuple[str, ...] = ()  # request subjects, wildcards allowed
    consumes: tuple[str, ...] = ()  # its durable consumers of EVENTS
    publishes: tuple[str, ...] = ()  # anything else it publishes
    streams_read: tuple[str, ...] = ()  # streams it reads ad hoc (ordered consumers)
    denies: tuple[str, ...] = ()  # exceptions to the above
    answers: bool = True  # every process answers at least `ping`

    def permissions(self) -> dict[str, Any]:
        publish = [*self.calls, *self.publishes, "$JS.API.INFO"]
        publish += [f"$JS.API.STREAM.INFO.{s}" for s in (EVENTS, DEADLETTER, CHECKPOINTS)]
        if self.events_of:
            from saas.common.events.catalogue import CATALOGUE  # pydantic models: only when asked

            publish += sorted(t for t, spec in CATALOGUE.items() if spec.owner == self.events_of)
        for durable in self.consumes:
            publish += [*_consumer_subjects(durable), f"deadletter.{durable}"]
        for stream in self.streams_read:
            publish += [
                f"$JS.API.CONSUMER.CREATE.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}.>",
                f"$JS.API.CONSUMER.INFO.{stream}.>",
                f"$JS.API.CONSUMER.DELETE.{stream}.>",
                f"$JS.API.STREAM.MSG.GET.{stream}",
                f"$JS.FC.{stream}.>",
                f"$JS.ACK.{stream}.>",
            ]
        subscribe = [f"{inbox_prefix(self.user)}.>"]
        if self.answers:
            subscribe.append(f"svc.{self.user}.>")
        doc: dict[str, Any] = {
            "publish": {"allow": publish, **({"deny": list(self.denies)} if self.denies else {})},
            "subscribe": {"allow": subscribe},
        }
        if self.answers:
            doc["allow_responses"] = True
        return doc


def _consumer_subjects(durable: str) -> list[str]:
    return [
        f"$JS.API.CONSUMER.CREATE.{EVENTS}.{durable}",
        f"$JS.API.CONSUMER.CREATE.{EVENTS}.{durable}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS}.{durable}",
        f"$JS.API.CONSUMER.INFO.{EVENTS}.{durable}",
        f"$JS.API.CONSUMER.DELETE.{EVENTS}.{durable}",
        f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{durable}",
        f"$JS.ACK.{EVENTS}.{durable}.>",
    ]


def ops_permissions() -> dict[str, Any]:
    """Operators' tools: stream configuration, dead-letter replay, integrity checks."""
    return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}, "allow_responses": True}


def dev_permissions(services: list[BusAccess]) -> dict[str, Any]:
    """Developers' tools and other teams' subscribers: their own consumers of EVENTS, never a
    service's (which they could otherwise drain), and requests to nothing but `ping`."""
    taken = [s for access in services for d in access.consumes for s in _consumer_subjects(d)]
    return {
        "publish": {
            "allow": [
                "$JS.API.INFO",
                f"$JS.API.STREAM.INFO.{EVENTS}",
                f"$JS.API.STREAM.MSG.GET.{EVENTS}",
                f"$JS.API.CONSUMER.CREATE.{EVENTS}",
                f"$JS.API.CONSUMER.CREATE.{EVENTS}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS}.*",
                f"$JS.API.CONSUMER.INFO.{EVENTS}.*",
                f"$JS.API.CONSUMER.DELETE.{EVENTS}.*",
                f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.*",
                f"$JS.ACK.{EVENTS}.>",
                f"$JS.FC.{EVENTS}.>",
                "svc.*.ping",
            ],
            "deny": sorted(set(taken)),
        },
        "subscribe": {"allow": [f"{inbox_prefix(DEV_USER)}.>"]},
    }


def nats_users(services: list[BusAccess]) -> dict[str, dict[str, Any]]:
    """Every NATS user and its permissions: one per service, plus `ops` and `dev`."""
    unique: dict[str, BusAccess] = {}
    for access in services:
        if unique.setdefault(access.user, access) != access:
            raise ValueError(f"the NATS user {access.user!r} is declared twice, differently")
    users = {user: access.permissions() for user, access in sorted(unique.items())}
    users[OPS_USER] = ops_permissions()
    users[DEV_USER] = dev_permissions(list(unique.values()))
    return users


def render_nats_conf(users: dict[str, dict[str, Any]], passwords: dict[str, str]) -> str:
    """The `authorization` block of a nats-server configuration. A password that starts with `$`
    is written as a reference to that environment variable (production: the server's environment
    holds a bcrypt hash of each password); any other is written as a quoted literal (dev stack)."""
    lines = ["authorization {", "  users = ["]
    for user, permissions in users.items():
        password = passwords[user]
        secret = password if password.startswith("$") else _quote(password)
        lines.append(
            f"    {{user: {_quote(user)}, password: {secret}, permissions: {_value(permissions)}}}"
        )
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _quote(str(value))
