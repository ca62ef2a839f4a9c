"""Each product's seats reserved, waiting and assigned, kept as they change
(``portal.seats.counts``): the catalogue reads them, a fold keeps them short, and they
always equal the subscriptions' sums.

Beyond these tests, ``tests/conftest.py`` compares the kept figures with the
subscriptions after every test of the suite that leaves a subscription behind (the API's
fast path, SCIM, deactivations, idle seats, the races of test_assigned_counter.py...).
"""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Product
from portal.db import bind_scope, db
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.seats import counts, services
from portal.seats.figures import catalogue_list
from portal.seats.models import ProductSeatCount, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM
from tests.seats.test_concurrency import _people
from tests.support import migration

postgres_only = pytest.mark.skipif(
    not (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="writers racing the fold on parallel connections: PostgreSQL's (SQLite has one "
    "writer; run with PORTAL_TEST_DATABASE_URL=postgresql+psycopg://…, as .ci/run does)",
)


def _figures(product_id: int) -> tuple[int, int, int, int]:
    """(capacity, reserved, waiting, assigned) as the catalogue shows them."""
    db.session.expire_all()
    (f,) = catalogue_list(db.session, day=now_utc().date(), product_ids=[product_id])
    return f.capacity, f.reserved, f.waiting, f.assigned


def _rows(product_id: int) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(ProductSeatCount)
        .where(ProductSeatCount.product_id == product_id)
    )


def test_the_catalogue_shows_the_kept_figures_through_every_kind_of_change(
    app, make_org, make_product
):
    a, b = make_org("acme"), make_org("brightwater")
    product = make_product(5)
    emails = _people(app, a, 3)
    with app.app_context():
        bind_scope(db.session, Scope.council())
        item = db.session.get(Product, product.id)

        def subscribe(org, quantity: int) -> Subscription:
            outcome = services.subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=item,
                quantity=quantity,
                on_shortage="waitlist",
            )
            db.session.commit()
            return outcome.subscription

        sub_a = subscribe(a, 3)
        sub_b = subscribe(b, 4)  # two granted, two waiting
        assert _figures(product.id) == (5, 5, 2, 0)

        for email in emails[:2]:
            services.seat_assign(db.session, actor=SYSTEM, subscription=sub_a, user_email=email)
        db.session.commit()
        assert _figures(product.id) == (5, 5, 2, 2)

        services.seat_release(db.session, actor=SYSTEM, subscription=sub_a, user_email=emails[1])
        db.session.commit()
        assert _figures(product.id) == (5, 5, 2, 1)

        # A shrinks to 2: the seat it frees goes to B, waiting first.
        services.subscription_resize(db.session, actor=SYSTEM, subscription=sub_a, quantity=2)
        db.session.commit()
        assert _figures(product.id) == (5, 5, 1, 1)

        # B asks for fewer than it waited for: only the waiting shrink.
        services.subscription_resize(db.session, actor=SYSTEM, subscription=sub_b, quantity=3)
        db.session.commit()
        assert _figures(product.id) == (5, 5, 0, 1)

        # A is cancelled with a seat assigned: its reservation and its seat go.
        services.subscription_cancel(db.session, actor=SYSTEM, subscription=sub_a)
        db.session.commit()
        assert _figures(product.id) == (5, 3, 0, 0)
        assert counts.recount(db.session) == {}

        # Folded: one row, the same figures.
        assert _rows(product.id) > 1
        assert counts.fold(db.session) > 0
        db.session.commit()
        assert _rows(product.id) == 1
        assert _figures(product.id) == (5, 3, 0, 0)
        assert counts.recount(db.session) == {}


def test_a_fold_leaves_one_row_per_product_with_the_same_sums(app, make_product):
    one, two, alone = make_product(5), make_product(5), make_product(5)
    with app.app_context():
        for n in range(10):
            counts.count_change(db.session, one.id, reserved=2, waiting=n % 3, assigned=1)
            counts.count_change(db.session, two.id, assigned=-1 if n % 2 else 3)
        counts.count_change(db.session, alone.id, reserved=7)
        db.session.commit()
        before = counts.seat_counts(db.session, [one.id, two.id, alone.id])
        assert before == {one.id: (20, 9, 10), two.id: (0, 0, 10), alone.id: (7, 0, 0)}
        alone_row = db.session.scalar(
            sa.select(ProductSeatCount.id).where(ProductSeatCount.product_id == alone.id)
        )

        assert counts.fold(db.session) == 18  # 20 rows became 2
        db.session.commit()
        assert counts.seat_counts(db.session, [one.id, two.id, alone.id]) == before
        assert (_rows(one.id), _rows(two.id), _rows(alone.id)) == (1, 1, 1)
        # A product with one row is left as it is; a second fold has nothing to do.
        assert (
            db.session.scalar(
                sa.select(ProductSeatCount.id).where(ProductSeatCount.product_id == alone.id)
            )
            == alone_row
        )
        assert counts.fold(db.session) == 0
        db.session.commit()
        assert counts.seat_counts(db.session, [one.id, two.id, alone.id]) == before
        # Nothing kept: no figures (the catalogue shows zeros).
        assert counts.seat_counts(db.session, []) == {}


