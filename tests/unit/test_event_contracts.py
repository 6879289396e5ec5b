import orjson
import pytest

from saas.common.events import Actor, InvalidEvent, new_event, parse_event
from saas.common.events.catalogue import (
    CATALOGUE,
    Payload,
    TenantCreated,
    UserLoginFailed,
    UserRegistered,
    event,
    subject_prefixes,
)
from saas.common.events.envelope import MAX_EVENT_BYTES, NewerVersion

SYSTEM = Actor.system("tenancy-worker")


def tenant_created(**overrides) -> TenantCreated:
    fields = {
        "tenant_id": "t-1",
        "slug": "acme",
        "name": "Acme",
        "schema_name": "tenant_acme",
    } | overrides
    return TenantCreated(**fields)


def test_envelope_has_cloudevents_attributes_and_ours():
    event = new_event(
        tenant_created(),
        source="saas/tenancy",
        actor=SYSTEM,
        tenant_id="t-1",
        correlation_id="req-1",
    )
    doc = orjson.loads(event.to_bytes())
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "tenant.created"
    assert doc["dataversion"] == 1
    assert {
        "id",
        "source",
        "time",
        "subject",
        "tenant_id",
        "actor",
        "correlation_id",
        "data",
    } <= set(doc)
    assert doc["actor"] == {"type": "system", "id": "tenancy-worker"}


def test_round_trip_gives_the_typed_payload():
    event = new_event(tenant_created(), source="saas/tenancy", actor=SYSTEM, tenant_id="t-1")
    parsed = parse_event(event.to_bytes())
    assert parsed == event
    assert parsed.payload() == tenant_created()


def test_a_model_outside_the_catalogue_is_refused():
    class NotAnEvent(Payload):
        x: int

    with pytest.raises(InvalidEvent) as caught:
        new_event(NotAnEvent(x=1), source="s", actor=SYSTEM)
    assert caught.value.reason == "unknown_type"


def test_an_oversized_event_is_refused_at_write_time():
    with pytest.raises(InvalidEvent) as caught:
        new_event(tenant_created(name="x" * MAX_EVENT_BYTES), source="s", actor=SYSTEM)
    assert caught.value.reason == "too_large"


def _raw(**changes) -> bytes:
    doc = orjson.loads(
        new_event(tenant_created(), source="s", actor=SYSTEM, tenant_id="t-1").to_bytes()
    )
    doc.update(changes)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_envelope"),
        (_raw(type="tenant.exploded"), "unknown_type"),
        (_raw(data={"tenant_id": "t-1"}), "invalid_payload"),
        (
            _raw(data={"tenant_id": "t", "slug": "a", "name": "n", "schema_name": "s", "extra": 1}),
            "invalid_payload",
        ),
        (_raw(dataversion=2), "unsupported_version"),
        (_raw(specversion="0.3"), "invalid_envelope"),
        (_raw(actor={"type": "robot", "id": "x"}), "invalid_envelope"),
        (_raw(id="not-a-uuid"), "invalid_envelope"),
        (_raw(time="2026-11-28T10:00:00"), "invalid_envelope"),  # no time zone
        (_raw(tenant_id="t" * 101), "invalid_envelope"),
        (b"{" + b" " * MAX_EVENT_BYTES + b"}", "too_large"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == reason


def test_payload_validation_applies_field_rules():
    with pytest.raises(ValueError):
        UserRegistered(user_id="u", email="not-an-email")


def test_catalogue_covers_the_design_and_the_stream_covers_the_catalogue():
    for t in (
        "user.registered",
        "tenant.created",
        "tenant.provisioning_failed",
        "membership.added",
        "invitation.accepted",
        "auth.refresh_token_reused",
        "project.created",
    ):
        assert t in CATALOGUE
    prefixes = subject_prefixes()
    for t in CATALOGUE:
        assert t.split(".")[0] + ".>" in prefixes


@pytest.mark.parametrize(
    "overrides",
    [{"tenant_id": "t" * 101}, {"tenant_id": ""}, {"source": ""}, {"correlation_id": "c" * 201}],
)
def test_bad_envelope_fields_are_refused_at_write_time(overrides):
    kwargs = {"source": "saas/tenancy", "actor": SYSTEM} | overrides
    with pytest.raises(InvalidEvent) as caught:
        new_event(tenant_created(), **kwargs)
    assert caught.value.reason == "invalid_envelope"


# -- NUL characters: PostgreSQL's TEXT and JSONB cannot store them, so no consumer could -------
def _doc() -> dict:
    return orjson.loads(
        new_event(tenant_created(), source="s", actor=SYSTEM, tenant_id="t-1").to_bytes()
    )


def _with_data(**changes) -> bytes:
    doc = _doc()
    doc["data"] = {**doc["data"], **changes}
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    "raw",
    [
        _raw(source="saas/\x00tenancy"),
        _raw(subject="acme\x00"),
        _raw(correlation_id="req-\x001"),
        _raw(actor={"type": "user", "id": "u-\x00"}),
        _with_data(name="Acme\x00 Corp"),
        _with_data(extra={"nested": ["ok", {"deeper": "b\x00d"}]}),
        _with_data(extra={"key\x00": "value"}),
    ],
    ids=["source", "subject", "correlation_id", "actor", "data", "nested data", "key in data"],
)
def test_nul_characters_anywhere_in_an_event_read_from_the_bus_make_it_invalid(raw):
    assert b"\\u0000" in raw
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == "invalid_envelope"
    assert "NUL" in str(caught.value)


