"""Purchase orders (SPEC 8.3): the state machine, four eyes, numbers, sending, receiving,
vendor invoices matched against what was ordered and received, committed cost."""

from __future__ import annotations

import datetime as dt
import io
import itertools

import pypdf
import pytest
import sqlalchemy as sa

from portal.catalogue.models import LicencePool
from portal.db import db
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.procurement import purchase_orders as service
from portal.procurement.models import PurchaseOrder, PurchaseOrderState
from portal.settings.services import settings_update
from tests.conftest import SYSTEM
from tests.procurement.po_support import act, draft, state_of, term, to_state
from tests.support import count

SMALL = 1000  # €10.00 a seat-month: 2 seats for 12 months = €240.00, under the threshold
STATES = [state.value for state in PurchaseOrderState]
MOVES = list(service.TRANSITIONS)


def _small(app, people, supplier, seats: int = 2) -> int:
    line = {"product_id": supplier["cad"].id, "seats": seats, "unit_cost": SMALL}
    return draft(app, people["admin"], supplier["vendor_id"], [line])


def _large(app, people, supplier) -> int:
    """An order of €12,000.00: above the default threshold (€10,000.00)."""
    line = {"product_id": supplier["cad"].id, "seats": 100, "unit_cost": SMALL}
    return draft(app, people["admin"], supplier["vendor_id"], [line])


# ---------------------------------------------------------------- the state machine


def test_the_table_is_the_spec_s_machine():
    S = PurchaseOrderState
    assert {
        "approve": ({S.DRAFT}, S.APPROVED),
        "send": ({S.APPROVED}, S.SENT),
        "confirm": ({S.SENT}, S.CONFIRMED),
        "receive": ({S.CONFIRMED}, S.RECEIVED),
        "cancel": ({S.DRAFT, S.APPROVED, S.SENT, S.CONFIRMED}, S.CANCELLED),
    } == service.TRANSITIONS


ILLEGAL = [
    (state, move)
    for state, move in itertools.product(STATES, MOVES)
    if PurchaseOrderState(state) not in service.TRANSITIONS[move][0]
]


@pytest.mark.parametrize(("state", "move"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(
    app, people, supplier, state, move
):
    po_id = _small(app, people, supplier)
    to_state(app, po_id, state, admin=people["admin"], finance=people["finance"])
    with app.app_context():
        before = db.session.get(PurchaseOrder, po_id)
        snapshot = (before.state, before.number, before.updated_at, len(before.approvals))
    actor = people["admin2"] if move == "approve" else people["admin"]
    with pytest.raises(InvalidState) as refused:
        act(app, actor, po_id, move)
    assert refused.value.code == "invalid_transition"
    assert refused.value.status == 409
    with app.app_context():
        after = db.session.get(PurchaseOrder, po_id)
        assert (after.state, after.number, after.updated_at, len(after.approvals)) == snapshot


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (s, m)
        for s, m in itertools.product(STATES, MOVES)
        if PurchaseOrderState(s) in service.TRANSITIONS[m][0]
    ],
)
def test_every_legal_transition_leads_where_the_table_says(app, people, supplier, state, move):
    po_id = _small(app, people, supplier)
    to_state(app, po_id, state, admin=people["admin"], finance=people["finance"])
    act(app, people["admin"], po_id, move)
    assert state_of(app, po_id) == service.TRANSITIONS[move][1]


def test_moves_are_audited(app, people, supplier):
    from portal.audit.models import AuditEvent

    po_id = _small(app, people, supplier)
    to_state(app, po_id, "received", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        actions = db.session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.target_type == "purchase_order", AuditEvent.target_id == str(po_id))
            .order_by(AuditEvent.id)
        ).all()
    assert actions == [
        "purchase_order.draft",
        "purchase_order.approve",
        "purchase_order.send",
        "purchase_order.confirm",
        "purchase_order.receive",
    ]


# ---------------------------------------------------------------- four eyes and numbers


