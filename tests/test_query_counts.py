"""SQL statements per page do not grow with the rows a page shows (issue 13: no N+1).

Each role's main pages are read with N rows of everything (products, subscriptions,
people, seats, seat requests, idle seats, usage, organisations) and again with 5N; the
number of statements sent to the database (SQLAlchemy ``before_cursor_execute``) must
be the same. A failure names the statements that were repeated more often.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from tests.conftest import SYSTEM
from tests.metering.conftest import COUNCIL, subscribe

N = 2
PAGES = {
    "org_admin": [
        "/org",
        "/org/usage",
        "/org/idle-seats",
        "/org/subscriptions",
        "/org/subscriptions/{subscription}",
        "/org/users",
        "/org/seat-requests",
        "/org/invoices",
        "/catalogue",
    ],
    "member": ["/my", "/catalogue"],
    "council_admin": [
        "/council",
        "/council/organisations",
        "/council/organisations/acme",
        "/council/catalogue",
        "/council/products/prod-0",
        "/council/usage",
        "/council/utilisation/prod-0",
        "/council/staff",
        "/council/tokens",
        "/demand",
        "/requests/products",
        "/council/forecasts",
    ],
    "finance": [
        "/finance",
        "/finance?page=2",
        "/council/usage",
        "/finance/overdue",
        "/finance/exports",
    ],
}


class World:
    """Rows for the pages to show, grown to ``n`` of each."""

    def __init__(self, app, make_org, make_product) -> None:
        self.app, self.make_org, self.make_product = app, make_org, make_product
        self.acme = make_org("acme")
        self.n = 0
        self.subscription = 0

    def grow(self, n: int) -> None:
        from portal.identity.accounts import user_create
        from portal.metering.ingest import usage_ingest
        from portal.seats.models import SeatAssignment, Subscription
        from portal.seats.requests import seat_request_create
        from portal.seats.services import seat_assign
        from portal.tenancy.models import Organisation

        now = now_utc()
        for i in range(self.n, n):
            product = self.make_product(1000, sku=f"prod-{i}", vendor=f"vendor-{i % 3}")
            sub_id = subscribe(self.app, "acme", product.sku, quantity=50)
            other = self.make_org(f"other-{i}")
            subscribe(self.app, other.slug, product.sku, quantity=3)
            self.subscription = self.subscription or sub_id
            with self.app.app_context():
                session = db.session
                acme = session.get(Organisation, self.acme.id)
                holder = user_create(
                    session,
                    actor=SYSTEM,
                    email=f"holder-{i}@acme.example",
                    role="member",
                    organisation=acme,
                    name=f"Holder {i}",
                )
                asker = user_create(
                    session,
                    actor=SYSTEM,
                    email=f"asker-{i}@acme.example",
                    role="member",
                    organisation=acme,
                    name=f"Asker {i}",
                )
                sub = session.get(Subscription, sub_id)
                seat = seat_assign(session, actor=SYSTEM, subscription=sub, user_email=holder.email)
                # Held for long: idle unless used (every second holder uses it).
                session.execute(
                    sa.update(SeatAssignment)
                    .where(SeatAssignment.id == seat.id)
                    .values(assigned_at=now - dt.timedelta(days=35))
                )
                if i:  # the first subscription's page lists a seat per step too
                    first = session.get(Subscription, self.subscription)
                    seat_assign(session, actor=SYSTEM, subscription=first, user_email=asker.email)
                seat_request_create(session, actor=SYSTEM, user=asker, product=sub.product)
                events = [
                    {
                        "idempotency_key": f"e-{i}-{k}",
                        "organisation": org,
                        "product": product.sku,
                        "meter": "api_calls",
                        "quantity": "2",
                        "occurred_at": (now - dt.timedelta(hours=k + 1)).isoformat(),
                        "user_email": holder.email if org == "acme" and i % 2 else None,
                    }
                    for k in range(3)
                    for org in ("acme", other.slug)
                ]
                result = usage_ingest(
                    session,
                    actor=COUNCIL,
                    body=json.dumps({"events": events}).encode(),
                    vendor_id=None,
                    max_age_days=35,
                )
                assert not result.rejected, result.rejected
                session.commit()
        self.n = n


@pytest.fixture
def world(app, make_org, make_product) -> World:
    return World(app, make_org, make_product)


@pytest.fixture
def frozen(clock) -> Iterator[None]:
    """The clock stands still (sessions' once-a-minute writes happen in the warm-up read)."""
    clock.freeze(clock.now)
    yield


def _statements(app, client, path: str) -> list[str]:
    """The SQL statements one GET of ``path`` sends (after a warm-up GET)."""
    warm = client.get(path)
    assert warm.status_code == 200, (path, warm.status_code)
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        response = client.get(path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert response.status_code == 200, (path, response.status_code)
    return seen


def _grown(small: list[str], large: list[str]) -> str:
    more = collections.Counter(large) - collections.Counter(small)
    return "\n".join(f"{count}x more: {sql[:300]}" for sql, count in more.most_common(5))


@pytest.mark.parametrize("role", sorted(PAGES))
def test_statements_per_page_do_not_grow_with_the_rows_shown(app, world, signed_in, frozen, role):
    org = world.acme if role in ("org_admin", "member") else None
    client = signed_in(role, org)
    world.grow(N)
    paths = [p.format(subscription=world.subscription) for p in PAGES[role]]
    if role == "member":  # /my lists the member's seats: N, then 5N
        _give_seats(app, world, client.user.email)
    small = {path: _statements(app, client, path) for path in paths}
    world.grow(5 * N)
    if role == "member":
        _give_seats(app, world, client.user.email)
    large = {path: _statements(app, client, path) for path in paths}
    grown = {path: (len(small[path]), len(large[path])) for path in paths}
    failures = {path: counts for path, counts in grown.items() if counts[1] > counts[0]}
    assert not failures, "\n\n".join(
        f"{path}: {counts[0]} statements with {N} rows, {counts[1]} with {5 * N}\n"
        + _grown(small[path], large[path])
        for path, counts in failures.items()
    )


def _give_seats(app, world: World, email: str) -> None:
    """A seat of every acme subscription for the member (those it has none of)."""
    from portal.identity.models import User
    from portal.seats.models import SeatAssignment, Subscription
    from portal.seats.services import seat_assign

    with app.app_context():
        session = db.session
        held = set(
            session.scalars(
                sa.select(SeatAssignment.subscription_id)
                .join(User, User.id == SeatAssignment.user_id)
                .where(SeatAssignment.released_at.is_(None), User.email == email)
            )
        )
        for sub in session.scalars(
            sa.select(Subscription).where(Subscription.organisation_id == world.acme.id)
        ):
            if sub.id not in held:
                seat_assign(session, actor=SYSTEM, subscription=sub, user_email=email)
        session.commit()


#: The API's lists, read with a council token (the scale benchmark times the same ones).
API_LISTS = ["/api/v1/catalogue", "/api/v1/organisations", "/api/v1/subscriptions"]


def test_statements_per_api_list_do_not_grow_with_the_rows_returned(app, world, frozen):
    """The API's lists too: the catalogue lists each product's meters, loaded for the whole
    page in one statement (it once sent one per product)."""
    from portal.api.services import token_create

    with app.app_context():
        _, token = token_create(db.session, actor=SYSTEM, scope="council", name="counts")
        db.session.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    world.grow(N)
    small = {path: _statements(app, client, path) for path in API_LISTS}
    world.grow(5 * N)
    large = {path: _statements(app, client, path) for path in API_LISTS}
    assert len(large["/api/v1/catalogue"]) >= 1 and "meters" in " ".join(large["/api/v1/catalogue"])
    failures = {
        path: (len(small[path]), len(large[path]))
        for path in API_LISTS
        if len(large[path]) > len(small[path])
    }
    assert not failures, "\n\n".join(
        f"{path}: {counts[0]} statements with {N} rows, {counts[1]} with {5 * N}\n"
        + _grown(small[path], large[path])
        for path, counts in failures.items()
    )
