"""The seat pages: subscribing from the catalogue, an organisation's subscriptions,
assigning and releasing seats, seat requests and "My software".

Org admins act only within their own organisation: another organisation's
subscription or request answers 404 and nothing changes (every row of every
table is compared before and after).
"""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Product
from portal.db import db
from portal.identity.models import Invitation, User
from portal.seats import services
from portal.seats.models import SeatAssignment, SeatRequest, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, flashes, post_form
from tests.support import db_rows


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _messages(response) -> list[str]:
    return [html.unescape(m).strip() for m in flashes(response)]


def _follow(client, response) -> list[str]:
    assert response.status_code == 302, (response.status_code, _messages(response))
    return _messages(client.get(response.headers["Location"]))


def _is_sign_in_redirect(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _subscribe(app, org, product, quantity, on_shortage="reject") -> int:
    with app.app_context():
        outcome = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=quantity,
            on_shortage=on_shortage,
        )
        db.session.commit()
        return outcome.subscription.id


def _assign(app, sub_id: int, email: str) -> None:
    with app.app_context():
        services.seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            user_email=email,
        )
        db.session.commit()


def _sub(app, sub_id: int) -> tuple[int, int, str]:
    """(quantity, requested quantity, status) read fresh."""
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        return sub.quantity, sub.requested_quantity, sub.status


def _holders(app, sub_id: int) -> list[str]:
    with app.app_context():
        return sorted(
            db.session.scalars(
                sa.select(User.email)
                .join(SeatAssignment, SeatAssignment.user_id == User.id)
                .where(
                    SeatAssignment.subscription_id == sub_id,
                    SeatAssignment.released_at.is_(None),
                )
            )
        )


@pytest.fixture
def world(app, make_org, make_user, signed_in, make_product):
    """Two organisations (alpha with clients, bravo with a subscription) and a product."""
    alpha, bravo = make_org("alpha"), make_org("bravo")
    product = make_product(10, sku="cad-suite")
    admin = signed_in("org_admin", alpha)
    member = signed_in("member", alpha)
    bravo_member = make_user("member", bravo)
    bravo_sub = _subscribe(app, bravo, product, 3)
    _assign(app, bravo_sub, bravo_member.email)
    return {
        "alpha": alpha,
        "bravo": bravo,
        "product": product,
        "admin": admin,
        "member": member,
        "bravo_member": bravo_member,
        "bravo_sub": bravo_sub,
    }


# ---------------------------------------------------------------- who sees what


def test_org_pages_answer_each_role_as_they_should(app, world, signed_in):
    sub_id = _subscribe(app, world["alpha"], world["product"], 2)
    paths = [
        "/org/subscriptions",
        f"/org/subscriptions/{sub_id}",
        "/org/seat-requests",
        "/catalogue/cad-suite/subscribe",
    ]
    anonymous = app.test_client()
    council, finance = signed_in("council_admin"), signed_in("finance")
    for path in paths:
        assert world["admin"].get(path).status_code == 200, path
        assert world["member"].get(path).status_code == 403, path
        assert council.get(path).status_code == 403, path
        assert finance.get(path).status_code == 403, path
        assert _is_sign_in_redirect(anonymous.get(path)), path
    assert world["admin"].get("/org/subscriptions/999999").status_code == 404
    assert world["admin"].get("/catalogue/no-such/subscribe").status_code == 404


def test_my_software_answers_everyone_signed_in(app, world, signed_in):
    assert world["member"].get("/my").status_code == 200
    assert world["admin"].get("/my").status_code == 200
    council = signed_in("council_admin")
    assert "Council staff have no seats" in _text(council.get("/my"))
    assert _is_sign_in_redirect(app.test_client().get("/my"))


# ---------------------------------------------------------------- subscribing


def test_org_admin_subscribes_from_the_catalogue(app, world):
    admin = world["admin"]
    page = _text(admin.get("/catalogue/cad-suite/subscribe"))
    assert "All or nothing" in page and "put the rest on the waitlist" in page
    assert "€10.00 per seat per month" in page
    assert "Seats available now</dt><dd>7" in page

    response = post_form(
        admin, "/catalogue/cad-suite/subscribe", {"quantity": "4", "on_shortage": "reject"}
    )
    with app.app_context():
        sub = db.session.scalar(
            sa.select(Subscription).where(Subscription.organisation_id == world["alpha"].id)
        )
        sub_id = sub.id
    assert response.headers["Location"] == f"/org/subscriptions/{sub_id}"
    assert _follow(admin, response) == [
        "You have 4 seats of Product cad-suite. Assign them to people below."
    ]
    assert _sub(app, sub_id) == (4, 4, "active")
    listing = _text(admin.get("/org/subscriptions"))
    assert "Product cad-suite" in listing
    assert f'href="/org/subscriptions/{world["bravo_sub"]}"' not in listing


