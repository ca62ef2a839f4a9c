"""The engine's choice of what to send next (``delivery.due_heads``): the first pending
delivery of each (vendor, channel, sequence), if due and not held; and, on PostgreSQL, a plan
that does not depend on the outbox's statistics (issue 17: a never analysed outbox made the
old query a nested loop over every pair of pending rows)."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.provisioning.delivery import due_heads
from portal.provisioning.models import Delivery


def _add(world, key, *, channel="webhook", state="pending", due=None, lease=None, by=None):
    now = now_utc()
    row = Delivery(
        organisation_id=world.org_id,
        vendor_id=world.vendor_id,
        channel=channel,
        event="seat.assigned",
        sequence_key=key,
        message_id="msg_" + secrets.token_hex(8),
        payload={},
        state=state,
        created_at=now,
        next_attempt_at=due or now - dt.timedelta(seconds=1),
        lease_until=lease,
        leased_by=by,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_only_the_first_pending_delivery_of_each_sequence_is_due(app, world):
    with app.app_context():
        # the fixture's own deliveries (the subscription opened) are out of the way
        db.session.execute(sa.update(Delivery).values(state="delivered"))
        now = now_utc()
        later = now + dt.timedelta(minutes=5)
        a1 = _add(world, "user:1")
        _add(world, "user:1")  # behind a1
        _add(world, "user:2", state="delivered")
        b2 = _add(world, "user:2")  # the delivered one before it does not hold it back
        _add(world, "user:3", state="failed")
        c2 = _add(world, "user:3")  # nor does one failed for good
        _add(world, "user:4", due=later)  # waiting for its retry ...
        _add(world, "user:4")  # ... holds the later one back although that one is due
        _add(world, "user:5", lease=later, by="other-job")  # held by another job ...
        _add(world, "user:5")  # ... and so is the one behind it
        own = _add(world, "user:6", lease=later, by="this-job")  # this job's own hold
        s1 = _add(world, "user:1", channel="scim")  # another channel: its own sequence
        db.session.commit()

        assert due_heads(db.session, now=now_utc()) == [a1, b2, c2, s1]
        assert due_heads(db.session, now=now_utc(), lease="this-job") == [a1, b2, c2, own, s1]
        assert due_heads(db.session, now=now_utc(), vendor_id=world.vendor_id, limit=2) == [
            a1,
            b2,
        ]
        assert due_heads(db.session, now=now_utc(), vendor_id=world.vendor_id + 1000) == []
        # once the first is through, the next of its sequence is due
        db.session.execute(sa.update(Delivery).where(Delivery.id == a1).values(state="delivered"))
        db.session.commit()
        heads = due_heads(db.session, now=now_utc())
        assert a1 not in heads and a1 + 1 in heads


def test_the_query_plan_does_not_pair_pending_rows_on_postgresql(app, world):
    """Thousands of pending deliveries written in one transaction and never analysed (as
    after a bulk group mapping with autovacuum off): the plan probes the sequence index once
    per candidate instead of joining the pending rows with each other."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL's planner")
        rows = [
            {
                "organisation_id": world.org_id,
                "vendor_id": world.vendor_id,
                "channel": "scim",
                "event": "seat.assigned",
                "sequence_key": f"user:{i}",
                "message_id": f"msg_plan{i:06d}",
                "payload": {},
                "state": "pending",
                "attempts": 0,
                "created_at": now_utc(),
                "next_attempt_at": now_utc() - dt.timedelta(seconds=1),
            }
            for i in range(3000)
        ]
        db.session.execute(sa.insert(Delivery), rows)
        db.session.commit()
        now = now_utc()
        captured = []

        @sa.event.listens_for(db.engine, "before_cursor_execute")
        def capture(conn, cursor, statement, parameters, context, executemany):
            if "provisioning_deliveries_1" in statement:  # the aliased inner table
                captured.append((statement, parameters))

        try:
            heads = due_heads(db.session, now=now, vendor_id=world.vendor_id, limit=100)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", capture)
        assert len(heads) == 100
        statement, parameters = captured[-1]
        plan = (
            db.session.connection()
            .exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            .scalar()
        )
        db.session.rollback()
        text = json.dumps(plan)
        assert "Anti Join" not in text
        assert "ix_provisioning_deliveries_sequence" in text
        # every node read at most a few rows per loop: no pairing of pending rows
        assert _max_rows(plan[0]["Plan"]) <= 3000 + 100


