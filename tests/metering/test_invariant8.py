"""SPEC invariants 8 and 9 in usage reporting: an event counts only for an organisation
holding a subscription of the product in force on the event's day, only for that
organisation's people; every other event (and any hostile one) is rejected by index
with a stable code, while the rest of the batch is counted."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.metering.models import UsageEvent
from tests.api.conftest import ApiClient, VendorRef, api, assert_problem, make_token  # noqa: F401
from tests.conftest import SYSTEM, post_form
from tests.metering.conftest import body, event, ingest, person, subscribe


def _vendor(app, make_token) -> ApiClient:  # noqa: F811
    from portal.catalogue.models import Vendor

    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "autodraft"))
        ref = VendorRef(vendor.id, vendor.slug)
    return ApiClient(app.test_client(), make_token("vendor", vendor=ref))


def _keys(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(sa.select(UsageEvent.idempotency_key)))


def _post_raw(client: ApiClient, raw: bytes):
    return client.client.post(
        "/api/v1/usage",
        data=raw,
        headers={"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
    )


def _at(days_ago: float, hour: int | None = None) -> dt.datetime:
    moment = now_utc() - dt.timedelta(days=days_ago)
    if hour is not None:
        moment = dt.datetime.combine(moment.date(), dt.time(hour), tzinfo=dt.UTC)
    return moment


# ------------------------------------------------------------ no subscription in force


def test_a_vendors_event_for_an_organisation_without_subscription_is_rejected_and_not_billed(
    app,
    metered,
    make_org,
    make_product,
    make_token,  # noqa: F811
):
    from portal.billing.drafting import invoice_draft_refresh
    from portal.catalogue.services import price_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        price_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "cad-suite",
                "currency": "EUR",
                "model": "metered",
                "meter": "api_calls",
                "unit_amount": 2,
            },
        )
        db.session.commit()
    nosub = make_org("nosub")
    make_product(5, sku="gis-pro", vendor="mapworks")
    subscribe(app, "nosub", "gis-pro")  # a customer of the council, not of cad-suite
    when = now_utc() - dt.timedelta(hours=1)
    events = [
        event(occurred_at=when.isoformat(), quantity="100"),
        event(occurred_at=when.isoformat(), quantity="254000", organisation="nosub"),
        event(occurred_at=when.isoformat(), quantity="3"),
    ]
    response = _vendor(app, make_token).post("/usage", json={"events": events})
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 2 and answer["duplicates"] == 0
    [rejected] = answer["rejected"]
    assert rejected["index"] == 1 and rejected["code"] == "no_subscription"
    assert rejected["errors"] == {
        "organisation": [
            f"nosub holds no subscription of cad-suite in force on {when.date().isoformat()}."
        ]
    }
    assert _keys(app) == {events[0]["idempotency_key"], events[2]["idempotency_key"]}
    with app.app_context():
        invoice, _ = invoice_draft_refresh(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, nosub.id),
            period=f"{when:%Y-%m}",
        )
        assert invoice is not None and invoice.status == "draft"
        assert [line.kind for line in invoice.lines] == ["seat"]  # gis-pro only
        assert all("cad-suite" not in line.description for line in invoice.lines)
        db.session.rollback()


def test_council_tokens_and_staff_follow_the_same_rule(app, metered, make_org, api):  # noqa: F811
    make_org("nosub")
    response = api("council").post(
        "/usage", json={"events": [event(organisation="nosub"), event()]}
    )
    answer = response.get_json()
    assert answer["accepted"] == 1
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(0, "no_subscription")]


def test_events_before_the_subscription_started_are_rejected(app, metered, make_org):
    make_org("late")
    subscribe(app, "late", "cad-suite", days_ago=10)
    start_day = (now_utc() - dt.timedelta(days=10)).date()
    before = event(organisation="late", occurred_at=_at(11, hour=12).isoformat())
    eve = event(
        organisation="late",
        occurred_at=dt.datetime.combine(
            start_day - dt.timedelta(days=1), dt.time(23, 59), tzinfo=dt.UTC
        ).isoformat(),
    )
    first_day = event(
        organisation="late",
        occurred_at=dt.datetime.combine(start_day, dt.time(0, 1), tzinfo=dt.UTC).isoformat(),
    )
    since = event(organisation="late", occurred_at=_at(3).isoformat())
    # A time zone east of UTC: 01:00+02:00 on the first day is 23:00 UTC the day before.
    eastern = event(
        organisation="late",
        occurred_at=dt.datetime.combine(
            start_day, dt.time(1), tzinfo=dt.timezone(dt.timedelta(hours=2))
        ).isoformat(),
    )
    result = ingest(app, [before, eve, first_day, since, eastern])
    assert result.accepted == 2
    assert [(r["index"], r["code"]) for r in result.rejected] == [
        (0, "no_subscription"),
        (1, "no_subscription"),
        (4, "no_subscription"),
    ]
    assert _keys(app) == {first_day["idempotency_key"], since["idempotency_key"]}


def test_a_waitlisted_subscription_is_not_in_force_until_seats_are_granted(
    app, metered, make_org, make_product
):
    from portal.catalogue.models import Product
    from portal.seats.models import Subscription
    from portal.seats.services import subscription_cancel, subscription_create
    from portal.tenancy.models import Organisation

    make_product(1, sku="tiny", vendor="autodraft")
    make_org("first")
    waiting = make_org("waiting")
    holder = subscribe(app, "first", "tiny", quantity=1)
    with app.app_context():
        queued = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, waiting.id),
            product=db.session.scalar(sa.select(Product).where(Product.sku == "tiny")),
            quantity=1,
            on_shortage="waitlist",
            starts_on=now_utc().date() - dt.timedelta(days=10),
        ).subscription
        assert queued.status == "waitlisted"
        queued_id = queued.id
        db.session.commit()
    old = event(organisation="waiting", product="tiny", occurred_at=_at(5).isoformat())
    result = ingest(app, [old, event(organisation="waiting", product="tiny")])
    assert (result.accepted, [r["code"] for r in result.rejected]) == (
        0,
        ["no_subscription", "no_subscription"],
    )
    with app.app_context():  # the seat comes back; the waitlist is served now
        subscription_cancel(
            db.session, actor=SYSTEM, subscription=db.session.get(Subscription, holder)
        )
        db.session.commit()
        assert db.session.get(Subscription, queued_id).status == "active"
    now = event(organisation="waiting", product="tiny", occurred_at=now_utc().isoformat())
    again = event(organisation="waiting", product="tiny", occurred_at=_at(5).isoformat())
    result = ingest(app, [now, again])
    assert result.accepted == 1
    assert [(r["index"], r["code"]) for r in result.rejected] == [(1, "no_subscription")]


def test_a_cancelled_subscription_counts_for_the_days_it_ran(app, metered, make_org):
    from portal.seats.models import Subscription
    from portal.seats.services import subscription_cancel

    make_org("gone")
    sub_id = subscribe(app, "gone", "cad-suite", days_ago=20)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        subscription_cancel(db.session, actor=SYSTEM, subscription=subscription)
        # As if it had been cancelled five days ago.
        subscription.ends_on = now_utc().date() - dt.timedelta(days=5)
        db.session.commit()
    ran = event(organisation="gone", occurred_at=_at(10).isoformat())
    last_day = event(organisation="gone", occurred_at=_at(5, hour=12).isoformat())
    after = event(organisation="gone", occurred_at=_at(2).isoformat())
    result = ingest(app, [ran, last_day, after])
    assert result.accepted == 2
    assert [(r["index"], r["code"]) for r in result.rejected] == [(2, "no_subscription")]


# ------------------------------------------------------------ that organisation's people


def test_only_the_organisations_people_count(app, metered, make_org, make_user, make_token):  # noqa: F811
    from portal.identity.models import User

    other = make_org("other")
    subscribe(app, "other", "cad-suite")
    mine = make_user("member", metered["org"])
    gone = make_user("member", metered["org"])
    with app.app_context():  # deactivated since: their earlier usage still counts
        db.session.get(User, gone.id).is_active = False
        db.session.commit()
    theirs = make_user("member", other)
    staff = make_user("council_admin")
    events = [
        event(user_email=mine.email.upper()),
        event(user_email=theirs.email),
        event(user_email="nobody@acme.example"),
        event(user_email=gone.email),
        event(user_email=staff.email),
        event(user_email=theirs.email, organisation="other"),
        event(),
    ]
    response = _vendor(app, make_token).post("/usage", json={"events": events})
    answer = response.get_json()
    assert answer["accepted"] == 4
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
        (1, "not_organisation_person"),
        (2, "not_organisation_person"),
        (4, "not_organisation_person"),
    ]
    # The same answer whether or not the address has an account elsewhere: nothing leaks.
    assert answer["rejected"][0]["errors"] == answer["rejected"][1]["errors"]
    assert answer["rejected"][0]["errors"] == {"user_email": ["This is not a person of acme."]}
    with app.app_context():
        stored = dict(
            db.session.execute(sa.select(UsageEvent.idempotency_key, UsageEvent.user_email)).all()
        )
    assert stored[events[0]["idempotency_key"]] == mine.email
    assert set(stored) == {events[i]["idempotency_key"] for i in (0, 3, 5, 6)}


def test_a_missing_subscription_is_reported_before_the_person(app, metered, make_org):
    make_org("nosub")
    result = ingest(app, [event(organisation="nosub", user_email="x@nosub.example")])
    assert [r["code"] for r in result.rejected] == ["no_subscription"]


def test_subscriptions_and_people_are_resolved_with_a_constant_number_of_queries(
    app, metered, make_org
):
    from portal.metering.ingest import usage_ingest
    from tests.metering.conftest import COUNCIL

    for n in range(4):
        make_org(f"org-{n}")
        subscribe(app, f"org-{n}", "cad-suite", quantity=1)
    emails = [person(app, f"org-{n % 4}", f"p{n}@org-{n % 4}.example") for n in range(40)]

    def statements(events: list[dict[str, Any]]) -> tuple[int, int]:
        seen: list[str] = []

        def count(conn, cursor, statement, *args: Any) -> None:
            seen.append(statement)

        with app.app_context():
            engine = db.session.get_bind()
            sa.event.listen(engine, "before_cursor_execute", count)
            try:
                result = usage_ingest(
                    db.session, actor=COUNCIL, body=body(events), vendor_id=None, max_age_days=35
                )
                db.session.commit()
            finally:
                sa.event.remove(engine, "before_cursor_execute", count)
        return len(seen), result.accepted

    small = [event(organisation="org-0", user_email=emails[0])]
    large = [
        event(idempotency_key=f"k{n}", organisation=f"org-{n % 4}", user_email=emails[n % 40])
        for n in range(200)
    ]
    small_count, small_accepted = statements(small)
    large_count, large_accepted = statements(large)
    assert (small_accepted, large_accepted) == (1, 200)
    assert large_count == small_count


# ------------------------------------------------------------ hostile events (invariant 9)


NUL = "\x00"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"idempotency_key": f"key{NUL}"}, "idempotency_key"),
        ({"organisation": f"acme{NUL}"}, "organisation"),
        ({"product": f"cad-suite{NUL}"}, "product"),
        ({"meter": f"api_calls{NUL}"}, "meter"),
        ({"user_email": f"a{NUL}@acme.example"}, "user_email"),
        ({"quantity": f"1{NUL}"}, "quantity"),
        ({"occurred_at": f"2026-01-01T00:00:00Z{NUL}"}, "occurred_at"),
        ({"properties": {"region": f"eu{NUL}"}}, "properties"),
        ({"properties": {f"re{NUL}gion": "eu"}}, "properties"),
        ({"properties": {"nested": [{"deep": NUL}]}}, "properties"),
        ({f"colour{NUL}": "red"}, "colour\\u0000"),
    ],
)
def test_a_nul_byte_rejects_that_event_only(app, metered, api, overrides, field):  # noqa: F811
    good = [event(), event()]
    bad = event(**overrides)
    raw = json.dumps({"events": [good[0], bad, good[1]]}).encode()
    assert b"\\u0000" in raw
    response = _post_raw(api("council"), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 2
    [rejected] = answer["rejected"]
    assert (rejected["index"], rejected["code"]) == (1, "invalid")
    assert field in rejected["errors"], rejected
    assert NUL not in json.dumps(rejected, ensure_ascii=False)
    assert _keys(app) == {g["idempotency_key"] for g in good}


@pytest.mark.parametrize(
    ("fragment", "field"),
    [
        (b'"quantity": 1' + b"0" * 30, "quantity"),
        (b'"quantity": 1e400', "quantity"),
        (b'"quantity": "1e-999999999"', "quantity"),
        (b'"quantity": "1.0000000000000000000000000001"', "quantity"),
        (b'"quantity": 18446744073709551616', "quantity"),
        (b'"occurred_at": "9999-12-31T23:59:59Z"', "occurred_at"),
        (b'"occurred_at": "9999-12-31T23:59:59-05:00"', "occurred_at"),
        (b'"occurred_at": "10000-01-01T00:00:00Z"', "occurred_at"),
        (b'"occurred_at": "0001-01-01T00:00:00+05:00"', "occurred_at"),
        (b'"occurred_at": "0000-01-01T00:00:00Z"', "occurred_at"),
        (b'"properties": {"n": 9223372036854775808}', "properties"),
        (b'"properties": {"n": -9223372036854775809}', "properties"),
        (b'"properties": {"n": 1e400}', "properties"),
        (b'"idempotency_key": 18446744073709551616', "idempotency_key"),
        (b'"user_email": 1' + b"0" * 40, "user_email"),
    ],
)
def test_out_of_range_values_reject_that_event_only(app, metered, api, fragment, field):  # noqa: F811
    good = [event(), event()]
    bad = event()
    name = fragment.split(b'"')[1].decode()
    bad.pop(name, None)
    bad_json = json.dumps(bad).encode()[:-1] + b", " + fragment + b"}"
    raw = (
        b'{"events": ['
        + json.dumps(good[0]).encode()
        + b", "
        + bad_json
        + b", "
        + json.dumps(good[1]).encode()
        + b"]}"
    )
    response = _post_raw(api("council"), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 2, answer
    [rejected] = answer["rejected"]
    assert (rejected["index"], rejected["code"]) == (1, "invalid")
    assert field in rejected["errors"], rejected
    assert _keys(app) == {g["idempotency_key"] for g in good}


def test_properties_at_the_64_bit_limits_are_kept(app, metered):
    result = ingest(app, [event(properties={"max": 2**63 - 1, "min": -(2**63)})])
    assert result.accepted == 1


def test_nesting_too_deep_to_split_is_refused_whole_with_a_4xx(app, metered, api):  # noqa: F811
    deep = b"[" * 5000 + b"]" * 5000
    raw = b'{"events": [' + json.dumps(event()).encode() + b', {"properties": ' + deep + b"}]}"
    response = _post_raw(api("council"), raw)
    problem = assert_problem(response, 422)
    assert problem["errors"] == {"events": ["Arrays and objects are nested too deeply."]}
    assert _keys(app) == set()


@pytest.mark.parametrize("depth", [33, 200, 600])
def test_properties_nested_too_deep_reject_that_event(app, metered, api, depth):  # noqa: F811
    """Deeper than the portal keeps (32), up to as deep as msgspec can still skip."""
    good = [event(), event()]
    nested = b'{"a": ' * depth + b"1" + b"}" * depth
    raw = (
        b'{"events": ['
        + json.dumps(good[0]).encode()
        + b", "
        + json.dumps(event()).encode()[:-1]
        + b', "properties": '
        + nested
        + b"}, "
        + json.dumps(good[1]).encode()
        + b"]}"
    )
    response = _post_raw(api("council"), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["accepted"] == 2
    [rejected] = answer["rejected"]
    assert (rejected["index"], rejected["code"], list(rejected["errors"])) == (
        1,
        "invalid",
        ["properties"],
    )


def test_properties_nested_32_deep_are_kept(app, metered):
    nested: dict[str, Any] = {"a": 1}
    for _ in range(31):
        nested = {"a": nested}
    assert ingest(app, [event(properties=nested)]).accepted == 1


def test_the_openapi_document_states_the_rejection_codes(app, metered):
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    text = json.dumps(document)
    assert '"no_subscription"' in text and '"not_organisation_person"' in text
    schemas = document["components"]["schemas"]
    rejected = next(s for name, s in schemas.items() if name.endswith("Rejected"))
    assert rejected["properties"]["code"]["enum"] == [
        "invalid",
        "no_subscription",
        "not_organisation_person",
    ]
    operation = document["paths"]["/api/v1/usage"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["events"]["minItems"] == 1


# ------------------------------------------------------------ the CSV upload


def test_the_csv_upload_rejects_rows_by_line_with_the_same_codes(
    app, metered, make_org, make_user, signed_in
):
    make_org("nosub")
    other = make_org("other")
    subscribe(app, "other", "cad-suite")
    theirs = make_user("member", other)
    mine = make_user("member", metered["org"])
    when = (now_utc() - dt.timedelta(hours=1)).isoformat()
    text = (
        "idempotency_key,organisation,product,meter,quantity,occurred_at,user_email,properties\n"
        f"c1,acme,cad-suite,api_calls,3,{when},{mine.email},\n"  # line 2: counted
        f"c2,nosub,cad-suite,api_calls,5080,{when},,\n"  # line 3: no subscription
        f"c3,acme,cad-suite,api_calls,1,{when},{theirs.email},\n"  # line 4: not acme's
        "\n"  # line 5: blank, skipped
        f'c4,acme,cad-suite,api_calls,1,{when},,"{{""note"":\n""two lines""}}"\n'  # 6-7: counted
        f"c5,acme,cad-suite,api{NUL}_calls,1,{when},,\n"  # line 8: a NUL byte
        f'c6,acme,cad-suite,api_calls,1,{when},,"{{""a"":\n1e999}}"\n'  # 9-10: properties
        f"c7,acme,cad-suite,api_calls,2,{when},,\n"  # line 11: counted
    )
    council = signed_in("council_admin")
    response = post_form(
        council,
        "/council/usage/upload",
        {"file": (io.BytesIO(text.encode()), "usage.csv")},
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "Events stored: 3;" in page
    rows = re.findall(r"<tr><td>(\d+)</td><td>[^<]*<code>([a-z_]+)</code></td><td>(.*?)</td>", page)
    assert [(int(line), code) for line, code, _ in rows] == [
        (3, "no_subscription"),
        (4, "not_organisation_person"),
        (8, "invalid"),
        (9, "invalid"),
    ]
    assert "nosub holds no subscription of cad-suite" in rows[0][2]
    assert "meter" in rows[2][2] and "U+0000" in rows[2][2]
    assert "properties" in rows[3][2]
    assert _keys(app) == {"c1", "c4", "c7"}


def test_a_file_that_is_not_csv_is_refused_whole_with_a_4xx(app, metered, signed_in):
    when = (now_utc() - dt.timedelta(hours=1)).isoformat()
    text = (
        "idempotency_key,organisation,product,meter,quantity,occurred_at\n"
        f"d1,acme,cad-suite,api_calls,3,{when}\n"
        f'd2,acme,cad-suite,api_calls,"{"9" * 200_000}",{when}\n'  # past the csv field limit
    )
    council = signed_in("council_admin")
    response = post_form(
        council,
        "/council/usage/upload",
        {"file": (io.BytesIO(text.encode()), "usage.csv")},
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Line 3 cannot be read as CSV: field larger than field limit" in page
    assert _keys(app) == set()