def test_below_the_threshold_a_council_admin_alone_approves_and_numbers_it(app, people, supplier):
    po_id = _small(app, people, supplier)
    po = act(app, people["admin"], po_id, "approve")
    assert po.state == "approved"
    assert po.number == f"PO-{now_utc().year}-000001"


def test_above_the_threshold_finance_and_an_admin_both_approve(app, people, supplier):
    po_id = _large(app, people, supplier)
    po = act(app, people["admin"], po_id, "approve")
    assert (po.state, po.number) == ("draft", None)
    with app.app_context():
        missing = service.approvals_missing(db.session, db.session.get(PurchaseOrder, po_id))
    assert missing == [Role.FINANCE]
    po = act(app, people["finance"], po_id, "approve")
    assert po.state == "approved" and po.number == f"PO-{now_utc().year}-000001"


def test_finance_first_then_the_admin(app, people, supplier):
    po_id = _large(app, people, supplier)
    assert act(app, people["finance"], po_id, "approve").state == "draft"
    assert act(app, people["admin"], po_id, "approve").state == "approved"


def test_the_same_person_cannot_approve_twice(app, people, supplier):
    po_id = _large(app, people, supplier)
    act(app, people["admin"], po_id, "approve")
    with pytest.raises(Conflict) as refused:
        act(app, people["admin"], po_id, "approve")
    assert refused.value.code == "already_approved"
    with pytest.raises(Conflict) as refused:  # a second admin is not finance
        act(app, people["admin2"], po_id, "approve")
    assert refused.value.code == "approval_not_needed"
    assert state_of(app, po_id) == "draft"


def test_below_the_threshold_finance_s_approval_is_not_asked_for(app, people, supplier):
    po_id = _small(app, people, supplier)
    with pytest.raises(Conflict) as refused:
        act(app, people["finance"], po_id, "approve")
    assert refused.value.code == "approval_not_needed"
    assert state_of(app, po_id) == "draft"


def test_tokens_and_the_system_do_not_approve(app, people, supplier):
    po_id = _small(app, people, supplier)
    token = Actor.api_token("token abc…", role=Role.COUNCIL_ADMIN)
    for actor in (token, SYSTEM):
        with pytest.raises(PermissionDenied) as refused:
            act(app, actor, po_id, "approve")
        assert refused.value.code == "approval_needs_person"
    assert state_of(app, po_id) == "draft"


def test_a_currency_without_a_threshold_always_needs_finance(app, people, supplier):
    line = {"product_id": supplier["cad"].id, "seats": 1, "unit_cost": 1}
    po_id = draft(app, people["admin"], supplier["vendor_id"], [line], currency="USD")
    assert act(app, people["admin"], po_id, "approve").state == "draft"
    assert act(app, people["finance"], po_id, "approve").state == "approved"


def test_the_threshold_is_a_council_setting(app, people, supplier):
    with app.app_context():
        settings_update(
            db.session,
            actor=SYSTEM,
            data={"purchase_order_finance_threshold": {"EUR": 100}},
        )
        db.session.commit()
    po_id = _small(app, people, supplier)  # €240.00 > €1.00
    assert act(app, people["admin"], po_id, "approve").state == "draft"


def test_numbers_are_gapless_in_approval_order_and_cancelled_drafts_take_none(
    app, people, supplier
):
    ids = [_small(app, people, supplier) for _ in range(4)]
    act(app, people["admin"], ids[1], "cancel")
    for po_id in (ids[3], ids[0], ids[2]):
        act(app, people["admin"], po_id, "approve")
    with app.app_context():
        numbers = {po.id: po.number for po in db.session.scalars(sa.select(PurchaseOrder))}
    year = now_utc().year
    assert numbers == {
        ids[3]: f"PO-{year}-000001",
        ids[0]: f"PO-{year}-000002",
        ids[2]: f"PO-{year}-000003",
        ids[1]: None,
    }


