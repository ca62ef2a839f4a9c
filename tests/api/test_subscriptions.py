"""``/subscriptions`` and seats: organisation tokens act for their own organisation only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.api.models import IdempotentRequest
from portal.db import db
from portal.kernel.clock import now_utc
from portal.seats.models import SeatAssignment, Subscription
from tests.api.conftest import assert_problem

SHAPE = {
    "id",
    "organisation",
    "product",
    "quantity",
    "requested_quantity",
    "status",
    "starts_on",
    "ends_on",
    "created_at",
}


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


@pytest.fixture
def acme(make_org):
    return make_org("acme")


@pytest.fixture
def globex(make_org):
    return make_org("globex")


def test_an_organisation_token_subscribes_its_own_organisation(app, api, acme, make_product):
    product = make_product(capacity=10)
    client = api("organisation", org=acme)
    response = client.post("/subscriptions", json={"product": product.sku, "quantity": 3})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == SHAPE | {"outcome"}
    assert body["organisation"] == "acme" and body["product"] == product.sku
    assert body["quantity"] == 3 and body["status"] == "active" and body["outcome"] == "granted"
    assert body["starts_on"] == now_utc().date().isoformat()
    assert body["created_at"].endswith(("Z", "+00:00"))
    # Naming its own organisation is fine too (for another product).
    other = make_product(capacity=10)
    response = client.post(
        "/subscriptions", json={"organisation": "acme", "product": other.sku, "quantity": 1}
    )
    assert response.status_code == 201


def test_an_organisation_token_cannot_subscribe_another_organisation(
    app, api, acme, globex, make_product
):
    product = make_product()
    client = api("organisation", org=acme)
    response = client.post(
        "/subscriptions", json={"organisation": "globex", "product": product.sku, "quantity": 1}
    )
    body = assert_problem(response, 403)
    assert "organisation" in body["errors"]
    assert _count(app, Subscription) == 0


def test_a_council_token_must_name_the_organisation(app, api, acme, make_product):
    product = make_product()
    council = api("council")
    body = assert_problem(
        council.post("/subscriptions", json={"product": product.sku, "quantity": 1}), 422
    )
    assert body["errors"] == {"organisation": ["This field is required."]}
    body = assert_problem(
        council.post(
            "/subscriptions", json={"organisation": "nobody", "product": product.sku, "quantity": 1}
        ),
        404,
    )
    assert body["errors"] == {"organisation": ["No such organisation."]}
    response = council.post(
        "/subscriptions",
        json={
            "organisation": "acme",
            "product": product.sku,
            "quantity": 2,
            "starts_on": "2024-01-01",
        },
    )
    assert response.status_code == 201
    assert response.get_json()["starts_on"] == "2024-01-01"


def test_only_the_council_may_backdate(api, acme, make_product):
    product = make_product()
    client = api("organisation", org=acme)
    body = assert_problem(
        client.post(
            "/subscriptions",
            json={"product": product.sku, "quantity": 1, "starts_on": "2024-01-01"},
        ),
        403,
    )
    assert "starts_on" in body["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantity": 1}, "product"),
        ({"product": "x"}, "quantity"),
        ({"product": "x", "quantity": 0}, "quantity"),
        ({"product": "x", "quantity": "two"}, "quantity"),
        ({"product": "x", "quantity": 1, "on_shortage": "beg"}, "on_shortage"),
        ({"product": "x", "quantity": 1, "starts_on": "yesterday"}, "starts_on"),
        ({"product": "x", "quantity": 1, "colour": "red"}, "colour"),
    ],
)
def test_subscription_fields_are_validated(api, acme, body, field):
    problem = assert_problem(api("organisation", org=acme).post("/subscriptions", json=body), 422)
    assert list(problem["errors"]) == [field], problem


def test_an_unknown_product_is_not_found_naming_the_field(api, acme):
    problem = assert_problem(
        api("organisation", org=acme).post(
            "/subscriptions", json={"product": "nope", "quantity": 1}
        ),
        404,
    )
    assert problem["errors"] == {"product": ["No such product."]}


def test_shortage_reject_waitlist_and_partial(app, api, acme, globex, make_org, make_product):
    product = make_product(capacity=5)
    council = api("council")
    assert (
        council.post(
            "/subscriptions", json={"organisation": "acme", "product": product.sku, "quantity": 4}
        ).status_code
        == 201
    )
    rejected = council.post(
        "/subscriptions", json={"organisation": "globex", "product": product.sku, "quantity": 3}
    )
    body = assert_problem(rejected, 409, "pool_exhausted")
    assert body["available"] == 1
    partial = council.post(
        "/subscriptions",
        json={
            "organisation": "globex",
            "product": product.sku,
            "quantity": 3,
            "on_shortage": "partial",
        },
    )
    assert partial.status_code == 202
    assert partial.get_json()["outcome"] == "partial"
    assert partial.get_json()["quantity"] == 1 and partial.get_json()["status"] == "active"
    make_org("initech")
    waitlisted = council.post(
        "/subscriptions",
        json={
            "organisation": "initech",
            "product": product.sku,
            "quantity": 2,
            "on_shortage": "waitlist",
        },
    )
    assert waitlisted.status_code == 202
    assert waitlisted.get_json()["status"] == "waitlisted"
    assert waitlisted.get_json()["outcome"] == "waitlisted"
    assert waitlisted.get_json()["quantity"] == 0
    assert waitlisted.get_json()["requested_quantity"] == 2


def test_a_vendor_token_cannot_subscribe_or_see_subscriptions(
    app, api, acme, make_vendor, make_product
):
    product = make_product()
    sub_id = (
        api("organisation", org=acme)
        .post("/subscriptions", json={"product": product.sku, "quantity": 1})
        .get_json()["id"]
    )
    vendor = api("vendor", vendor=make_vendor())
    for response in (
        vendor.post(
            "/subscriptions", json={"organisation": "acme", "product": product.sku, "quantity": 1}
        ),
        vendor.get("/subscriptions"),
        vendor.get(f"/subscriptions/{sub_id}"),
        vendor.patch(f"/subscriptions/{sub_id}", json={"quantity": 2}),
        vendor.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "a@acme.example"}),
        vendor.delete(f"/subscriptions/{sub_id}/seats/a@acme.example"),
    ):
        assert_problem(response, 403, "scope_forbidden")
    assert _count(app, Subscription) == 1


def test_an_organisation_token_never_sees_another_organisations_subscriptions(
    app, api, acme, globex, make_product
):
    product = make_product(capacity=20)
    mine = api("organisation", org=acme)
    theirs = api("organisation", org=globex)
    my_id = mine.post("/subscriptions", json={"product": product.sku, "quantity": 2}).get_json()[
        "id"
    ]
    their_id = theirs.post(
        "/subscriptions", json={"product": product.sku, "quantity": 3}
    ).get_json()["id"]
    assert [s["id"] for s in mine.get("/subscriptions").get_json()["data"]] == [my_id]
    assert mine.get(f"/subscriptions/{my_id}").status_code == 200
    for response in (
        mine.get(f"/subscriptions/{their_id}"),
        mine.patch(f"/subscriptions/{their_id}", json={"quantity": 1}),
        mine.post(f"/subscriptions/{their_id}/seats", json={"user_email": "x@globex.example"}),
        mine.delete(f"/subscriptions/{their_id}/seats/x@globex.example"),
    ):
        assert_problem(response, 404)
    assert_problem(mine.get("/subscriptions?organisation=globex"), 403)
    with app.app_context():
        assert db.session.get(Subscription, their_id).quantity == 3
    assert _count(app, SeatAssignment) == 0
    # The council sees both, and can filter.
    council = api("council")
    assert {s["id"] for s in council.get("/subscriptions").get_json()["data"]} == {my_id, their_id}
    assert [
        s["id"] for s in council.get("/subscriptions?organisation=globex").get_json()["data"]
    ] == [their_id]


def test_resize(app, api, acme, make_product):
    product = make_product(capacity=5)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 2}).get_json()[
        "id"
    ]
    grown = client.patch(f"/subscriptions/{sub_id}", json={"quantity": 4})
    assert grown.status_code == 200 and grown.get_json()["quantity"] == 4
    assert_problem(
        client.patch(f"/subscriptions/{sub_id}", json={"quantity": 9}), 409, "pool_exhausted"
    )
    waiting = client.patch(
        f"/subscriptions/{sub_id}", json={"quantity": 9, "on_shortage": "waitlist"}
    )
    assert waiting.status_code == 202
    assert waiting.get_json()["quantity"] == 5 and waiting.get_json()["requested_quantity"] == 9
    problem = assert_problem(client.patch(f"/subscriptions/{sub_id}", json={"quantity": 0}), 422)
    assert list(problem["errors"]) == ["quantity"]
    problem = assert_problem(client.patch(f"/subscriptions/{sub_id}", json={}), 422)
    assert list(problem["errors"]) == ["quantity"]
    assert_problem(client.patch("/subscriptions/999999", json={"quantity": 1}), 404)


def test_shrinking_below_assigned_seats_is_refused(api, acme, make_product):
    product = make_product(capacity=5)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 2}).get_json()[
        "id"
    ]
    for email in ("a@acme.example", "b@acme.example"):
        assert (
            client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": email}).status_code
            == 201
        )
    assert_problem(
        client.patch(f"/subscriptions/{sub_id}", json={"quantity": 1}), 409, "seats_assigned"
    )


def test_seats_are_assigned_and_released(app, api, acme, make_product, make_user):
    product = make_product(capacity=5)
    member = make_user("member", acme)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 1}).get_json()[
        "id"
    ]
    assigned = client.post(
        f"/subscriptions/{sub_id}/seats", json={"user_email": member.email.upper()}
    )
    assert assigned.status_code == 201
    seat = assigned.get_json()
    assert seat["subscription"] == sub_id and seat["user_email"] == member.email
    assert seat["released_at"] is None and seat["assigned_at"]
    full = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "new@acme.example"})
    assert_problem(full, 409, "no_free_seat")
    released = client.delete(f"/subscriptions/{sub_id}/seats/{member.email}")
    assert released.status_code == 200
    assert released.get_json()["released_at"] is not None
    assert_problem(client.delete(f"/subscriptions/{sub_id}/seats/{member.email}"), 404)
    # The freed seat goes to a new person, who is invited.
    invited = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "new@acme.example"})
    assert invited.status_code == 201


def test_seat_emails_are_validated_and_kept_in_the_organisation(
    api, acme, globex, make_product, make_user
):
    product = make_product(capacity=5)
    outsider = make_user("member", globex)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 2}).get_json()[
        "id"
    ]
    problem = assert_problem(
        client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "not an email"}), 422
    )
    assert list(problem["errors"]) == ["user_email"]
    problem = assert_problem(client.post(f"/subscriptions/{sub_id}/seats", json={}), 422)
    assert list(problem["errors"]) == ["user_email"]
    problem = assert_problem(
        client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": outsider.email}), 409
    )
    assert problem["code"] == "email_not_assignable"


def test_seat_assignment_is_idempotent(app, api, acme, make_product):
    product = make_product(capacity=5)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 3}).get_json()[
        "id"
    ]
    headers = {"Idempotency-Key": "seat-1"}
    body = {"user_email": "pat@acme.example"}
    first = client.post(f"/subscriptions/{sub_id}/seats", json=body, headers=headers)
    again = client.post(f"/subscriptions/{sub_id}/seats", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert _count(app, SeatAssignment) == 1
    with app.app_context():
        stored = db.session.scalar(sa.select(IdempotentRequest))
        assert stored.organisation_id == acme.id


def test_subscribing_is_idempotent_including_a_202(app, api, acme, make_product):
    product = make_product(capacity=1)
    client = api("organisation", org=acme)
    headers = {"Idempotency-Key": "sub-1"}
    body = {"product": product.sku, "quantity": 3, "on_shortage": "waitlist"}
    first = client.post("/subscriptions", json=body, headers=headers)
    again = client.post("/subscriptions", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert _count(app, Subscription) == 1


def test_listing_pages_through_every_subscription(app, api, make_org, make_product):
    product = make_product(capacity=100)
    council = api("council")
    ids = []
    for n in range(7):
        org = make_org(f"member-{n}")
        ids.append(
            council.post(
                "/subscriptions",
                json={"organisation": org.slug, "product": product.sku, "quantity": 1},
            ).get_json()["id"]
        )
    seen, cursor = [], None
    while True:
        body = council.get(
            "/subscriptions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        ).get_json()
        seen += [s["id"] for s in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    assert [
        s["id"] for s in council.get(f"/subscriptions?product={product.sku}").get_json()["data"]
    ] == ids


def test_cancelled_subscriptions_are_listed_only_on_request(app, api, acme, make_product):
    from portal.seats.services import subscription_cancel
    from tests.conftest import SYSTEM

    product = make_product()
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 1}).get_json()[
        "id"
    ]
    with app.app_context():
        subscription_cancel(
            db.session, actor=SYSTEM, subscription=db.session.get(Subscription, sub_id)
        )
        db.session.commit()
    assert client.get("/subscriptions").get_json()["data"] == []
    listed = client.get("/subscriptions?include_cancelled=true").get_json()["data"]
    assert [(s["id"], s["status"]) for s in listed] == [(sub_id, "cancelled")]
    assert listed[0]["ends_on"] is not None
