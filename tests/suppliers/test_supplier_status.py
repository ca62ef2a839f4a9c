"""Service status, its history and uptime, incidents (issue 15): the services and selectors.

The Statuspage poller against a real HTTP server is in test_statuspage_poller.py; the API in
test_vendors_api.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal import signals
from portal.audit.models import AuditEvent
from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
from portal.catalogue.services import vendor_create
from portal.db import db
from portal.kernel.actor import Actor, Role
from portal.kernel.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from portal.suppliers import selectors, services
from portal.suppliers.models import (
    Incident,
    IncidentImpact,
    IncidentState,
    VendorStatusInterval,
)
from tests.conftest import SYSTEM

T0 = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)
COUNCIL = Actor.api_token("token council…", role=Role.COUNCIL_ADMIN)


def vendor_actor(vendor_id: int) -> Actor:
    return Actor.api_token("token vendor…", role=Role.VENDOR_ADMIN, vendor_id=vendor_id)


@contextmanager
def received(signal) -> Iterator[list[dict]]:
    """Every sending of ``signal`` while inside, with its sender and kwargs."""
    got: list[dict] = []

    def receiver(sender, **kwargs):
        got.append({"sender": sender, **kwargs})

    with signal.connected_to(receiver):
        yield got


def _vendor(session, slug: str = "acme-soft", **fields) -> Vendor:
    vendor = vendor_create(session, actor=SYSTEM, data={"slug": slug, "name": slug.title()})
    for key, value in fields.items():
        setattr(vendor, key, value)
    session.flush()
    return vendor


def _intervals(session, vendor_id: int) -> list[tuple]:
    return [
        (i.service_status.value, i.started_at, i.ended_at, i.source.value)
        for i in session.scalars(
            sa.select(VendorStatusInterval)
            .where(VendorStatusInterval.vendor_id == vendor_id)
            .order_by(VendorStatusInterval.started_at, VendorStatusInterval.id)
        )
    ]


# ---------------------------------------------------------------- service status


def test_a_status_change_closes_one_interval_opens_the_next_and_signals_once(
    app, db_session, clock
):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    clock.freeze(T0 + dt.timedelta(hours=2))
    with received(signals.vendor_service_status_changed) as sent:
        assert services.set_service_status(db_session, COUNCIL, vendor, "major_outage", "API down")
        # The same again: nothing new (no interval, no signal).
        assert not services.set_service_status(
            db_session, COUNCIL, vendor, "major_outage", "API down"
        )
    assert [(s["sender"].slug, s["old_status"], s["source"]) for s in sent] == [
        ("acme-soft", ServiceStatus.OPERATIONAL, "council")
    ]
    # The status until now became history: operational since the vendor was added.
    assert _intervals(db_session, vendor.id) == [
        ("operational", T0, T0 + dt.timedelta(hours=2), "council"),
        ("major_outage", T0 + dt.timedelta(hours=2), None, "council"),
    ]
    clock.freeze(T0 + dt.timedelta(hours=3))
    with received(signals.vendor_service_status_changed) as sent:
        services.set_service_status(db_session, vendor_actor(vendor.id), vendor, "operational")
    assert len(sent) == 1 and sent[0]["source"] == "vendor"
    assert vendor.service_status == ServiceStatus.OPERATIONAL
    assert vendor.service_status_source == StatusSource.VENDOR
    assert vendor.service_status_at == T0 + dt.timedelta(hours=3)
    history = _intervals(db_session, vendor.id)
    assert [h[0] for h in history] == ["operational", "major_outage", "operational"]
    assert [h for h in history if h[2] is None] == [
        ("operational", T0 + dt.timedelta(hours=3), None, "vendor")
    ]
    actions = db_session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.target_type == "vendor")
    ).all()
    assert actions.count("vendor.service_status_set") == 2


def test_a_new_message_alone_is_kept_and_audited_without_a_signal(app, db_session, clock):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    services.set_service_status(db_session, COUNCIL, vendor, "degraded", "Slow")
    with received(signals.vendor_service_status_changed) as sent:
        assert not services.set_service_status(db_session, COUNCIL, vendor, "degraded", "Slower")
    assert sent == []
    assert vendor.service_status_message == "Slower"
    assert len(_intervals(db_session, vendor.id)) == 2


@pytest.mark.parametrize(
    ("status", "message", "field"),
    [
        ("down", None, "service_status"),
        ("", None, "service_status"),
        (None, None, "service_status"),
        (7, None, "service_status"),
        ("operational", "x" * 501, "message"),
        ("operational", {"a": 1}, "message"),
    ],
)
def test_bad_status_input_is_refused_and_changes_nothing(
    app, db_session, clock, status, message, field
):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    with pytest.raises(ValidationFailed) as refused:
        services.set_service_status(db_session, COUNCIL, vendor, status, message)
    assert field in refused.value.errors
    assert _intervals(db_session, vendor.id) == []
    assert vendor.service_status == ServiceStatus.OPERATIONAL


def test_a_vendor_sets_only_its_own_status_and_only_as_itself(app, db_session, clock):
    clock.freeze(T0)
    ours, theirs = _vendor(db_session, "ours-soft"), _vendor(db_session, "theirs-soft")
    with pytest.raises(NotFound):
        services.set_service_status(db_session, vendor_actor(ours.id), theirs, "major_outage")
    with pytest.raises(PermissionDenied):
        services.set_service_status(
            db_session, vendor_actor(ours.id), ours, "major_outage", source="council"
        )
    with pytest.raises(PermissionDenied):  # only the poller speaks for the status page
        services.set_service_status(db_session, COUNCIL, ours, "degraded", source="statuspage")
    member = Actor.api_token("token org…", role=Role.ORG_ADMIN, organisation_id=1)
    with pytest.raises(PermissionDenied):
        services.set_service_status(db_session, member, ours, "degraded")
    assert _intervals(db_session, theirs.id) == [] == _intervals(db_session, ours.id)


# ---------------------------------------------------------------- incidents


def test_incident_lifecycle_signals_each_change_once(app, db_session, clock):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    actor = vendor_actor(vendor.id)
    with received(signals.vendor_incident_changed) as sent:
        incident = services.open_incident(
            db_session, actor, vendor, title="Login fails", impact="minor", body="Looking."
        )
        clock.advance(dt.timedelta(minutes=10))
        services.add_incident_update(
            db_session, actor, incident, body="Found it.", state="identified"
        )
        clock.advance(dt.timedelta(minutes=10))
        services.add_incident_update(db_session, actor, incident, body="Worse.", impact="critical")
        clock.advance(dt.timedelta(minutes=10))
        services.add_incident_update(db_session, COUNCIL, incident, body="Fixed.", state="resolved")
    assert [s["change"] for s in sent] == ["opened", "updated", "impact_changed", "resolved"]
    assert all(s["sender"] is incident for s in sent)
    assert incident.state == IncidentState.RESOLVED
    assert incident.impact == IncidentImpact.CRITICAL
    assert incident.resolved_at == T0 + dt.timedelta(minutes=30)
    assert incident.source == StatusSource.VENDOR
    db_session.flush()
    db_session.expire(incident)
    assert [(u.state.value, u.author) for u in incident.updates] == [
        ("resolved", "The council"),
        ("identified", "Acme-Soft"),
        ("identified", "Acme-Soft"),
        ("investigating", "Acme-Soft"),
    ]
    with pytest.raises(Conflict):
        services.add_incident_update(db_session, actor, incident, body="Again?")


def test_incident_input_is_checked(app, db_session, clock):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    for kwargs, field in [
        ({"title": "", "impact": "minor", "body": "b"}, "title"),
        ({"title": "t" * 201, "impact": "minor", "body": "b"}, "title"),
        ({"title": "t", "impact": "huge", "body": "b"}, "impact"),
        ({"title": "t", "impact": "minor", "body": "  "}, "body"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            services.open_incident(db_session, COUNCIL, vendor, **kwargs)
        assert field in refused.value.errors
    incident = services.open_incident(
        db_session, COUNCIL, vendor, title="t", impact="none", body="b"
    )
    with pytest.raises(ValidationFailed) as refused:
        services.add_incident_update(db_session, COUNCIL, incident, body="b", state="fine")
    assert "state" in refused.value.errors
    other = _vendor(db_session, "other-soft")
    with pytest.raises(NotFound):
        services.add_incident_update(db_session, vendor_actor(other.id), incident, body="b")
    with pytest.raises(NotFound):
        selectors.incident_of_vendor(db_session, other, incident.id)
    for bad in ("x", "-1", "0", "99999999999999999999", None):
        with pytest.raises(NotFound):
            selectors.incident_of_vendor(db_session, vendor, bad)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 1


# ---------------------------------------------------------------- uptime


def _history(session, vendor: Vendor, spans: list[tuple[str, str, str | None]]) -> None:
    for status, start, end in spans:
        session.add(
            VendorStatusInterval(
                vendor_id=vendor.id,
                service_status=ServiceStatus(status),
                started_at=dt.datetime.fromisoformat(start),
                ended_at=dt.datetime.fromisoformat(end) if end else None,
                source=StatusSource.COUNCIL,
            )
        )
    session.flush()


def test_uptime_against_a_hand_worked_window(app, db_session, clock):
    """Two days to 2027-01-03T00:00Z: [2027-01-01T00:00, 2027-01-03T00:00), 48 h.

    * a major outage 2026-12-31T22:00 → 2027-01-01T02:00 across the window's start: 2 h in;
    * a partial outage 2027-01-01T23:00 → 2027-01-02T01:00 across midnight: 2 h;
    * maintenance 2027-01-02T10:00 → 14:00: 4 h, not downtime, counted apart.

    Uptime (48 - 4) / 48 = 91.666… → 91.66 (rounded down); maintenance 4 / 48 = 8.33.
    """
    clock.freeze("2026-12-01T00:00Z")
    vendor = _vendor(db_session)
    _history(
        db_session,
        vendor,
        [
            ("operational", "2026-12-31T20:00+00:00", "2026-12-31T22:00+00:00"),
            ("major_outage", "2026-12-31T22:00+00:00", "2027-01-01T02:00+00:00"),
            ("operational", "2027-01-01T02:00+00:00", "2027-01-01T23:00+00:00"),
            ("partial_outage", "2027-01-01T23:00+00:00", "2027-01-02T01:00+00:00"),
            ("degraded", "2027-01-02T01:00+00:00", "2027-01-02T10:00+00:00"),
            ("maintenance", "2027-01-02T10:00+00:00", "2027-01-02T14:00+00:00"),
            ("operational", "2027-01-02T14:00+00:00", None),
        ],
    )
    now = dt.datetime(2027, 1, 3, tzinfo=dt.UTC)
    up = selectors.uptime(db_session, vendor.id, days=2, now=now)
    assert up.known_seconds == 48 * 3600
    assert up.outage_seconds == 4 * 3600
    assert up.maintenance_seconds == 4 * 3600
    assert up.uptime_percent == Decimal("91.66")
    assert up.maintenance_percent == Decimal("8.33")
    # One day to the same end: only the maintenance and one hour of the partial outage.
    day = selectors.uptime(db_session, vendor.id, days=1, now=now)
    assert (day.outage_seconds, day.maintenance_seconds) == (3600, 4 * 3600)
    assert day.uptime_percent == Decimal("95.83")  # 23/24 = 95.833…
    # A window ending mid-outage counts the outage up to its end only.
    mid = selectors.uptime(db_session, vendor.id, days=1, now=now - dt.timedelta(hours=24))
    assert mid.outage_seconds == 2 * 3600 + 3600  # 02:00 of the 1st and 23:00-00:00
    # Time before the first interval is not counted: 30 days to `now` know 52 h only.
    month = selectors.uptime(db_session, vendor.id, days=30, now=now)
    assert month.known_seconds == 52 * 3600
    assert month.uptime_percent == Decimal("88.46")  # 46/52 = 88.461…


def test_a_vendor_without_history_is_up_since_it_was_added(app, db_session, clock):
    clock.freeze("2027-01-01T00:00Z")
    vendor = _vendor(db_session)
    now = dt.datetime(2027, 1, 11, tzinfo=dt.UTC)
    up = selectors.uptime(db_session, vendor.id, days=30, now=now)
    assert (up.known_seconds, up.uptime_percent, up.maintenance_percent) == (
        10 * 86400,
        Decimal("100.00"),
        Decimal("0.00"),
    )
    before = selectors.uptime(
        db_session, vendor.id, days=30, now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    )
    assert before.uptime_percent is None and before.known_seconds == 0


def test_a_short_outage_never_shows_as_a_hundred_percent(app, db_session, clock):
    clock.freeze("2027-01-01T00:00Z")
    vendor = _vendor(db_session)
    _history(
        db_session,
        vendor,
        [
            ("operational", "2026-10-01T00:00+00:00", "2026-12-15T00:00+00:00"),
            ("major_outage", "2026-12-15T00:00+00:00", "2026-12-15T00:00:30+00:00"),
            ("operational", "2026-12-15T00:00:30+00:00", None),
        ],
    )
    up = selectors.uptime(
        db_session, vendor.id, days=90, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    )
    assert up.outage_seconds == 30
    assert up.uptime_percent == Decimal("99.99")


# ---------------------------------------------------------------- the directory's reads


def test_directory_filters_and_summary(app, db_session, clock, make_product):
    clock.freeze(T0)
    make_product(sku="mail-pro", vendor="mail-co", vendor_name="Mail Co")
    make_product(sku="bi-studio", vendor="bi-works", vendor_name="BI Works")
    mail = db_session.scalar(sa.select(Vendor).where(Vendor.slug == "mail-co"))
    bi = db_session.scalar(sa.select(Vendor).where(Vendor.slug == "bi-works"))
    services.update_profile(
        db_session, COUNCIL, mail, {"country": "de", "legal_name": "Mail Co GmbH"}
    )
    services.update_profile(db_session, COUNCIL, bi, {"country": "LV"})
    services.set_service_status(db_session, COUNCIL, bi, "partial_outage")
    services.open_incident(db_session, COUNCIL, bi, title="Reports slow", impact="minor", body="b")
    db_session.commit()

    def slugs(**filters):
        found = selectors.directory(
            db_session, filters=selectors.DirectoryFilter(**filters), now=T0
        )
        return [s.vendor.slug for s in found]

    assert slugs() == ["bi-works", "mail-co"]
    assert slugs(country="de") == ["mail-co"]
    assert slugs(service_status="partial_outage") == ["bi-works"]
    assert slugs(product="mail-pro") == ["mail-co"]
    assert slugs(text="gmbh") == ["mail-co"]  # the legal name
    assert slugs(text="STUDIO") == ["bi-works"]  # a product's name
    assert slugs(text="100%_") == []  # wildcards are plain text
    assert slugs(country="XX", service_status="nonsense") == []
    summary = selectors.vendor_summary(db_session, bi, now=T0 + dt.timedelta(hours=1))
    assert [p.sku for p in summary.products] == ["bi-studio"]
    assert [i.title for i in summary.open_incidents] == ["Reports slow"]
    assert summary.uptime_30.uptime_percent == Decimal("0.00")
    assert not summary.stale
    assert selectors.countries(db_session) == ["DE", "LV"]


def test_profile_input_is_checked_and_a_vendor_edits_only_its_own(app, db_session, clock):
    clock.freeze(T0)
    ours, theirs = _vendor(db_session, "ours-soft"), _vendor(db_session, "theirs-soft")
    with pytest.raises(ValidationFailed) as refused:
        services.update_profile(
            db_session, vendor_actor(ours.id), ours, {"country": "Narnia", "website": "ftp://x"}
        )
    assert set(refused.value.errors) == {"country", "website"}
    with pytest.raises(ValidationFailed):
        services.update_profile(db_session, vendor_actor(ours.id), ours, {"service_status": "x"})
    with pytest.raises(NotFound):
        services.update_profile(db_session, vendor_actor(ours.id), theirs, {"legal_name": "Mine"})
    services.update_profile(
        db_session,
        vendor_actor(ours.id),
        ours,
        {"legal_name": " Ours Soft Ltd ", "country": "gb", "data_residency": "EU (Frankfurt)"},
    )
    assert (ours.legal_name, ours.country, ours.data_residency) == (
        "Ours Soft Ltd",
        "GB",
        "EU (Frankfurt)",
    )
    assert theirs.legal_name is None


def test_only_council_admins_set_the_status_page_address(app, db_session, clock):
    clock.freeze(T0)
    vendor = _vendor(db_session)
    with pytest.raises(PermissionDenied):
        services.set_status_page_url(
            db_session, vendor_actor(vendor.id), vendor, "https://status.example.com"
        )
    for bad in (
        "status.example.com",
        "ftp://x",
        "https://u:p@x.example",
        "https://x/?a=1",
        "https://",
    ):
        with pytest.raises(ValidationFailed):
            services.set_status_page_url(db_session, COUNCIL, vendor, bad)
    services.set_status_page_url(db_session, COUNCIL, vendor, "https://status.example.com/")
    assert vendor.status_page_url == "https://status.example.com"
    assert selectors.reading_stale(vendor, now=T0)  # no reading yet
    services.set_status_page_url(db_session, COUNCIL, vendor, "")
    assert vendor.status_page_url is None
    assert not selectors.reading_stale(vendor, now=T0)


def test_concurrent_status_changes_keep_one_open_interval_and_a_gapless_chain(app, clock):
    """Eight changes at once (threads, each its own session and transaction): the vendor row
    lock orders them, so the history is a chain without gaps or overlaps and exactly one
    interval is open (proved on PostgreSQL in CI; SQLite serialises writers anyway)."""
    import threading

    from portal.db import bind_scope
    from portal.kernel.scope import Scope

    clock.freeze(T0)
    with app.app_context():
        vendor_id = _vendor(db.session).id
        db.session.commit()
    statuses = ["degraded", "major_outage", "maintenance", "partial_outage"] * 2
    barrier = threading.Barrier(len(statuses))
    errors: list[BaseException] = []

    def change(status: str) -> None:
        with app.app_context():
            bind_scope(db.session, Scope.council())
            try:
                barrier.wait()
                vendor = db.session.get(Vendor, vendor_id)
                services.set_service_status(db.session, SYSTEM, vendor, status)
                db.session.commit()
            except BaseException as error:  # noqa: BLE001 (reported below)
                db.session.rollback()
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=change, args=(s,)) for s in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        rows = db.session.scalars(
            sa.select(VendorStatusInterval)
            .where(VendorStatusInterval.vendor_id == vendor_id)
            .order_by(VendorStatusInterval.started_at, VendorStatusInterval.id)
        ).all()
        vendor = db.session.get(Vendor, vendor_id)
        assert [r.ended_at is None for r in rows].count(True) == 1
        assert rows[-1].ended_at is None
        for earlier, later in zip(rows, rows[1:], strict=False):
            assert earlier.ended_at == later.started_at
            assert earlier.service_status != later.service_status
        assert rows[-1].service_status == vendor.service_status
        changes = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "vendor.service_status_set")
        )
        assert changes == len(rows) - 1  # one audited change per interval opened
