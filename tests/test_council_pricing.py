"""Council volume pricing (SPEC 8.3, issue 16): hand-computed tables.

A seat price with ``tier_basis: council`` chooses its (volume) tier by the
council-wide average reserved seats of the product in the month: every
organisation's seat-days, whatever its currency, ÷ days in the month, rounded
down. Each organisation then pays that tier's unit amount on its own seat-days,
rounded half-up once per line. The tables below are worked by hand.

Product ``team-chat``, tiers (limits inclusive):

============  ======  ======
seats         EUR     GBP
============  ======  ======
1 – 10        10.00    9.00
11 – 20        7.99    6.99
21 and more    5.00    4.50
============  ======  ======

Organisations: ``alpha`` (EUR) 6 seats from 1 February; ``beta`` (EUR) 4 seats
from 1 February, 12 from 10 February 00:00; ``gamma`` (GBP) 5 seats from
3 February. In March ``alpha`` goes down to 2 seats on 16 March 00:00.

February 2027 (28 days): seat-days alpha 6 × 28 = 168; beta 4 × 9 + 12 × 19 = 264;
gamma 5 × 26 = 130; council 562 ÷ 28 = 20.07 → 20 seats → tier 2 (the council
went from 15 to 23 seats on the 10th, across the boundary at 20: the average
decides, not the peak).

* alpha: 168 × 799 ÷ 28 = 4794 (exact)
* beta: 264 × 799 ÷ 28 = 7533.43 → 7533
* gamma: 130 × 699 ÷ 28 = 3245.36 → 3245
* council EUR: 432 × 799 ÷ 28 = 12327.43 → 12327 = 4794 + 7533

March 2027 (31 days): alpha 6 × 15 + 2 × 16 = 122; beta 12 × 31 = 372; gamma
5 × 31 = 155; council 649 ÷ 31 = 20.94 → 20 → tier 2.

* alpha: 122 × 799 ÷ 31 = 3144.45 → 3144
* beta: 372 × 799 ÷ 31 = 9588 (exact)
* gamma: 155 × 699 ÷ 31 = 3495 (exact)
* council EUR: 494 × 799 ÷ 31 = 12732.45 → 12732 = 3144 + 9588

Without alpha's drop in March the council would hold 23 × 31 ÷ 31 = 23 → tier 3
(``test_tier_three_when_the_council_grows``).
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
import sqlalchemy as sa

from portal.billing import drafting
from portal.billing.models import Invoice, InvoiceLine
from portal.billing.rating import Tier as RatingTier
from portal.billing.rating import council_average_seats, round_half_up, volume_tier
from portal.catalogue.models import Price, Product
from portal.catalogue.services import price_create
from portal.db import db
from portal.kernel.errors import ValidationFailed
from portal.kernel.scope import Scope
from portal.seats.models import Subscription
from portal.seats.subscriptions import subscription_create, subscription_resize
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, login

UTC = dt.UTC
EUR_TIERS = [
    {"up_to": 10, "unit_amount": 1000},
    {"up_to": 20, "unit_amount": 799},
    {"up_to": None, "unit_amount": 500},
]
GBP_TIERS = [
    {"up_to": 10, "unit_amount": 900},
    {"up_to": 20, "unit_amount": 699},
    {"up_to": None, "unit_amount": 450},
]


def _council_price(currency: str, tiers: list[dict]) -> dict:
    return {
        "product": "team-chat",
        "currency": currency,
        "model": "seat",
        "tier_mode": "volume",
        "tier_basis": "council",
        "tiers": tiers,
    }


def _subscribe(org_id: int, quantity: int, starts_on: dt.date) -> int:
    outcome = subscription_create(
        db.session,
        actor=SYSTEM,
        organisation=db.session.get(Organisation, org_id),
        product=db.session.scalar(sa.select(Product).where(Product.sku == "team-chat")),
        quantity=quantity,
        starts_on=starts_on,
    )
    db.session.commit()
    return outcome.subscription.id


def _resize(subscription_id: int, quantity: int) -> None:
    subscription_resize(
        db.session,
        actor=SYSTEM,
        subscription=db.session.get(Subscription, subscription_id),
        quantity=quantity,
    )
    db.session.commit()


@pytest.fixture
def council_priced(app, clock, make_org, make_product):
    """The three organisations and their seats of February and March 2027 (see above)."""
    clock.freeze("2027-02-01T00:00:00Z")
    product = make_product(100, sku="team-chat", vendor="chatworks", price=None)
    alpha = make_org("alpha", currency="EUR", tax_rate_bp=0)
    beta = make_org("beta", currency="EUR", tax_rate_bp=0)
    gamma = make_org("gamma", currency="GBP", country="GB", tax_rate_bp=0)
    with app.app_context():
        price_create(db.session, actor=SYSTEM, data=_council_price("EUR", EUR_TIERS))
        price_create(db.session, actor=SYSTEM, data=_council_price("GBP", GBP_TIERS))
        db.session.commit()
        subs = {
            "alpha": _subscribe(alpha.id, 6, dt.date(2027, 2, 1)),
            "beta": _subscribe(beta.id, 4, dt.date(2027, 2, 1)),
        }
        clock.freeze("2027-02-03T00:00:00Z")
        subs["gamma"] = _subscribe(gamma.id, 5, dt.date(2027, 2, 3))
        clock.freeze("2027-02-10T00:00:00Z")
        _resize(subs["beta"], 12)
    return {
        "product": product,
        "orgs": {"alpha": alpha, "beta": beta, "gamma": gamma},
        "subs": subs,
    }


def _lines_by_org(app, period: str) -> dict[str, InvoiceLine]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Organisation.slug, InvoiceLine)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Organisation, Organisation.id == Invoice.organisation_id)
            .where(Invoice.period == period, InvoiceLine.kind == "seat")
        ).all()
        for _, line in rows:
            db.session.expunge(line)
        return {slug: line for slug, line in rows}  # noqa: C416 (rows of two)


def _draft_each(app, orgs, period: str) -> None:
    """Each organisation's draft on its own (the organisation's scope: the council-wide
    quantity is read across organisations all the same)."""
    with app.app_context():
        for org in orgs.values():
            drafting.invoice_draft_refresh(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                period=period,
            )
        db.session.commit()


def _run(app, orgs, period: str) -> None:
    """The invoice run's way: the month's inputs loaded once, council-wide."""
    with app.app_context():
        inputs = drafting.draft_inputs(
            db.session,
            period=period,
            now=dt.datetime.now(UTC).replace(year=2099),
            scope=Scope.council(),
        )
        billed = [drafting.Billed.of(db.session.get(Organisation, o.id)) for o in orgs.values()]
        drafting.drafts_write(db.session, actor=SYSTEM, organisations=billed, inputs=inputs)
        db.session.commit()


FEBRUARY = {
    # org: (seat-days, currency, unit amount of tier 2, amount)
    "alpha": (168, "EUR", 799, 4794),
    "beta": (264, "EUR", 799, 7533),
    "gamma": (130, "GBP", 699, 3245),
}
MARCH = {
    "alpha": (122, "EUR", 799, 3144),
    "beta": (372, "EUR", 799, 9588),
    "gamma": (155, "GBP", 699, 3495),
}


def _check_table(lines: dict[str, InvoiceLine], table: dict, *, days: int, council: int) -> None:
    assert set(lines) == set(table)
    for slug, (seat_days, _currency, unit, amount) in table.items():
        line = lines[slug]
        assert line.source["seat_days"] == seat_days, slug
        assert line.unit_amount == unit, slug
        assert line.amount == amount, slug
        assert line.council_quantity == council and line.tier == 2, slug
        assert f"council volume: {council} seats → tier 2" in line.description
    # The organisations' lines add up to the council-wide amount of each currency within
    # one minor unit per organisation (here: exactly, the roundings happen to cancel).
    for currency in ("EUR", "GBP"):
        rows = [(v[0], v[2]) for v in table.values() if v[1] == currency]
        whole = round_half_up(Fraction(sum(d for d, _ in rows) * rows[0][1], days))
        billed = sum(lines[s].amount for s, v in table.items() if v[1] == currency)
        assert abs(whole - billed) <= len(rows)
    assert lines["alpha"].amount + lines["beta"].amount == {28: 12327, 31: 12732}[days]


def test_february_each_organisation_drafted_alone(app, clock, council_priced):
    clock.freeze("2027-03-02T09:00:00Z")
    _draft_each(app, council_priced["orgs"], "2027-02")
    _check_table(_lines_by_org(app, "2027-02"), FEBRUARY, days=28, council=20)


def test_february_in_an_invoice_run(app, clock, council_priced):
    clock.freeze("2027-03-02T09:00:00Z")
    _run(app, council_priced["orgs"], "2027-02")
    _check_table(_lines_by_org(app, "2027-02"), FEBRUARY, days=28, council=20)


def test_march_a_31_day_month(app, clock, council_priced):
    clock.freeze("2027-03-16T00:00:00Z")
    with app.app_context():
        _resize(council_priced["subs"]["alpha"], 2)
    clock.freeze("2027-04-01T08:00:00Z")
    _draft_each(app, council_priced["orgs"], "2027-03")
    _check_table(_lines_by_org(app, "2027-03"), MARCH, days=31, council=20)
    # The run agrees with the drafts made one by one.
    _run(app, council_priced["orgs"], "2027-03")
    _check_table(_lines_by_org(app, "2027-03"), MARCH, days=31, council=20)


def test_tier_three_when_the_council_grows(app, clock, council_priced):
    """March without alpha's drop: 23 seats all month → tier 3 (5.00 EUR, 4.50 GBP)."""
    clock.freeze("2027-04-01T08:00:00Z")
    _draft_each(app, council_priced["orgs"], "2027-03")
    lines = _lines_by_org(app, "2027-03")
    assert {
        s: (line.council_quantity, line.tier, line.unit_amount, line.amount)
        for s, line in lines.items()
    } == {
        "alpha": (23, 3, 500, 3000),  # 186 × 500 ÷ 31
        "beta": (23, 3, 500, 6000),  # 372 × 500 ÷ 31
        "gamma": (23, 3, 450, 2250),  # 155 × 450 ÷ 31
    }


