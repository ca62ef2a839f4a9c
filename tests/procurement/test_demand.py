"""Demand (issue 16): product requests asked, answered, merged, linked and ordered; the
demand board's figures against a hand-built dataset; its statements do not grow with the
products; who may do what."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.kernel.errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from portal.procurement import demand
from portal.procurement.models import ProductRequest, PurchaseOrder
from tests.procurement.demand_support import build
from tests.procurement.po_support import person, term
from tests.support import count, quick_user


@pytest.fixture
def world(app, make_org, make_product):
    return build(app, make_org, make_product)


def _board(app, actor, **kwargs):
    with app.app_context():
        rows = demand.demand_board(db.session, actor, **kwargs)
        return {
            r.product.sku: {
                "capacity": r.capacity,
                "reserved": r.reserved,
                "assigned": r.assigned,
                "waitlisted": r.waitlisted,
                "waiting_days": r.waiting_days,
                "seat_requests": r.seat_requests,
                "product_requests": r.product_requests,
                "requested_seats": r.requested_seats,
                "pressure": r.pressure,
                "suggested": r.suggested_seats,
                "reserved_percent": r.reserved_percent,
                "assigned_percent": r.assigned_percent,
                "trend": r.trend,
                "direction": r.direction,
                "unit_cost": (r.unit_cost, r.currency),
            }
            for r in rows
        }, [r.product.sku for r in rows]


def test_the_board_figures_match_the_hand_built_dataset(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    figures, order = _board(app, admin)
    assert figures["cad-suite"] == {
        "capacity": 5,
        "reserved": 5,  # A 3 + B 2; C cancelled
        "assigned": 2,  # a third seat released
        "waitlisted": 2,
        "waiting_days": 10,
        "seat_requests": 1,  # the declined one does not count
        "product_requests": 2,  # #1 and #2 merged into it; #3 declined
        "requested_seats": 7,
        "pressure": 10,  # 2 + 1 + 7
        "suggested": 10,
        "reserved_percent": 100,
        "assigned_percent": 40,
        # the first of each of the last three months, now: A 1 (3 an hour after the second),
        # B 2 from the third, C 4 until an hour before the second
        "trend": [5, 1, 5, 5],
        "direction": "flat",
        "unit_cost": (500, "EUR"),
    }
    assert figures["secure-mail"]["trend"] == [0, 0, 0, 1]  # from an hour after the third
    assert figures["secure-mail"]["direction"] == "up"
    assert figures["secure-mail"]["pressure"] == 0
    assert figures["secure-mail"]["reserved_percent"] == 100
    assert figures["no-pool"]["capacity"] == 0
    assert figures["no-pool"]["reserved_percent"] is None
    assert figures["no-pool"]["assigned_percent"] is None
    assert figures["no-pool"]["waiting_days"] is None
    assert figures["no-pool"]["unit_cost"] == (None, None)
    # the most pressed first; ties by utilisation, then name
    assert order == ["cad-suite", "secure-mail", "no-pool"]
    assert _board(app, admin, sort="name")[1] == ["cad-suite", "no-pool", "secure-mail"]
    assert _board(app, admin, sort="bogus")[1] == order


def test_the_waiting_requests_are_grouped_with_their_duplicates(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    with app.app_context():
        groups = demand.waiting_request_groups(db.session, admin)
        assert [(g.request.id, g.count, g.seats, g.organisations) for g in groups] == [
            (world.r1, 2, 7, 2),
            (world.r4, 1, 6, 1),
        ]
        linked = demand.waiting_requests_of(db.session, admin, [world.cad.id, world.mail.id])
        assert sorted(r.id for r in linked[world.cad.id]) == [world.r1, world.r2]
        assert world.mail.id not in linked


def test_the_board_reads_the_same_statements_for_three_products_or_nine(
    app, world, make_user, make_product
):
    admin = person(make_user("council_admin", second_factor=False))

    def statements() -> int:
        seen: list[str] = []
        with app.app_context():
            engine = db.engine

            def note(conn, cursor, statement, *args) -> None:
                seen.append(statement)

            sa.event.listen(engine, "before_cursor_execute", note)
            try:
                demand.demand_board(db.session, admin)
            finally:
                sa.event.remove(engine, "before_cursor_execute", note)
            db.session.remove()
        return len(seen)

    few = statements()
    for n in range(6):
        make_product(3, sku=f"more-{n}")
    assert statements() == few


def test_a_member_asks_for_a_product_and_reads_only_their_organisations(
    app, make_org, make_product
):
    make_product(5, sku="cad-suite")
    a, b = make_org("org-a"), make_org("org-b")
    member_a = person(quick_user(app, "member", a))
    admin_b = person(quick_user(app, "org_admin", b))
    with app.app_context():
        mine = demand.product_request_create(
            db.session,
            member_a,
            product_name="  Atlas GIS ",
            vendor_name="Atlas Inc.",
            seats="12",
            note="For the planning team",
        )
        db.session.commit()
        assert (mine.product_name, mine.vendor_name, mine.seats, str(mine.state)) == (
            "Atlas GIS",
            "Atlas Inc.",
            12,
            "open",
        )
        assert mine.organisation_id == a.id and mine.requested_by_id == member_a.user_id
        theirs = demand.product_request_create(
            db.session, admin_b, product_name="Atlas GIS", vendor_name="Atlas", seats=3
        )
        db.session.commit()
        assert [r.id for r in demand.product_requests_list(db.session, member_a)] == [mine.id]
        assert [r.id for r in demand.product_requests_list(db.session, admin_b)] == [theirs.id]
        with pytest.raises(NotFound):
            demand.product_request_get(db.session, admin_b, mine.id)
        with pytest.raises(NotFound):
            demand.product_request_get(db.session, member_a, "x")
        db.session.remove()
    assert count(app, AuditEvent, AuditEvent.action == "product_request.create") == 2


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"product_name": "", "vendor_name": "Atlas", "seats": 1}, "product_name"),
        ({"product_name": "x" * 201, "vendor_name": "Atlas", "seats": 1}, "product_name"),
        ({"product_name": "Atlas", "vendor_name": "", "seats": 1}, "vendor_name"),
        ({"product_name": "Atlas", "vendor_name": "Atlas", "seats": 0}, "seats"),
        ({"product_name": "Atlas", "vendor_name": "Atlas", "seats": "many"}, "seats"),
        ({"product_name": "Atlas", "vendor_name": "Atlas", "seats": 10**12}, "seats"),
        ({"product_name": "Atlas", "vendor_id": 10**6, "seats": 1}, "vendor_id"),
        ({"product_name": "Atlas", "vendor_id": "acme", "seats": 1}, "vendor_id"),
        # a product the catalogue has (by name, any case)
        ({"product_name": "product CAD-SUITE", "vendor_name": "Acme", "seats": 1}, "product_name"),
        ({"product_name": ["Atlas"], "vendor_name": "Atlas", "seats": 1}, "product_name"),
    ],
)
def test_bad_requests_are_refused_beside_their_field(app, make_org, make_product, fields, field):
    make_product(5, sku="cad-suite")
    member = person(quick_user(app, "member", make_org("org-a")))
    with app.app_context():
        with pytest.raises(ValidationFailed) as refused:
            demand.product_request_create(db.session, member, **fields)
        db.session.rollback()
    assert field in refused.value.errors
    assert count(app, ProductRequest) == 0


def test_council_staff_and_vendor_admins_do_not_ask(app, make_user, make_product):
    make_product(5, sku="cad-suite")
    for role, vendor in (("council_admin", None), ("finance", None), ("vendor_admin", "acme-soft")):
        actor = person(make_user(role, second_factor=False, vendor=vendor))
        with app.app_context(), pytest.raises(PermissionDenied):
            demand.product_request_create(
                db.session, actor, product_name="Atlas", vendor_name="Atlas", seats=1
            )


def test_the_council_answers_and_members_read_the_answer(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    finance = person(make_user("finance", second_factor=False))
    member_b = person(quick_user(app, "member", world.b))
    with app.app_context():
        r1 = db.session.get(ProductRequest, world.r1)
        with pytest.raises(PermissionDenied):
            demand.product_request_answer(db.session, finance, r1, state="planned")
        with pytest.raises(PermissionDenied):
            demand.product_request_answer(db.session, member_b, r1, state="planned")
        with pytest.raises(ValidationFailed) as bad:
            demand.product_request_answer(db.session, admin, r1, state="merged")
        assert "state" in bad.value.errors
        demand.product_request_answer(
            db.session, admin, r1, state="planned", reply="We talk to Acme in March."
        )
        db.session.commit()
        # B's request was merged into A's: B's people read A's answer, not A's request
        mine = demand.product_requests_list(db.session, member_b)
        assert {r.id for r in mine} == {world.r2, world.r3, world.r4}
        answers = demand.answers_of(db.session, mine)
        assert (answers[world.r2].state, answers[world.r2].reply) == (
            "planned",
            "We talk to Acme in March.",
        )
        r2 = db.session.get(ProductRequest, world.r2)
        with pytest.raises(InvalidState):
            demand.product_request_answer(db.session, admin, r2, state="open")
    assert count(app, AuditEvent, AuditEvent.action == "product_request.answer") == 1


def test_merging_moves_the_duplicates_and_counts_them_in_the_primary(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    with app.app_context():
        r1 = db.session.get(ProductRequest, world.r1)
        r4 = db.session.get(ProductRequest, world.r4)
        with pytest.raises(ValidationFailed):
            demand.product_request_merge(db.session, admin, r1, into=r1.id)
        with pytest.raises(ValidationFailed):
            demand.product_request_merge(db.session, admin, r1, into=10**9)
        with pytest.raises(NotFound):
            demand.product_request_merge(db.session, admin, r1, into="nine")
        with pytest.raises(InvalidState):  # into a merged one
            demand.product_request_merge(db.session, admin, r4, into=world.r2)
        # the primary with its duplicate goes into #4: all three count there
        primary = demand.product_request_merge(db.session, admin, r1, into=r4.id)
        db.session.commit()
        assert primary.id == world.r4
        rows = {
            r.id: (str(r.state), r.merged_into_id, r.product_id)
            for r in db.session.scalars(sa.select(ProductRequest))
        }
        assert rows[world.r1] == ("merged", world.r4, world.cad.id)
        assert rows[world.r2] == ("merged", world.r4, world.cad.id)
        assert rows[world.r4] == ("open", None, world.cad.id)  # took the link along
        groups = demand.waiting_request_groups(db.session, admin)
        assert [(g.request.id, g.count, g.seats) for g in groups] == [(world.r4, 3, 13)]
        with pytest.raises(InvalidState):
            demand.product_request_merge(
                db.session, admin, db.session.get(ProductRequest, world.r1), into=world.r3
            )
    figures, _ = _board(app, admin)
    assert figures["cad-suite"]["requested_seats"] == 13
    assert figures["cad-suite"]["product_requests"] == 3


def test_a_request_is_linked_and_ordered(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    starts_on, ends_on = term()
    with app.app_context():
        r4 = db.session.get(ProductRequest, world.r4)
        with pytest.raises(InvalidState):  # not linked yet
            demand.draft_from_demand(
                db.session,
                admin,
                product_id=world.mail.id,
                request_id=r4.id,
                seats=6,
                unit_cost=300,
                currency="EUR",
                starts_on=starts_on,
                ends_on=ends_on,
            )
        with pytest.raises(ValidationFailed):
            demand.product_request_link(db.session, admin, r4, product_id=10**9)
        demand.product_request_link(db.session, admin, r4, product_id=world.mail.id)
        po = demand.draft_from_demand(
            db.session,
            admin,
            product_id=world.mail.id,
            request_id=r4.id,
            seats="6",
            unit_cost=300,
            currency="EUR",
            starts_on=starts_on,
            ends_on=ends_on,
        )
        db.session.commit()
        assert (str(po.state), po.source, po.vendor_id, po.total) == (
            "draft",
            "demand",
            po.lines[0].product.vendor_id,
            6 * 300 * 12,
        )
        r4 = db.session.get(ProductRequest, world.r4)
        assert (str(r4.state), r4.purchase_order_id) == ("ordered", po.id)


def test_a_bad_draft_keeps_nothing(app, world, make_user):
    admin = person(make_user("council_admin", second_factor=False))
    finance = person(make_user("finance", second_factor=False))
    starts_on, ends_on = term()
    good = {
        "product_id": world.cad.id,
        "seats": 10,
        "unit_cost": 500,
        "currency": "EUR",
        "starts_on": starts_on,
        "ends_on": ends_on,
    }
    with app.app_context():
        with pytest.raises(PermissionDenied):
            demand.draft_from_demand(db.session, finance, **good)
        with pytest.raises(NotFound):
            demand.draft_from_demand(db.session, admin, **{**good, "product_id": 10**9})
        for change in ({"seats": 0}, {"unit_cost": -1}, {"currency": "XXX"}, {"ends_on": "x"}):
            with pytest.raises(ValidationFailed):
                demand.draft_from_demand(db.session, admin, **{**good, **change})
            db.session.rollback()
    assert count(app, PurchaseOrder) == 0


def test_council_admins_hear_of_a_request_and_every_requester_of_the_answer(
    app, make_org, make_product, make_user
):
    from portal.notifications.models import Notification

    make_product(5, sku="cad-suite")
    admin_ref = make_user("council_admin", second_factor=False)
    admin = person(admin_ref)
    a, b = make_org("org-a"), make_org("org-b")
    member_a = person(quick_user(app, "member", a))
    member_b = person(quick_user(app, "member", b))
    with app.app_context():
        first = demand.product_request_create(
            db.session, member_a, product_name="Atlas GIS", vendor_name="Atlas", seats=2
        )
        second = demand.product_request_create(
            db.session, member_b, product_name="Atlas", vendor_name="Atlas", seats=3
        )
        demand.product_request_merge(db.session, admin, second, into=first.id)
        demand.product_request_answer(
            db.session, admin, first, state="declined", reply="Not this year."
        )
        db.session.commit()
        told = {
            (n.user_id, n.kind)
            for n in db.session.scalars(sa.select(Notification).order_by(Notification.id))
        }
        db.session.remove()
    assert (admin_ref.id, demand.REQUEST_CREATED) in told
    assert (member_a.user_id, demand.REQUEST_ANSWERED) in told
    assert (member_b.user_id, demand.REQUEST_ANSWERED) in told
