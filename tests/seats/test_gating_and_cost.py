"""Issue 14 for seats: who may subscribe (gating), what it costs (preview), and the words.

* A product can be subscribed (and waitlisted) only with an active vendor, a pool in force
  and a seat price in the organisation's currency: the service refuses with a clear
  message and code, and the catalogue shows no Subscribe button but says why.
* Seat requests only where a subscription gives or could give the seat.
* The cost preview on the subscribe and resize forms, with a frozen clock in mid-month,
  is what billing then charges (:func:`portal.billing.charges.charges_for`).
* The org dashboard's seat-days agree with billing's (reserved) and with the usage page's
  seats table (assigned), each named.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa

from portal.billing.charges import charges_for
from portal.billing.preview import seat_cost_preview
from portal.catalogue.models import Product
from portal.db import db
from portal.kernel.errors import Conflict, InvalidState
from portal.metering.selectors import seat_utilisation
from portal.seats import services
from portal.seats.models import SeatRequest, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, flashes, post_form
from tests.support import db_rows


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _messages(response) -> list[str]:
    return [html.unescape(m).strip() for m in flashes(response)]


def _subscribe(app, org, product, quantity, **kwargs):
    with app.app_context():
        outcome = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=quantity,
            **kwargs,
        )
        db.session.commit()
        return outcome.subscription.id


# The products an organisation billed in EUR cannot newly subscribe to, and why.
UNSUBSCRIBABLE = {
    "no-pool": (
        {"capacity": 0},
        "no_pool_in_force",
        "The council has no seats of Product no-pool in force; it cannot be subscribed yet.",
    ),
    "no-price": (
        {"price": None},
        "no_price",
        "Product no-price has no price in EUR yet; it cannot be subscribed.",
    ),
    "gbp-only": (
        {"currency": "GBP"},
        "no_price",
        "Product gbp-only has no price in EUR yet; it cannot be subscribed.",
    ),
    "reviewed": (
        {"vendor": "slow-soft", "vendor_status": "under_review", "vendor_name": "Slow Soft"},
        "vendor_unavailable",
        "Slow Soft is under review; Product reviewed cannot be newly subscribed.",
    ),
    "halted": (
        {"vendor": "halt-soft", "vendor_status": "suspended", "vendor_name": "Halt Soft"},
        "vendor_unavailable",
        "Halt Soft is suspended; Product halted cannot be newly subscribed.",
    ),
}


@pytest.mark.parametrize("sku", list(UNSUBSCRIBABLE))
@pytest.mark.parametrize("on_shortage", ["reject", "waitlist"])
def test_the_service_refuses_a_product_that_cannot_be_subscribed(
    app, make_org, make_product, sku, on_shortage
):
    fields, code, message = UNSUBSCRIBABLE[sku]
    org = make_org("alpha")
    product = make_product(sku=sku, **fields)
    before = db_rows(app)
    with app.app_context(), pytest.raises(InvalidState) as refused:
        services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=2,
            on_shortage=on_shortage,  # no waitlist either: no subscription could follow
        )
    assert (refused.value.code, refused.value.detail) == (code, message)
    assert db_rows(app) == before


def test_a_product_with_a_pool_and_a_price_is_subscribed(app, make_org, make_product):
    org = make_org("alpha")
    product = make_product(3, sku="ready")
    sub_id = _subscribe(app, org, product, 5, on_shortage="waitlist")
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        assert (sub.quantity, sub.waiting) == (3, 2)


def test_the_catalogue_shows_no_subscribe_button_and_says_why(
    app, make_org, make_product, signed_in
):
    org = make_org("alpha")
    admin = signed_in("org_admin", org)
    for sku, (fields, _code, _message) in UNSUBSCRIBABLE.items():
        make_product(sku=sku, **fields)
    make_product(sku="ready")
    page = _text(admin.get("/catalogue"))
    assert 'href="/catalogue/ready/subscribe"' in page
    for sku in UNSUBSCRIBABLE:
        assert f'href="/catalogue/{sku}/subscribe"' not in page, sku
    assert "The council has no seats of Product no-pool in force yet" in page
    assert "Product no-price has no price in EUR yet, so it cannot be subscribed." in page
    assert "Product gbp-only has no price in EUR yet" in page
    assert "Slow Soft is under review: Product reviewed cannot be newly subscribed" in page
    assert "Halt Soft is suspended: Product halted cannot be newly subscribed" in page

    # The subscribe page says the same and has no form; a POST anyway is refused.
    form_page = _text(admin.get("/catalogue/no-price/subscribe"))
    assert "has no price in EUR yet, so it cannot be subscribed" in form_page
    assert 'name="quantity"' not in form_page
    before = db_rows(app)
    response = post_form(
        admin,
        "/catalogue/no-price/subscribe",
        {"quantity": "1", "on_shortage": "waitlist"},
        token_from="/catalogue",
    )
    assert response.status_code == 400
    assert "Product no-price has no price in EUR yet; it cannot be subscribed." in _messages(
        response
    )
    assert db_rows(app) == before


@pytest.mark.parametrize("sku", ["no-pool", "no-price", "reviewed", "halted"])
def test_a_seat_request_is_refused_where_no_subscription_could_follow(
    app, make_org, make_product, signed_in, sku
):
    fields, code, message = UNSUBSCRIBABLE[sku]
    org = make_org("alpha")
    member = signed_in("member", org)
    make_product(sku=sku, **fields)
    page = _text(member.get("/catalogue"))
    assert f'action="/catalogue/{sku}/request"' not in page
    assert "Seats cannot be requested for now." in page
    before = db_rows(app)
    response = post_form(member, f"/catalogue/{sku}/request", {"note": ""}, token_from="/catalogue")
    assert response.status_code == 302
    assert message in _messages(member.get(response.headers["Location"]))
    assert db_rows(app) == before


def test_a_seat_request_goes_where_a_subscription_gives_the_seat(
    app, make_org, make_product, signed_in
):
    """A subscription taken before the vendor was suspended still gives seats: asking is fine."""
    from portal.catalogue.selectors import vendor_by_slug
    from portal.catalogue.services import vendor_update

    org = make_org("alpha")
    member = signed_in("member", org)
    product = make_product(5, sku="halted", vendor="halt-soft")
    _subscribe(app, org, product, 2)
    make_product(5, sku="open")  # no subscription, but one could follow
    with app.app_context():
        vendor = vendor_by_slug(db.session, "halt-soft")
        vendor_update(db.session, actor=SYSTEM, vendor=vendor, data={"status": "suspended"})
        db.session.commit()
    page = _text(member.get("/catalogue"))
    assert (
        'action="/catalogue/halted/request"' in page and 'action="/catalogue/open/request"' in page
    )
    for sku in ("halted", "open"):
        response = post_form(
            member, f"/catalogue/{sku}/request", {"note": "please"}, token_from="/catalogue"
        )
        assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SeatRequest)) == 2


# ---------------------------------------------------------------- cost preview

# September 2026 has 30 days; at noon on the 15th, 16 days are left (the 15th included).
SEPT_15 = dt.datetime(2026, 9, 15, 12, tzinfo=dt.UTC)


def test_the_subscribe_page_previews_this_month_and_each_month_after(
    app, clock, make_org, make_product, signed_in
):
    clock.freeze(SEPT_15)
    org = make_org("alpha")
    admin = signed_in("org_admin", org)
    make_product(10, sku="cad-suite", price=1000)  # €10.00 per seat per month

    page = _text(admin.get("/catalogue/cad-suite/subscribe?quantity=3"))
    # 3 seats × 16 days × €10.00 / 30 = €16.00 this month; €30.00 a whole month.
    assert "Cost of 3 seats" in page
    assert "This month (16 days left, today included)" in page
    assert "€16.00" in page and "€30.00" in page

    before = db_rows(app)
    response = post_form(
        admin,
        "/catalogue/cad-suite/subscribe",
        {"quantity": "4", "on_shortage": "reject", "preview": "1"},
    )
    assert response.status_code == 200
    page = _text(response)
    # 4 × 16 × 1000 / 30 = 2133.33… → €21.33 (rounded once, half up); €40.00 a month.
    assert "Cost of 4 seats" in page and "€21.33" in page and "€40.00" in page
    assert 'value="4"' in page  # the quantity typed is kept
    assert db_rows(app) == before  # a preview changes nothing

    russian = _text(
        admin.get("/catalogue/cad-suite/subscribe?quantity=4", headers={"Accept-Language": "ru"})
    )
    assert "21,33\xa0€" in russian and "40,00\xa0€" in russian
    assert "осталось 16 дней" in russian


def test_the_resize_preview_is_what_billing_then_charges(
    app, clock, make_org, make_product, signed_in
):
    clock.freeze(dt.datetime(2026, 9, 5, 9, tzinfo=dt.UTC))
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite", price=1000)
    sub_id = _subscribe(app, org, product, 2)  # 2 seats from 5 September
    clock.freeze(SEPT_15)
    admin = signed_in("org_admin", org)

    path = f"/org/subscriptions/{sub_id}"
    response = post_form(
        admin,
        f"{path}/resize",
        {"resize-quantity": "5", "resize-on_shortage": "reject", "preview": "1"},
        token_from=path,
    )
    assert response.status_code == 200
    page = _text(response)
    # Days 5–14: 2 seats; the 15th counts the higher, 5; 16–30: 5. 20 + 5 + 75 = 100 seat-days
    # → €33.33. Without the change 2 × 26 = 52 → €17.33: €16.00 more. A month of 5: €50.00.
    assert "€33.33" in page and "€16.00 more than without the change" in page
    assert "€50.00" in page
    with app.app_context():
        assert db.session.get(Subscription, sub_id).quantity == 2  # the preview changed nothing
        preview = seat_cost_preview(
            db.session,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=5,
            now=SEPT_15,
            subscription=db.session.get(Subscription, sub_id),
        )
    assert (preview.this_month, preview.now_this_month, preview.monthly) == (3333, 1733, 5000)

    # Resizing for real: the month's invoice charges what the preview said.
    response = post_form(
        admin,
        f"{path}/resize",
        {"resize-quantity": "5", "resize-on_shortage": "reject"},
        token_from=path,
    )
    assert response.status_code == 302
    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        charges = charges_for(
            db.session,
            organisation=organisation,
            period_start=dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
            until=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        )
    seat = [c for c in charges if c.kind == "seat"]
    assert [(c.amount, c.source["seat_days"]) for c in seat] == [(preview.this_month, 100)]


def test_no_preview_without_a_price(app, clock, make_org, make_product):
    clock.freeze(SEPT_15)
    org = make_org("alpha")
    product = make_product(10, sku="free-lunch", price=None)
    with app.app_context():
        assert (
            seat_cost_preview(
                db.session,
                organisation=db.session.get(Organisation, org.id),
                product=db.session.get(Product, product.id),
                quantity=1,
                now=SEPT_15,
            )
            is None
        )


# ---------------------------------------------------------------- seat-days and words


def test_the_dashboard_s_seat_days_agree_with_billing_and_the_usage_page(
    app, clock, make_org, make_product, make_user, signed_in
):
    """Issue 14 saw 360 and 90 seat-days for one product: 12 seats reserved, 3 assigned, over
    30 days. Both are right, and both are now named: reserved (billed) and assigned."""
    clock.freeze(dt.datetime(2026, 9, 1, 8, tzinfo=dt.UTC))
    org = make_org("alpha")
    people = [make_user("member", org) for _ in range(3)]
    product = make_product(20, sku="cad-suite", price=1000)
    sub_id = _subscribe(app, org, product, 12)
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        for person in people:
            services.seat_assign(
                db.session, actor=SYSTEM, subscription=sub, user_email=person.email
            )
        db.session.commit()
    clock.freeze(dt.datetime(2026, 9, 30, 18, tzinfo=dt.UTC))
    admin = signed_in("org_admin", org)

    page = _text(admin.get("/org"))
    row = page.split("Seat-days this month", 1)[1].split("Product cad-suite", 1)[1]
    cells = re.findall(r'<td class="num">([\d,]+)</td>', row.split("</tr>", 1)[0])
    assert cells == ["360", "90"]  # reserved seat-days, assigned seat-days
    assert "Reserved seat-days" in page and "Assigned seat-days" in page and "Held" not in page

    now = clock.now
    start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    with app.app_context():
        billed = charges_for(
            db.session,
            organisation=db.session.get(Organisation, org.id),
            period_start=start,
            until=now,
        )
        used = seat_utilisation(db.session, organisation_id=org.id, start=start, end=now)
    assert [c.source["seat_days"] for c in billed if c.kind == "seat"] == [360]
    assert [u.seat_days for u in used] == [90]


def test_seat_pages_use_the_glossary_words(app, make_org, make_product, signed_in):
    org = make_org("alpha")
    admin = signed_in("org_admin", org)
    product = make_product(3, sku="cad-suite")
    sub_id = _subscribe(app, org, product, 5, on_shortage="waitlist")
    for path in (
        "/org/subscriptions",
        f"/org/subscriptions/{sub_id}",
        "/catalogue",
        "/org",
        "/my",
    ):
        page = _text(admin.get(path))
        # Seats are reserved, never "held"; seats beyond them are waitlisted, not "waiting".
        shown = page.split("<main", 1)[1]
        assert not re.search(r"\b[Hh]eld\b|\bWaiting\b|\d waiting", shown), path
    detail = _text(admin.get(f"/org/subscriptions/{sub_id}"))
    for word in ("reserved", "assigned", "free", "waitlisted"):
        assert f"</strong>{word}</article>" in detail, word
    russian = _text(admin.get(f"/org/subscriptions/{sub_id}", headers={"Accept-Language": "ru"}))
    for word in ("зарезервировано", "назначено", "свободно", "в листе ожидания"):
        assert f"</strong>{word}</article>" in russian, word


def test_a_shortage_reads_as_a_sentence_in_both_languages(app, make_org, make_product):
    """'1 were asked for' was a plural bug: each language's plural forms now."""
    from flask_babel import force_locale

    org = make_org("alpha")
    product = make_product(1, sku="solo")
    with app.app_context():
        refusals = {}
        with pytest.raises(Conflict) as refused:
            services.subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=db.session.get(Product, product.id),
                quantity=2,
            )
        db.session.rollback()
        for language in ("en", "ru"):  # the message is read in the reader's language
            with force_locale(language):
                refusals[language] = refused.value.detail
    assert refusals["en"] == "Only 1 seat of Product solo is free; you asked for 2."
    assert refusals["ru"] == "Свободно только 1 место продукта Product solo; вы запросили 2."


def test_no_seats_are_added_or_waitlisted_once_no_pool_is_in_force(app, make_org, make_product):
    from portal.catalogue.models import LicencePool
    from portal.kernel.clock import now_utc

    org = make_org("alpha")
    product = make_product(5, sku="cad-suite")
    sub_id = _subscribe(app, org, product, 2)
    with app.app_context():  # the council's pool ended yesterday (set directly: a test)
        pool = db.session.scalar(sa.select(LicencePool).where(LicencePool.product_id == product.id))
        pool.ends_on = now_utc().date() - dt.timedelta(days=1)
        db.session.commit()
    before = db_rows(app)
    with app.app_context(), pytest.raises(InvalidState) as refused:
        services.subscription_resize(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            quantity=4,
            on_shortage="waitlist",
        )
    assert refused.value.code == "no_pool_in_force"
    assert db_rows(app) == before
    with app.app_context():  # fewer seats are always possible
        services.subscription_resize(
            db.session, actor=SYSTEM, subscription=db.session.get(Subscription, sub_id), quantity=1
        )
        db.session.commit()
        assert db.session.get(Subscription, sub_id).quantity == 1
