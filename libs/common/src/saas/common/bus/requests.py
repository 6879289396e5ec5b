"""Typed request/reply over NATS.

Subjects are `svc.<service>.<operation>`; every replica of a service joins the queue group named
after the service, so requests are load-balanced and fail over without discovery. A reply body is
either `{"data": ...}` or `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import asyncio
import math
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from saas.common.bus.connection import Bus
from saas.common.bus.headers import HEADER_AUTHORIZATION, HEADER_CLIENT_IP, HEADER_REQUEST_ID
from saas.common.errors import ErrorBody, ErrorCode, ServiceError
from saas.common.lifecycle import TaskTracker
from saas.common.logging import get_logger, log_context
from saas.common.metrics import Metrics
from saas.common.tokens import Claims, InvalidToken, TokenVerifier

log = get_logger(__name__)

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
MAX_REQUEST_BYTES = 256 * 1024
# How long the caller will wait, sent with every request so a handler never works on past it.
HEADER_TIMEOUT = "Saas-Timeout"


def subject_for(service: str, operation: str) -> str:
    return f"svc.{service}.{operation}"


class Empty(BaseModel):
    """A request or reply with no fields."""


@dataclass(frozen=True)
class RequestContext:
    """What a handler knows about the request besides its body."""

    request_id: str
    subject: str
    token: str | None = field(default=None, repr=False)  # the forwarded access token
    client_ip: str | None = None
    verifier: TokenVerifier | None = field(default=None, repr=False)

    async def user(self) -> Claims:
        """The caller, as proven by the access token the gateway forwarded; a missing or
        invalid token is `unauthorized`. Nothing else on the request is believed."""
        if not self.token:
            raise ServiceError(ErrorCode.UNAUTHORIZED, "authentication required")
        if self.verifier is None:
            raise ServiceError(ErrorCode.INTERNAL, "this service does not verify access tokens")
        try:
            claims = await self.verifier.verify(self.token)
        except InvalidToken as exc:
            raise ServiceError(
                ErrorCode.UNAUTHORIZED, "invalid or expired access token", {"reason": exc.reason}
            ) from None
        structlog.contextvars.bind_contextvars(user_id=claims.user_id)  # this request's task only
        return claims


class BusClient:
    """Sends typed requests and turns replies into models or `ServiceError`s."""

    def __init__(self, bus: Bus, *, timeout: float = 5.0, metrics: Metrics | None = None) -> None:
        self.bus = bus
        self.timeout = timeout
        self._latency = (metrics or Metrics()).histogram(
            "bus_client_request_seconds",
            "Round trip of requests to other services",
            ("service", "operation", "outcome"),
        )
        self._latency_of: dict[tuple[str, str, str], Any] = {}  # children by labels

    async def request(
        self,
        service: str,
        operation: str,
        payload: BaseModel | None,
        reply_model: type[T],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        token: str | None = None,
        client_ip: str | None = None,
    ) -> T:
        def read(raw: bytes) -> T:
            return parse_reply(raw, reply_model, service)

        return await self._round_trip(
            service, operation, payload, read, request_id, timeout, token, client_ip
        )

    async def relay(
        self,
        service: str,
        operation: str,
        payload: BaseModel | None,
        reply_model: type[BaseModel],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        token: str | None = None,
        client_ip: str | None = None,
    ) -> bytes:
        """The reply's data as the service wrote it (JSON), for passing on unchanged; errors are
        `ServiceError`s as from `request`. See `relayed_data` for what is checked."""

        def read(raw: bytes) -> bytes:
            return relayed_data(raw, reply_model, service)

        return await self._round_trip(
            service, operation, payload, read, request_id, timeout, token, client_ip
        )

    async def _round_trip(
        self,
        service: str,
        operation: str,
        payload: BaseModel | None,
        read: Callable[[bytes], R],
        request_id: str | None,
        timeout: float | None,
        token: str | None,
        client_ip: str | None,
    ) -> R:
        subject = subject_for(service, operation)
        timeout = timeout or self.timeout
        headers = {
            HEADER_REQUEST_ID: request_id or str(uuid.uuid4()),
            HEADER_TIMEOUT: f"{timeout:g}",
        }
        if token:
            headers[HEADER_AUTHORIZATION] = f"Bearer {token}"
        if client_ip:
            headers[HEADER_CLIENT_IP] = client_ip
        body = payload.model_dump_json().encode() if payload is not None else b"{}"
        started = time.perf_counter()
        outcome = "ok"
        try:
            msg = await self.bus.nc.request(subject, body, timeout=timeout, headers=headers)
            return read(msg.data)
        except (NoRespondersError, ConnectionError, ConnectionClosedError):
            outcome = ErrorCode.SERVICE_UNAVAILABLE.value
            raise ServiceError(
                ErrorCode.SERVICE_UNAVAILABLE, f"{service} is not available"
            ) from None
        except NatsTimeoutError:
            outcome = ErrorCode.TIMEOUT.value
            raise ServiceError(ErrorCode.TIMEOUT, f"{service} did not answer in time") from None
        except ServiceError as exc:
            outcome = exc.code.value
            raise
        finally:
            child = self._latency_of.get((service, operation, outcome))
            if child is None:
                child = self._latency_of[service, operation, outcome] = self._latency.labels(
                    service, operation, outcome
                )
            child.observe(time.perf_counter() - started)


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def parse_reply(raw: bytes, reply_model: type[T], service: str = "service") -> T:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ServiceError(ErrorCode.INTERNAL, f"{service} sent a reply that is not JSON") from None
    if isinstance(doc, dict) and "error" in doc:
        try:
            raise ServiceError.from_body(ErrorBody.model_validate(doc["error"]))
        except ValidationError:
            raise ServiceError(ErrorCode.INTERNAL, f"{service} sent a malformed error") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise ServiceError(ErrorCode.INTERNAL, f"{service} sent a malformed reply")
    try:
        return reply_model.model_validate(doc["data"])
    except ValidationError:
        raise ServiceError(
            ErrorCode.INTERNAL, f"{service} sent a reply that does not match its contract"
        ) from None


_DATA = b'{"data":'
_OBJECT = _DATA + b"{"  # every reply model is a JSON object


def relayed_data(raw: bytes, reply_model: type[BaseModel], service: str = "service") -> bytes:
    """The data of a reply framed as `encode_reply` frames it, unchanged: the responder made it
    from the operation's reply model (it refuses to send anything else, `Responder`), so it is
    that model's JSON already, and parsing, validating and serialising it again would change
    nothing. A reply framed otherwise is parsed and checked against `reply_model` as `request`
    checks it, and serialised again."""
    if raw.startswith(_OBJECT) and raw.endswith(b"}}"):
        return raw[len(_DATA) : -1]
    model = parse_reply(raw, reply_model, service)
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def encode_reply(data: BaseModel) -> bytes:
    return _DATA + data.model_dump_json().encode() + b"}"


def encode_error(error: ServiceError) -> bytes:
    return orjson.dumps({"error": error.body().model_dump(mode="json")})


Handler = Callable[[Any, RequestContext], Awaitable[BaseModel]]


@dataclass
class _Operation:
    name: str
    request_model: type[BaseModel]
    handler: Handler
    reply_model: type[BaseModel] | None = None  # what the handler says it returns


def _declared_reply(handler: Handler) -> type[BaseModel] | None:
    """The model a handler's return annotation names, if it names one."""
    try:
        declared = typing.get_type_hints(handler).get("return")
    except Exception:  # an annotation that cannot be resolved here: nothing to hold it to
        return None
    return declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None


