import io
import json

import structlog

from saas.common.logging import configure_logging, get_logger
from saas.common.redact import redact


def test_credentials_in_urls_are_masked():
    assert redact("connect to nats://identity:s3cret@nats:4222 failed") == (
        "connect to nats://identity:***@nats:4222 failed"
    )
    assert "p@ss" not in redact("postgresql+asyncpg://app:p@ss@db:5432/saas")


def test_driver_echoes_and_key_details_are_masked():
    assert "t0ken" not in redact("invalid input for query argument $1: 't0ken' (expected int)")
    assert "a@b.c" not in redact("Key (email)=(a@b.c) already exists.")


def test_bearer_tokens_and_jwts_are_masked():
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl"
    assert jwt not in redact(f"Authorization: Bearer {jwt}")
    assert jwt not in redact(f"token={jwt}")


def test_every_log_line_is_redacted_even_the_traceback():
    stream = io.StringIO()
    configure_logging("test", fmt="json", stream=stream)
    try:
        raise ConnectionError("nats://gateway:topsecret@nats:4222 refused")
    except ConnectionError:
        get_logger("x").exception("could not connect", url="redis://:pw123@cache:6379/0")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert "topsecret" not in json.dumps(line) and "pw123" not in json.dumps(line)
    structlog.reset_defaults()