def test_the_member_sees_the_tier_on_the_invoice(app, clock, council_priced, make_user, client):
    """Page, PDF and API show "council volume: N seats → tier X"."""
    import io

    import pypdf

    from portal.billing.lifecycle import invoice_finalize

    clock.freeze("2027-03-02T09:00:00Z")
    beta = council_priced["orgs"]["beta"]
    _draft_each(app, {"beta": beta}, "2027-02")
    with app.app_context():
        invoice = db.session.scalar(sa.select(Invoice).where(Invoice.organisation_id == beta.id))
        invoice_finalize(db.session, actor=SYSTEM, invoice=invoice)
        db.session.commit()
        invoice_id = invoice.id
    admin = make_user("org_admin", beta)
    login(client, admin)
    page = client.get(f"/org/invoices/{invoice_id}")
    assert page.status_code == 200
    assert "council volume: 20 seats → tier 2" in page.get_data(as_text=True)
    pdf = client.get(f"/org/invoices/{invoice_id}.pdf")
    assert pdf.status_code == 200
    text = " ".join(
        " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.data)).pages).split()
    )
    assert "council volume: 20 seats" in text and "tier 2" in text


def _council_token(app) -> str:
    from portal.api.services import token_create

    with app.app_context():
        _, plaintext = token_create(
            db.session, actor=SYSTEM, scope="council", organisation=None, vendor=None, name="t"
        )
        db.session.commit()
        return plaintext


