"""The per-batch shortcuts of usage checking (``portal.metering.ingest._check``) answer as
the plain rules would: an (organisation, product) whose subscription covers every day an
event may name skips the day's lookup, names and quantities are read once per batch; and the
batch's short path (``_rows``) answers every event as ``_check`` does. No database: the
batch's facts are given as ``_Checks.load`` would have loaded them."""

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


# ---- the batch's short path (``_rows``) against ``_check`` event by event


def _nested(depth: int) -> list:
    value: list = ["x"]
    for _ in range(depth - 1):
        value = [value]
    return value


_NAMES = [("acme", "cad", "hours"), ("bolt", "crm", "calls"), ("acme", "cad", "minutes")]
_PROPERTIES = [
    None,
    {"region": "eu-west"},
    {"region": "eu-west"},  # the same JSON again: its check remembered
    {"n": 2**63 - 1, "ok": True, "x": 1.5},
    {"n": 2**63},  # past 64 bits
    {"re\x00gion": "eu"},  # NUL in a key
    {"region": "eu\x00west"},  # NUL in a value
    {"text": "\\u0000"},  # a backslash written out: no NUL at all
    {"deep": _nested(33)},  # past 32 levels
    {"big": "x" * 5000},
]


def _any_event(rng: random.Random, n: int) -> EventIn:
    """An event of every kind ``_check`` tells apart; each field right most often."""

    def pick(right, *wrong):
        return right if rng.random() < 0.85 else rng.choice(wrong)

    org, product, meter = pick(*_NAMES)
    zone = pick(dt.UTC, dt.timezone(dt.timedelta(hours=-9)))
    offset = pick(rng.randrange(-35 * 86400, 0), -36 * 86400, 0, 200, 301)
    return EventIn(
        idempotency_key=pick(f"k{n}", f"k{n % 7}", "", "k" * 256, "k\x00"),
        organisation=pick(org, "nobody"),
        product=product,
        meter=meter,
        quantity=Decimal(pick(rng.choice(("1", "2.5", "2.50")), "-1", "NaN", "sNaN", "1.0000001")),
        occurred_at=(NOW + dt.timedelta(seconds=offset)).astimezone(zone),
        user_email=pick(
            rng.choice((None, "p0@x.example", "p1@x.example", "p2@x.example")), "Not An Address"
        ),
        properties=pick(rng.choice(_PROPERTIES[:4]), *_PROPERTIES[4:]),
    )


def test_the_batchs_short_path_answers_every_event_as_check_does():
    """``_rows`` takes a short path for events whose names, quantity, address and properties
    an earlier event of the batch had checked; every event, of whatever kind and in whatever
    order, gets the row, or the errors and code, that ``_check`` gives it alone."""
    from portal.metering.ingest import _rows

    rng = random.Random(29)
    people = {1: {"p0@x.example", "p1@x.example"}, 2: {"p2@x.example"}}
    for _ in range(40):
        terms = {
            (1, 10): [(OLDEST.date(), None)],  # every day: the short path may take it
            (2, 11): [(NOW.date() - dt.timedelta(days=3), None)],  # some days only
        }
        batch: list[EventIn | None] = [_any_event(rng, n) for n in range(300)]
        batch[rng.randrange(300)] = None  # an event that did not decode
        errors: dict[int, dict[str, list[str]]] = {}
        codes: dict[int, str] = {}
        rows = _rows(batch, _checks(terms, people), errors, codes)

        alone = _checks(terms, people)
        want_rows, want_errors, want_codes = [], {}, {}
        for index, event in enumerate(batch):
            if event is None:
                continue
            got = _check(event, alone)
            if isinstance(got, tuple):
                want_rows.append(got)
            else:
                want_errors[index], want_codes[index] = got.errors, got.code
        assert rows == want_rows
        assert errors == want_errors and codes == want_codes
        assert [row[5].tzinfo for row in rows] == [dt.UTC] * len(rows)
        assert len(rows) > 30 and len(errors) > 30  # both kinds, many times over


def test_the_short_path_checks_each_name_quantity_and_property_once(monkeypatch):
    """A batch of one organisation's events checks the names, the quantity and the
    properties with ``_check`` once; the other events are rows straight away."""
    from portal.metering import ingest

    calls = []
    check = ingest._check
    monkeypatch.setattr(
        ingest, "_check", lambda event, checks: calls.append(1) or check(event, checks)
    )
    batch: list[EventIn | None] = [
        EventIn(
            idempotency_key=f"k{n}",
            organisation="acme",
            product="cad",
            meter="hours",
            quantity=Decimal("2.5"),
            occurred_at=NOW - dt.timedelta(minutes=n),
            user_email="p0@x.example",
            properties={"region": "eu-west"} if n % 2 else None,
        )
        for n in range(1000)
    ]
    checks = _checks({(1, 10): [(OLDEST.date(), None)]}, {1: {"p0@x.example"}})
    rows = ingest._rows(batch, checks, {}, {})
    assert len(rows) == 1000
    assert rows[1][7] == '{"region":"eu-west"}' and rows[0][7] is None
    assert len(calls) == 2  # the first event, and the first with properties
