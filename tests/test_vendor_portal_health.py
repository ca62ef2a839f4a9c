"""Usage-reporting health (``usage_report_days``) under parallel senders: the one-statement
upsert adds every batch's counts, none lost (run on PostgreSQL for the real race)."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from portal.catalogue.models import Vendor
from portal.db import bind_scope, db
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.metering.models import UsageReportDay
from tests.metering.conftest import body, event, subscribe

SENDERS = 6


def _ingest(app, events, vendor_id: int):
    from portal.metering.ingest import usage_ingest

    actor = Actor.api_token("vendor token", role=Role.VENDOR_ADMIN, vendor_id=vendor_id)
    with app.app_context():
        bind_scope(db.session, Scope.council())  # as the API binds a vendor token's requests
        result = usage_ingest(
            db.session, actor=actor, body=body(events), vendor_id=vendor_id, max_age_days=35
        )
        db.session.commit()
        return result


def test_parallel_batches_of_a_vendor_all_count_in_its_day(app, make_org, make_product, clock):
    make_org("acme")
    make_product(10, sku="cad-suite", vendor="autodraft")
    subscribe(app, "acme", "cad-suite")
    with app.app_context():
        vendor_id = db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == "autodraft"))
    shared = [event() for _ in range(20)]  # every sender sends these: one stores them
    results, errors = [], []
    barrier = threading.Barrier(SENDERS)

    def send(n: int) -> None:
        own = [event() for _ in range(n + 1)]
        bad = [event(product="no-such-product")]
        barrier.wait()
        try:
            results.append(_ingest(app, shared + own + bad, vendor_id))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    own_events = sum(n + 1 for n in range(SENDERS))
    with app.app_context():
        (day,) = db.session.scalars(sa.select(UsageReportDay)).all()
        assert day.day == now_utc().date()
        assert day.batches == SENDERS
        assert day.accepted == 20 + own_events == sum(r.accepted for r in results)
        assert day.duplicates == 20 * (SENDERS - 1) == sum(r.duplicates for r in results)
        assert day.rejected_by_code == {
            "invalid": SENDERS,
            "no_subscription": 0,
            "not_organisation_person": 0,
        }
        assert day.last_batch_at <= now_utc() + dt.timedelta(seconds=1)


def test_a_batch_refused_whole_counts_nothing(app, make_org, make_product):
    import pytest

    from portal.kernel.errors import ValidationFailed

    make_org("acme")
    make_product(10, sku="cad-suite", vendor="autodraft")
    with app.app_context():
        vendor_id = db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == "autodraft"))
    with pytest.raises(ValidationFailed):
        _ingest(app, [], vendor_id)
    with app.app_context():
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageReportDay)) == 0