def test_api_price_and_invoice_line(app, clock, council_priced, client):
    clock.freeze("2027-03-02T09:00:00Z")
    headers = {"Authorization": f"Bearer {_council_token(app)}"}
    created = client.post("/api/v1/prices", json=_council_price("USD", EUR_TIERS), headers=headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["tier_basis"] == "council"
    flat = client.post(
        "/api/v1/prices",
        json={"product": "team-chat", "currency": "CHF", "model": "seat", "unit_amount": 100},
        headers=headers,
    )
    assert flat.status_code == 201 and flat.get_json()["tier_basis"] == "organisation"
    refused = client.post(
        "/api/v1/prices",
        json={**_council_price("JPY", EUR_TIERS), "tier_mode": "graduated"},
        headers=headers,
    )
    assert refused.status_code == 422
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).select_from(Price).where(Price.currency == "JPY")
            )
            == 0
        )

    _draft_each(app, council_priced["orgs"], "2027-02")
    with app.app_context():
        invoice_id = db.session.scalar(
            sa.select(Invoice.id).where(
                Invoice.organisation_id == council_priced["orgs"]["gamma"].id
            )
        )
    body = client.get(f"/api/v1/invoices/{invoice_id}", headers=headers).get_json()
    (line,) = body["lines"]
    assert (line["council_quantity"], line["tier"], line["unit_amount"], line["amount"]) == (
        20,
        2,
        699,
        3245,
    )
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert "tier_basis" in schema["PriceOut"]["properties"]


