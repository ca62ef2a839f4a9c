"""The Statuspage poller against a real HTTP server started here (issue 15).

The server serves summary.json documents that change over time (operational → major
outage → resolved), answers slower than the poller waits, returns garbage, and goes away;
the status, its history, uptime, incidents and the signals follow, exactly once each. No
mocks: the poller's requests go over 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal import signals
from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
from portal.catalogue.services import vendor_create
from portal.db import db
from portal.jobs.models import Job
from portal.jobs.queue import enqueue
from portal.kernel.actor import Actor
from portal.suppliers import selectors, statuspage
from portal.suppliers.models import Incident, IncidentState, VendorStatusInterval
from tests.conftest import SYSTEM
from tests.suppliers.statuspage_server import StatuspageServer, incident, summary
from tests.suppliers.test_supplier_status import received

T0 = dt.datetime(2027, 5, 3, 23, 0, tzinfo=dt.UTC)  # an outage across midnight follows
POLLER = Actor.system("job:suppliers.poll_status")
QUICK = {"timeout": 0.3, "retries": 1, "pause": 0.01}


@pytest.fixture
def server():
    with StatuspageServer() as running:
        yield running


def _vendor(session, base_url: str, slug: str = "mail-co") -> Vendor:
    vendor = vendor_create(session, actor=SYSTEM, data={"slug": slug, "name": "Mail Co"})
    vendor.status_page_url = base_url
    session.commit()
    return vendor


def _poll(session, *, slug: str | None = None, **kwargs):
    vendors = selectors.vendors_with_status_page(session, slug=slug)
    results = statuspage.poll_vendors(session, POLLER, vendors, **(QUICK | kwargs))
    session.commit()
    return results


def _history(session, vendor_id: int) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
    return [
        (i.service_status.value, i.started_at, i.ended_at)
        for i in session.scalars(
            sa.select(VendorStatusInterval)
            .where(VendorStatusInterval.vendor_id == vendor_id)
            .order_by(VendorStatusInterval.started_at)
        )
    ]


def test_status_history_uptime_and_incidents_follow_the_page_exactly_once(
    app, db_session, clock, server
):
    clock.freeze(T0)
    vendor = _vendor(db_session, server.base_url)
    status_sent = []
    incident_sent = []

    def poll_counting():
        with (
            received(signals.vendor_service_status_changed) as s,
            received(signals.vendor_incident_changed) as i,
        ):
            results = _poll(db_session)
        status_sent.extend(x["source"] for x in s)
        incident_sent.extend(x["change"] for x in i)
        return results

    # 1. Operational: the reading is kept, nothing changes (already operational).
    [result] = poll_counting()
    assert result.ok and not result.status_changed
    assert vendor.status_polled_at == T0 and vendor.status_poll_error is None
    assert (status_sent, incident_sent) == ([], [])

    # 2. A major outage with an incident of two updates, polled three times.
    clock.freeze(T0 + dt.timedelta(minutes=30))
    server.document = summary(
        "critical",
        "Major System Outage",
        components={"API": "major_outage", "Web": "operational"},
        incidents=[
            incident(
                "inc-1",
                "Mail delivery failing",
                status="identified",
                impact="critical",
                created_at=T0 + dt.timedelta(minutes=20),
                updates=[
                    ("u1", "investigating", "We are looking.", T0 + dt.timedelta(minutes=20)),
                    ("u2", "identified", "A disk filled up.", T0 + dt.timedelta(minutes=25)),
                ],
            )
        ],
    )
    for _ in range(3):
        poll_counting()
    assert vendor.service_status == ServiceStatus.MAJOR_OUTAGE
    assert vendor.service_status_source == StatusSource.STATUSPAGE
    assert vendor.service_status_message == "Major System Outage"
    assert status_sent == ["statuspage"]
    assert incident_sent == ["opened"]
    imported = db_session.scalar(sa.select(Incident).where(Incident.external_id == "inc-1"))
    assert imported.state == IncidentState.IDENTIFIED
    assert imported.opened_at == T0 + dt.timedelta(minutes=20)
    assert [(u.external_id, u.body) for u in imported.updates] == [
        ("u2", "A disk filled up."),
        ("u1", "We are looking."),
    ]

    # 3. A new update (monitoring), the same impact: one "updated".
    clock.freeze(T0 + dt.timedelta(minutes=70))  # past midnight
    server.document["incidents"][0] = incident(
        "inc-1",
        "Mail delivery failing",
        status="monitoring",
        impact="critical",
        created_at=T0 + dt.timedelta(minutes=20),
        updates=[
            ("u1", "investigating", "We are looking.", T0 + dt.timedelta(minutes=20)),
            ("u2", "identified", "A disk filled up.", T0 + dt.timedelta(minutes=25)),
            ("u3", "monitoring", "Space freed; watching.", T0 + dt.timedelta(minutes=65)),
        ],
    )
    poll_counting()
    poll_counting()
    assert incident_sent == ["opened", "updated"]
    assert status_sent == ["statuspage"]

    # 4. Resolved: the page is operational and lists the incident no more.
    clock.freeze(T0 + dt.timedelta(minutes=90))
    server.document = summary()
    poll_counting()
    poll_counting()
    assert status_sent == ["statuspage", "statuspage"]
    assert incident_sent == ["opened", "updated", "resolved"]
    db_session.refresh(imported)
    assert imported.state == IncidentState.RESOLVED
    assert imported.resolved_at == T0 + dt.timedelta(minutes=90)
    assert selectors.open_incidents(db_session, vendor.id) == []

    # History: one interval per change, the outage across midnight.
    assert _history(db_session, vendor.id) == [
        ("operational", T0, T0 + dt.timedelta(minutes=30)),
        ("major_outage", T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=90)),
        ("operational", T0 + dt.timedelta(minutes=90), None),
    ]
    # Uptime at T0+2h over a day: 2 h known, 1 h of outage.
    up = selectors.uptime(db_session, vendor.id, days=1, now=T0 + dt.timedelta(hours=2))
    assert (up.known_seconds, up.outage_seconds) == (7200, 3600)
    assert up.uptime_percent == Decimal("50.00")


def test_slow_garbage_and_gone_are_recorded_errors_and_a_stale_reading(
    app, db_session, clock, server
):
    clock.freeze(T0)
    vendor = _vendor(db_session, server.base_url)
    server.document = summary("major", "Partial System Outage")
    _poll(db_session)
    assert vendor.service_status == ServiceStatus.PARTIAL_OUTAGE
    assert not selectors.reading_stale(vendor, now=T0)
    intervals = _history(db_session, vendor.id)

    failures = []
    with (
        received(signals.vendor_service_status_changed) as status_sent,
        received(signals.vendor_incident_changed) as incident_sent,
    ):
        # Slow: no answer within the timeout, twice (one retry).
        clock.freeze(T0 + dt.timedelta(minutes=5))
        server.document = summary()
        server.delay = 5
        before = server.requests
        [slow] = _poll(db_session)
        failures.append(slow)
        assert server.requests - before == 2
        server.delay = 0
        # Garbage of several shapes.
        for garbage in (
            b"<html>Bad gateway</html>",
            b"\xff\xfe\x00",
            b"[1, 2, 3]",
            b'{"status": {"indicator": "purple"}}',
            b'{"status": "none"}',
            b"[" * 100_000,
        ):
            server.document = garbage
            failures += _poll(db_session)
        # An HTTP error, not retried.
        server.document, server.status = summary(), 404
        failures += _poll(db_session)
        server.status = 503  # retried, then given up
        failures += _poll(db_session)
        server.status = 200
        # Gone: the port refuses connections.
        server.stop()
        clock.freeze(T0 + dt.timedelta(minutes=10))
        failures += _poll(db_session)

    assert [f.ok for f in failures] == [False] * 10
    reasons = [f.error for f in failures]
    assert "no answer within 0.3 s" in reasons[0]
    assert "not JSON" in reasons[1] and "not JSON" in reasons[2]
    assert "not a summary" in reasons[3] and "indicator" in reasons[4]
    assert "HTTP 404" in reasons[7] and "HTTP 503 (tried 2 times)" in reasons[8]
    assert "cannot connect" in reasons[9]
    # Nothing changed but the record of the failure; the reading is stale.
    assert (status_sent, incident_sent) == ([], [])
    assert vendor.service_status == ServiceStatus.PARTIAL_OUTAGE
    assert vendor.status_polled_at == T0
    assert vendor.status_poll_failed_at == T0 + dt.timedelta(minutes=10)
    assert "cannot connect" in vendor.status_poll_error
    assert selectors.reading_stale(vendor, now=T0 + dt.timedelta(minutes=10))
    assert _history(db_session, vendor.id) == intervals

    # Back: the next good reading clears the error and records the change once.
    server.start()
    with received(signals.vendor_service_status_changed) as status_sent:
        [back] = _poll(db_session)
    assert back.ok and back.status_changed and len(status_sent) == 1
    assert vendor.service_status == ServiceStatus.OPERATIONAL
    assert vendor.status_poll_error is None and vendor.status_poll_failed_at is None
    assert not selectors.reading_stale(vendor, now=T0 + dt.timedelta(minutes=10))


def test_components_and_maintenance_map_to_the_worst_status():
    assert statuspage.service_status_of("none", ["operational"]) == ServiceStatus.OPERATIONAL
    assert statuspage.service_status_of("minor", []) == ServiceStatus.DEGRADED
    assert statuspage.service_status_of("major", []) == ServiceStatus.PARTIAL_OUTAGE
    assert statuspage.service_status_of("critical", []) == ServiceStatus.MAJOR_OUTAGE
    assert statuspage.service_status_of("maintenance", []) == ServiceStatus.MAINTENANCE
    assert (
        statuspage.service_status_of("maintenance", ["under_maintenance", "partial_outage"])
        == ServiceStatus.PARTIAL_OUTAGE
    )
    assert (
        statuspage.service_status_of("none", ["degraded_performance", "weird"])
        == ServiceStatus.DEGRADED
    )


def test_malformed_incidents_are_skipped_and_the_rest_read():
    document = summary(
        "minor",
        "Minor",
        incidents=[
            {"id": "x"},
            "nonsense",
            {
                "id": "ok",
                "name": "Fine one",
                "status": "investigating",
                "impact": "galactic",
                "incident_updates": [None, {"id": "u", "status": "??"}],
            },
        ],
    )
    import json

    parsed = statuspage.parse_summary(json.dumps(document).encode())
    assert [(i.external_id, i.impact.value, i.updates) for i in parsed.incidents] == [
        ("ok", "none", ())
    ]


def test_the_scheduled_job_and_the_cli_poll_every_vendor_with_a_page(
    app, db_session, clock, server, runner
):
    from tests.support import deliver_job

    clock.freeze(T0)
    _vendor(db_session, server.base_url, slug="mail-co")
    _vendor(db_session, "http://127.0.0.1:9", slug="gone-co")  # discard port: refused
    vendor_create(db_session, actor=SYSTEM, data={"slug": "no-page", "name": "No Page"})
    server.document = summary("minor", "Degraded Performance")
    job = enqueue(db_session, "suppliers.poll_status", actor=SYSTEM)
    db_session.commit()
    job_id = job.id
    db_session.remove()
    deliver_job(app, job_id)
    with app.app_context():
        assert db.session.get(Job, job_id).state == "succeeded"  # a vendor's failure is no job's
        rows = {
            v.slug: (v.service_status.value, v.status_poll_error is not None)
            for v in db.session.scalars(sa.select(Vendor))
        }
    assert rows == {
        "mail-co": ("degraded", False),
        "gone-co": ("operational", True),
        "no-page": ("operational", False),
    }
    server.document = summary("critical", "Down")
    out = runner.invoke(args=["suppliers", "poll", "--vendor", "mail-co", "--timeout", "1"])
    assert out.exit_code == 0, out.output
    assert "mail-co\tmajor_outage (changed)" in out.output
    out = runner.invoke(args=["suppliers", "poll", "--timeout", "0.5"])
    assert out.exit_code == 1
    assert "gone-co\tFAILED\tcannot connect" in out.output
    assert "1 of 2 status pages could not be read" in out.output
    out = runner.invoke(args=["suppliers", "poll", "--vendor", "nobody"])
    assert out.exit_code == 1 and "No vendor 'nobody'" in out.output


def test_the_job_holds_no_lock_while_it_waits_for_a_page(app, db_session, clock, server):
    """While the page is being read, another connection writes the vendor's row: the job
    ended its read transaction first (on SQLite a held write lock would make that write
    fail, or the page's answer wait past the poller's timeout)."""
    from tests.conftest import owner_engine
    from tests.support import deliver_job

    clock.freeze(T0)
    vendor_id = _vendor(db_session, server.base_url).id
    server.document = summary("major", "Partial outage")
    written = []

    def write_meanwhile():
        with app.app_context(), owner_engine(app).begin() as conn:
            conn.execute(
                sa.update(Vendor)
                .where(Vendor.id == vendor_id)
                .values(contact_email="ops@mail-co.example")
            )
        written.append(True)

    server.on_request = write_meanwhile
    job = enqueue(db_session, "suppliers.poll_status", actor=SYSTEM)
    db_session.commit()
    job_id = job.id
    db_session.remove()
    deliver_job(app, job_id)
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id)
        assert written == [True]
        assert vendor.contact_email == "ops@mail-co.example"
        assert vendor.service_status == ServiceStatus.PARTIAL_OUTAGE
        assert vendor.status_poll_error is None


def test_an_oversized_answer_and_a_redirect_are_refused(app, db_session, clock, server):
    clock.freeze(T0)
    vendor = _vendor(db_session, server.base_url)
    server.document = b'{"status": {"indicator": "none"}, "pad": "' + b"x" * 1_100_000 + b'"}'
    [big] = _poll(db_session)
    assert not big.ok and "larger than 1000000 bytes" in big.error
    server.document, server.status = summary("critical"), 302  # not followed
    [moved] = _poll(db_session)
    assert not moved.ok and "HTTP 302" in moved.error
    assert vendor.service_status == ServiceStatus.OPERATIONAL
    assert selectors.reading_stale(vendor, now=T0)
