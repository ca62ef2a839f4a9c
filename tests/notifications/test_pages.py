"""The notifications pages: the list (unread first), the header's unread count, marking read
(one's own only), the choices; bad input of any shape changes nothing and is never a 500."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from portal.db import db
from portal.notifications.models import Notification, NotificationPreference
from tests.conftest import csrf_token, login
from tests.support import db_rows


def tell(app, user_id: int, key: str, *, title: str = "Outage") -> int:
    from portal.notifications.services import notify

    with app.app_context():
        (row,) = notify(
            db.session,
            user_ids=[user_id],
            kind="incident.opened",
            key=key,
            params={"vendor": "Status Soft", "title": title, "impact": "major"},
            link="/suppliers",
        )
        db.session.commit()
        return row.id


def signed_in_as(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def header_count(html: str) -> str | None:
    """The unread badge of the header's notifications links (None: no badge); the wide row's
    bell and the phone menu's word show the same."""
    links = re.findall(r'<a href="/notifications" class="notifications-link".*?</a>', html, re.S)
    assert len(links) == 2, "the header has a notifications link in the row and in the menu"
    assert 'class="visually-hidden">Notifications<' in links[0]  # the bell's name
    badges = {
        (found[1] if found else None)
        for found in (
            re.search(r'<span class="badge badge-open" aria-hidden="true">([^<]+)</span>', link)
            for link in links
        )
    }
    assert len(badges) == 1, badges
    return badges.pop()


def test_the_header_counts_ones_own_unread_notifications(app, world):
    client = signed_in_as(app, world.alice)
    assert header_count(client.get("/my").get_data(as_text=True)) is None
    tell(app, world.alice.id, "a")
    tell(app, world.alice.id, "b")
    tell(app, world.boris.id, "c")  # someone else's: not counted
    html = client.get("/my").get_data(as_text=True)
    assert header_count(html) == "2"
    assert "(2 unread)" in html  # what a screen reader hears after "Notifications"


def test_the_list_shows_unread_first_and_marking_read_changes_the_count(app, world, clock):
    first = tell(app, world.alice.id, "a", title="First")
    clock.advance(dt.timedelta(minutes=1))
    second = tell(app, world.alice.id, "b", title="Second")
    client = signed_in_as(app, world.alice)
    html = client.get("/notifications").get_data(as_text=True)
    assert html.index("Second") < html.index("First")  # newest first
    response = client.post(
        f"/notifications/{second}/read", data={"csrf_token": csrf_token(client, "/notifications")}
    )
    assert response.status_code == 302
    html = client.get("/notifications").get_data(as_text=True)
    assert html.index("First") < html.index("Second")  # unread first
    assert header_count(html) == "1"
    only_unread = client.get("/notifications?show=unread").get_data(as_text=True)
    assert "First" in only_unread and "Second" not in only_unread
    response = client.post(
        "/notifications/read-all", data={"csrf_token": csrf_token(client, "/notifications")}
    )
    assert response.status_code == 302
    assert header_count(client.get("/notifications").get_data(as_text=True)) is None
    with app.app_context():
        assert db.session.get(Notification, first).read_at is not None


def test_another_persons_notification_cannot_be_marked_read(app, world):
    theirs = tell(app, world.boris.id, "theirs")
    mine = tell(app, world.alice.id, "mine")
    client = signed_in_as(app, world.alice)
    token = csrf_token(client, "/notifications")
    before = db_rows(app)
    assert (
        client.post(f"/notifications/{theirs}/read", data={"csrf_token": token}).status_code == 404
    )
    assert client.post("/notifications/999999/read", data={"csrf_token": token}).status_code == 404
    assert db_rows(app) == before
    # Their "mark all read" leaves others' notifications unread.
    client.post("/notifications/read-all", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Notification, theirs).read_at is None
        assert db.session.get(Notification, mine).read_at is not None


@pytest.mark.parametrize(
    "path",
    [
        "/notifications/1/read",
        "/notifications/read-all",
    ],
)
def test_a_post_without_the_csrf_token_changes_nothing(app, world, path):
    tell(app, world.alice.id, "a")
    client = signed_in_as(app, world.alice)
    before = db_rows(app)
    response = client.post(path, data={})
    assert response.status_code in (302, 400, 404)
    assert db_rows(app) == before


@pytest.mark.parametrize(
    "query",
    ["?page=abc", "?page=-1", "?page=99999999999999999999999", "?show=x", "?show=unread&page=2"],
)
def test_odd_addresses_answer_a_page(app, world, query):
    tell(app, world.alice.id, "a")
    client = signed_in_as(app, world.alice)
    assert client.get(f"/notifications{query}").status_code == 200
    assert client.get("/notifications?show=%00").status_code == 400  # NUL: refused everywhere


@pytest.mark.parametrize(
    "path", ["/notifications/abc/read", "/notifications/-1/read", "/notifications/1e9/read"]
)
def test_odd_ids_are_not_found(app, world, path):
    client = signed_in_as(app, world.alice)
    token = csrf_token(client, "/notifications")
    assert client.post(path, data={"csrf_token": token}).status_code == 404


def test_signed_out_people_are_sent_to_sign_in(app, client):
    assert client.get("/notifications").status_code == 302
    assert client.post("/notifications/read-all").status_code in (302, 400)


def test_the_choices_are_saved_and_a_members_hidden_digest_choice_is_kept(app, world):
    client = signed_in_as(app, world.alice)
    page = client.get("/notifications/settings").get_data(as_text=True)
    assert 'name="mail_incidents"' in page and 'name="digest"' not in page  # members: no digest
    response = client.post(
        "/notifications/settings",
        data={"csrf_token": csrf_token(client, "/notifications/settings"), "mail_standing": "y"},
    )
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(NotificationPreference, world.alice.id)
        assert (row.mail_incidents, row.mail_standing, row.mail_operations, row.digest) == (
            False,
            True,
            True,  # not shown to a member: kept as it was
            True,
        )
        assert row.organisation_id == world.acme.id


def test_an_org_admin_may_turn_the_digest_off(app, world):
    client = signed_in_as(app, world.acme_admin)
    page = client.get("/notifications/settings").get_data(as_text=True)
    assert 'name="digest"' in page
    client.post(
        "/notifications/settings",
        data={
            "csrf_token": csrf_token(client, "/notifications/settings"),
            "mail_incidents": "y",
            "mail_standing": "y",
        },
    )
    with app.app_context():
        assert db.session.get(NotificationPreference, world.acme_admin.id).digest is False


def test_the_list_is_in_the_readers_language(app, world):
    tell(app, world.boris.id, "a", title="Outage")
    client = signed_in_as(app, world.boris)  # chose Russian on the profile
    html = client.get("/notifications").get_data(as_text=True)
    assert "Инцидент у Status Soft: Outage" in html
    assert "Уведомления" in html


@pytest.mark.parametrize("role", ["council_admin", "finance", "vendor_admin"])
def test_council_staff_and_vendor_admins_have_the_page_too(app, world, make_user, role):
    from tests.notifications.conftest import VENDOR

    person = make_user(role, vendor=VENDOR if role == "vendor_admin" else None)
    tell(app, person.id, "staff")
    client = signed_in_as(app, person)
    html = client.get("/notifications").get_data(as_text=True)
    assert "Outage" in html
    assert header_count(html) == "1"