@dataclass
class Responder:
    """A service's request handlers, subscribed in the service's queue group.

    responder = Responder("identity")

    @responder.operation("ping", PingRequest)
    async def ping(request: PingRequest, ctx: RequestContext) -> PingReply: ...
    """

    service: str
    operations: dict[str, _Operation] = field(default_factory=dict)
    max_concurrency: int = 256
    # The longest any handler may run, whatever the caller allows; a handler past its deadline is
    # cancelled (its transaction rolls back) and the caller gets `timeout`.
    max_handler_seconds: float = 30.0
    _subscriptions: list[Subscription] = field(default_factory=list)
    _verifier: TokenVerifier | None = None

    def operation(
        self, name: str, request_model: type[BaseModel] = Empty
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self.operations:
                raise ValueError(f"operation {name!r} registered twice on {self.service}")
            self.operations[name] = _Operation(
                name, request_model, handler, _declared_reply(handler)
            )
            return handler

        return register

    async def start(
        self,
        bus: Bus,
        tasks: TaskTracker,
        metrics: Metrics | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self._verifier = verifier
        requests = duration = None
        if metrics is not None:
            requests = metrics.counter(
                "bus_requests_handled_total",
                "Requests handled over the bus",
                ("operation", "outcome"),
            )
            duration = metrics.histogram(
                "bus_request_handle_seconds", "Time to handle a bus request", ("operation",)
            )
        limit = asyncio.Semaphore(self.max_concurrency)

        for op in self.operations.values():

            async def on_message(msg: Msg, op: _Operation = op) -> None:
                # nats-py runs one callback at a time per subscription: hand off to a task so
                # requests are handled concurrently, and track it so shutdown can wait for it.
                await limit.acquire()
                task = tasks.spawn(
                    self._handle(bus, op, msg, requests, duration), name=f"{self.service}.{op.name}"
                )
                task.add_done_callback(lambda _: limit.release())

            sub = await bus.nc.subscribe(
                subject_for(self.service, op.name), queue=self.service, cb=on_message
            )
            self._subscriptions.append(sub)
        log.info("responder started", service=self.service, operations=sorted(self.operations))

    async def stop_taking_requests(self) -> None:
        for sub in self._subscriptions:
            try:
                await sub.unsubscribe()
            except Exception:  # connection already gone: nothing more will arrive anyway
                pass
        self._subscriptions.clear()

    async def _handle(
        self, bus: Bus, op: _Operation, msg: Msg, requests: Any, duration: Any
    ) -> None:
        headers = msg.headers or {}
        ctx = RequestContext(
            request_id=headers.get(HEADER_REQUEST_ID) or str(uuid.uuid4()),
            subject=msg.subject,
            token=_bearer(headers.get(HEADER_AUTHORIZATION)),
            client_ip=headers.get(HEADER_CLIENT_IP) or None,
            verifier=self._verifier,
        )
        started = time.perf_counter()
        outcome = "ok"
        budget = self._budget(headers)
        with log_context(
            request_id=ctx.request_id,
            ip_address=ctx.client_ip,
        ):
            try:
                async with asyncio.timeout(budget):
                    reply = encode_reply(await self._dispatch(op, msg, ctx))
            except ServiceError as exc:
                outcome = exc.code.value
                reply = encode_error(exc)
            except TimeoutError:
                outcome = ErrorCode.TIMEOUT.value
                log.warning("bus handler overran its deadline", operation=op.name, seconds=budget)
                reply = encode_error(
                    ServiceError(ErrorCode.TIMEOUT, f"{op.name} did not finish within {budget:g}s")
                )
            except Exception:
                outcome = ErrorCode.INTERNAL.value
                log.exception("bus handler failed", operation=op.name)
                reply = encode_error(ServiceError(ErrorCode.INTERNAL, "internal error"))
            if len(reply) > bus.nc.max_payload - 4096:  # room for the headers
                outcome = ErrorCode.PAYLOAD_TOO_LARGE.value
                log.error("reply too large for the bus", operation=op.name, size=len(reply))
                reply = encode_error(
                    ServiceError(
                        ErrorCode.PAYLOAD_TOO_LARGE,
                        f"the reply of {op.name} is {len(reply)} bytes, over the bus's limit; "
                        "ask for less (a smaller page)",
                    )
                )
            if msg.reply:
                try:
                    await bus.nc.publish(
                        msg.reply, reply, headers={HEADER_REQUEST_ID: ctx.request_id}
                    )
                except Exception as exc:  # the caller will time out; say why here
                    log.warning("could not send a reply", operation=op.name, error=repr(exc))
        if requests is not None:
            requests.labels(op.name, outcome).inc()
            duration.labels(op.name).observe(time.perf_counter() - started)

    def _budget(self, headers: dict[str, str]) -> float:
        try:
            asked = float(headers.get(HEADER_TIMEOUT, ""))
        except ValueError:
            return self.max_handler_seconds
        if not math.isfinite(asked):
            return self.max_handler_seconds
        return min(max(asked, 0.001), self.max_handler_seconds)

    @staticmethod
    async def _dispatch(op: _Operation, msg: Msg, ctx: RequestContext) -> BaseModel:
        if len(msg.data) > MAX_REQUEST_BYTES:
            raise ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE, f"request body exceeds {MAX_REQUEST_BYTES} bytes"
            )
        try:
            request = op.request_model.model_validate_json(msg.data or b"{}")
        except ValidationError as exc:
            raise ServiceError(
                ErrorCode.VALIDATION_ERROR,
                "request body failed validation",
                {
                    "errors": exc.errors(
                        include_url=False, include_context=False, include_input=False
                    )
                },
            ) from None
        reply = await op.handler(request, ctx)
        # The reply is the operation's contract model itself, nothing else (a subclass could
        # carry more fields): callers may pass its JSON on unchecked (`relayed_data`).
        if op.reply_model is not None and type(reply) is not op.reply_model:
            raise TypeError(
                f"{op.name} returned {type(reply).__name__}, not {op.reply_model.__name__}"
            )
        return reply
