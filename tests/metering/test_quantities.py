"""Usage quantities people read (issue 14): the meter's precision, never exponent form, units
pluralised per language; the usage filters take a product's or organisation's name."""

from __future__ import annotations

import html
import io
import re
from decimal import Decimal

import pytest
from flask_babel import force_locale

from portal.metering.quantities import aggregation_label, digits_for, plain, quantity
from tests.conftest import post_form
from tests.metering.conftest import event, ingest

RU = {"Accept-Language": "ru"}


@pytest.fixture(autouse=True)
def _mid_month(clock) -> None:
    clock.freeze("2026-09-15T12:00:00Z")


def test_quantities_take_the_aggregation_s_precision_and_never_an_exponent(app):
    with app.test_request_context():
        # 4140 stored as micros and normalised is Decimal("4.14E+3"): once shown as "4.14E+3 row".
        assert quantity(Decimal("4.14E+3"), "row", "sum") == "4,140 rows"
        assert quantity(Decimal("12.0000"), "minute", "sum") == "12 minutes"
        assert quantity(Decimal("0.1667"), "seat-month", "sum") == "0.17 seat-months"
        assert quantity(Decimal("42.5"), "call", "sum") == "42.5 calls"
        assert quantity(Decimal("0.0012"), "GB", "max") == "0.0012 GB"  # never a bare "0"
        assert quantity(Decimal("3"), "widget-hour", "count") == "3 widget-hour"  # as typed
        assert quantity(Decimal("7"), None, "count") == "7"
        assert digits_for("unique_count", Decimal("2.5")) == 0 and digits_for("sum") == 2
        assert aggregation_label("unique_count") == "distinct count"


def test_units_are_pluralised_per_language(app):
    with app.test_request_context():
        assert [quantity(Decimal(n), "user", "unique_count") for n in (1, 2, 5)] == [
            "1 user",
            "2 users",
            "5 users",
        ]
        assert quantity(Decimal(1), "users", "count") == "1 user"  # a unit typed in the plural
    with app.test_request_context(), force_locale("ru"):
        assert [quantity(Decimal(n), "user", "unique_count") for n in (1, 2, 5, 21, 11)] == [
            "1 пользователь",
            "2 пользователя",
            "5 пользователей",
            "21 пользователь",
            "11 пользователей",
        ]
        assert quantity(Decimal("4.14E+3"), "row", "sum") == "4\xa0140 строк"
        assert quantity(Decimal("1.5"), "minute", "sum") == "1,5 минуты"  # a fraction: as 2
        assert quantity(Decimal("12.5"), "GB", "max") == "12,5 ГБ"
        assert aggregation_label("max") == "максимум"


def test_csv_values_are_exact_and_plain():
    assert plain(Decimal("4.14E+3")) == "4140"
    assert plain(Decimal("1E+1")) == "10"
    assert plain(Decimal("0.000001")) == "0.000001"
    assert plain(Decimal("42.50")) == "42.5"
    assert plain(Decimal(0)) == "0"


def test_the_usage_page_and_csv_show_4140_rows_not_an_exponent(app, metered, signed_in):
    ingest(app, [event(quantity="4000"), event(quantity="140")])
    client = signed_in("org_admin", metered["org"])
    page = client.get("/org/usage").get_data(as_text=True)
    assert "4,140 calls" in page and "E+" not in page
    assert not re.search(r"\d\.\d{4}\b", page)  # no "12.0000" or "0.1667" seat-months
    assert "seat-months" in page
    russian = client.get("/org/usage", headers=RU).get_data(as_text=True)
    assert "4\xa0140 вызовов" in russian and "сумма" in russian
    lines = client.get("/org/usage.csv").get_data(as_text=True).splitlines()
    assert lines[1].startswith("acme,cad-suite,api_calls,sum,4140,call,2")
    council = signed_in("council_admin")
    csv_text = council.get("/council/usage?format=csv").get_data(as_text=True)
    assert "E+" not in csv_text and ",4140," in csv_text


