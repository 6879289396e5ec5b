"""The event envelope: CloudEvents 1.0 attributes plus tenant, actor and correlation id."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from saas.common.events.catalogue import CATALOGUE, NoUpcaster

MAX_EVENT_BYTES = 64 * 1024
SPECVERSION = "1.0"


class InvalidEvent(ValueError):
    """An event that must not be published or applied; `reason` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NewerVersion(InvalidEvent):
    """An event written by newer code than this one: not broken, only not readable here yet.

    Consumers hand it back for later, when an upgraded replica can apply it. It is an
    `InvalidEvent` (reason `unsupported_version`) so that a reader unaware of versions refuses it
    rather than applying what it cannot understand.
    """

    def __init__(self, type_: str, version: int, known: int) -> None:
        super().__init__(
            "unsupported_version", f"{type_} version {version} is newer than this code's {known}"
        )
        self.version = version
        self.known = known


class Actor(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["user", "system"]
    id: str = Field(min_length=1, max_length=200)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(type="system", id=name)

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls(type="user", id=user_id)


_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _canonical_uuid(value: str) -> str:
    if _CANONICAL_UUID.match(value):  # what every producer sends: no need to parse it
        return value
    return str(uuid.UUID(value))


def has_nul(value: object) -> bool:
    """Whether a NUL character is in any string of `value`, keys of nested dicts included.

    PostgreSQL's TEXT and JSONB refuse NUL, so an event carrying one could never be recorded by
    any consumer (an attacker could keep a failed login out of the audit log through the email
    field): such an event is refused as a whole, at write time and at read time.
    """
    # Serialising is quick and writes NUL as \u0000; only then walk, since the same six
    # characters also appear where a string holds a backslash followed by "u0000".
    try:
        serialised = orjson.dumps(value, default=_fields)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, say: no shortcut then
        return _walk_has_nul(value)
    return b"\\u0000" in serialised and _walk_has_nul(value)


def _fields(model: object) -> dict[str, Any]:
    if isinstance(model, BaseModel):
        return model.__dict__
    raise TypeError(type(model).__name__)


def _walk_has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_walk_has_nul(k) or _walk_has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_walk_has_nul(v) for v in value)
    if isinstance(value, BaseModel):
        return any(_walk_has_nul(v) for v in value.__dict__.values())
    return False


EventId = Annotated[str, AfterValidator(_canonical_uuid)]


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: EventId
    source: str = Field(min_length=1, max_length=200)
    type: str
    specversion: Literal["1.0"] = SPECVERSION
    time: AwareDatetime
    subject: str | None = Field(default=None, max_length=200)
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: int = Field(ge=1)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=100)
    actor: Actor
    correlation_id: str | None = Field(default=None, max_length=200)
    data: dict[str, Any]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventEnvelope) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # `data` is a dict: envelopes are not hashable

    def to_bytes(self) -> bytes:
        """The wire form: JSON, written straight from the model by pydantic's serializer (a
        few microseconds; no cache, whose private attribute every envelope parsed from the bus
        would pay for)."""
        return self.__pydantic_serializer__.to_json(self)

    def payload(self) -> BaseModel:
        """The typed payload, validated against the catalogue."""
        return CATALOGUE[self.type].model.model_validate(self.data)


def new_event(
    data: BaseModel,
    *,
    source: str,
    actor: Actor,
    tenant_id: str | None = None,
    subject: str | None = None,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """An envelope for a catalogue payload; the payload's model decides the event type."""
    spec = next((s for s in CATALOGUE.values() if type(data) is s.model), None)
    if spec is None:
        raise InvalidEvent(
            "unknown_type", f"{type(data).__name__} is not an event payload in the catalogue"
        )
    try:
        envelope = EventEnvelope(
            id=str(uuid.uuid4()),
            source=source,
            type=spec.type,
            time=datetime.now(UTC),
            subject=subject,
            dataversion=spec.version,
            tenant_id=tenant_id,
            actor=actor,
            correlation_id=correlation_id,
            data=data.model_dump(mode="json"),
        )
    except ValidationError as exc:
        raise InvalidEvent("invalid_envelope", f"{spec.type}: {_summary(exc)}") from None
    raw = envelope.to_bytes()
    _refuse_nul(raw, envelope)
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "too_large", f"{spec.type} event is {size} bytes; the limit is {MAX_EVENT_BYTES}"
        )
    return envelope


def parse_event(raw: bytes) -> EventEnvelope:
    """Validate an event read from the bus: envelope, known type, version and payload."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "too_large", f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}"
        )
    try:
        envelope = EventEnvelope.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent("invalid_envelope", _summary(exc)) from None
    _refuse_nul(raw, envelope)
    spec = CATALOGUE.get(envelope.type)
    if spec is None:
        raise InvalidEvent("unknown_type", f"unknown event type {envelope.type!r}")
    if envelope.dataversion > spec.version:
        raise NewerVersion(envelope.type, envelope.dataversion, spec.version)
    data = envelope.data
    if envelope.dataversion < spec.version:
        try:
            data = spec.upcast(envelope.dataversion, data)
        except NoUpcaster as exc:
            raise InvalidEvent("unsupported_version", str(exc)) from None
        except (LookupError, TypeError, ValueError) as exc:  # old data the upcaster cannot read
            raise InvalidEvent(
                "invalid_payload",
                f"{envelope.type} version {envelope.dataversion}: {type(exc).__name__}: {exc}",
            ) from None
    try:
        spec.model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent("invalid_payload", f"{envelope.type}: {_summary(exc)}") from None
    if data is not envelope.data:
        # Handlers see one shape per type: the current one.
        envelope = envelope.model_copy(update={"data": data, "dataversion": spec.version})
    return envelope


def _refuse_nul(serialised: bytes, envelope: EventEnvelope) -> None:
    """JSON writes NUL as \\u0000: most events are cleared by one search of their bytes, and
    only those whose bytes hold those six characters (a NUL, or a backslash before "u0000") are
    walked."""
    if b"\\u0000" in serialised and has_nul(envelope.model_dump()):
        raise InvalidEvent(
            "invalid_envelope",
            f"{envelope.type}: strings may not contain NUL characters (PostgreSQL cannot store them)",
        )


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
    )