def test_a_shortage_is_refused_waitlisted_or_partly_granted_as_chosen(
    app, world, make_org, signed_in
):
    admin = world["admin"]  # 7 seats are free
    before = db_rows(app)
    response = post_form(
        admin, "/catalogue/cad-suite/subscribe", {"quantity": "9", "on_shortage": "reject"}
    )
    assert response.status_code == 400
    messages = _messages(response)
    assert "Only 7 seats of Product cad-suite are free; you asked for 9." in messages
    assert "Choose to wait for the missing seats, or to take the free ones." in messages
    assert db_rows(app) == before

    response = post_form(
        admin, "/catalogue/cad-suite/subscribe", {"quantity": "9", "on_shortage": "waitlist"}
    )
    assert (
        "You have 7 seats of Product cad-suite now. 2 seats are waitlisted and will be added "
        "automatically, first come first served, as seats free up." in _follow(admin, response)
    )
    with app.app_context():
        sub = db.session.scalar(
            sa.select(Subscription).where(Subscription.organisation_id == world["alpha"].id)
        )
        assert (sub.quantity, sub.waiting, sub.status) == (7, 2, "active")

    # Another organisation asks for more than is free and takes what there is: nothing.
    charlie_admin = signed_in("org_admin", make_org("charlie"))
    before = db_rows(app)
    response = post_form(
        charlie_admin,
        "/catalogue/cad-suite/subscribe",
        {"quantity": "3", "on_shortage": "partial"},
    )
    assert response.status_code == 400
    assert "Only 0 seats of Product cad-suite are free; you asked for 3." in _messages(response)
    assert db_rows(app) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"quantity": "", "on_shortage": "reject"}, "This field is required."),
        ({"quantity": "0", "on_shortage": "reject"}, "Enter a number from 1 to 100000."),
        ({"quantity": "-3", "on_shortage": "reject"}, "Enter a number from 1 to 100000."),
        ({"quantity": "2.5", "on_shortage": "reject"}, "Not a valid integer value."),
        ({"quantity": "2", "on_shortage": "sometimes"}, "Not a valid choice"),
    ],
)
def test_bad_subscription_input_is_shown_and_changes_nothing(app, world, data, message):
    before = db_rows(app)
    response = post_form(world["admin"], "/catalogue/cad-suite/subscribe", data)
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