def test_the_schedule_folds_every_minute(app, make_org, make_product, jobs_inline, clock):
    from portal.jobs.schedule import tick

    clock.freeze("2028-02-29T23:59:10Z")
    org, product = make_org(), make_product(10)
    with app.app_context():
        for quantity in (1, 2, 3):
            outcome = services.subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=db.session.get(Product, product.id),
                quantity=quantity,
            )
            db.session.commit()
            services.subscription_cancel(
                db.session, actor=SYSTEM, subscription=outcome.subscription
            )
            db.session.commit()
        assert _rows(product.id) == 6
    assert "seats.fold_counts" in tick(app)
    with app.app_context():
        assert _rows(product.id) == 1
        assert _figures(product.id) == (10, 0, 0, 0)
    clock.advance(dt.timedelta(seconds=40))  # 23:59:50, the same minute
    assert "seats.fold_counts" not in tick(app)
    clock.advance(dt.timedelta(seconds=20))  # 00:00:10 on 1 March: the next
    assert "seats.fold_counts" in tick(app)


def test_the_migration_s_backfill_counts_what_the_services_kept(app, make_org, make_product):
    product, other = make_product(8), make_product(3)
    orgs = [make_org(f"org-{n}") for n in range(3)]
    with app.app_context():
        for n, org in enumerate(orgs):
            for item, quantity in ((product, 3), (other, 2)):
                outcome = services.subscription_create(
                    db.session,
                    actor=SYSTEM,
                    organisation=db.session.get(Organisation, org.id),
                    product=db.session.get(Product, item.id),
                    quantity=quantity,
                    on_shortage="waitlist",
                )
                db.session.commit()
                if n == 0 and item is other:
                    services.subscription_cancel(
                        db.session, actor=SYSTEM, subscription=outcome.subscription
                    )
                    db.session.commit()
        kept = counts.seat_counts(db.session, [product.id, other.id])
        assert kept == {product.id: (8, 1, 0), other.id: (3, 1, 0)}
        db.session.execute(sa.delete(ProductSeatCount))
        db.session.execute(sa.text(migration("0036_product_seat_counts.py").BACKFILL))
        db.session.commit()
        assert counts.seat_counts(db.session, [product.id, other.id]) == kept


@postgres_only
def test_folding_while_seats_change_loses_no_change(app, make_product):
    """Writers add rows on their own connections while another folds over and over: every
    change is counted once (the DELETE … RETURNING takes only the rows it sees)."""
    product = make_product(5)
    writers, changes = 4, 60
    done = threading.Event()
    folded: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with app.app_context():
                for _ in range(changes):
                    counts.count_change(db.session, product.id, assigned=1, reserved=2)
                    db.session.commit()
                db.session.remove()
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)

    def fold() -> None:
        try:
            with app.app_context():
                while not done.is_set():
                    folded.append(counts.fold(db.session))
                    db.session.commit()
                db.session.remove()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    folders = [threading.Thread(target=fold) for _ in range(2)]  # two folds at once too
    for thread in folders + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in folders:
        thread.join()
    assert errors == []
    assert sum(folded) > 0  # the folds did run while the writers wrote
    with app.app_context():
        total = writers * changes
        assert counts.seat_counts(db.session, [product.id]) == {product.id: (2 * total, 0, total)}
        counts.fold(db.session)
        db.session.commit()
        assert _rows(product.id) == 1
        assert counts.seat_counts(db.session, [product.id]) == {product.id: (2 * total, 0, total)}


@pytest.mark.seat_rows_written_directly  # a kept figure is spoilt on purpose (then corrected)
def test_portal_seats_recount_finds_a_difference_and_fix_corrects_it(
    app, runner, make_org, make_product
):
    from portal.audit.models import AuditEvent

    org, product = make_org(), make_product(10)
    with app.app_context():
        services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=4,
        )
        db.session.commit()
    agreed = runner.invoke(args=["seats", "recount"])
    assert agreed.exit_code == 0, agreed.output
    assert agreed.output.startswith("OK: every product's seat figures")

    with app.app_context():  # a row edited by hand: 3 assigned seats nobody holds
        counts.count_change(db.session, product.id, assigned=3, reserved=-1)
        db.session.commit()
    found = runner.invoke(args=["seats", "recount"])
    assert found.exit_code == 1
    assert f"product {product.id}: reserved 3 kept, 4 counted, assigned 3 kept, 0 counted" in (
        found.output
    )
    assert "portal seats recount --fix" in found.output
    with app.app_context():
        assert _figures(product.id) == (10, 3, 0, 3)  # nothing changed by the check

    fixed = runner.invoke(args=["seats", "recount", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "Corrected 1 product(s)." in fixed.output
    with app.app_context():
        assert _figures(product.id) == (10, 4, 0, 0)
        assert counts.recount(db.session) == {}
        bind_scope(db.session, Scope.council())
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "seat_counts.recount")
        ).one()
        assert (event.target_id, event.before, event.after) == (
            str(product.id),
            {"reserved": 3, "assigned": 3},
            {"reserved": 4, "assigned": 0},
        )
    assert runner.invoke(args=["seats", "recount"]).exit_code == 0