def test_only_council_staff_approve_and_only_admins_draft(app, make_user, make_org, supplier):
    from tests.procurement.po_support import person

    org = make_org("acme")
    org_admin = person(make_user("org_admin", org))
    line = {"product_id": supplier["cad"].id, "seats": 1, "unit_cost": 1}
    with pytest.raises(PermissionDenied):
        draft(app, org_admin, supplier["vendor_id"], [line])
    finance = person(make_user("finance", second_factor=False))
    with pytest.raises(PermissionDenied):
        draft(app, finance, supplier["vendor_id"], [line])
    assert count(app, PurchaseOrder) == 0


# ---------------------------------------------------------------- drafting


def test_a_draft_prices_its_lines_for_the_term(app, people, supplier):
    lines = [
        {"product_id": supplier["cad"].id, "seats": 3, "unit_cost": 1250},
        {"product_id": supplier["mail"].id, "seats": 10, "unit_cost": 199},
    ]
    po_id = draft(app, people["admin"], supplier["vendor_id"], lines, source="demand")
    with app.app_context():
        po = db.session.get(PurchaseOrder, po_id)
        assert [(line.months, line.amount) for line in po.lines] == [
            (12, 3 * 1250 * 12),
            (12, 10 * 199 * 12),
        ]
        assert po.total == 45000 + 23880
        assert (po.state, po.number, po.source) == ("draft", None, "demand")


@pytest.mark.parametrize(
    ("starts_on", "ends_on", "months"),
    [
        ("2027-01-01", "2027-12-31", 12),
        ("2027-01-15", "2028-01-14", 12),
        ("2027-01-01", "2027-01-10", 1),
        ("2027-01-31", "2027-02-27", 1),
        ("2028-02-29", "2028-03-28", 1),
        ("2028-02-29", "2028-03-29", 2),
        ("2027-03-01", "2027-03-01", 1),
    ],
)
def test_term_months(starts_on, ends_on, months):
    import datetime as dt

    assert (
        service.term_months(dt.date.fromisoformat(starts_on), dt.date.fromisoformat(ends_on))
        == months
    )


BAD_DRAFTS = [
    ({"lines": []}, "lines"),
    ({"lines": [{"product_id": 999999, "seats": 1, "unit_cost": 1}]}, "lines.0.product_id"),
    ({"lines": [{"product_id": "cad", "seats": 0, "unit_cost": -1}]}, "lines.0.seats"),
    ({"lines": "nonsense"}, "lines"),
    ({"currency": "EURO"}, "currency"),
    ({"currency": "\x00"}, "currency"),
    ({"vendor_id": 2**70}, "vendor_id"),
    ({"vendor_id": 999999}, "vendor_id"),
    ({"starts_on": "2027-02-30"}, "starts_on"),
    ({"ends_on": "99999-01-01"}, "ends_on"),
    ({"starts_on": "2027-06-01", "ends_on": "2027-05-31"}, None),
    ({"source": "hunch"}, "source"),
    ({"lines": [{"product_id": 1, "seats": 10**7, "unit_cost": 1}]}, "lines.0.seats"),
    ({"lines": [{"product_id": 1, "seats": 1, "unit_cost": 1, "extra": 1}]}, "lines.0.extra"),
]


@pytest.mark.parametrize(("change", "field"), BAD_DRAFTS)
def test_bad_drafts_are_refused_with_the_field_named(app, people, supplier, change, field):
    starts_on, ends_on = term()
    data = {
        "vendor_id": supplier["vendor_id"],
        "lines": [{"product_id": supplier["cad"].id, "seats": 1, "unit_cost": 1}],
        "currency": "EUR",
        "starts_on": starts_on,
        "ends_on": ends_on,
        **change,
    }
    with app.app_context(), pytest.raises(ValidationFailed) as refused:
        service.draft_purchase_order(db.session, people["admin"], **data)
    if field is not None:
        assert field in refused.value.errors, refused.value.errors
    assert count(app, PurchaseOrder) == 0


def test_a_product_of_another_vendor_or_twice_is_refused(app, people, supplier, make_product):
    other = make_product(0, sku="bi-studio", vendor="other-soft")
    line = {"product_id": supplier["cad"].id, "seats": 1, "unit_cost": 1}
    foreign = {"product_id": other.id, "seats": 1, "unit_cost": 1}
    with pytest.raises(ValidationFailed) as refused:
        draft(app, people["admin"], supplier["vendor_id"], [line, foreign, line])
    assert set(refused.value.errors) == {"lines.1.product_id", "lines.2.product_id"}