def test_rating_helpers():
    tiers = [RatingTier(10, 1000), RatingTier(20, 799), RatingTier(None, 500)]
    assert volume_tier(tiers, 0) == (1, tiers[0])
    assert volume_tier(tiers, 10) == (1, tiers[0])
    assert volume_tier(tiers, 11) == (2, tiers[1])
    assert volume_tier(tiers, 20) == (2, tiers[1])
    assert volume_tier(tiers, 21) == (3, tiers[2])
    assert council_average_seats(seat_days=562, days_in_month=28) == 20
    assert council_average_seats(seat_days=27, days_in_month=28) == 0
    with pytest.raises(ValueError):
        council_average_seats(seat_days=1, days_in_month=32)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "metered", "meter": "api_calls"},  # council basis is for seat prices
        {"tier_mode": "graduated"},  # … with volume tiers
        {"tier_mode": None, "tiers": []},  # … that has tiers
        {"tiers": [{"up_to": 10, "unit_amount": 1000, "flat_amount": 500}, {"unit_amount": 1}]},
        {"tier_basis": "region"},  # unknown
    ],
)
def test_refused_council_prices_change_nothing(app, make_product, change):
    make_product(10, sku="team-chat", vendor="chatworks", price=None)
    data = {**_council_price("EUR", EUR_TIERS), **change}
    with app.app_context():
        with pytest.raises(ValidationFailed):
            price_create(db.session, actor=SYSTEM, data=data)
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Price)) == 0


def test_the_cost_preview_and_the_catalogue_speak_of_council_volume(
    app, clock, council_priced, make_org
):
    """On 20 February a fourth organisation (EUR) considers 5 seats: the council holds
    562 seat-days this month (20 seats), its 5 seats for the 9 days left add 45: 607 ÷ 28
    = 21 seats → tier 3, 5.00 EUR. Its catalogue shows the price's range."""
    from portal.billing.preview import seat_cost_preview
    from tests.support import client_for

    clock.freeze("2027-02-20T00:00:00Z")
    delta = make_org("delta", currency="EUR")
    with app.app_context():
        preview = seat_cost_preview(
            db.session,
            organisation=db.session.get(Organisation, delta.id),
            product=db.session.scalar(sa.select(Product).where(Product.sku == "team-chat")),
            quantity=5,
            now=dt.datetime(2027, 2, 20, tzinfo=UTC),
        )
    assert (preview.council_quantity, preview.tier, preview.unit_amount) == (21, 3, 500)
    assert preview.this_month == 804  # 45 × 500 ÷ 28 = 803.57
    assert preview.monthly == 2500
    admin = client_for(app, "org_admin", delta)
    page = admin.get("/catalogue/team-chat/subscribe?quantity=5").get_data(as_text=True)
    assert "tier 3" in page and "€5.00" in page
    catalogue = admin.get("/catalogue").get_data(as_text=True)
    assert "€5.00 to €10.00 per seat per month" in catalogue


def test_cost_so_far_reads_the_council_quantity_in_the_organisations_scope(
    app, clock, council_priced
):
    """An org admin's usage page (its own scope; row-level security on PostgreSQL) rates
    February so far at the tier of every organisation's seats: 20 → tier 2."""
    from tests.support import client_for

    clock.freeze("2027-02-20T10:00:00Z")
    admin = client_for(app, "org_admin", council_priced["orgs"]["beta"])
    page = admin.get("/org/usage")
    assert page.status_code == 200
    assert "council volume: 20 seats → tier 2" in page.get_data(as_text=True)
