"""How the relay judges each published row: sent, its own fault, or an outage nobody is blamed for."""

from __future__ import annotations

import nats.errors
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from saas.common.events.verdicts import (
    Unpublishable,
    Verdict,
    deletable,
    describe,
    judge,
    refusal,
    stream_answered,
)

ACK = PubAck(stream="EVENTS", seq=1)
TOO_BIG = APIError(code=400, err_code=10054, description="message size exceeds maximum allowed")
WRONG_STREAM = APIError(code=400, err_code=10060, description="expected stream does not match")
NO_STORAGE = APIError(
    code=500, err_code=10047, description="insufficient storage resources available"
)
ACCOUNT_FULL = APIError(
    code=400, err_code=10002, description="resource limits exceeded for account"
)
NO_STREAM = NoStreamResponseError()
TIMED_OUT = TimeoutError()

SENT, FAULT, OUTAGE = Verdict.SENT, Verdict.FAULT, Verdict.OUTAGE


def test_an_error_ack_about_the_message_is_the_rows_fault():
    assert judge([ACK, TOO_BIG, WRONG_STREAM], stream_works=False) == [SENT, FAULT, FAULT]


def test_an_error_ack_about_the_server_blames_no_row():
    assert judge([NO_STORAGE, ACCOUNT_FULL, ACK], stream_works=True) == [OUTAGE, OUTAGE, SENT]


def test_what_the_client_refuses_to_send_is_the_rows_fault():
    outcomes = [
        Unpublishable("too big"),
        nats.errors.MaxPayloadError(),
        nats.errors.BadSubjectError(),
    ]
    assert judge(outcomes, stream_works=False) == [FAULT, FAULT, FAULT]


def test_a_lost_connection_blames_no_row():
    outcomes = [nats.errors.ConnectionClosedError(), nats.errors.OutboundBufferLimitError()]
    assert judge(outcomes, stream_works=True) == [OUTAGE, OUTAGE]


def test_no_responders_is_the_rows_fault_only_while_the_stream_works():
    assert judge([ACK, NO_STREAM], stream_works=True) == [SENT, FAULT]
    assert judge([NO_STREAM, NO_STREAM], stream_works=False) == [OUTAGE, OUTAGE]


def test_a_timeout_before_a_later_ack_is_the_rows_fault_while_the_stream_works():
    # The stream answers in the order it stores: it took a later row but never answered this one.
    assert judge([TIMED_OUT, ACK], stream_works=True) == [FAULT, SENT]
    assert judge([TIMED_OUT, TOO_BIG], stream_works=True) == [FAULT, FAULT]
    assert judge([TIMED_OUT, ACK], stream_works=False) == [OUTAGE, SENT]


def test_a_batch_whose_tail_timed_out_met_a_slow_or_lost_server():
    assert judge([ACK, TIMED_OUT, TIMED_OUT], stream_works=True) == [SENT, OUTAGE, OUTAGE]
    assert judge([TIMED_OUT, ACK, TIMED_OUT], stream_works=True) == [FAULT, SENT, OUTAGE]


def test_a_batch_that_timed_out_entirely_is_an_outage():
    assert judge([TIMED_OUT, TIMED_OUT], stream_works=True) == [OUTAGE, OUTAGE]
    assert judge([TIMED_OUT], stream_works=True) == [OUTAGE]


def test_the_stream_answered_when_it_acked_or_refused_a_message():
    assert stream_answered([TIMED_OUT, ACK])
    assert stream_answered([NO_STREAM, TOO_BIG])
    assert not stream_answered([NO_STREAM, TIMED_OUT, Unpublishable("too big")])
    assert not stream_answered([NO_STORAGE])  # the server answered, about itself


def test_a_tenants_rows_after_its_failed_row_wait_for_it():
    tenants = ["a", "b", "a", "c", "b", "a"]
    verdicts = [SENT, FAULT, OUTAGE, SENT, SENT, SENT]
    assert deletable(tenants, verdicts) == [True, False, False, True, False, False]


def test_rows_without_a_tenant_keep_their_order_among_themselves():
    assert deletable(["", "", "t"], [FAULT, SENT, SENT]) == [False, False, True]


def test_refusal_names_a_payload_over_the_connections_maximum():
    assert refusal("project.created", b"x" * 10, max_payload=10) is None
    assert "11 bytes" in refusal("project.created", b"x" * 11, max_payload=10)


def test_refusal_names_a_subject_nobody_can_publish_to():
    for subject in ("", "project created", "project.*", "project.>", "project..created"):
        assert refusal(subject, b"{}", max_payload=100) is not None, subject


def test_describe_says_why_in_words_an_operator_can_act_on():
    assert "no responders" in describe(NO_STREAM, "billing.paid")
    assert "billing.paid" in describe(NO_STREAM, "billing.paid")
    assert "message size exceeds maximum allowed" in describe(TOO_BIG, "project.created")
    assert "10054" in describe(TOO_BIG, "project.created")
    assert "timed out" in describe(TIMED_OUT, "project.created")
    assert describe(Unpublishable("payload of 11 bytes"), "x") == "payload of 11 bytes"
    assert len(describe(Unpublishable("x" * 5000), "x")) <= 1000