def test_subscribing_twice_points_to_the_existing_subscription(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    page = _text(world["admin"].get("/catalogue/cad-suite/subscribe"))
    assert "already subscribes" in page and f"/org/subscriptions/{sub_id}" in page
    before = db_rows(app)
    response = post_form(
        world["admin"],
        "/catalogue/cad-suite/subscribe",
        {"quantity": "1", "on_shortage": "reject"},
        token_from="/catalogue",
    )
    assert response.status_code == 400
    assert any("already subscribes" in m for m in _messages(response))
    assert db_rows(app) == before


# ---------------------------------------------------------------- resizing and cancelling


def test_resize_grows_and_shrinks(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 2)
    path = f"/org/subscriptions/{sub_id}"
    response = post_form(
        world["admin"],
        f"{path}/resize",
        {"resize-quantity": "5", "resize-on_shortage": "reject"},
        token_from=path,
    )
    assert _follow(world["admin"], response) == [
        "You have 5 seats of Product cad-suite. Assign them to people below."
    ]
    assert _sub(app, sub_id) == (5, 5, "active")
    response = post_form(
        world["admin"],
        f"{path}/resize",
        {"resize-quantity": "1", "resize-on_shortage": "reject"},
        token_from=path,
    )
    assert response.status_code == 302
    assert _sub(app, sub_id) == (1, 1, "active")


def test_shrinking_below_the_assigned_seats_names_how_many_to_release(app, world, make_user):
    sub_id = _subscribe(app, world["alpha"], world["product"], 4)
    for _ in range(3):
        _assign(app, sub_id, make_user("member", world["alpha"]).email)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    response = post_form(
        world["admin"],
        f"{path}/resize",
        {"resize-quantity": "1", "resize-on_shortage": "reject"},
        token_from=path,
    )
    assert response.status_code == 400
    messages = _messages(response)
    assert "3 seats are assigned; release 2 of them before reducing to 1." in messages
    assert "Release 2 assigned seats first." in messages
    assert 'id="resize-quantity" ' in response.get_data(as_text=True)
    assert db_rows(app) == before


def test_growing_beyond_the_free_seats_is_refused_unless_waiting_is_chosen(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 5)  # 2 left free
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    response = post_form(
        world["admin"],
        f"{path}/resize",
        {"resize-quantity": "9", "resize-on_shortage": "reject"},
        token_from=path,
    )
    assert response.status_code == 400
    assert "Only 2 seats of Product cad-suite are free; you asked for 4." in _messages(response)
    assert db_rows(app) == before
    response = post_form(
        world["admin"],
        f"{path}/resize",
        {"resize-quantity": "9", "resize-on_shortage": "waitlist"},
        token_from=path,
    )
    assert any("2 seats are waitlisted" in m for m in _follow(world["admin"], response))
    assert _sub(app, sub_id) == (7, 9, "active")


def test_cancelling_needs_the_box_ticked_and_releases_every_seat(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 2)
    _assign(app, sub_id, world["member"].user.email)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    response = post_form(world["admin"], f"{path}/cancel", {}, token_from=path)
    assert response.status_code == 400
    assert "Tick the box to confirm." in _messages(response)
    assert db_rows(app) == before

    response = post_form(world["admin"], f"{path}/cancel", {"cancel-confirm": "y"}, token_from=path)
    assert _follow(world["admin"], response) == [
        "The subscription to Product cad-suite is cancelled."
    ]
    assert _sub(app, sub_id) == (0, 0, "cancelled")
    assert _holders(app, sub_id) == []
    page = _text(world["admin"].get(path))
    assert "Cancel the subscription" not in page and "Assign a seat" not in page


# ---------------------------------------------------------------- seats


def test_assigning_and_releasing_one_seat(app, world, make_user, mailbox):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    path = f"/org/subscriptions/{sub_id}"
    email = world["member"].user.email
    response = post_form(
        world["admin"], f"{path}/seats", {"assign-user_email": email}, token_from=path
    )
    assert _follow(world["admin"], response) == [f"{email} has a seat of Product cad-suite."]
    assert _holders(app, sub_id) == [email]
    assert email in _text(world["admin"].get(path))

    # The only seat is taken: the next person is refused with a clear message.
    other = make_user("member", world["alpha"])
    before = db_rows(app)
    response = post_form(
        world["admin"], f"{path}/seats", {"assign-user_email": other.email}, token_from=path
    )
    assert response.status_code == 400
    assert (
        "The 1 seat of Product cad-suite is assigned. Release it or add seats to the "
        "subscription." in _messages(response)
    )
    assert db_rows(app) == before

    response = post_form(
        world["admin"],
        f"{path}/seats/release",
        {"user_email": email, "confirmed": "1"},
        token_from=path,
    )
    assert _follow(world["admin"], response) == [f"The seat of {email} is released."]
    assert _holders(app, sub_id) == []


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "This field is required."),
        ("not an email", "Enter a valid email address"),
        ("x" * 250 + "@example.com", "254 characters"),
    ],
)
def test_bad_seat_email_is_shown_and_changes_nothing(app, world, email, message):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    response = post_form(
        world["admin"], f"{path}/seats", {"assign-user_email": email}, token_from=path
    )
    assert response.status_code == 400
    assert any(message in m for m in _messages(response)), _messages(response)
    assert db_rows(app) == before


