"""Bank statement import: transfers matched to invoices by payment reference, recorded once."""

from __future__ import annotations

import html
import io

import pytest
import sqlalchemy as sa

from portal.billing.bank_import import bank_statement_import
from portal.billing.models import Payment
from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.errors import PermissionDenied, ValidationFailed
from portal.tenancy.models import Organisation
from tests.billing.factories import count, draft, finalize, invoice_of, subscribe
from tests.conftest import SYSTEM, post_form


def _import(app, text: str):
    with app.app_context():
        result = bank_statement_import(db.session, actor=SYSTEM, text=text)
        db.session.commit()
        return [(r.line, r.outcome, r.message) for r in result.rows], result.counts


def _second_invoice(app, issued, make_org, currency="EUR", slug="beta"):
    other = make_org(slug, currency=currency)
    if currency != "EUR":
        from portal.catalogue.services import price_create

        with app.app_context():
            price_create(
                db.session,
                actor=SYSTEM,
                data={
                    "product": "cad-suite",
                    "currency": currency,
                    "model": "seat",
                    "unit_amount": 5000,
                },
            )
            db.session.commit()
    subscribe(app, other.id, issued["product"].id, 2, issued["first"])
    invoice_id = draft(app, other.id, issued["period"])
    return invoice_id, finalize(app, invoice_id)


def test_each_row_gets_an_outcome(app, issued, make_org):
    today = now_utc().date()
    gbp_id, gbp_number = _second_invoice(app, issued, make_org, currency="GBP", slug="brit")
    number = issued["number"]
    statement = "\n".join(
        [
            "Date,Amount,Currency,Reference,Counterparty",
            f"{today},100.00,EUR,{number},ACME GmbH",  # part payment
            f"{today},50,EUR,Payment for {number.lower()} thanks,ACME GmbH",  # in the text
            f"{today},10.00,EUR,INV-1999-000999,Someone",  # no such invoice
            f"{today},10.00,EUR,{gbp_number},Brit Ltd",  # wrong currency
            f"{today},1000.00,GBP,{gbp_number},Brit Ltd",  # more than is owed
            f"{today},12.345,EUR,{number},ACME GmbH",  # too many decimals
            f"yesterday,1.00,EUR,{number},ACME GmbH",  # bad date
            f"{today},-5.00,EUR,{number},ACME GmbH",  # money going out
            f"{today},1.00,XYZ,{number},ACME GmbH",  # no such currency
            f"{today},1.00,EUR,,ACME GmbH",  # no reference
            "",
        ]
    )
    rows, counts = _import(app, statement)
    outcomes = [(line, outcome) for line, outcome, _ in rows]
    assert outcomes == [
        (2, "matched"),
        (3, "matched"),
        (4, "unmatched"),
        (5, "mismatched"),
        (6, "mismatched"),
        (7, "invalid"),
        (8, "invalid"),
        (9, "invalid"),
        (10, "invalid"),
        (11, "invalid"),
    ]
    messages = {line: message for line, _, message in rows}
    assert "is in GBP; the transfer is in EUR" in messages[5]
    assert "more than the £100.00 still owed" in messages[6]
    assert "EUR has 2 decimals" in messages[7]
    assert counts == {"matched": 2, "unmatched": 1, "mismatched": 2, "duplicate": 0, "invalid": 5}
    invoice = invoice_of(app, issued["invoice_id"])
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("open", 15000, 20700)
    assert invoice_of(app, gbp_id).amount_paid == 0
    with app.app_context():
        payments = db.session.scalars(sa.select(Payment).order_by(Payment.id)).all()
        assert [(p.method, p.amount, p.received_on) for p in payments] == [
            ("bank_transfer", 10000, today),
            ("bank_transfer", 5000, today),
        ]
        assert all(p.external_id.startswith("bank:") for p in payments)


