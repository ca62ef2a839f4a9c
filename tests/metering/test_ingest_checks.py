"""The per-batch shortcuts of usage checking (``portal.metering.ingest._check``) answer as
the plain rules would: an (organisation, product) whose subscription covers every day an
event may name skips the day's lookup, names and quantities are read once per batch. No
database: the batch's facts are given as ``_Checks.load`` would have loaded them."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import msgspec

from portal.metering.ingest import (
    EventIn,
    _check,
    _Checks,
    _email,
    _Refs,
    _Rejected,
    in_force,
    quantity_to_micros,
)
from portal.tenancy.models import OrganisationStatus

NOW = dt.datetime(2026, 12, 1, 0, 0, 30, tzinfo=dt.UTC)  # midnight, the first of a month
OLDEST = NOW - dt.timedelta(days=35)
NEWEST = NOW + dt.timedelta(minutes=5)
ORGS = {"acme": (1, OrganisationStatus.ACTIVE), "bolt": (2, OrganisationStatus.ACTIVE)}
PRODUCTS = {"cad": (10, 7, {"hours": 100}), "crm": (11, 7, {"calls": 110})}


def _checks(terms, people) -> _Checks:
    emails = {f"p{n}@x.example" for n in range(3)} | {"Not An Address"}
    return _Checks(
        _Refs(ORGS, PRODUCTS, emails),
        7,
        OLDEST,
        NEWEST,
        (NOW, 3),
        {raw: _email(raw) for raw in emails},
        terms,
        people,
    )


def _event(rng: random.Random, n: int) -> EventIn:
    org = rng.choice(list(ORGS))
    product = rng.choice(list(PRODUCTS))
    meter = next(iter(PRODUCTS[product][2]))
    span = int((NEWEST - OLDEST).total_seconds())
    # Some in another time zone: the day that counts is the UTC one.
    zone = rng.choice((dt.UTC, dt.timezone(dt.timedelta(hours=rng.choice((-9, 5))))))
    occurred = (OLDEST + dt.timedelta(seconds=rng.randrange(span + 1))).astimezone(zone)
    return EventIn(
        idempotency_key=f"k{n}",
        organisation=org,
        product=product,
        meter=meter,
        quantity=Decimal(rng.choice(("1", "2.5", "1.0", "0.000001", "1.0000001", "-1"))),
        occurred_at=occurred,
        user_email=rng.choice((None, "p0@x.example", "p1@x.example", "p2@x.example")),
    )


def test_every_event_is_answered_as_the_plain_rules_answer_it():
    rng = random.Random(13)
    days = [OLDEST.date() + dt.timedelta(days=d) for d in range(-3, 40)]
    for _ in range(60):
        terms = {}
        for org_id, _ in ORGS.values():
            for product_id, _, _ in PRODUCTS.values():
                spans = []
                for _ in range(rng.randrange(3)):  # none, one or two terms
                    first = rng.choice(days)
                    last = rng.choice([None, *[d for d in days if d >= first]])
                    spans.append((first, last))
                if spans:
                    terms[(org_id, product_id)] = spans
        people = {1: {"p0@x.example", "p1@x.example"}, 2: {"p2@x.example"}}
        checks = _checks(terms, people)
        for n in range(200):
            event = _event(rng, n)
            got = _check(event, checks)
            utc = event.occurred_at.astimezone(dt.UTC)
            org_id, product_id = ORGS[event.organisation][0], PRODUCTS[event.product][0]
            try:
                micros = quantity_to_micros(event.quantity)
            except ValueError:
                assert isinstance(got, _Rejected) and got.code == "invalid"
                assert list(got.errors) == ["quantity"]
                continue
            if not in_force(terms.get((org_id, product_id)), utc.date()):
                assert isinstance(got, _Rejected), (event, terms)
                assert got.code == "no_subscription"
                assert utc.date().isoformat() in got.errors["organisation"][0]
            elif event.user_email is not None and event.user_email not in people[org_id]:
                assert isinstance(got, _Rejected) and got.code == "not_organisation_person"
            else:
                assert got == (
                    org_id,
                    product_id,
                    PRODUCTS[event.product][2][event.meter],
                    event.idempotency_key,
                    micros,
                    utc,
                    event.user_email,
                    None,
                    NOW,
                    3,
                )
                assert got[5].tzinfo is dt.UTC


def test_a_wrong_name_is_reported_on_every_event_that_sends_it():
    """Only right names are remembered: each event naming a wrong one gets its own errors."""
    checks = _checks({(1, 10): [(OLDEST.date(), None)]}, {1: {"p0@x.example"}})
    base = {
        "idempotency_key": "a",
        "organisation": "acme",
        "product": "cad",
        "meter": "hours",
        "quantity": Decimal(1),
        "occurred_at": NOW,
    }
    assert isinstance(_check(EventIn(**base), checks), tuple)
    for _ in range(2):
        wrong = _check(EventIn(**(base | {"meter": "minutes"})), checks)
        assert isinstance(wrong, _Rejected) and wrong.code == "invalid"
        assert wrong.errors == {"meter": ["cad has no meter “minutes”."]}
        wrong.errors["meter"].append("changed by the caller")
    nul = _check(EventIn(**(base | {"organisation": "ac\x00me"})), checks)
    assert isinstance(nul, _Rejected) and list(nul.errors) == ["organisation"]
    bad_email = _check(EventIn(**(base | {"user_email": "Not An Address"})), checks)
    assert isinstance(bad_email, _Rejected)
    assert bad_email.errors == {"user_email": ["Give a valid email address."]}


def test_a_signalling_nan_is_refused_not_hashed():
    checks = _checks({(1, 10): [(OLDEST.date(), None)]}, {})
    for text in ("sNaN", "NaN", "Infinity"):
        event = msgspec.json.decode(
            msgspec.json.encode(
                {
                    "idempotency_key": "a",
                    "organisation": "acme",
                    "product": "cad",
                    "meter": "hours",
                    "quantity": text,
                    "occurred_at": NOW.isoformat(),
                }
            ),
            type=EventIn,
        )
        got = _check(event, checks)
        assert isinstance(got, _Rejected)
        assert got.errors == {"quantity": ["Give a finite number."]}


def test_decoded_events_are_not_tracked_by_the_garbage_collector():
    """A batch's events live through its request: tracked, ten thousand of them set off full
    collections of the whole heap (docs/PERFORMANCE.md, "usage ingest and the garbage
    collector"). Their properties are plain decoded JSON, so no event is part of a cycle."""
    import gc

    from portal.metering.ingest import decode_batch

    one = {
        "idempotency_key": "a",
        "organisation": "acme",
        "product": "cad",
        "meter": "hours",
        "quantity": 1,
        "occurred_at": NOW.isoformat(),
        "properties": {"region": "eu-west"},
    }
    events, errors = decode_batch(msgspec.json.encode({"events": [one, one]}))
    assert not errors and len(events) == 2
    assert all(event is not None and not gc.is_tracked(event) for event in events)