def test_someone_of_another_organisation_cannot_be_given_a_seat(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    response = post_form(
        world["admin"],
        f"{path}/seats",
        {"assign-user_email": world["bravo_member"].email},
        token_from=path,
    )
    assert response.status_code == 400
    assert "This address cannot be given a seat in this organisation." in _messages(response)
    assert "elsewhere" not in response.get_data(as_text=True)
    assert db_rows(app) == before


def test_assigning_many_shows_each_email_result(app, world, make_user, mailbox):
    sub_id = _subscribe(app, world["alpha"], world["product"], 3)
    path = f"/org/subscriptions/{sub_id}"
    known = make_user("member", world["alpha"]).email
    emails = "\n".join(
        [
            known,
            "new.person@alpha.example",
            "not-an-email",
            world["bravo_member"].email,
            known,  # a repeat is counted once
            "third@alpha.example",
            "fourth@alpha.example",
        ]
    )
    response = post_form(
        world["admin"], f"{path}/seats/bulk", {"bulk-emails": emails}, token_from=path
    )
    assert response.status_code == 200
    page = _text(response)
    results = dict(
        re.findall(r"<tr><td>([^<]+)</td><td><span class=\"badge[^\"]*\">(\w+)</span>", page)
    )
    assert results == {
        known: "assigned",
        "new.person@alpha.example": "assigned",
        "not-an-email": "refused",
        world["bravo_member"].email: "refused",
        "third@alpha.example": "assigned",
        "fourth@alpha.example": "refused",
    }
    assert "3 seats assigned; 3 refused." in _messages(response)
    assert "All 3 seats of Product cad-suite are assigned." in page
    assert _holders(app, sub_id) == sorted(
        [known, "new.person@alpha.example", "third@alpha.example"]
    )
    with app.app_context():
        invited = set(db.session.scalars(sa.select(Invitation.email)))
    # Only the people who got a seat were invited (the refused new address was not).
    assert invited == {"new.person@alpha.example", "third@alpha.example"}


def test_the_refused_new_address_gets_no_invitation_mail(app, world, mailbox):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    path = f"/org/subscriptions/{sub_id}"
    response = post_form(
        world["admin"],
        f"{path}/seats/bulk",
        {"bulk-emails": "first@alpha.example, second@alpha.example"},
        token_from=path,
    )
    assert response.status_code == 200
    recipients = [m["To"].addresses[0].addr_spec for m in mailbox]
    assert "first@alpha.example" in recipients
    assert "second@alpha.example" not in recipients


def test_bulk_assign_refuses_an_empty_list(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    for emails, message in (
        ("", "This field is required."),
        (" ,\n ; ", "Give at least one email address."),
        (
            " ".join(f"p{i}@alpha.example" for i in range(501)),
            "Give at most 500 email addresses at once.",
        ),
    ):
        response = post_form(
            world["admin"], f"{path}/seats/bulk", {"bulk-emails": emails}, token_from=path
        )
        assert response.status_code == 400
        assert message in _messages(response)
    assert db_rows(app) == before


# ---------------------------------------------------------------- another organisation's


def test_another_organisations_subscription_is_not_found_and_unchanged(app, world):
    admin, bravo_sub = world["admin"], world["bravo_sub"]
    path = f"/org/subscriptions/{bravo_sub}"
    token_from = "/org/subscriptions"
    assert admin.get(path).status_code == 404
    before = db_rows(app)
    posts = {
        f"{path}/resize": {"resize-quantity": "1", "resize-on_shortage": "reject"},
        f"{path}/cancel": {"cancel-confirm": "y"},
        f"{path}/seats": {"assign-user_email": "someone@alpha.example"},
        f"{path}/seats/bulk": {"bulk-emails": "someone@alpha.example"},
        f"{path}/seats/release": {"user_email": world["bravo_member"].email, "confirmed": "1"},
    }
    for target, data in posts.items():
        data = {**data, "resize-csrf_token": "", "cancel-csrf_token": ""}
        response = post_form(admin, target, data, token_from=token_from)
        assert response.status_code == 404, target
    assert db_rows(app) == before
    assert "Org bravo" not in _text(admin.get("/org/subscriptions"))


def test_another_organisations_seat_request_is_not_found(app, world, make_user):
    asker = make_user("member", world["bravo"])
    with app.app_context():
        services.seat_request_create(
            db.session,
            actor=SYSTEM,
            user=db.session.get(User, asker.id),
            product=db.session.get(Product, world["product"].id),
        )
        db.session.commit()
        request_id = db.session.scalar(sa.select(SeatRequest.id))
    before = db_rows(app)
    for decision in ("approve", "decline"):
        response = post_form(
            world["admin"],
            f"/org/seat-requests/{request_id}/{decision}",
            {},
            token_from="/org/seat-requests",
        )
        assert response.status_code == 404
    assert db_rows(app) == before
    assert asker.email not in _text(world["admin"].get("/org/seat-requests"))


# ---------------------------------------------------------------- seat requests


def test_a_member_asks_and_the_admin_approves(app, world):
    member, admin = world["member"], world["admin"]
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    response = post_form(
        member,
        "/catalogue/cad-suite/request",
        {"note": "For the new site"},
        token_from="/catalogue",
    )
    assert response.status_code == 302
    my = _text(member.get("/my"))
    assert "Your requests" in my and "Product cad-suite · asked" in my

    page = _text(admin.get("/org/seat-requests"))
    assert member.user.email in page and "For the new site" in page and "1 of 1" in page
    with app.app_context():
        request_id = db.session.scalar(sa.select(SeatRequest.id))
    response = post_form(
        admin, f"/org/seat-requests/{request_id}/approve", {}, token_from="/org/seat-requests"
    )
    assert _follow(admin, response) == [f"{member.user.email} has a seat of Product cad-suite."]
    assert _holders(app, sub_id) == [member.user.email]
    assert "No requests are waiting." in _text(admin.get("/org/seat-requests"))


def test_approving_without_a_subscription_is_refused(app, world):
    member, admin = world["member"], world["admin"]
    post_form(member, "/catalogue/cad-suite/request", {}, token_from="/catalogue")
    with app.app_context():
        request_id = db.session.scalar(sa.select(SeatRequest.id))
    page = _text(admin.get("/org/seat-requests"))
    assert "No subscription." in page
    before = db_rows(app)
    response = post_form(
        admin, f"/org/seat-requests/{request_id}/approve", {}, token_from="/org/seat-requests"
    )
    assert _follow(admin, response) == [
        "Your organisation does not subscribe to Product cad-suite; subscribe first."
    ]
    assert db_rows(app) == before


def test_declining_tells_the_person(app, world, mailbox):
    member, admin = world["member"], world["admin"]
    post_form(member, "/catalogue/cad-suite/request", {}, token_from="/catalogue")
    with app.app_context():
        request_id = db.session.scalar(sa.select(SeatRequest.id))
    response = post_form(
        admin,
        f"/org/seat-requests/{request_id}/decline",
        {"note": "Use the shared workstation"},
        token_from="/org/seat-requests",
    )
    assert _follow(admin, response) == [
        f"The request of {member.user.email} for Product cad-suite is declined."
    ]
    with app.app_context():
        request = db.session.get(SeatRequest, request_id)
        assert (request.status, request.decision_note) == ("declined", "Use the shared workstation")
    assert any(m["To"].addresses[0].addr_spec == member.user.email for m in mailbox)

    # A decided request cannot be decided again.
    before = db_rows(app)
    response = post_form(
        admin, f"/org/seat-requests/{request_id}/approve", {}, token_from="/org/seat-requests"
    )
    assert _follow(admin, response) == ["This request is already declined."]
    assert db_rows(app) == before


def test_stale_forms_change_nothing(app, world):
    sub_id = _subscribe(app, world["alpha"], world["product"], 1)
    _assign(app, sub_id, world["member"].user.email)
    path = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)
    for target, data in {
        f"{path}/seats/release": {"user_email": world["member"].user.email, "csrf_token": "old"},
        f"{path}/resize": {"resize-quantity": "5", "resize-csrf_token": "old"},
        f"{path}/cancel": {"cancel-confirm": "y"},
        "/catalogue/cad-suite/subscribe": {"quantity": "1", "on_shortage": "reject"},
    }.items():
        response = world["admin"].post(target, data=data)
        assert response.status_code == 400, target
        assert "nothing was saved" in _text(response), target
    assert db_rows(app) == before


# ---------------------------------------------------------------- my software


def test_my_software_shows_seats_with_launch_links(app, world, make_product):
    make_product(5, sku="mail-hub")
    member = world["member"]
    assert "You have no seats yet" in _text(member.get("/my"))
    sub_id = _subscribe(app, world["alpha"], world["product"], 2)
    _assign(app, sub_id, member.user.email)
    page = _text(member.get("/my"))
    assert "Product cad-suite" in page and "by Acme-Soft" in page
    assert 'href="https://cad-suite.example/launch"' in page
    assert "Product mail-hub" not in page
    assert 'href="/catalogue"' in page

    # After release, the software is gone from the page.
    with app.app_context():
        services.seat_release(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            user_email=member.user.email,
        )
        db.session.commit()
    assert "Product cad-suite" not in _text(member.get("/my"))