@pytest.mark.parametrize(
    ("payload", "overrides"),
    [
        (UserLoginFailed(email="victim@example.com\x00", reason="bad_password"), {}),
        (tenant_created(), {"subject": "acme\x00"}),
        (tenant_created(), {"correlation_id": "\x00"}),
        (tenant_created(), {"actor": Actor.user("u\x00")}),
    ],
    ids=["payload field", "subject", "correlation_id", "actor"],
)
def test_nul_characters_are_refused_at_write_time(payload, overrides):
    kwargs = {"source": "saas/identity", "actor": SYSTEM} | overrides
    with pytest.raises(InvalidEvent) as caught:
        new_event(payload, **kwargs)
    assert caught.value.reason == "invalid_envelope"


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul():
    raw = _with_data(name="C:\\u0000")  # a backslash followed by the letters u0000
    assert parse_event(raw).data["name"] == "C:\\u0000"


def test_numbers_beyond_64_bits_do_not_hide_a_nul():
    raw = _with_data(extra={"big": 0, "s": "\x00"}).replace(b'"big":0', b'"big":' + b"9" * 30)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == "invalid_envelope"


# -- versions: older ones are upcast, newer ones are not this code's to judge ---------------------
@pytest.fixture
def catalogue():
    """The catalogue, for a test to declare event types of its own in; restored afterwards."""
    saved = dict(CATALOGUE)
    yield CATALOGUE
    CATALOGUE.clear()
    CATALOGUE.update(saved)


def _widget_types(catalogue) -> type[Payload]:
    """`test.widget_made` at version 3: v1 had `label`, v2 renamed it `name`, v3 added `size`."""

    def v1_to_v2(data: dict) -> dict:
        return {"widget_id": data["widget_id"], "name": data["label"]}

    def v2_to_v3(data: dict) -> dict:
        return {**data, "size": "unknown"}

    @event(
        "test.widget_made",
        version=3,
        owner="tests",
        summary="A widget was made.",
        upcasters={1: v1_to_v2, 2: v2_to_v3},
    )
    class WidgetMade(Payload):
        widget_id: str
        name: str
        size: str

    return WidgetMade


def _as_version(current: Payload, version: int, data: dict) -> bytes:
    doc = orjson.loads(new_event(current, source="s", actor=SYSTEM).to_bytes())
    return orjson.dumps({**doc, "dataversion": version, "data": data})


def test_an_older_version_is_upcast_to_the_current_payload(catalogue):
    widget = _widget_types(catalogue)
    current = widget(widget_id="w-1", name="Gear", size="small")
    parsed = parse_event(_as_version(current, 1, {"widget_id": "w-1", "label": "Gear"}))
    assert parsed.dataversion == 3
    assert parsed.payload() == widget(widget_id="w-1", name="Gear", size="unknown")
    assert parse_event(_as_version(current, 2, {"widget_id": "w-1", "name": "Gear"})).data == {
        "widget_id": "w-1",
        "name": "Gear",
        "size": "unknown",
    }


def test_a_newer_version_than_this_code_knows_is_not_invalid_but_for_a_newer_reader(catalogue):
    widget = _widget_types(catalogue)
    raw = _as_version(widget(widget_id="w", name="n", size="s"), 4, {"anything": "new"})
    with pytest.raises(NewerVersion) as caught:
        parse_event(raw)
    assert (caught.value.version, caught.value.known) == (4, 3)


def test_an_older_version_no_upcaster_leads_from_is_unsupported(catalogue):
    @event("test.gadget_made", version=2, owner="tests", summary="A gadget was made.")
    class GadgetMade(Payload):
        gadget_id: str

    with pytest.raises(InvalidEvent) as caught:
        parse_event(_as_version(GadgetMade(gadget_id="g"), 1, {"gadget_id": "g"}))
    assert caught.value.reason == "unsupported_version"
    assert not isinstance(caught.value, NewerVersion)


def test_old_data_an_upcaster_cannot_read_is_an_invalid_payload(catalogue):
    widget = _widget_types(catalogue)
    raw = _as_version(widget(widget_id="w", name="n", size="s"), 1, {"widget_id": "w"})
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == "invalid_payload"
    assert "label" in str(caught.value)


@pytest.mark.parametrize(
    "upcasters",
    [{1: dict}, {2: dict, 3: dict}, {0: dict, 1: dict, 2: dict}],
    ids=["a gap before the current version", "from the current version", "from version 0"],
)
def test_upcasters_must_lead_step_by_step_to_the_current_version(catalogue, upcasters):
    with pytest.raises(ValueError, match="upcasters"):

        @event("test.thing_done", version=3, owner="tests", summary="x", upcasters=upcasters)
        class ThingDone(Payload):
            thing_id: str


def test_the_committed_nats_users_match_the_code():
    """infra/nats/auth.conf is what `saas bus users` writes; regenerate it when access changes."""
    from pathlib import Path

    from saas.common.commands.bus import production_auth_conf

    committed = Path(__file__).resolve().parents[2] / "infra" / "nats" / "auth.conf"
    assert committed.read_text() == production_auth_conf(), (
        "run: saas bus users -o infra/nats/auth.conf"
    )