def test_importing_the_same_statement_twice_records_each_payment_once(app, issued):
    today = now_utc().date()
    number = issued["number"]
    # two identical transfers on one day are two payments; the file again is none
    statement = (
        f"date,amount,currency,reference\n{today},100,EUR,{number}\n{today},100,EUR,{number}\n"
    )
    rows, _ = _import(app, statement)
    assert [outcome for _, outcome, _ in rows] == ["matched", "matched"]
    again, counts = _import(app, statement)
    assert [outcome for _, outcome, _ in again] == ["duplicate", "duplicate"]
    assert counts["duplicate"] == 2
    assert count(app, Payment) == 2
    assert invoice_of(app, issued["invoice_id"]).amount_paid == 20000


def test_paying_in_full_settles_and_a_later_transfer_is_a_mismatch(app, issued):
    today = now_utc().date()
    number = issued["number"]
    rows, _ = _import(
        app,
        f"date,amount,currency,reference\n{today},357.00,EUR,{number}\n{today},1.00,EUR,{number}\n",
    )
    assert [(o, m) for _, o, m in rows] == [
        ("matched", "Paid in full."),
        ("mismatched", f"{number} is paid; nothing is owed on it."),
    ]
    assert invoice_of(app, issued["invoice_id"]).status == "paid"


def test_jpy_amounts_have_no_decimals(app, issued, make_org):
    jpy_id, jpy_number = _second_invoice(app, issued, make_org, currency="JPY", slug="kyoto")
    today = now_utc().date()
    rows, _ = _import(
        app,
        f"date,amount,currency,reference\n{today},1.5,JPY,{jpy_number}\n"
        f"{today},5000,JPY,{jpy_number}\n",
    )
    assert [o for _, o, _ in rows] == ["invalid", "matched"]
    assert "JPY has no decimals" in rows[0][2]
    assert invoice_of(app, jpy_id).amount_paid == 5000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when,how much,what\n2026-01-01,1,EUR\n", "amount, currency, date, reference"),
        ("date,amount,currency\n2026-01-01,1,EUR\n", "reference is missing"),
        ("date,amount,currency,reference\n", "no rows"),
        ("", "are missing"),
    ],
)
def test_a_file_without_the_columns_or_rows_is_refused(app, issued, text, message):
    with app.app_context(), pytest.raises(ValidationFailed) as refused:
        bank_statement_import(db.session, actor=SYSTEM, text=text)
    detail = refused.value.detail + " ".join(refused.value.errors["file"])
    assert all(word in detail for word in message.split(", "))
    assert count(app, Payment) == 0


def test_only_finance_imports(app, issued):
    from portal.kernel.actor import Actor, Role

    with app.app_context(), pytest.raises(PermissionDenied):
        bank_statement_import(
            db.session,
            actor=Actor.api_token("x", role=Role.ORG_ADMIN, organisation_id=issued["org"].id),
            text="date,amount,currency,reference\n",
        )


def test_the_import_page_shows_the_result_table(app, issued, signed_in):
    finance = signed_in("finance")
    today = now_utc().date()
    statement = (
        f"date,amount,currency,reference\n{today},357.00,EUR,{issued['number']}\n"
        f"{today},5,EUR,NOPE-1\n"
    ).encode()
    response = post_form(
        finance,
        "/finance/bank-import",
        {"file": (io.BytesIO(statement), "statement.csv")},
        content_type="multipart/form-data",
    )
    text = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "1 matched" in text and "1 unmatched" in text and "Paid in full." in text
    assert invoice_of(app, issued["invoice_id"]).status == "paid"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "Choose a CSV file."),
        (b"\xff\xfe\x00bad", "UTF-8"),
        (b"date,amount\n2026-01-01,1\n", "Missing columns: currency, reference."),
    ],
)
def test_a_bad_file_on_the_page_is_explained_and_records_nothing(
    app, issued, signed_in, payload, message
):
    finance = signed_in("finance")
    data = {} if payload is None else {"file": (io.BytesIO(payload), "statement.csv")}
    response = post_form(finance, "/finance/bank-import", data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert message in html.unescape(response.get_data(as_text=True))
    assert count(app, Payment) == 0
    with app.app_context():
        assert db.session.get(Organisation, issued["org"].id) is not None
