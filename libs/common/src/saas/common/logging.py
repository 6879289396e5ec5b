"""Structured logging: JSON in production, readable console in development.

Every line carries `timestamp`, `level`, `message` and `service`, plus whatever of `request_id`,
`tenant_id`, `user_id` and `ip_address` is bound in the current context (`log_context`: the
gateway binds it per HTTP request, the responder per bus message, consumers per event).
Standard-library loggers (uvicorn, alembic, nats) go through the same processors.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from saas.common.redact import redact


def _add_service(service: str) -> structlog.types.Processor:
    def processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _drop_color_message(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
    return event_dict


def _redact_values(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The last step before rendering: no credential, token or SQL value leaves in a log line."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
        elif isinstance(value, (list, tuple, dict)):
            event_dict[key] = redact_structure(value)
    return event_dict


def redact_structure(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_structure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_structure(v) for v in value]
    return value


def configure_logging(
    service: str, *, level: str = "INFO", fmt: str = "console", stream: Any = None
) -> None:
    """Configure structlog and the standard library once per process."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service(service),
        _drop_color_message,
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        final = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _redact_values,
            renderer,
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        final = [structlog.processors.format_exc_info, _redact_values, renderer]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route them through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields for the duration of a block (a request, a bus message)."""
    tokens = structlog.contextvars.bind_contextvars(
        **{k: v for k, v in fields.items() if v is not None}
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