def _max_rows(node) -> int:
    """The most rows any node produced or threw away in all its loops."""
    own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get(
        "Actual Loops", 1
    ) + node.get("Rows Removed by Join Filter", 0)
    return max([own, *(_max_rows(child) for child in node.get("Plans", []))])


def test_a_delivery_waiting_for_its_retry_is_not_taken_by_another_job(app, world, receiver):
    """Several jobs of one vendor may run at once (the sweep enqueues one while another is
    busy): one whose list of heads is older than another job's failed attempt must not
    send that delivery again before its backoff ran out."""
    from portal.provisioning.delivery import attempt

    with app.app_context():
        db.session.execute(sa.update(Delivery).values(state="delivered"))
        waiting = _add(world, "user:1", due=now_utc() + dt.timedelta(minutes=1))
        db.session.commit()
        assert attempt(db.session, waiting, lease="an-older-list") is None
        row = db.session.get(Delivery, waiting, populate_existing=True)
        assert (row.state, row.attempts, row.leased_by) == ("pending", 0, None)
        assert receiver.requests == 0


def _queued_delivery_jobs():
    from portal.jobs.models import Job

    return db.session.scalars(
        sa.select(Job)
        .where(Job.name == "provisioning.deliver", Job.state == "queued")
        .order_by(Job.id)
    ).all()


def test_shares_divide_the_heads_between_jobs(app, world):
    with app.app_context():
        db.session.execute(sa.update(Delivery).values(state="delivered"))
        heads = [_add(world, f"user:{i}") for i in range(6)]
        db.session.commit()
        rows = {d.id: d for d in db.session.scalars(sa.select(Delivery))}
        # rows written by hand carry no user id: set it as the outbox does
        for i, head in enumerate(heads):
            rows[head].user_id = None if i == 0 else world.admin_id + 0
        db.session.commit()
        first = due_heads(db.session, now=now_utc(), shard=(0, 2))
        second = due_heads(db.session, now=now_utc(), shard=(1, 2))
        assert sorted(first + second) == due_heads(db.session, now=now_utc())
        assert not set(first) & set(second)
        assert heads[0] in first  # no person: share 0


def test_a_large_change_is_sent_by_several_jobs_each_its_share_in_order(
    app, world, receiver, monkeypatch
):
    """A change writing at least two batches of deliveries enqueues a job per share (at
    most PARALLEL); a share's job sends only its people's deliveries; run in any order
    with the jobs of later changes, each person's deliveries still go out in order."""
    from portal.provisioning import delivery
    from portal.seats.services import seat_assign_many, seat_release
    from tests.provisioning.test_webhooks import _admin, _subscription
    from tests.support import deliver_job

    monkeypatch.setattr(delivery, "BATCH", 2)  # two batches: five deliveries
    with app.app_context():
        emails = [f"p{i}@buyer.example" for i in range(5)]
        queued_before = {job.id for job in _queued_delivery_jobs()}
        seat_assign_many(
            db.session, actor=_admin(world), subscription=_subscription(world), emails=emails
        )
        db.session.commit()
        jobs = [job for job in _queued_delivery_jobs() if job.id not in queued_before]
        assert [(job.arguments.get("share"), job.arguments.get("shares")) for job in jobs] == [
            (0, 2),
            (1, 2),
        ]
        assert len({job.arguments["lease"] for job in jobs}) == 2
        for email in emails[:3]:  # later changes of the same people: jobs of their own
            seat_release(
                db.session, actor=_admin(world), subscription=_subscription(world), user_email=email
            )
            db.session.commit()

        # share 1's job sends share 1's people only (two, then it continues in a new job)
        share_one = jobs[1].id
        db.session.commit()  # nothing held open while the job runs (SQLite: one writer)
        deliver_job(app, share_one)
        sent = db.session.scalars(
            sa.select(Delivery).where(
                Delivery.state == "delivered", Delivery.event != "subscription.changed"
            )
        ).all()
        assert sent and {row.user_id % 2 for row in sent} == {1}

        # everything else, newest job first: the order per person holds all the same
        while queued := _queued_delivery_jobs():
            newest = queued[-1].id
            db.session.commit()
            deliver_job(app, newest)
        assert receiver.refused == []
        pending = db.session.scalar(
            sa.select(sa.func.count()).select_from(Delivery).where(Delivery.state != "delivered")
        )
        assert pending == 0
        for email in emails:
            types = [
                r.type
                for r in receiver.received
                if (r.body["data"].get("person") or {}).get("email") == email
            ]
            assert types == (
                ["seat.assigned", "seat.released"] if email in emails[:3] else ["seat.assigned"]
            ), email
