"""The purchase order pages: a draft made on the form, approved by an admin and finance on
the order's page, sent, confirmed, received, a vendor invoice recorded and its mismatch
listed; bad forms answer 400 with the messages beside the fields and keep nothing."""

from __future__ import annotations

import re

import sqlalchemy as sa

from portal.catalogue.models import LicencePool
from portal.db import db
from portal.kernel.clock import now_utc
from portal.procurement.models import PurchaseOrder
from tests.conftest import post_form
from tests.procurement.po_support import term
from tests.support import client_for, count, follow_messages, messages


def _form(supplier, **change):
    starts_on, ends_on = term()
    data = {
        "vendor": str(supplier["vendor_id"]),
        "currency": "EUR",
        "starts_on": starts_on.isoformat(),
        "ends_on": ends_on.isoformat(),
        "notes": "For the demand board's waitlist",
        # as a browser sends the form: every row, the empty ones empty
        **{f"lines-{n}-{name}": "" for n in range(5) for name in ("product", "seats", "unit_cost")},
        "lines-0-product": str(supplier["cad"].id),
        "lines-0-seats": "100",
        "lines-0-unit_cost": "10.00",
        "lines-2-product": str(supplier["mail"].id),
        "lines-2-seats": "4",
        "lines-2-unit_cost": "2.5",
    }
    data.update(change)
    return data


def _only_po(app) -> PurchaseOrder:
    with app.app_context():
        po = db.session.scalars(sa.select(PurchaseOrder)).one()
        db.session.expunge_all()
        return po


def _move(client, po_id, move, **data):
    return post_form(
        client,
        f"/council/purchase-orders/{po_id}/{move}",
        data,
        token_from=f"/council/purchase-orders/{po_id}",
    )


def test_the_whole_way_through_the_pages(app, supplier, mailbox):
    admin = client_for(app, "council_admin")
    finance = client_for(app, "finance")

    page = admin.get("/council/purchase-orders/new")
    assert page.status_code == 200
    response = post_form(admin, "/council/purchase-orders/new", _form(supplier))
    assert response.status_code == 302, messages(response)
    po = _only_po(app)
    assert response.headers["Location"].endswith(f"/council/purchase-orders/{po.id}")
    assert (po.state, po.total) == ("draft", 100 * 1000 * 12 + 4 * 250 * 12)
    detail = f"/council/purchase-orders/{po.id}"

    # above the threshold: the admin approves, then finance (the page shows each their button)
    html = admin.get(detail).get_data(as_text=True)
    assert "Approve" in html and "Waiting for: Council admin, Finance." in html
    assert follow_messages(admin, _move(admin, po.id, "approve")) == [
        "Your approval is recorded; the order waits for another approval."
    ]
    assert ">Approve<" not in admin.get(detail).get_data(as_text=True)  # not twice
    assert ">Approve<" in finance.get(detail).get_data(as_text=True)
    number = f"PO-{now_utc().year}-000001"
    assert follow_messages(finance, _move(finance, po.id, "approve")) == [
        f"Purchase order {number} is approved."
    ]
    # finance may not send; the admin does
    assert _move(finance, po.id, "send").status_code == 403
    assert follow_messages(admin, _move(admin, po.id, "send")) == [
        f"Purchase order {number} is sent to orders@acme-soft.example."
    ]
    assert [m["To"] for m in mailbox] == ["orders@acme-soft.example"]
    pdf = admin.get(f"{detail}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert f'filename="{number}.pdf"' in pdf.headers["Content-Disposition"]

    _move(admin, po.id, "confirm", vendor_reference="SO-1")
    assert follow_messages(admin, _move(admin, po.id, "receive")) == [
        f"Purchase order {number} is received: its seats are in the pools."
    ]
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.sum(LicencePool.capacity)).where(LicencePool.reference == number)
            )
            == 104
        )
    # twice: refused, flashed, nothing more
    assert follow_messages(admin, _move(admin, po.id, "receive")) == [
        f"Purchase order {number} is received; you cannot receive it."
    ]

    # finance records the vendor's invoice: the second line is over-invoiced
    response = post_form(
        finance,
        f"{detail}/vendor-invoices",
        {
            "vendor_number": "ACME-2027-17",
            "issued_on": "2027-01-04",
            "lines-0-seats": "100",
            "lines-0-amount": "12000.00",
            "lines-1-seats": "4",
            "lines-1-amount": "150.00",
        },
        token_from=detail,
    )
    assert follow_messages(finance, response) == ["The vendor invoice is recorded."]
    listed = finance.get("/council/purchase-orders/mismatches").get_data(as_text=True)
    assert number in listed and "invoiced more than ordered" in listed
    assert "Product secure-mail" in listed and "Product cad-suite" not in listed
    overview = finance.get("/council/purchase-orders").get_data(as_text=True)
    assert number in overview and "1 orders have vendor invoices that do not match." in overview


