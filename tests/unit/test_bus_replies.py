import pytest
from pydantic import BaseModel

from saas.common.bus.requests import encode_error, encode_reply, parse_reply
from saas.common.errors import HTTP_STATUS, ErrorCode, ServiceError, problem


class Thing(BaseModel):
    name: str


def test_data_reply_round_trips():
    assert parse_reply(encode_reply(Thing(name="a")), Thing) == Thing(name="a")


def test_error_reply_becomes_service_error_with_its_code():
    raw = encode_error(ServiceError(ErrorCode.NOT_FOUND, "no such tenant", {"slug": "acme"}))
    with pytest.raises(ServiceError) as caught:
        parse_reply(raw, Thing)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert caught.value.http_status == 404
    assert caught.value.details == {"slug": "acme"}


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"other": 1}', b'{"error": {"code": "nonsense"}}', b'{"data": {}}'],
)
def test_malformed_replies_are_internal_errors(raw):
    with pytest.raises(ServiceError) as caught:
        parse_reply(raw, Thing)
    assert caught.value.code is ErrorCode.INTERNAL


def test_every_code_has_a_status_and_a_problem_document():
    for code in ErrorCode:
        doc = problem(code, "detail", instance="/x")
        assert doc["status"] == HTTP_STATUS[code]
        assert doc["code"] == code.value
        assert doc["title"]


def test_backoff_doubles_up_to_its_cap():
    from saas.common.lifecycle import backoff

    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff(50) == 5.0
    assert backoff(3, first=0.2, cap=0.5) == 0.5
