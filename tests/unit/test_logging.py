import io
import json
import logging

import pytest

from saas.common.logging import configure_logging, get_logger, log_context


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    configure_logging("identity", fmt="json", stream=stream)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    yield read
    configure_logging("tests", fmt="console")


def test_every_line_has_the_base_fields(json_lines):
    get_logger("x").info("user signed in")
    (line,) = json_lines()
    assert line["message"] == "user signed in"
    assert line["level"] == "info"
    assert line["service"] == "identity"
    assert line["timestamp"].endswith("Z")


def test_context_fields_are_carried_and_then_dropped(json_lines):
    with log_context(request_id="req-1", tenant_id="t-1", user_id="u-1", ip_address="10.0.0.7"):
        get_logger("x").info("inside")
    get_logger("x").info("outside")
    inside, outside = json_lines()
    assert {k: inside[k] for k in ("request_id", "tenant_id", "user_id", "ip_address")} == {
        "request_id": "req-1",
        "tenant_id": "t-1",
        "user_id": "u-1",
        "ip_address": "10.0.0.7",
    }
    assert "request_id" not in outside


def test_standard_library_loggers_get_the_same_fields(json_lines):
    with log_context(request_id="req-2"):
        logging.getLogger("uvicorn.error").warning("from the stdlib")
    (line,) = json_lines()
    assert line["message"] == "from the stdlib"
    assert line["service"] == "identity"
    assert line["request_id"] == "req-2"
    assert line["level"] == "warning"


def test_exceptions_are_rendered_into_the_line(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("x").exception("failed")
    (line,) = json_lines()
    assert "ValueError: boom" in line["exception"]


def test_log_context_skips_unknown_values(json_lines):
    with log_context(tenant_id=None, user_id="u-9"):
        get_logger("x").info("partial")
    (line,) = json_lines()
    assert line["user_id"] == "u-9"
    assert "tenant_id" not in line