def test_council_usage_filters_by_product_or_organisation_name(
    app, metered, make_product, signed_in
):
    other = make_product(5, sku="pdm-vault")
    from tests.metering.conftest import subscribe

    subscribe(app, "acme", other.sku)
    ingest(app, [event(quantity="5"), event(product="pdm-vault", quantity="777")])
    council = signed_in("council_admin")
    everything = council.get("/council/usage").get_data(as_text=True)
    assert "<td>Product cad-suite</td>" in everything and "<td>Product pdm-vault</td>" in everything
    # suggestions without JavaScript: a datalist of the products' and organisations' names
    assert '<datalist id="product-choices">' in everything
    assert '<option value="Product pdm-vault">pdm-vault</option>' in everything
    assert '<option value="Org acme">acme</option>' in everything
    # each row: its aggregation's word and its product's chart (written once a page)
    assert "<td>sum</td>" in everything
    for sku in ("cad-suite", "pdm-vault"):
        assert f'<a href="/council/utilisation/{sku}">Utilisation</a>' in everything
    in_russian = council.get("/council/usage", headers=RU).get_data(as_text=True)
    assert "<td>сумма</td>" in in_russian and "<td>sum</td>" not in in_russian
    assert '<a href="/council/utilisation/pdm-vault">Использование</a>' in in_russian

    for typed in ("product pdm-vault", "PDM-VAULT", " Product PDM-Vault "):
        page = council.get("/council/usage", query_string={"product": typed})
        html = page.get_data(as_text=True)
        assert page.status_code == 200, typed
        assert "777" in html and "<td>Product cad-suite</td>" not in html, typed
    by_name = council.get("/council/usage", query_string={"organisation": "ORG ACME"})
    assert by_name.status_code == 200 and "<td>Product cad-suite</td>" in by_name.get_data(
        as_text=True
    )
    csv_text = council.get(
        "/council/usage", query_string={"product": "Product pdm-vault", "format": "csv"}
    ).get_data(as_text=True)
    assert "pdm-vault" in csv_text and "cad-suite" not in csv_text

    unknown = council.get("/council/usage", query_string={"product": "Photoshop"})
    html = unknown.get_data(as_text=True)
    assert unknown.status_code == 422  # a message beside the box, not a 404 page
    assert "No product is named “Photoshop”. Choose one from the list." in html
    assert 'value="Photoshop"' in html and 'aria-invalid="true"' in html  # input kept
    nobody = council.get("/council/usage", query_string={"organisation": "Nobody Ltd"}, headers=RU)
    assert nobody.status_code == 422
    assert "Организации «Nobody Ltd» нет." in nobody.get_data(as_text=True)


def test_org_usage_filters_by_product_name(app, metered, signed_in):
    ingest(app, [event(quantity="5")])
    client = signed_in("org_admin", metered["org"])
    page = client.get("/org/usage", query_string={"product": "product CAD-suite"})
    assert page.status_code == 200 and "5 calls" in page.get_data(as_text=True)
    unknown = client.get("/org/usage", query_string={"product": "nothing"})
    assert unknown.status_code == 422 and "No product is named" in unknown.get_data(as_text=True)


def test_upload_problems_read_in_the_reader_s_language(app, metered, signed_in):
    from portal.kernel.clock import now_utc

    council = signed_in("council_admin")
    when = now_utc().isoformat()
    text = (
        "idempotency_key,organisation,product,meter,quantity,occurred_at\n"
        f"u1,acme,cad-suite,api_calls,-3,{when}\n"
        f"u2,acme,cad-suite,nothing,3,{when}\n"
        f"u3,acme,no-such,api_calls,3,{when}\n"
    )
    council.set_cookie("portal_language", "ru")
    response = post_form(
        council,
        "/council/usage/upload",
        {"file": (io.BytesIO(text.encode()), "usage.csv")},
        content_type="multipart/form-data",
    )
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and "Сохранено событий: 0;" in page
    assert "quantity: Количество не может быть отрицательным." in page
    assert "meter: У cad-suite нет счётчика «nothing»." in page
    assert "product: Такого продукта нет." in page
    assert "Quantities cannot be negative" not in page
