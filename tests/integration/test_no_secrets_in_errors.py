"""What a failed statement says, once it reaches a log line or a report, never includes its values."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from saas.common.redact import describe

SECRET = "hunter2-reset-token-0123456789"


async def test_a_failed_statement_is_described_without_its_parameters(db):
    with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
        async with db.session() as session:
            await session.execute(text("SELECT CAST(:v AS integer)"), {"v": SECRET})
    assert "[parameters:" not in str(caught.value)  # the engine hides them itself
    assert SECRET not in describe(caught.value)  # and the driver's echo of the value is redacted


async def test_a_duplicate_key_is_described_without_the_key(db):
    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught:
        async with db.session() as session:
            await session.execute(text("CREATE TEMPORARY TABLE redact_probe (v text UNIQUE)"))
            for _ in range(2):
                await session.execute(
                    text("INSERT INTO redact_probe VALUES (:v)"), {"v": "someone@example.com"}
                )
    assert "someone@example.com" not in describe(caught.value)
