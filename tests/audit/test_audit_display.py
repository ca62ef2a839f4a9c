"""The audit pages as people read them (issue 14): amounts as money in the event's currency,
in the reader's language; the chain page in Russian."""

from __future__ import annotations

import html

import sqlalchemy as sa
from flask_babel import force_locale

from portal.audit.display import broken_text, changes
from portal.audit.services import audit_record
from portal.catalogue.models import LicencePool
from portal.db import bind_scope, db
from portal.kernel.scope import Scope
from tests.conftest import SYSTEM
from tests.support import client_for

RU = {"Accept-Language": "ru"}


def _record(app, **fields) -> None:
    with app.app_context():
        bind_scope(db.session, Scope.council())
        audit_record(db.session, actor=SYSTEM, **fields)
        db.session.commit()


def test_amounts_are_money_in_the_currency_the_event_names(app):
    with app.test_request_context():
        shown = changes(None, {"number": "2026-0001", "total": 111654, "currency": "EUR"})
        assert [(c.key, c.after) for c in shown] == [
            ("number", "2026-0001"),
            ("total", "€1,116.54"),
            ("currency", "EUR"),
        ]
        pool = changes(
            {"unit_cost_amount": 500, "capacity": 10, "unit_cost_currency": "GBP"},
            {"unit_cost_amount": 650, "capacity": 12, "unit_cost_currency": "GBP"},
        )
        assert [(c.key, c.before, c.after) for c in pool][:2] == [
            ("unit_cost_amount", "£5.00", "£6.50"),
            ("capacity", "10", "12"),
        ]
        # No currency named: the page's (the invoice's or organisation's); none at all: as stored.
        assert changes(None, {"amount": 2500}, "JPY")[0].after == "¥2,500"
        assert changes(None, {"amount": 2500})[0].after == "2500"
        assert changes(None, {"attempts": 3, "active": True}, "EUR")[1].after == "yes"
    with app.test_request_context(), force_locale("ru"):
        shown = changes(None, {"total": 111654, "currency": "EUR"})
        assert shown[0].after == "1\xa0116,54\xa0€"


def test_the_audit_log_shows_money_from_the_event_and_from_its_organisation(
    app, make_org, make_product
):
    org = make_org("alpha")  # invoices in EUR
    make_product(5, sku="cad-suite")  # a pool bought at €5.00 a seat-month
    with app.app_context():
        pool_id = db.session.scalar(sa.select(LicencePool.id))
    _record(
        app,
        action="pool.update",
        target_type="pool",  # the amounts' currency is the pool's
        target_id=pool_id,
        target_label="cad-suite",
        before={"unit_cost_amount": 500},
        after={"unit_cost_amount": 725},
    )
    _record(
        app,
        action="invoice.finalize",
        target_type="invoice",
        target_id=1,
        target_label="2026-0001",
        organisation_id=org.id,
        after={"number": "2026-0001", "total": 111654, "currency": "GBP"},
    )
    _record(
        app,
        action="payment.record",
        target_type="payment_account",  # no invoice to ask: the organisation's currency
        target_id=7,
        organisation_id=org.id,
        after={"amount": 20000, "method": "bank_transfer"},
    )
    council = client_for(app, "council_admin")
    page = html.unescape(council.get("/audit").get_data(as_text=True))
    assert "total: £1,116.54" in page and "111654" not in page
    assert "amount: €200.00" in page and "20000" not in page
    assert "unit_cost_amount: €5.00 → €7.25" in page
    russian = html.unescape(council.get("/audit", headers=RU).get_data(as_text=True))
    assert "total: 1\xa0116,54\xa0£" in russian and "amount: 200,00\xa0€" in russian
    assert "<th>Когда</th>" in russian and "<th>IP-адрес</th>" in russian
    # an organisation filter by name (any case) instead of the exact slug
    by_name = council.get("/audit", query_string={"organisation": "org ALPHA"})
    assert by_name.status_code == 200 and "2026-0001" in by_name.get_data(as_text=True)


def test_a_broken_chain_is_described_in_the_reader_s_language(app):
    broken = {"id": 12, "seq": 11, "action": "user.create", "problem": "hash_mismatch"}
    with app.test_request_context():
        assert broken_text(broken) == (
            "event id 12, seq 11 (user.create): "
            "the event's hash does not match its content (it was changed)"
        )
    with app.test_request_context(), force_locale("ru"):
        assert broken_text(broken).startswith("событие id 12, № 11 (user.create): хеш события")
    finance = client_for(app, "finance")
    page = finance.get("/audit/chain", headers=RU).get_data(as_text=True)
    assert "Цепочка аудита" in page and "ещё не проверена" in page