def test_a_bad_draft_shows_every_message_and_keeps_nothing(app, supplier, make_product):
    other = make_product(0, sku="bi-studio", vendor="other-soft")
    admin = client_for(app, "council_admin")
    response = post_form(
        admin,
        "/council/purchase-orders/new",
        _form(
            supplier,
            **{
                "ends_on": "2000-01-01",
                "lines-0-unit_cost": "1.001",
                "lines-2-product": str(other.id),
            },
        ),
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'id="lines-0-unit_cost-error"', html)
    response = post_form(
        admin,
        "/council/purchase-orders/new",
        _form(supplier, **{"lines-2-product": str(other.id)}),
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="lines-2-product-error"' in html and "not the vendor" in html
    response = post_form(
        admin, "/council/purchase-orders/new", _form(supplier, **{"lines-0-seats": "0"})
    )
    assert 'id="lines-0-seats-error"' in response.get_data(as_text=True)
    empty = post_form(
        admin,
        "/council/purchase-orders/new",
        {"vendor": "", "currency": "", "starts_on": "", "ends_on": ""},
    )
    assert empty.status_code == 400
    nul = post_form(admin, "/council/purchase-orders/new", _form(supplier, notes="a\x00b"))
    assert nul.status_code == 400
    for hostile in (
        {"vendor": "abc", "lines-0-product": "x"},
        {"vendor": "9" * 30, "lines-0-product": "²"},
        {"lines-0-seats": "1e9", "lines-0-unit_cost": "NaN"},
        {"lines-0-unit_cost": "1" * 40, "starts_on": "2027-13-01"},
    ):
        response = post_form(admin, "/council/purchase-orders/new", _form(supplier, **hostile))
        assert response.status_code == 400, hostile
    assert count(app, PurchaseOrder) == 0


def test_a_bad_vendor_invoice_answers_400_beside_its_fields(app, supplier, people):
    from tests.procurement.po_support import draft, to_state

    line = {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 100}
    po_id = draft(app, people["admin"], supplier["vendor_id"], [line])
    to_state(app, po_id, "sent", admin=people["admin"], finance=people["finance"])
    finance = client_for(app, "finance")
    detail = f"/council/purchase-orders/{po_id}"
    response = post_form(
        finance,
        f"{detail}/vendor-invoices",
        {"vendor_number": "", "issued_on": "someday", "lines-0-amount": "1.234"},
        token_from=detail,
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="vendor_number-error"' in html and 'id="issued_on-error"' in html
    for hostile in (
        {"lines-0-seats": "-5", "lines-0-amount": "NaN"},
        {"lines-0-seats": "9" * 30, "lines-0-amount": "1" * 40},
        {"lines-0-amount": "Infinity"},
        {"lines-7-seats": "1", "lines-7-amount": "1"},
    ):
        data = {"vendor_number": "V-1", "issued_on": "2027-01-02", **hostile}
        response = post_form(finance, f"{detail}/vendor-invoices", data, token_from=detail)
        assert response.status_code == 400, hostile
    from portal.procurement.models import VendorInvoice

    assert count(app, VendorInvoice) == 0


def test_members_and_org_admins_see_no_purchase_orders(app, supplier, make_org, people):
    from tests.procurement.po_support import draft

    line = {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 100}
    po_id = draft(app, people["admin"], supplier["vendor_id"], [line])
    org = make_org("acme")
    for role in ("org_admin", "member"):
        client = client_for(app, role, org)
        for path in (
            "/council/purchase-orders",
            f"/council/purchase-orders/{po_id}",
            f"/council/purchase-orders/{po_id}.pdf",
            "/council/purchase-orders/mismatches",
            "/council/purchase-orders/new",
        ):
            assert client.get(path).status_code == 403, (role, path)


def test_unknown_orders_and_moves_are_404(app, supplier):
    admin = client_for(app, "council_admin")
    assert admin.get("/council/purchase-orders/999999").status_code == 404
    assert admin.get("/council/purchase-orders/999999.pdf").status_code == 404
    teleport = post_form(
        admin, "/council/purchase-orders/1/teleport", {}, token_from="/council/purchase-orders"
    )
    assert teleport.status_code == 404


def test_the_list_filters_by_state_and_vendor(app, supplier, people):
    from tests.procurement.po_support import act, draft

    line = {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 100}
    first = draft(app, people["admin"], supplier["vendor_id"], [line])
    draft(app, people["admin"], supplier["vendor_id"], [line])
    act(app, people["admin"], first, "approve")
    finance = client_for(app, "finance")
    approved = finance.get("/council/purchase-orders?state=approved").get_data(as_text=True)
    assert f"PO-{now_utc().year}-000001" in approved and "Draft #" not in approved
    drafts = finance.get("/council/purchase-orders?state=draft&vendor=acme-soft")
    assert "Draft #" in drafts.get_data(as_text=True)
    assert finance.get("/council/purchase-orders?vendor=nobody&state=lost").status_code == 200
    assert finance.get("/council/purchase-orders?state=%00").status_code == 400


def test_council_economics_shows_committed_cost_beside_billing(app, supplier, people):
    from tests.procurement.po_support import act, draft

    starts_on, _ = term()
    line = {"product_id": supplier["cad"].id, "seats": 10, "unit_cost": 1000}  # €100/month
    po_id = draft(app, people["admin"], supplier["vendor_id"], [line])
    draft(app, people["admin"], supplier["vendor_id"], [line])  # a draft commits nothing
    act(app, people["admin"], po_id, "approve")
    with app.app_context():
        from portal.procurement.purchase_orders import committed_in_period

        committed = committed_in_period(db.session, period=starts_on.strftime("%Y-%m"))
    # the term's first month: its days' share of €1,200.00 over the year's days
    assert set(committed.totals) == {"EUR"}
    assert 9000 <= committed.totals["EUR"] <= 11000
    [row] = committed.rows
    assert (row.sku, row.currency, row.amount) == ("cad-suite", "EUR", committed.totals["EUR"])
    finance = client_for(app, "finance")
    page = finance.get(f"/finance/exports?period={starts_on:%Y-%m}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Committed cost from purchase orders" in html
    from portal.kernel.money import format_money

    assert format_money(committed.totals["EUR"], "EUR") in html


def test_the_lists_send_as_many_statements_for_many_orders_as_for_few(app, supplier, people):
    """No N+1: the order list and the mismatches read the same statements for 2 orders with
    mismatched vendor invoices as for 10."""
    import sqlalchemy as sa

    from portal.procurement import purchase_orders as service
    from tests.procurement.po_support import draft, to_state

    def grow(n: int) -> None:
        for _ in range(n):
            line = {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 100}
            po_id = draft(app, people["admin"], supplier["vendor_id"], [line])
            to_state(app, po_id, "sent", admin=people["admin"], finance=people["finance"])
            with app.app_context():
                po = db.session.get(PurchaseOrder, po_id)
                data = {
                    "vendor_number": f"V-{po_id}",
                    "issued_on": "2027-01-02",
                    "lines": [{"line_id": po.lines[0].id, "seats": 2, "amount": 99999}],
                }
                service.vendor_invoice_record(db.session, people["finance"], po, data=data)
                db.session.commit()

    finance = client_for(app, "finance")
    paths = ["/council/purchase-orders", "/council/purchase-orders/mismatches"]

    def statements(path: str) -> int:
        assert finance.get(path).status_code == 200  # warm-up
        with app.app_context():
            engine = db.engine
        seen: list[str] = []

        def note(conn, cursor, statement, *args) -> None:
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", note)
        try:
            assert finance.get(path).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", note)
        return len(seen)

    grow(2)
    few = {path: statements(path) for path in paths}
    grow(8)
    many = {path: statements(path) for path in paths}
    assert many == few


def test_a_draft_is_changed_and_its_approvals_withdrawn(app, supplier, people):
    from portal.audit.models import AuditEvent
    from tests.procurement.po_support import act, draft

    line = {"product_id": supplier["cad"].id, "seats": 100, "unit_cost": 1000}  # above
    po_id = draft(app, people["admin"], supplier["vendor_id"], [line])
    act(app, people["admin"], po_id, "approve")
    admin = client_for(app, "council_admin")
    edit = f"/council/purchase-orders/{po_id}/edit"
    page = admin.get(edit).get_data(as_text=True)
    assert "Saving changes withdraws the approvals" in page
    assert 'value="10.00"' in page and 'value="100"' in page
    response = post_form(admin, edit, _form(supplier, **{"lines-0-seats": "3"}))
    assert response.status_code == 302, messages(response)
    assert follow_messages(admin, response) == ["The draft is saved."]
    with app.app_context():
        po = db.session.get(PurchaseOrder, po_id)
        assert [(line.product.sku, line.seats, line.position) for line in po.lines] == [
            ("cad-suite", 3, 1),
            ("secure-mail", 4, 2),
        ]
        assert po.approvals == [] and po.total == 3 * 1000 * 12 + 4 * 250 * 12
        assert (
            db.session.scalar(
                sa.select(AuditEvent.after).where(AuditEvent.action == "purchase_order.update")
            )["approvals_withdrawn"]
            == 1
        )
    bad = post_form(admin, edit, _form(supplier, **{"lines-0-seats": "0"}))
    assert bad.status_code == 400
    act(app, people["admin"], po_id, "approve")  # below the threshold now: approved
    assert follow_messages(admin, admin.get(edit)) == ["Only a draft is changed."]
