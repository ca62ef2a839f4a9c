"""A SCIM group mapped to a product gives its members seats of the organisation's
subscription, within the subscription's quantity, and takes them back when they leave."""

from __future__ import annotations

import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.seats.models import SeatAssignment
from tests.conftest import SYSTEM, login, post_form
from tests.scim.conftest import USER_SCHEMA
from tests.support import count, messages


def _subscribe(app, org, sku: str, quantity: int) -> None:
    from portal.catalogue.selectors import product_by_sku
    from portal.seats.services import subscription_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=product_by_sku(db.session, sku),
            quantity=quantity,
        )
        db.session.commit()
        db.session.remove()


def _map(app, org, group_id: str, sku: str):
    from portal.catalogue.selectors import product_by_sku
    from portal.scim.models import ScimGroup
    from portal.scim.services import mapping_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        _, report = mapping_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            group=db.session.get(ScimGroup, int(group_id)),
            product=product_by_sku(db.session, sku),
        )
        db.session.commit()
        db.session.remove()
        return report


def _holders(app, sku: str) -> list[str]:
    from portal.catalogue.models import Product
    from portal.identity.models import User

    with app.app_context():
        emails = db.session.scalars(
            sa.select(User.email)
            .join(SeatAssignment, SeatAssignment.user_id == User.id)
            .join(Product, Product.id == SeatAssignment.product_id)
            .where(Product.sku == sku, SeatAssignment.released_at.is_(None))
            .order_by(User.email)
        ).all()
        db.session.remove()
        return list(emails)


def _users(scim, *names: str) -> dict[str, str]:
    return {
        name: scim.post(
            "/Users", {"schemas": [USER_SCHEMA], "userName": f"{name}@acme.example"}
        ).get_json()["id"]
        for name in names
    }


def test_group_members_get_seats_within_the_quantity_and_lose_them_when_removed(
    app, scim_org, make_product
):
    scim = scim_org("acme")
    make_product(capacity=10, sku="cad-suite")
    _subscribe(app, scim.org, "cad-suite", 2)
    ids = _users(scim, "ann", "ben", "cid")
    gid = scim.post(
        "/Groups", {"displayName": "Designers", "members": [{"value": ids["ann"]}]}
    ).get_json()["id"]
    report = _map(app, scim.org, gid, "cad-suite")
    assert report.assigned == [("ann@acme.example", "cad-suite")]
    assert _holders(app, "cad-suite") == ["ann@acme.example"]

    scim.patch(
        f"/Groups/{gid}",
        {"op": "add", "path": "members", "value": [{"value": ids["ben"]}, {"value": ids["cid"]}]},
    )
    holders = _holders(app, "cad-suite")
    assert len(holders) == 2 and "ann@acme.example" in holders  # two seats, three people
    with app.app_context():
        refused = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "scim.seat_not_assigned")
        ).all()
        assert len(refused) == 1 and refused[0].after["product"] == "cad-suite"
        db.session.remove()

    # The admin's page names who got no seat.
    admin = app.test_client()
    from tests.support import quick_user

    login(admin, quick_user(app, "org_admin", scim.org))
    page = admin.get("/org/scim/groups").get_data(as_text=True)
    without = [e for e in ("ben@acme.example", "cid@acme.example") if e not in holders]
    assert without[0] in page and "Without a seat" in page

    # Removing a member frees the seat; "Try again" gives it to the one left out.
    leaver = next(e for e in holders if e != "ann@acme.example").split("@")[0]
    scim.patch(f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{ids[leaver]}"]'})
    assert leaver + "@acme.example" not in _holders(app, "cad-suite")
    retried = post_form(admin, "/org/scim/mappings/sync", {}, token_from="/org/scim/groups")
    assert any("1 seat assigned" in m for m in messages(admin.get(retried.headers["Location"])))
    assert _holders(app, "cad-suite") == sorted(["ann@acme.example", without[0]])


def test_deactivation_releases_seats_and_reactivation_restores_them(app, scim_org, make_product):
    scim = scim_org("acme")
    make_product(capacity=5, sku="office")
    _subscribe(app, scim.org, "office", 3)
    ids = _users(scim, "ann")
    gid = scim.post(
        "/Groups", {"displayName": "Everyone", "members": [{"value": ids["ann"]}]}
    ).get_json()["id"]
    _map(app, scim.org, gid, "office")
    assert _holders(app, "office") == ["ann@acme.example"]

    scim.patch(f"/Users/{ids['ann']}", {"op": "replace", "value": {"active": False}})
    assert _holders(app, "office") == []
    scim.patch(f"/Users/{ids['ann']}", {"op": "replace", "value": {"active": True}})
    assert _holders(app, "office") == ["ann@acme.example"]

    assert scim.delete(f"/Users/{ids['ann']}").status_code == 204
    assert _holders(app, "office") == []
    assert scim.get(f"/Groups/{gid}").get_json()["members"] == []


def test_a_person_in_two_groups_mapped_to_one_product_keeps_the_seat(app, scim_org, make_product):
    scim = scim_org("acme")
    make_product(capacity=5, sku="office")
    _subscribe(app, scim.org, "office", 3)
    ids = _users(scim, "ann")
    g1 = scim.post("/Groups", {"displayName": "A", "members": [{"value": ids["ann"]}]}).get_json()[
        "id"
    ]
    g2 = scim.post("/Groups", {"displayName": "B", "members": [{"value": ids["ann"]}]}).get_json()[
        "id"
    ]
    _map(app, scim.org, g1, "office")
    _map(app, scim.org, g2, "office")
    scim.patch(f"/Groups/{g1}", {"op": "remove", "path": f'members[value eq "{ids["ann"]}"]'})
    assert _holders(app, "office") == ["ann@acme.example"]
    assert scim.delete(f"/Groups/{g2}").status_code == 204
    assert _holders(app, "office") == []


def test_mappings_are_made_on_the_page_and_report_a_missing_subscription(
    app, scim_org, make_product
):
    scim = scim_org("acme")
    make_product(capacity=5, sku="office")
    make_product(capacity=5, sku="cad-suite")
    _subscribe(app, scim.org, "office", 1)
    ids = _users(scim, "ann")
    gid = scim.post(
        "/Groups", {"displayName": "Staff", "members": [{"value": ids["ann"]}]}
    ).get_json()["id"]
    from tests.support import quick_user

    admin = app.test_client()
    login(admin, quick_user(app, "org_admin", scim.org))
    page = admin.get("/org/scim/groups").get_data(as_text=True)
    assert 'value="office"' in page and 'value="cad-suite"' not in page  # subscribed products only
    response = post_form(
        admin,
        "/org/scim/groups",
        {"group": gid, "product": "office"},
        token_from="/org/scim/groups",
    )
    assert response.status_code == 302
    assert _holders(app, "office") == ["ann@acme.example"]
    # A product the organisation does not subscribe to gives no seat, and says why.
    report = _map(app, scim.org, gid, "cad-suite")
    assert report.failed and "does not subscribe" in report.failed[0][2]
    assert count(app, SeatAssignment) == 1
