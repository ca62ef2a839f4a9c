"""Usage ingestion: each event counted once (invariant 3), per-event validation."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.errors import ValidationFailed
from portal.metering.models import UsageEvent
from tests.metering.conftest import body, event, ingest, person, subscribe


def _stored(app) -> list[UsageEvent]:
    with app.app_context():
        return list(db.session.scalars(sa.select(UsageEvent).order_by(UsageEvent.occurred_at)))


def test_a_batch_is_stored_exactly(app, metered):
    person(app, "acme", "jonas@acme.example")
    when = now_utc().replace(microsecond=0) - dt.timedelta(hours=2)
    events = [
        event(
            quantity="12.5",
            occurred_at=when.isoformat(),
            user_email="Jonas@Acme.example",
            properties={"region": "eu"},
        ),
        event(quantity=0.1, meter="storage_gb"),
        event(quantity="0.000001"),
    ]
    result = ingest(app, events)
    assert result.as_dict() == {"accepted": 3, "duplicates": 0, "rejected": []}
    rows = _stored(app)
    first = rows[0]
    assert first.quantity_micros == 12_500_000
    assert first.occurred_at == when
    assert first.user_email == "jonas@acme.example"
    assert first.properties == {"region": "eu"}
    assert sorted(r.quantity_micros for r in rows) == [1, 100_000, 12_500_000]


def test_numbers_are_read_exactly_never_through_a_float(app, metered):
    # 0.1 + 0.2 as floats is 0.30000000000000004; as JSON numbers they are exact decimals
    raw = (
        b'{"events": ['
        + b",".join(
            body([event(quantity="QTY")])[len(b'{"events": [') : -2].replace(b'"QTY"', q)
            for q in (b"0.1", b"0.2", b"123456789.123456")
        )
        + b"]}"
    )
    result = ingest(app, [], raw=raw)
    assert result.accepted == 3
    assert sorted(r.quantity_micros for r in _stored(app)) == [100_000, 200_000, 123456789123456]


def test_the_same_batch_twice_counts_each_event_once(app, metered):
    events = [event() for _ in range(50)]
    first = ingest(app, events)
    second = ingest(app, events)
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (second.accepted, second.duplicates) == (0, 50)
    assert len(_stored(app)) == 50


def test_a_key_repeated_inside_one_batch_counts_once(app, metered):
    one = event()
    result = ingest(app, [one, dict(one), event()])
    assert (result.accepted, result.duplicates) == (2, 1)


def test_the_same_key_in_two_organisations_is_two_events(app, metered, make_org):
    make_org("other")
    subscribe(app, "other", "cad-suite")
    key = "shared-key"
    result = ingest(
        app, [event(idempotency_key=key), event(idempotency_key=key, organisation="other")]
    )
    assert result.accepted == 2


def test_parallel_senders_of_the_same_batch_count_each_event_once(app, metered):
    events = [event() for _ in range(300)]
    results = []
    errors = []
    barrier = threading.Barrier(6)

    def send() -> None:
        barrier.wait()
        try:
            results.append(ingest(app, events))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.accepted for r in results) == 300
    assert sum(r.duplicates for r in results) == 300 * 5
    assert len(_stored(app)) == 300


def test_a_crash_mid_batch_writes_nothing_and_a_resend_counts_once(app, metered, monkeypatch):
    from portal.metering import ingest as module

    events = [event() for _ in range(20)]
    real_insert = module._insert

    def insert_then_crash(session, rows, report):
        real_insert(session, rows, report)
        raise RuntimeError("the server died after writing, before committing")

    monkeypatch.setattr(module, "_insert", insert_then_crash)
    with pytest.raises(RuntimeError):
        ingest(app, events)
    with app.app_context():
        db.session.rollback()
        db.session.remove()
    assert _stored(app) == []
    monkeypatch.setattr(module, "_insert", real_insert)
    result = ingest(app, events)
    assert (result.accepted, result.duplicates) == (20, 0)
    assert ingest(app, events).duplicates == 20


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "1.0000001"}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": "1e12"}, "quantity"),
        ({"quantity": "ten"}, "quantity"),
        ({"quantity": None}, "quantity"),
        ({"organisation": "nobody"}, "organisation"),
        ({"product": "no-such-product"}, "product"),
        ({"meter": "no_such_meter"}, "meter"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-01T10:00:00"}, "occurred_at"),  # no time zone
        ({"user_email": "not-an-email"}, "user_email"),
        ({"properties": {"blob": "x" * 5000}}, "properties"),
        ({"properties": "not an object"}, "properties"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_bad_field_is_reported_and_good_events_are_kept(app, metered, overrides, field):
    good = event()
    bad = event(**overrides)
    result = ingest(app, [good, bad, event()])
    assert result.accepted == 2
    assert [r["index"] for r in result.rejected] == [1]
    assert field in result.rejected[0]["errors"], result.rejected
    assert all(r.idempotency_key != bad["idempotency_key"] for r in _stored(app))


def test_every_event_naming_the_same_bad_email_is_reported(app, metered):
    # Each address is read once per batch: the second event with it is reported all the same.
    person(app, "acme", "jonas@acme.example")
    events = [event(user_email="not-an-email") for _ in range(2)]
    events += [event(user_email=" Jonas@ACME.example"), event(user_email="jonas@acme.example")]
    result = ingest(app, events)
    assert result.accepted == 2
    assert result.rejected == [
        {"index": i, "code": "invalid", "errors": {"user_email": ["Give a valid email address."]}}
        for i in (0, 1)
    ]


def test_missing_fields_are_named(app, metered):
    incomplete = event()
    del incomplete["meter"]
    result = ingest(app, [incomplete])
    assert result.rejected == [
        {"index": 0, "code": "invalid", "errors": {"meter": ["This field is required."]}}
    ]


def test_time_window(app, metered):
    now = now_utc()
    result = ingest(
        app,
        [
            event(occurred_at=(now + dt.timedelta(minutes=4)).isoformat()),
            event(occurred_at=(now + dt.timedelta(minutes=6)).isoformat()),
            event(occurred_at=(now - dt.timedelta(days=34)).isoformat()),
            event(occurred_at=(now - dt.timedelta(days=36)).isoformat()),
        ],
    )
    assert result.accepted == 2
    assert {r["index"] for r in result.rejected} == {1, 3}


def test_a_vendor_reports_only_for_its_own_products(app, metered, make_product):
    from portal.kernel.actor import Actor, Role

    make_product(5, sku="bi-studio", vendor="datalake")
    vendor = Actor.api_token("vendor token", role=Role.VENDOR_ADMIN, vendor_id=metered["vendor_id"])
    result = ingest(
        app,
        [event(), event(product="bi-studio", meter="api_calls")],
        vendor_id=metered["vendor_id"],
        actor=vendor,
    )
    assert result.accepted == 1
    assert result.rejected[0]["errors"] == {"product": ["This product is not one of yours."]}


def test_batches_over_10000_events_are_refused_whole(app, metered):
    with pytest.raises(ValidationFailed) as refused:
        ingest(app, [event(idempotency_key=str(i)) for i in range(10_001)])
    assert refused.value.code == "batch_too_large"
    assert _stored(app) == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"events": 3}', b"{}"])
def test_a_body_that_is_not_a_batch_is_refused(app, metered, raw):
    with pytest.raises(ValidationFailed):
        ingest(app, [], raw=raw)


def test_empty_batch_is_refused(app, metered):
    with pytest.raises(ValidationFailed):
        ingest(app, [])


def test_quantity_conversion_round_trips():
    from portal.metering.ingest import micros_to_decimal, quantity_to_micros

    for text in ("0", "1", "0.000001", "12.5", "999999999.999999"):
        assert micros_to_decimal(quantity_to_micros(Decimal(text))) == Decimal(text)
