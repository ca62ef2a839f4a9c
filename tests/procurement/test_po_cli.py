"""``portal purchase-orders list|show|mismatches``."""

from __future__ import annotations

from portal.kernel.clock import now_utc
from tests.procurement.po_support import act, draft, to_state


def test_list_show_and_mismatches(app, runner, people, supplier):
    line = {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 100}
    first = draft(app, people["admin"], supplier["vendor_id"], [line])
    second = draft(app, people["admin"], supplier["vendor_id"], [line])
    act(app, people["admin"], first, "approve")
    number = f"PO-{now_utc().year}-000001"

    result = runner.invoke(args=["purchase-orders", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"draft #{second}\tdraft\tacme-soft\t")
    assert lines[1].startswith(f"{number}\tapproved\tacme-soft\t") and "2400 EUR" in lines[1]

    only = runner.invoke(args=["purchase-orders", "list", "--state", "approved"])
    assert only.output.splitlines() == [lines[1]]
    assert runner.invoke(args=["purchase-orders", "list", "--vendor", "nobody"]).exit_code == 1
    assert runner.invoke(args=["purchase-orders", "list", "--state", "lost"]).exit_code == 2

    shown = runner.invoke(args=["purchase-orders", "show", number.lower()])
    assert shown.exit_code == 0, shown.output
    assert "approved by" in shown.output and "cad-suite" in shown.output
    assert runner.invoke(args=["purchase-orders", "show", "PO-1999-000009"]).exit_code == 1
    assert runner.invoke(args=["purchase-orders", "show", "abc"]).exit_code == 1

    fine = runner.invoke(args=["purchase-orders", "mismatches"])
    assert fine.exit_code == 0 and "matches" in fine.output
    to_state(app, second, "sent", admin=people["admin"], finance=people["finance"])
    from portal.db import db
    from portal.procurement import purchase_orders as service
    from portal.procurement.models import PurchaseOrder

    with app.app_context():
        po = db.session.get(PurchaseOrder, second)
        service.vendor_invoice_record(
            db.session,
            people["finance"],
            po,
            data={
                "vendor_number": "X-1",
                "issued_on": "2027-01-01",
                "lines": [{"line_id": po.lines[0].id, "seats": 2, "amount": 9999}],
            },
        )
        db.session.commit()
    wrong = runner.invoke(args=["purchase-orders", "mismatches"])
    assert wrong.exit_code == 1
    assert "cad-suite\tover_invoiced, seats_not_received, price_differs" in wrong.output