# ---------------------------------------------------------------- sending


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_sending_keeps_the_pdf_and_mails_it_to_the_vendor(app, people, supplier, mailbox):
    po_id = _small(app, people, supplier, seats=3)
    to_state(app, po_id, "sent", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        po = db.session.get(PurchaseOrder, po_id)
        number, pdf = po.number, po.pdf
        assert po.sent_to == "orders@acme-soft.example" and po.sent_at is not None
    text = _text(pdf)
    assert f"Purchase order {number}" in text
    assert "Product cad-suite" in text and "€360.00" in text
    [message] = mailbox
    assert message["To"] == "orders@acme-soft.example"
    assert message["Subject"] == f"Purchase order {number}"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"{number}.pdf"
    assert attachment.get_content() == pdf


def test_a_vendor_without_contact_cannot_be_sent_to(app, people, supplier):
    from portal.catalogue.models import Vendor

    po_id = _small(app, people, supplier)
    act(app, people["admin"], po_id, "approve")
    with app.app_context():
        db.session.get(Vendor, supplier["vendor_id"]).contact_email = None
        db.session.commit()
    with pytest.raises(InvalidState) as refused:
        act(app, people["admin"], po_id, "send")
    assert refused.value.code == "vendor_without_contact"
    assert state_of(app, po_id) == "approved"


# ---------------------------------------------------------------- receiving


def _pools(app, product_id: int) -> list[tuple[int, str | None]]:
    with app.app_context():
        return [
            (pool.capacity, pool.reference)
            for pool in db.session.scalars(
                sa.select(LicencePool)
                .where(LicencePool.product_id == product_id)
                .order_by(LicencePool.id)
            )
        ]


def test_receiving_creates_the_pool_once_even_called_twice(app, people, supplier):
    po_id = _small(app, people, supplier, seats=7)
    to_state(app, po_id, "received", admin=people["admin"], finance=people["finance"])
    with pytest.raises(InvalidState):
        act(app, people["admin"], po_id, "receive")
    with app.app_context():
        number = db.session.get(PurchaseOrder, po_id).number
    assert _pools(app, supplier["cad"].id) == [(5, None), (7, number)]
    with app.app_context():
        [line] = db.session.get(PurchaseOrder, po_id).lines
        assert line.received_seats == 7 and line.pool_id is not None


def test_receiving_extends_a_pool_of_the_same_term_and_cost(app, people, supplier):
    first = _small(app, people, supplier, seats=4)
    second = _small(app, people, supplier, seats=6)
    for po_id in (first, second):
        to_state(app, po_id, "received", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        number = db.session.get(PurchaseOrder, first).number
    assert _pools(app, supplier["cad"].id) == [(5, None), (10, number)]


def test_receiving_grants_waitlisted_seats(app, people, supplier, make_org):
    from portal.catalogue.models import Product
    from portal.seats.models import Subscription
    from portal.seats.subscriptions import subscription_create
    from portal.tenancy.models import Organisation

    org = make_org("acme")
    with app.app_context():
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, supplier["mail"].id),
            quantity=3,
            on_shortage="waitlist",
        )
        db.session.commit()
        sub_id = outcome.subscription.id
        assert (outcome.subscription.quantity, outcome.subscription.requested_quantity) == (1, 3)
    starts_on = now_utc().date()
    line = {"product_id": supplier["mail"].id, "seats": 3, "unit_cost": 100}
    po_id = draft(
        app,
        people["admin"],
        supplier["vendor_id"],
        [line],
        starts_on=starts_on,
        ends_on=starts_on + dt.timedelta(days=364),
    )
    to_state(app, po_id, "received", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        assert (sub.status, sub.quantity, sub.requested_quantity) == ("active", 3, 3)


def test_finance_may_not_receive_send_or_cancel(app, people, supplier):
    po_id = _small(app, people, supplier)
    act(app, people["admin"], po_id, "approve")
    for move in ("send", "cancel"):
        with pytest.raises(PermissionDenied):
            act(app, people["finance"], po_id, move)
    assert state_of(app, po_id) == "approved"


# ---------------------------------------------------------------- vendor invoices and matching


def _received(app, people, supplier) -> tuple[int, list[int]]:
    lines = [
        {"product_id": supplier["cad"].id, "seats": 2, "unit_cost": 1000},
        {"product_id": supplier["mail"].id, "seats": 5, "unit_cost": 100},
    ]
    po_id = draft(app, people["admin"], supplier["vendor_id"], lines)
    to_state(app, po_id, "received", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        return po_id, [line.id for line in db.session.get(PurchaseOrder, po_id).lines]


def _record(app, actor, po_id, data):
    with app.app_context():
        po = db.session.get(PurchaseOrder, po_id)
        invoice = service.vendor_invoice_record(db.session, actor, po, data=data)
        db.session.commit()
        return invoice.id


def test_a_matching_invoice_lists_nothing(app, people, supplier):
    po_id, (cad, mail) = _received(app, people, supplier)
    _record(
        app,
        people["finance"],
        po_id,
        {
            "vendor_number": "ACME-77",
            "issued_on": "2027-01-05",
            "lines": [
                {"line_id": cad, "seats": 2, "amount": 24000},
                {"line_id": mail, "seats": 5, "amount": 6000},
            ],
        },
    )
    with app.app_context():
        assert service.mismatches(db.session, people["finance"]) == []


def test_an_over_invoiced_line_is_listed_for_finance(app, people, supplier):
    po_id, (cad, mail) = _received(app, people, supplier)
    _record(
        app,
        people["finance"],
        po_id,
        {
            "vendor_number": "ACME-78",
            "issued_on": "2027-01-05",
            "lines": [
                {"line_id": cad, "seats": 2, "amount": 24000},
                {"line_id": mail, "seats": 5, "amount": 5000},
            ],
        },
    )
    _record(
        app,
        people["finance"],
        po_id,
        {
            "vendor_number": "ACME-79",
            "issued_on": "2027-02-05",
            "lines": [
                {"line_id": mail, "seats": 1, "amount": 1200},
            ],
        },
    )
    with app.app_context():
        [(po, wrong)] = service.mismatches(db.session, people["finance"])
        assert po.id == po_id
        [match] = wrong
        assert match.line.id == mail
        assert (match.ordered_seats, match.received_seats, match.invoiced_seats) == (5, 5, 6)
        assert (match.ordered_amount, match.invoiced_amount) == (6000, 6200)
        assert match.problems == [
            "over_invoiced",
            "seats_over_ordered",
            "seats_not_received",
            "price_differs",  # 6 seats for €62.00, where 6 seats for the term cost €72.00
        ]


def test_invoicing_seats_not_received_is_listed(app, people, supplier):
    po_id = _small(app, people, supplier, seats=2)
    to_state(app, po_id, "confirmed", admin=people["admin"], finance=people["finance"])
    with app.app_context():
        [line] = db.session.get(PurchaseOrder, po_id).lines
        line_id = line.id
    _record(
        app,
        people["finance"],
        po_id,
        {
            "vendor_number": "A-1",
            "issued_on": "2027-01-05",
            "lines": [{"line_id": line_id, "seats": 2, "amount": 24000}],
        },
    )
    with app.app_context():
        [(_, [match])] = service.mismatches(db.session, people["finance"])
        assert match.problems == ["seats_not_received"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"vendor_number": ""}, ValidationFailed),
        ({"vendor_number": "x" * 101}, ValidationFailed),
        ({"issued_on": "soon"}, ValidationFailed),
        ({"currency": "USD"}, ValidationFailed),
        ({"lines": []}, ValidationFailed),
        ({"lines": [{"line_id": 999999, "seats": 1, "amount": 1}]}, ValidationFailed),
        ({"lines": [{"line_id": "one", "seats": 1, "amount": 1}]}, ValidationFailed),
        ({"lines": [{"line_id": "LINE", "seats": -1, "amount": 1}]}, ValidationFailed),
        ({"lines": [{"line_id": "LINE", "seats": 1, "amount": 10**16}]}, ValidationFailed),
        ({"vendor_number": "TAKEN"}, Conflict),
    ],
)
def test_bad_vendor_invoices_are_refused(app, people, supplier, change, error):
    from portal.procurement.models import VendorInvoice

    po_id, (cad, _) = _received(app, people, supplier)
    good = {
        "vendor_number": "TAKEN",
        "issued_on": "2027-01-05",
        "lines": [{"line_id": cad, "seats": 1, "amount": 1}],
    }
    _record(app, people["finance"], po_id, good)
    data = {**good, "vendor_number": "NEW", **change}
    data["lines"] = [
        {**line, "line_id": cad if line["line_id"] == "LINE" else line["line_id"]}
        for line in data["lines"]
    ]
    with pytest.raises(error):
        _record(app, people["finance"], po_id, data)
    assert count(app, VendorInvoice) == 1


