import pytest
from pydantic import BaseModel

from saas.common.bus.requests import (
    Empty,
    RequestContext,
    Responder,
    encode_error,
    encode_reply,
    parse_reply,
    relayed_data,
)
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


class MoreThanAThing(Thing):
    secret: str


def test_a_relayed_reply_is_the_data_as_the_service_wrote_it():
    assert relayed_data(encode_reply(Thing(name="a")), Thing) == b'{"name":"a"}'


def test_a_relayed_error_is_a_service_error_as_for_a_request():
    raw = encode_error(ServiceError(ErrorCode.FORBIDDEN, "members only"))
    with pytest.raises(ServiceError) as caught:
        relayed_data(raw, Thing)
    assert caught.value.code is ErrorCode.FORBIDDEN


def test_a_reply_not_framed_by_a_responder_is_checked_against_the_model_before_it_is_relayed():
    assert relayed_data(b'{"data": {"name": "a", "secret": "s"}}', Thing) == b'{"name":"a"}'
    for raw in (b'{"data": {}}', b"not json"):
        with pytest.raises(ServiceError) as caught:
            relayed_data(raw, Thing)
        assert caught.value.code is ErrorCode.INTERNAL


class _Msg:
    data = b"{}"


async def test_a_responder_sends_only_the_model_its_handler_declares():
    """What lets callers relay a reply unchecked: a handler that returns anything but the model
    it declares (a subclass with more fields, say) fails instead of sending it."""
    responder = Responder("test")

    @responder.operation("exact")
    async def exact(_: Empty, ctx: RequestContext) -> Thing:
        return Thing(name="a")

    @responder.operation("more")
    async def more(_: Empty, ctx: RequestContext) -> Thing:
        return MoreThanAThing(name="a", secret="s")

    @responder.operation("undeclared")
    async def undeclared(_: Empty, ctx: RequestContext):  # noqa: ANN202
        return MoreThanAThing(name="a", secret="s")

    ctx = RequestContext(request_id="r", subject="svc.test.x")
    ops = responder.operations
    assert await Responder._dispatch(ops["exact"], _Msg(), ctx) == Thing(name="a")
    with pytest.raises(TypeError, match="more returned MoreThanAThing, not Thing"):
        await Responder._dispatch(ops["more"], _Msg(), ctx)
    assert isinstance(await Responder._dispatch(ops["undeclared"], _Msg(), ctx), MoreThanAThing)


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
