"""Error answers: a page in the layout for browsers, RFC 9457 problem+json for JSON clients."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.tenancy.models import Organisation
from tests.support import client_for, count

JSON = {"Accept": "application/json"}


def assert_page(response, status: int, *texts: str) -> str:
    """An HTML error page in the portal's layout with ``texts`` on it."""
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.startswith("<!doctype html>")
    assert '<nav aria-label="Main">' in html and "Skip to content" in html  # the layout
    assert "Business Council" in html
    for text in texts:
        assert text in html, text
    return html


def assert_problem(response, status: int, title: str) -> dict:
    """An RFC 9457 problem details body with the four standard members."""
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert body["title"] == title
    assert body["type"].startswith("https://")
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_404_page_and_problem(app):
    client = app.test_client()
    assert_page(client.get("/no-such-page"), 404, "404 · Not Found", "There is nothing here")
    body = assert_problem(client.get("/no-such-page", headers=JSON), 404, "Not Found")
    assert body["type"].endswith("/404")


def test_404_from_a_domain_error_carries_its_code(app):
    council = client_for(app, "council_admin")
    assert_page(
        council.get("/council/organisations/nowhere"),
        404,
        "404 · Not found",
        "No organisation “nowhere”.",
        "not_found",
    )
    body = assert_problem(
        council.get("/council/organisations/nowhere", headers=JSON), 404, "Not found"
    )
    assert body["detail"] == "No organisation “nowhere”."
    assert body["code"] == "not_found"
    assert body["type"].endswith("/not_found")


def test_403_page_and_problem(app, make_org):
    member = client_for(app, "member", make_org())
    html = assert_page(member.get("/council"), 403, "403 · Forbidden", "Your role does not allow")
    assert "My software" in html  # the member's own navigation around the error
    assert_problem(member.get("/council", headers=JSON), 403, "Forbidden")


def test_400_page_and_problem(app):
    client = app.test_client()
    data = {"email": "x@example.com", "password": "whatever it is"}
    assert_page(client.post("/login", data=data), 400, "400 · Bad Request", "CSRF")
    body = assert_problem(client.post("/login", data=data, headers=JSON), 400, "Bad Request")
    assert "CSRF" in body["detail"]


@pytest.mark.parametrize(
    "accept",
    ["text/html", "*/*", "text/html,application/json;q=0.9", "application/json;q=0.5, text/html"],
)
def test_browsers_and_undecided_clients_get_the_page(app, accept):
    response = app.test_client().get("/no-such-page", headers={"Accept": accept})
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_json_preferred_over_html_gets_the_problem(app):
    response = app.test_client().get(
        "/no-such-page", headers={"Accept": "text/html;q=0.5, application/json"}
    )
    assert_problem(response, 404, "Not Found")


@pytest.fixture
def boom_app(app):
    """A separate portal instance with a throwaway route that fails after writing."""
    from portal import create_app

    other = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )

    @other.get("/boom")
    def boom():
        db.session.add(
            Organisation(
                slug="half-done",
                name="Half Done",
                country="DE",
                currency="EUR",
                billing_email="x@half.example",
                status="active",
            )
        )
        db.session.flush()
        raise RuntimeError("secret internals: the database password is hunter2")

    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_500_page_and_problem_roll_back_and_hide_internals(app, boom_app, caplog):
    client = boom_app.test_client()
    html = assert_page(
        client.get("/boom"), 500, "500 · Internal Server Error", "Something went wrong on our side"
    )
    assert "hunter2" not in html and "RuntimeError" not in html
    body = assert_problem(client.get("/boom", headers=JSON), 500, "Internal Server Error")
    assert "hunter2" not in str(body)
    assert count(app, Organisation, Organisation.slug == "half-done") == 0  # rolled back
    assert "Unhandled error" in caplog.text  # logged for the operators
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)) == 0


@pytest.fixture
def locked_app(app):
    """A portal instance whose route writes, then meets SQLite's "database is locked"."""
    import sqlite3

    from portal import create_app
    from portal.db import bind_scope
    from portal.kernel.scope import Scope

    other = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )

    @other.get("/locked")
    def locked():
        bind_scope(db.session, Scope.council())  # a write that row-level security lets through
        db.session.add(
            Organisation(
                slug="never-saved",
                name="Never Saved",
                country="DE",
                currency="EUR",
                billing_email="x@never.example",
                status="active",
            )
        )
        db.session.flush()
        raise sa.exc.OperationalError(
            "INSERT …", {}, sqlite3.OperationalError("database is locked")
        )

    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_busy_database_is_a_503_to_retry_not_a_500(app, locked_app, caplog):
    """Another writer held the database: 503 with Retry-After, nothing saved, no traceback."""
    client = locked_app.test_client()
    body = assert_problem(client.get("/locked", headers=JSON), 503, "Service Unavailable")
    assert body["code"] == "database_busy" and "Try again" in body["detail"]
    answer = client.get("/locked", headers={"Accept-Language": "ru", **JSON})
    assert answer.headers["Retry-After"] == "1" and "Повторите" in answer.json["detail"]
    page = client.get("/locked")
    assert page.status_code == 503 and "Try again in a moment" in page.get_data(as_text=True)
    assert count(app, Organisation, Organisation.slug == "never-saved") == 0  # rolled back
    assert "Unhandled error" not in caplog.text


def test_what_counts_as_a_busy_database():
    import sqlite3

    from portal.db import is_database_busy

    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    assert is_database_busy(sqlite3.OperationalError("database is locked"))
    assert not is_database_busy(sqlite3.OperationalError("no such table: seats"))
    assert [is_database_busy(PgError(s)) for s in ("40P01", "40001", "55P03", "23505")] == [
        True,
        True,
        True,
        False,
    ]