def test_an_invoice_before_the_order_was_sent_is_refused(app, people, supplier):
    po_id = _small(app, people, supplier)
    act(app, people["admin"], po_id, "approve")
    with app.app_context():
        [line] = db.session.get(PurchaseOrder, po_id).lines
        line_id = line.id
    with pytest.raises(InvalidState):
        _record(
            app,
            people["finance"],
            po_id,
            {
                "vendor_number": "A",
                "issued_on": "2027-01-01",
                "lines": [{"line_id": line_id, "seats": 1, "amount": 1}],
            },
        )


# ---------------------------------------------------------------- reading, committed cost


def test_an_unknown_or_malformed_id_is_not_found(app, people):
    with app.app_context():
        for value in (999999, "abc", 2**64, -1, None, "1\x00"):
            with pytest.raises(NotFound):
                service.purchase_order_get(db.session, people["finance"], value)


def test_committed_cost_counts_approved_orders_prorated_by_day(app, people, supplier):
    import datetime as dt

    cancelled = _small(app, people, supplier)
    approved = _small(app, people, supplier, seats=3)
    drafted = _small(app, people, supplier, seats=5)
    act(app, people["admin"], cancelled, "approve")
    act(app, people["admin"], cancelled, "cancel")
    act(app, people["admin"], approved, "approve")
    assert state_of(app, drafted) == "draft"
    starts_on, ends_on = term()
    month_end = (starts_on + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    with app.app_context():
        whole = service.committed_cost(db.session, start=starts_on, end=ends_on)
        first_month = service.committed_cost(db.session, start=starts_on, end=month_end)
    assert whole == {supplier["cad"].id: {"EUR": 3 * 1000 * 12}}
    days = (ends_on - starts_on).days + 1
    inside = (month_end - starts_on).days + 1
    from fractions import Fraction

    from portal.billing.rating import round_half_up

    expected = round_half_up(Fraction(36000 * inside, days))
    assert first_month == {supplier["cad"].id: {"EUR": expected}}
    assert abs(expected - 3000) <= 3 * 1000 * 12 * 3 // days + 1  # about a month's worth


@pytest.mark.parametrize("state", [s for s in STATES if s != "draft"])
def test_only_a_draft_is_changed(app, people, supplier, state):
    po_id = _small(app, people, supplier)
    to_state(app, po_id, state, admin=people["admin"], finance=people["finance"])
    starts_on, ends_on = term()
    with app.app_context(), pytest.raises(InvalidState):
        service.update_draft(
            db.session,
            people["admin"],
            db.session.get(PurchaseOrder, po_id),
            vendor_id=supplier["vendor_id"],
            lines=[{"product_id": supplier["cad"].id, "seats": 9, "unit_cost": 1}],
            currency="EUR",
            starts_on=starts_on,
            ends_on=ends_on,
        )
    with app.app_context():
        assert [line.seats for line in db.session.get(PurchaseOrder, po_id).lines] == [2]
