"""The catalogue pages: the council's vendors, products, meters, pools and prices;
the members' catalogue; the money helper behind every amount typed or shown.

A refused form must change nothing: those tests compare every row of every
table before and after (``db_rows``).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.catalogue.models import LicencePool, Price, Product, Vendor
from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.money import format_money, from_minor, to_minor
from portal.seats import services as seat_services
from portal.seats.models import SeatRequest, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, flashes, post_form
from tests.support import db_rows

TODAY = now_utc().date()


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _messages(response) -> list[str]:
    return [html.unescape(m).strip() for m in flashes(response)]


def _one(app, model, *where):
    with app.app_context():
        obj = db.session.scalars(sa.select(model).where(*where)).unique().one_or_none()
        db.session.expunge_all() if obj is None else None
        return obj


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _subscribe(app, org, product, quantity, on_shortage="reject"):
    with app.app_context():
        outcome = seat_services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=quantity,
            on_shortage=on_shortage,
        )
        db.session.commit()
        return outcome.subscription.id


def _assign(app, sub_id, email):
    with app.app_context():
        seat_services.seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            user_email=email,
        )
        db.session.commit()


def _is_sign_in_redirect(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


class _Clients(dict):
    """A signed-in client per role, made when first asked for (signing in hashes a password)."""

    def __init__(self, app, org, signed_in):
        super().__init__(org=org)
        self._app, self._signed_in = app, signed_in

    def __missing__(self, role: str):
        client = (
            self._app.test_client()
            if role == "anonymous"
            else self._signed_in(role, self["org"] if role in ("org_admin", "member") else None)
        )
        self[role] = client
        return client


@pytest.fixture
def clients(app, make_org, signed_in):
    """A client per role; the organisation roles in one organisation (EUR).

    The council admin, whom most tests use, is signed in at once, so that
    snapshots of the database taken later do not see the sign-in.
    """
    made = _Clients(app, make_org("alpha"), signed_in)
    made["council_admin"]
    return made


# ---------------------------------------------------------------- who sees what


def test_council_pages_answer_each_role_as_they_should(clients, make_product):
    product = make_product(10, sku="cad-suite")
    readable = [
        "/council/catalogue",
        "/council/catalogue?q=cad",
        "/council/vendors",
        "/council/vendors/acme-soft",
        f"/council/products/{product.sku}",
    ]
    admin_only = ["/council/vendors/new", "/council/products/new"]
    for path in readable + admin_only:
        assert clients["council_admin"].get(path).status_code == 200, path
        assert _is_sign_in_redirect(clients["anonymous"].get(path)), path
        assert clients["org_admin"].get(path).status_code == 403, path
        assert clients["member"].get(path).status_code == 403, path
    for path in readable:
        assert clients["finance"].get(path).status_code == 200, path
    for path in admin_only:
        assert clients["finance"].get(path).status_code == 403, path
    assert clients["council_admin"].get("/council/products/no-such").status_code == 404
    assert clients["council_admin"].get("/council/vendors/no-such").status_code == 404


def test_members_catalogue_is_for_organisation_people_only(clients, make_product):
    make_product(5, sku="cad-suite")
    for role in ("org_admin", "member"):
        response = clients[role].get("/catalogue")
        assert response.status_code == 200, role
        assert "Product cad-suite" in _text(response)
    assert clients["council_admin"].get("/catalogue").status_code == 403
    assert clients["finance"].get("/catalogue").status_code == 403
    assert _is_sign_in_redirect(clients["anonymous"].get("/catalogue"))


def test_navigation_links_for_each_role(clients):
    expected = {
        "council_admin": ["/council/catalogue", "/council/vendors"],
        "finance": ["/council/catalogue"],
        "org_admin": ["/org/subscriptions", "/catalogue", "/org/seat-requests"],
        "member": ["/my", "/catalogue"],
    }
    for role, links in expected.items():
        page = clients[role].get("/my").get_data(as_text=True)
        nav = page.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
        for link in links:
            assert f'href="{link}"' in nav, (role, link)
    finance_nav = clients["finance"].get("/my").get_data(as_text=True).split("</nav>")[0]
    assert 'href="/council/vendors"' not in finance_nav


def test_finance_reads_the_product_page_without_forms(clients, make_product):
    make_product(10, sku="cad-suite")
    page = _text(clients["finance"].get("/council/products/cad-suite"))
    assert "Licence pools" in page and "Prices" in page
    for form in ("Add a pool", "Add a price", "Add a meter", "Edit name"):
        assert form not in page, form
    page = _text(clients["council_admin"].get("/council/products/cad-suite"))
    for form in ("Add a pool", "Add a price", "Add a meter", "Edit name"):
        assert form in page, form


def test_finance_cannot_post_to_the_council_catalogue(app, clients, make_product):
    make_product(10, sku="cad-suite")
    finance = clients["finance"]
    before = db_rows(app)
    posts = {
        "/council/vendors/new": {"slug": "new-vendor", "name": "New"},
        "/council/vendors/acme-soft": {"name": "Renamed", "status": "suspended"},
        "/council/products/new": {"vendor": "acme-soft", "sku": "new-one", "name": "New"},
        "/council/products/cad-suite": {"product-name": "Renamed"},
        "/council/products/cad-suite/meters": {"meter-key": "gb", "meter-name": "GB"},
        "/council/products/cad-suite/pools": {"pool-capacity": "5"},
        "/council/products/cad-suite/prices": {"price-currency": "USD"},
    }
    for path, data in posts.items():
        response = post_form(finance, path, data, token_from="/council/catalogue")
        assert response.status_code == 403, path
    assert db_rows(app) == before


# ---------------------------------------------------------------- the council's catalogue


def test_catalogue_shows_the_seat_figures_of_each_product(app, clients, make_org, make_product):
    product = make_product(10, sku="cad-suite")
    make_product(0, sku="no-pool", price=None)
    other = make_org("bravo")
    sub_id = _subscribe(app, clients["org"], product, 4)
    _subscribe(app, other, product, 9, on_shortage="waitlist")  # 6 granted, 3 waiting
    _assign(app, sub_id, clients["member"].user.email)

    page = _text(clients["council_admin"].get("/council/catalogue"))
    assert "10 of 10 seats reserved, 1 assigned, 0 available, 3 waitlisted" in page
    assert "0 of 0 seats reserved, 0 assigned, 0 available" in page
    row = page.split("Product cad-suite", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="num">(?:<strong>)?(\d+)', row)
    # capacity, reserved, assigned, available, waitlisted
    assert cells == ["10", "10", "1", "0", "3"]
    assert "Acme-Soft" in row and "active" in row

    searched = _text(clients["council_admin"].get("/council/catalogue?q=no-pool"))
    assert "Product no-pool" in searched and "Product cad-suite" not in searched


def test_product_page_lists_pools_prices_and_holders(app, clients, make_org, make_product):
    product = make_product(10, sku="cad-suite", price=1250)
    _subscribe(app, clients["org"], product, 3)
    page = _text(clients["council_admin"].get("/council/products/cad-suite"))
    assert "€12.50" in page  # the seat price
    assert "€5.00" in page  # the pool's unit cost (500 minor units)
    assert "https://cad-suite.example/launch" in page
    assert "api_calls" in page
    holders = page.split('id="holders"', 1)[1]
    assert "Org alpha" in holders
    assert re.search(r'<td class="num">3</td>', holders)


# ---------------------------------------------------------------- vendors


def test_council_admin_creates_and_edits_a_vendor(app, clients):
    admin = clients["council_admin"]
    response = post_form(
        admin,
        "/council/vendors/new",
        {
            "slug": "northwind",
            "name": "Northwind Software",
            "status": "active",
            "contact_email": "sales@northwind.example",
            "website": "",
            "status_note": "",
        },
    )
    assert response.status_code == 302, _messages(response)
    vendor = _one(app, Vendor, Vendor.slug == "northwind")
    assert (vendor.name, vendor.status, vendor.website) == ("Northwind Software", "active", None)
    assert "Northwind Software is added." in _messages(admin.get(response.headers["Location"]))

    response = post_form(
        admin,
        "/council/vendors/northwind",
        {
            "name": "Northwind Software",
            "status": "under_review",
            "status_note": "Data-protection audit until March.",
            "contact_email": "sales@northwind.example",
            "website": "https://northwind.example",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    vendor = _one(app, Vendor, Vendor.slug == "northwind")
    assert vendor.status == "under_review"
    assert vendor.status_note == "Data-protection audit until March."
    listing = _text(admin.get("/council/vendors"))
    assert "under review" in listing and "Data-protection audit until March." in listing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"slug": "northwind", "name": ""}, "This field is required."),
        ({"slug": "northwind", "name": "N" * 201}, "200 characters"),
        ({"slug": "Bad Slug!", "name": "Northwind"}, "lower-case letters"),
        ({"slug": "northwind", "name": "Northwind", "status": "gone"}, "Not a valid choice"),
        ({"slug": "northwind", "name": "Northwind", "contact_email": "nope"}, "valid email"),
        ({"slug": "acme-soft", "name": "Another Acme"}, "This slug is taken; choose another."),
    ],
)
def test_bad_vendor_input_is_shown_and_changes_nothing(app, clients, make_product, data, message):
    make_product(1, sku="cad-suite")  # vendor acme-soft exists
    before = db_rows(app)
    response = post_form(
        clients["council_admin"], "/council/vendors/new", {"status": "active", **data}
    )
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


def test_stale_csrf_token_is_refused_with_a_message(app, clients, make_product):
    make_product(1, sku="cad-suite")
    admin = clients["council_admin"]
    before = db_rows(app)
    for path, data in {
        "/council/vendors/new": {"slug": "northwind", "name": "Northwind", "csrf_token": "old"},
        "/council/products/cad-suite/pools": {"pool-capacity": "5", "pool-csrf_token": "old"},
        "/council/products/cad-suite/pools/1": {"capacity": "3"},
    }.items():
        response = admin.post(path, data=data)
        assert response.status_code == 400, path
        assert "This form has expired or was opened in another session, so nothing was saved" in (
            _text(response)
        ), path
    assert db_rows(app) == before


# ---------------------------------------------------------------- products and meters


def test_council_admin_creates_a_product_and_adds_a_meter(app, clients, make_product):
    make_product(1, sku="cad-suite")
    admin = clients["council_admin"]
    response = post_form(
        admin,
        "/council/products/new",
        {
            "vendor": "acme-soft",
            "sku": "render-farm",
            "name": "Render Farm",
            "description": "GPU rendering.\nBilled by the minute.",
            "launch_url": "https://render.example/app",
        },
    )
    assert response.status_code == 302, _messages(response)
    assert response.headers["Location"] == "/council/products/render-farm"
    product = _one(app, Product, Product.sku == "render-farm")
    assert (product.name, product.launch_url) == ("Render Farm", "https://render.example/app")

    response = post_form(
        admin,
        "/council/products/render-farm/meters",
        {
            "meter-key": "gpu_minutes",
            "meter-name": "GPU minutes",
            "meter-unit": "minute",
            "meter-aggregation": "sum",
        },
        token_from="/council/products/render-farm",
    )
    assert response.status_code == 302, _messages(response)
    page = _text(admin.get("/council/products/render-farm"))
    assert "gpu_minutes" in page and "Meter “gpu_minutes” is added." in page

    response = post_form(
        admin,
        "/council/products/render-farm",
        {"product-name": "Render Farm Pro", "product-description": "", "product-launch_url": ""},
        token_from="/council/products/render-farm",
    )
    assert response.status_code == 302, _messages(response)
    product = _one(app, Product, Product.sku == "render-farm")
    assert (product.name, product.description, product.launch_url) == ("Render Farm Pro", "", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sku": "cad-suite"}, "This SKU is taken; choose another."),
        ({"name": ""}, "This field is required."),
        ({"name": "x" * 201}, "200 characters"),
        ({"vendor": "no-such"}, "Not a valid choice"),
        ({"launch_url": "javascript:alert(1)"}, "Enter a web address starting with https://"),
    ],
)
def test_bad_product_input_is_shown_and_changes_nothing(app, clients, make_product, data, message):
    make_product(1, sku="cad-suite")
    before = db_rows(app)
    form = {"vendor": "acme-soft", "sku": "render-farm", "name": "Render Farm", **data}
    response = post_form(clients["council_admin"], "/council/products/new", form)
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "api_calls"}, "This product already has a meter with this key."),
        ({"key": "API Calls"}, "Use lower-case letters, digits"),
        ({"key": ""}, "This field is required."),
        ({"unit": "u" * 41}, "40 characters"),
        ({"aggregation": "unique_count"}, "A unique_count meter needs the property"),
        ({"aggregation": "median"}, "Not a valid choice"),
    ],
)
def test_bad_meter_input_is_shown_and_changes_nothing(app, clients, make_product, data, message):
    make_product(1, sku="cad-suite")
    before = db_rows(app)
    form = {"key": "gb_stored", "name": "Storage", "unit": "GB", "aggregation": "max", **data}
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/meters",
        {f"meter-{k}": v for k, v in form.items()},
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


# ---------------------------------------------------------------- pools


def _pool_form(**overrides):
    data = {
        "capacity": "25",
        "starts_on": TODAY.isoformat(),
        "ends_on": (TODAY + dt.timedelta(days=364)).isoformat(),
        "unit_cost_amount": "12.50",
        "unit_cost_currency": "EUR",
        "reference": "PO-2025-17",
    }
    data.update(overrides)
    return {f"pool-{k}": v for k, v in data.items()}


def test_council_admin_adds_a_pool_with_a_unit_cost(app, clients, make_product):
    product = make_product(0, sku="cad-suite")
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/pools",
        _pool_form(),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302, _messages(response)
    pool = _one(app, LicencePool, LicencePool.product_id == product.id)
    assert (pool.capacity, pool.unit_cost_amount, pool.unit_cost_currency) == (25, 1250, "EUR")
    assert pool.reference == "PO-2025-17"
    page = _text(clients["council_admin"].get("/council/products/cad-suite"))
    assert "€12.50" in page and "A pool of 25 seats is added." in page


def test_a_pool_cost_in_yen_has_no_decimals(app, clients, make_product):
    product = make_product(0, sku="cad-suite")
    admin = clients["council_admin"]
    before = db_rows(app)
    response = post_form(
        admin,
        "/council/products/cad-suite/pools",
        _pool_form(unit_cost_amount="1500.5", unit_cost_currency="JPY"),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    assert "JPY has no decimals; enter a whole amount." in _messages(response)
    assert db_rows(app) == before
    response = post_form(
        admin,
        "/council/products/cad-suite/pools",
        _pool_form(unit_cost_amount="1500", unit_cost_currency="JPY"),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302
    assert _one(app, LicencePool, LicencePool.product_id == product.id).unit_cost_amount == 1500


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"capacity": "-5"}, "Enter 1 or more."),
        ({"capacity": "0"}, "Enter 1 or more."),
        ({"capacity": ""}, "This field is required."),
        ({"capacity": "lots"}, "Not a valid integer value."),
        ({"ends_on": (TODAY - dt.timedelta(days=1)).isoformat()}, "must end on or after"),
        ({"ends_on": "31/12/2025"}, "Not a valid date value."),
        ({"unit_cost_currency": "XYZ"}, "Not a valid choice"),
        ({"unit_cost_amount": "-1"}, "Enter 0 or more."),
        ({"unit_cost_amount": "12.505"}, "EUR has 2 decimals"),
        ({"unit_cost_amount": "ten"}, "Not a valid decimal value."),
        ({"reference": "r" * 201}, "200 characters"),
    ],
)
def test_bad_pool_input_is_shown_and_changes_nothing(
    app, clients, make_product, overrides, message
):
    make_product(0, sku="cad-suite")
    before = db_rows(app)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/pools",
        _pool_form(**overrides),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


def test_pool_capacity_edit_grows_and_refuses_to_shrink_below_reserved(
    app, clients, make_org, make_product
):
    product = make_product(10, sku="cad-suite")
    admin = clients["council_admin"]
    _subscribe(app, clients["org"], product, 8)
    other = make_org("bravo")
    _subscribe(app, other, product, 5, on_shortage="waitlist")  # 2 granted, 3 waiting
    pool = _one(app, LicencePool, LicencePool.product_id == product.id)

    before = db_rows(app)
    response = post_form(
        admin,
        f"/council/products/cad-suite/pools/{pool.id}",
        {"capacity": "5"},
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302
    messages = _messages(admin.get(response.headers["Location"]))
    assert any(
        "Members reserve 10 seats" in m and "At least 10 seats needed." in m for m in messages
    )
    assert db_rows(app) == before

    response = post_form(
        admin,
        f"/council/products/cad-suite/pools/{pool.id}",
        {"capacity": "-1"},
        token_from="/council/products/cad-suite",
    )
    assert any("Enter 1 or more." in m for m in _messages(admin.get("/council/catalogue")))
    assert db_rows(app) == before

    # Growing the pool grants the waiting seats at once.
    response = post_form(
        admin,
        f"/council/products/cad-suite/pools/{pool.id}",
        {"capacity": "20", "ends_on": (TODAY + dt.timedelta(days=400)).isoformat()},
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(LicencePool, pool.id).capacity == 20
        waiting = db.session.scalar(
            sa.select(Subscription).where(Subscription.organisation_id == other.id)
        )
        assert (waiting.quantity, waiting.waiting) == (5, 0)


def test_a_pool_of_another_product_is_not_found(app, clients, make_product):
    make_product(10, sku="cad-suite")
    other = make_product(10, sku="other-one")
    pool = _one(app, LicencePool, LicencePool.product_id == other.id)
    before = db_rows(app)
    response = post_form(
        clients["council_admin"],
        f"/council/products/cad-suite/pools/{pool.id}",
        {"capacity": "1"},
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 404
    assert db_rows(app) == before


# ---------------------------------------------------------------- prices


def _price_form(tiers=(), **overrides):
    data = {
        "currency": "EUR",
        "model": "seat",
        "meter": "",
        "unit_amount": "12.50",
        "tier_mode": "",
    }
    data.update(overrides)
    form = {f"price-{k}": v for k, v in data.items()}
    for i, (up_to, unit, flat) in enumerate(tiers):
        form[f"price-tiers-{i}-up_to"] = up_to
        form[f"price-tiers-{i}-unit_amount"] = unit
        form[f"price-tiers-{i}-flat_amount"] = flat
    return form


@pytest.mark.parametrize(
    ("currency", "typed", "stored", "shown"),
    [
        ("EUR", "12.50", 1250, "€12.50"),
        ("JPY", "1500", 1500, "¥1,500"),
        ("BHD", "12.345", 12345, "BHD12.345"),
        ("USD", "0", 0, "$0.00"),
    ],
)
def test_a_seat_price_is_typed_in_major_units_and_stored_in_minor(
    app, clients, make_product, currency, typed, stored, shown
):
    product = make_product(1, sku="cad-suite", price=None)
    admin = clients["council_admin"]
    response = post_form(
        admin,
        "/council/products/cad-suite/prices",
        _price_form(currency=currency, unit_amount=typed),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302, _messages(response)
    price = _one(app, Price, Price.product_id == product.id)
    assert (price.currency, price.model, price.unit_amount) == (currency, "seat", stored)
    assert shown in _text(admin.get("/council/products/cad-suite"))


def test_a_metered_price_with_tiers_ignores_empty_rows(app, clients, make_product):
    product = make_product(1, sku="cad-suite", price=None)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/prices",
        _price_form(
            model="metered",
            meter="api_calls",
            unit_amount="",
            tier_mode="graduated",
            tiers=[("1000", "0.05", ""), ("", "", ""), ("", "0.01", "5")],
        ),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 302, _messages(response)
    with app.app_context():
        price = db.session.scalar(sa.select(Price).where(Price.product_id == product.id))
        assert (price.model, price.meter.key, price.tier_mode) == (
            "metered",
            "api_calls",
            "graduated",
        )
        assert [(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers] == [
            (1000, 5, 0),
            (None, 1, 500),
        ]
    page = _text(clients["council_admin"].get("/council/products/cad-suite"))
    assert "up to 1,000: €0.05 each" in page
    assert "above: €0.01 each + €5.00 flat" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (_price_form(currency="XYZ"), "Not a valid choice"),
        (_price_form(currency=""), "This field is required."),
        (_price_form(unit_amount=""), "Enter an amount (0 for free)."),
        (_price_form(unit_amount="-3"), "Enter 0 or more."),
        (_price_form(unit_amount="1.234"), "EUR has 2 decimals"),
        (_price_form(currency="JPY", unit_amount="10.5"), "JPY has no decimals"),
        (_price_form(model="metered", meter=""), "A metered price needs the meter it prices."),
        (_price_form(model="free"), "Not a valid choice"),
        (
            _price_form(
                model="metered",
                meter="api_calls",
                tier_mode="volume",
                tiers=[("100", "1", ""), ("50", "2", "")],
            ),
            "The last tier must have no upper limit",
        ),
        (
            _price_form(
                model="metered", meter="api_calls", tiers=[("", "1.001", "")], tier_mode="volume"
            ),
            "EUR has 2 decimals",
        ),
        (
            _price_form(model="metered", meter="api_calls", tiers=[("", "1", "")]),
            "Tiers need a tier mode",
        ),
    ],
)
def test_bad_price_input_is_shown_and_changes_nothing(app, clients, make_product, form, message):
    make_product(1, sku="cad-suite", price=None)
    before = db_rows(app)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/prices",
        form,
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


def test_a_second_price_in_the_same_currency_is_refused(app, clients, make_product):
    make_product(1, sku="cad-suite", price=100, currency="EUR")
    before = db_rows(app)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/prices",
        _price_form(currency="EUR"),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    assert "A price in this currency exists already." in _messages(response)
    assert db_rows(app) == before


def test_a_tier_row_error_is_shown_beside_its_row(app, clients, make_product):
    make_product(1, sku="cad-suite", price=None)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/prices",
        _price_form(
            model="metered",
            meter="api_calls",
            tier_mode="graduated",
            tiers=[("", "", ""), ("100", "0.5", ""), ("", "0.123", "")],
        ),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'id="price-tiers-2-unit_amount-error" class="field-error">EUR has 2', page)
    assert 'id="price-tiers-1-unit_amount-error"' not in page


# ---------------------------------------------------------------- the members' catalogue


def test_members_see_prices_in_their_currency_and_ask_for_a_seat(
    app, make_org, signed_in, make_product
):
    make_product(5, sku="cad-suite", price=1250, currency="EUR")
    with app.app_context():
        from portal.catalogue.services import price_create

        price_create(
            db.session,
            actor=SYSTEM,
            data={"product": "cad-suite", "currency": "JPY", "model": "seat", "unit_amount": 1900},
        )
        db.session.commit()
    tokyo = make_org("tokyo", currency="JPY", country="JP")
    member = signed_in("member", tokyo)
    page = _text(member.get("/catalogue"))
    assert "¥1,900 per seat per month" in page and "€12.50" not in page
    assert "https://cad-suite.example/launch" in page
    assert "Request a seat" in page

    response = post_form(
        member,
        "/catalogue/cad-suite/request",
        {"note": "For the bridge design"},
        token_from="/catalogue",
    )
    assert response.status_code == 302
    page = _text(member.get(response.headers["Location"]))
    assert "Your request for Product cad-suite went to your organisation's admin." in page
    assert "You asked for a seat" in page and "Request a seat</button>" not in page
    with app.app_context():
        request = db.session.scalar(sa.select(SeatRequest))
        assert (request.organisation_id, request.note) == (tokyo.id, "For the bridge design")

    # Asking twice is refused and changes nothing.
    before = db_rows(app)
    response = post_form(member, "/catalogue/cad-suite/request", {}, token_from="/catalogue")
    assert "You already asked for Product cad-suite; your admin will answer." in _messages(
        member.get(response.headers["Location"])
    )
    assert db_rows(app) == before


def test_a_product_without_a_price_in_the_currency_says_so(app, make_org, signed_in, make_product):
    make_product(5, sku="cad-suite", price=1250, currency="EUR")
    member = signed_in("member", make_org("london", currency="GBP", country="GB"))
    assert "No price in GBP yet" in _text(member.get("/catalogue"))


def test_vendors_under_review_or_suspended_are_flagged(app, clients, make_product):
    make_product(5, sku="cad-suite", vendor="shaky-soft", vendor_status="under_review")
    make_product(5, sku="good-one")
    admin_page = _text(clients["org_admin"].get("/catalogue"))
    card = admin_page.split('id="product-cad-suite"', 1)[1].split("</article>", 1)[0]
    assert "vendor under review" in card
    assert "cannot be newly subscribed" in card
    assert "/catalogue/cad-suite/subscribe" not in card
    good = admin_page.split('id="product-good-one"', 1)[1].split("</article>", 1)[0]
    assert "/catalogue/good-one/subscribe" in good

    # The page refuses too, whatever is posted.
    before = db_rows(app)
    response = post_form(
        clients["org_admin"],
        "/catalogue/cad-suite/subscribe",
        {"quantity": "1", "on_shortage": "reject"},
        token_from="/catalogue",
    )
    assert response.status_code == 400
    assert any("cannot be newly subscribed" in m for m in _messages(response))
    assert db_rows(app) == before


def test_members_catalogue_search(clients, make_product):
    make_product(5, sku="cad-suite")
    make_product(5, sku="mail-hub")
    page = _text(clients["member"].get("/catalogue?q=mail"))
    assert "Product mail-hub" in page and "Product cad-suite" not in page
    page = _text(clients["member"].get("/catalogue?q=%25"))
    assert "No products match" in page


def test_org_admin_sees_its_subscription_instead_of_subscribe(app, clients, make_product):
    product = make_product(5, sku="cad-suite")
    sub_id = _subscribe(app, clients["org"], product, 2)
    page = _text(clients["org_admin"].get("/catalogue"))
    assert "Your organisation reserves 2 seats." in page
    assert f"/org/subscriptions/{sub_id}" in page
    assert "/catalogue/cad-suite/subscribe" not in page


# ---------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("currency", "typed", "minor", "major"),
    [
        ("EUR", "12.50", 1250, Decimal("12.50")),
        ("EUR", "0.01", 1, Decimal("0.01")),
        ("EUR", "1000000", 100000000, Decimal("1000000.00")),
        ("JPY", "1500", 1500, Decimal("1500")),
        ("JPY", "0", 0, Decimal("0")),
        ("BHD", "12.345", 12345, Decimal("12.345")),
        ("BHD", "0.001", 1, Decimal("0.001")),
        ("BHD", "7", 7000, Decimal("7.000")),
    ],
)
def test_money_round_trips_exactly(currency, typed, minor, major):
    assert to_minor(typed, currency) == minor
    assert to_minor(Decimal(typed), currency) == minor
    assert from_minor(minor, currency) == major
    assert str(from_minor(minor, currency)) == str(major)
    assert to_minor(from_minor(minor, currency), currency) == minor


def test_money_round_trips_every_amount_up_to_ten_thousand_minor_units():
    for currency in ("EUR", "JPY", "BHD"):
        for minor in range(0, 10_001, 7):
            assert to_minor(from_minor(minor, currency), currency) == minor
            assert to_minor(str(from_minor(minor, currency)), currency) == minor


@pytest.mark.parametrize(
    ("typed", "currency", "message"),
    [
        ("12.345", "EUR", "EUR has 2 decimals"),
        ("1.5", "JPY", "JPY has no decimals"),
        ("0.0001", "BHD", "BHD has 3 decimals"),
        ("twelve", "EUR", "Enter an amount"),
        ("NaN", "EUR", "Enter an amount"),
        ("Infinity", "EUR", "Enter an amount"),
    ],
)
def test_money_refuses_what_the_currency_cannot_hold(typed, currency, message):
    with pytest.raises(ValueError, match=message):
        to_minor(typed, currency)


def test_money_never_takes_a_float():
    with pytest.raises(TypeError):
        to_minor(0.1, "EUR")  # type: ignore[arg-type]


def test_money_is_formatted_with_its_currency(app):
    assert format_money(1250, "EUR") == "€12.50"
    assert format_money(1500, "JPY") == "¥1,500"
    assert format_money(12345, "BHD") == "BHD12.345"
    assert format_money(None, "EUR") == "—"
    with app.app_context():
        money = app.jinja_env.filters["money"]
        assert money(123456, "USD") == "$1,234.56"


# ---------------------------------------------------------------- every error on the first submit


def _field_errors(response) -> dict[str, str]:
    page = html.unescape(response.get_data(as_text=True))
    return dict(re.findall(r'id="([\w-]+)-error" class="field-error">([^<]*)<', page))


def test_the_pool_form_shows_every_field_s_error_on_the_first_submit(app, clients, make_product):
    """The form's own check (seats missing) no longer hides the service's (the term's order)
    or the amount's (three decimals in EUR); the typed values stay."""
    make_product(0, sku="cad-suite")
    before = db_rows(app)
    response = post_form(
        clients["council_admin"],
        "/council/products/cad-suite/pools",
        _pool_form(
            capacity="",
            starts_on=TODAY.isoformat(),
            ends_on=(TODAY - dt.timedelta(days=1)).isoformat(),
            unit_cost_amount="12.505",
        ),
        token_from="/council/products/cad-suite",
    )
    assert response.status_code == 400
    errors = _field_errors(response)
    assert "This field is required." in errors["pool-capacity"]
    assert errors["pool-ends_on"] == "The pool must end on or after the day it starts."
    assert "EUR has 2 decimals" in errors["pool-unit_cost_amount"]
    assert 'value="12.505"' in response.get_data(as_text=True)
    assert db_rows(app) == before


def test_the_vendor_form_names_a_taken_slug_beside_a_missing_name(app, clients):
    admin = clients["council_admin"]
    post_form(
        admin, "/council/vendors/new", {"slug": "acme-soft", "name": "Acme", "status": "active"}
    )
    before = db_rows(app)
    response = post_form(
        admin, "/council/vendors/new", {"slug": "acme-soft", "name": "", "status": "active"}
    )
    assert response.status_code == 400
    errors = _field_errors(response)
    assert errors["name"] == "This field is required."
    assert errors["slug"] == "This slug is taken; choose another."
    assert db_rows(app) == before
