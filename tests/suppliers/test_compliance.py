"""Compliance documents (issue 15): the PDF check, expiry flags, the daily check that puts a
vendor under review once per expiry, and the standing-change signal."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal import signals
from portal.audit.models import AuditEvent
from portal.catalogue.models import Vendor
from portal.catalogue.services import vendor_update
from portal.db import db
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound, PermissionDenied, ValidationFailed
from portal.settings.services import settings_get, settings_update
from portal.suppliers.compliance import (
    MAX_DOCUMENT_BYTES,
    check_pdf,
    compliance_expiry_check,
    document_of,
    document_upload,
    expiring_by_vendor,
)
from portal.suppliers.compliance_models import ComplianceDocument
from tests.conftest import SYSTEM
from tests.suppliers.compliance_support import pdf_bytes, upload, vendor_id
from tests.support import count

JOB = Actor.system("job:suppliers.compliance_expiry")


def _vendor(app, slug: str) -> Vendor:
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        db.session.expunge(vendor)
        return vendor


def _review_setting(app, on: bool) -> None:
    with app.app_context():
        settings_update(db.session, actor=SYSTEM, data={"compliance_review_on_expiry": on})
        db.session.commit()


def _check(app, today: dt.date) -> list[int]:
    with app.app_context():
        acted = [d.id for d in compliance_expiry_check(db.session, actor=JOB, today=today)]
        db.session.commit()
        return acted


# ---------------------------------------------------------------- the file


def test_a_real_pdf_passes_and_other_files_are_refused():
    check_pdf(pdf_bytes(pages=2))
    refused = {
        b"": "Choose a PDF file.",
        b"PK\x03\x04 a zip file": "This file is not a PDF.",
        b"%PDF-1.7\n garbage that is no PDF at all": "This PDF is damaged and cannot be opened.",
        pdf_bytes()[:40]: "This PDF is damaged and cannot be opened.",
        b"%PDF-" + b"0" * MAX_DOCUMENT_BYTES: "The file is larger than 10 MB.",
    }
    for content, message in refused.items():
        with pytest.raises(ValidationFailed) as caught:
            check_pdf(content)
        assert caught.value.errors == {"file": [message]}, content[:20]


def test_upload_keeps_the_file_and_audits(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    document_id = upload(
        app, "acme-soft", issued_on=today, expires_on=today + dt.timedelta(days=365)
    )
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id(app, "acme-soft"))
        document = document_of(
            db.session, actor=SYSTEM, vendor=vendor, document_id=document_id, content=True
        )
        assert document.content.startswith(b"%PDF-")
        assert (document.size_bytes, document.filename) == (len(document.content), "iso27001.pdf")
        [event] = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "compliance_document.upload")
        ).all()
        assert event.target_id == str(document_id)


def test_bad_fields_and_a_bad_file_are_reported_together_and_nothing_is_kept(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id(app, "acme-soft"))
        with pytest.raises(ValidationFailed) as caught:
            document_upload(
                db.session,
                actor=SYSTEM,
                vendor=vendor,
                data={
                    "kind": "passport",
                    "title": " ",
                    "issued_on": "2026-05-01",
                    "expires_on": "2026-04-01",
                },
                content=b"not a pdf",
            )
        db.session.rollback()
    assert set(caught.value.errors) == {"kind", "title", "file"}
    assert count(app, ComplianceDocument) == 0
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id(app, "acme-soft"))
        with pytest.raises(ValidationFailed) as caught:
            document_upload(
                db.session,
                actor=SYSTEM,
                vendor=vendor,
                data={
                    "kind": "dpa",
                    "title": "DPA",
                    "issued_on": "2026-05-01",
                    "expires_on": "2026-04-01",
                },
                content=pdf_bytes(),
            )
        db.session.rollback()
    assert "before the issue date" in str(caught.value.errors)


def test_who_may_upload_and_read(app, make_product, make_org):
    make_product(sku="mail", vendor="acme-soft")
    make_product(sku="crm", vendor="other-soft")
    today = now_utc().date()
    document_id = upload(app, "acme-soft", issued_on=today, expires_on=None)
    acme, other = vendor_id(app, "acme-soft"), vendor_id(app, "other-soft")
    org = make_org("reader-org")
    member = Actor(label="m", kind="person", user_id=1, role="member", organisation_id=org.id)
    finance = Actor(label="f", kind="person", user_id=2, role="finance")
    acme_admin = Actor(label="v", kind="person", user_id=3, role="vendor_admin", vendor_id=acme)
    other_admin = Actor(label="w", kind="person", user_id=4, role="vendor_admin", vendor_id=other)
    with app.app_context():
        vendor = db.session.get(Vendor, acme)
        for actor in (member, finance, acme_admin):
            with pytest.raises(PermissionDenied):
                document_upload(
                    db.session, actor=actor, vendor=vendor, data={}, content=pdf_bytes()
                )
        with pytest.raises(PermissionDenied):
            document_of(db.session, actor=member, vendor=vendor, document_id=document_id)
        # Another vendor's documents are as if they did not exist.
        with pytest.raises(NotFound):
            document_of(db.session, actor=other_admin, vendor=vendor, document_id=document_id)
        other_vendor = db.session.get(Vendor, other)
        with pytest.raises(NotFound):  # the right vendor in the URL, another's document id
            document_of(db.session, actor=other_admin, vendor=other_vendor, document_id=document_id)
        assert document_of(db.session, actor=finance, vendor=vendor, document_id=document_id)
        assert document_of(db.session, actor=acme_admin, vendor=vendor, document_id=document_id)


# ---------------------------------------------------------------- expiry


def test_documents_are_flagged_thirty_days_before_they_expire(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    in_30 = upload(
        app, "acme-soft", title="soon", issued_on=today, expires_on=today + dt.timedelta(days=30)
    )
    upload(
        app,
        "acme-soft",
        kind="soc2",
        title="later",
        issued_on=today,
        expires_on=today + dt.timedelta(days=31),
    )
    upload(app, "acme-soft", kind="dpa", title="never", issued_on=today, expires_on=None)
    acme = vendor_id(app, "acme-soft")
    with app.app_context():
        flagged = expiring_by_vendor(db.session, actor=SYSTEM, today=today)
        assert [d.id for d in flagged[acme]] == [in_30]
        # A day later the other one is flagged too.
        later = expiring_by_vendor(db.session, actor=SYSTEM, today=today + dt.timedelta(days=1))
        assert len(later[acme]) == 2


def test_a_replacement_of_the_same_kind_clears_the_flag(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    upload(
        app,
        "acme-soft",
        issued_on=today - dt.timedelta(days=300),
        expires_on=today + dt.timedelta(days=10),
    )
    with app.app_context():
        assert expiring_by_vendor(db.session, actor=SYSTEM, today=today)
    upload(app, "acme-soft", issued_on=today, expires_on=today + dt.timedelta(days=400))
    with app.app_context():
        assert expiring_by_vendor(db.session, actor=SYSTEM, today=today) == {}


def test_an_expired_required_document_puts_the_vendor_under_review_once(
    app, make_product, make_user
):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    expires = today + dt.timedelta(days=5)
    document_id = upload(
        app,
        "acme-soft",
        title="ISO cert 2026",
        issued_on=today - dt.timedelta(days=360),
        expires_on=expires,
        required=True,
    )
    upload(
        app,
        "acme-soft",
        kind="other",
        title="optional",
        issued_on=today - dt.timedelta(days=9),
        expires_on=today + dt.timedelta(days=1),
    )
    sent = []

    def receiver(vendor, **kwargs):
        sent.append((vendor.slug, str(kwargs["old_status"]), str(vendor.status)))

    signals.vendor_standing_changed.connect(receiver)
    try:
        # The setting is off: nothing happens, even long after the expiry.
        assert _check(app, expires + dt.timedelta(days=3)) == []
        _review_setting(app, True)
        assert _check(app, expires) == []  # valid through its expiry day
        assert _check(app, expires + dt.timedelta(days=1)) == [document_id]
        vendor = _vendor(app, "acme-soft")
        assert vendor.status == "under_review"
        assert "ISO cert 2026" in vendor.status_note and expires.isoformat() in vendor.status_note
        assert sent == [("acme-soft", "active", "under_review")]
        with app.app_context():
            [event] = db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "vendor.update")
            ).all()
            assert event.actor_label == "job:suppliers.compliance_expiry"
            assert event.after["status"] == "under_review"

        # The council reinstates the vendor: the next days' checks leave it alone.
        admin = make_user("council_admin", second_factor=False)
        with app.app_context():
            council = Actor(label="a", kind="person", user_id=admin.id, role="council_admin")
            vendor_update(
                db.session,
                actor=council,
                vendor=db.session.get(Vendor, vendor.id),
                data={"status": "active", "status_note": "Renewal in progress."},
            )
            db.session.commit()
        assert _check(app, expires + dt.timedelta(days=2)) == []
        assert _check(app, expires + dt.timedelta(days=30)) == []
        assert _vendor(app, "acme-soft").status == "active"
        assert sent[-1] == ("acme-soft", "under_review", "active")
    finally:
        signals.vendor_standing_changed.disconnect(receiver)


def test_a_replaced_document_does_not_put_the_vendor_under_review(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    _review_setting(app, True)
    upload(
        app,
        "acme-soft",
        issued_on=today - dt.timedelta(days=400),
        expires_on=today - dt.timedelta(days=1),
        required=True,
    )
    upload(
        app,
        "acme-soft",
        issued_on=today - dt.timedelta(days=10),
        expires_on=today + dt.timedelta(days=355),
        required=True,
    )
    assert _check(app, today) == []
    assert _vendor(app, "acme-soft").status == "active"


def test_the_job_is_scheduled_daily_and_runs(app, make_product, clock):
    from portal.jobs.queue import REGISTRY, enqueue
    from tests.support import deliver_job

    assert REGISTRY["suppliers.compliance_expiry"].every == dt.timedelta(days=1)
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    _review_setting(app, True)
    upload(
        app,
        "acme-soft",
        issued_on=today - dt.timedelta(days=400),
        expires_on=today - dt.timedelta(days=1),
        required=True,
    )
    with app.app_context():
        job = enqueue(db.session, "suppliers.compliance_expiry", actor=SYSTEM)
        db.session.commit()
        job_id = job.id
    deliver_job(app, job_id)
    assert _vendor(app, "acme-soft").status == "under_review"


def test_the_cli_lists_documents_and_runs_the_check(app, runner, make_product):
    make_product(sku="mail", vendor="acme-soft")
    today = now_utc().date()
    upload(
        app,
        "acme-soft",
        title="Old ISO cert",
        issued_on=today - dt.timedelta(days=400),
        expires_on=today - dt.timedelta(days=2),
        required=True,
    )
    upload(app, "acme-soft", kind="dpa", title="DPA", issued_on=today, expires_on=None)
    listed = runner.invoke(args=["suppliers", "documents", "--vendor", "acme-soft"])
    assert listed.exit_code == 0, listed.output
    assert (
        "acme-soft\tiso27001" in listed.output
        and "expired\trequired\tOld ISO cert" in listed.output
    )
    expiring = runner.invoke(args=["suppliers", "documents", "--expiring"])
    assert "DPA" not in expiring.output and "Old ISO cert" in expiring.output
    missing = runner.invoke(args=["suppliers", "documents", "--vendor", "nobody"])
    assert missing.exit_code != 0 and "No vendor 'nobody'" in missing.output
    off = runner.invoke(args=["suppliers", "compliance-check"])
    assert off.exit_code == 0 and "setting is off" in off.output
    assert _vendor(app, "acme-soft").status == "active"
    _review_setting(app, True)
    on = runner.invoke(args=["suppliers", "compliance-check"])
    assert on.exit_code == 0 and "acme-soft\tunder_review\tOld ISO cert" in on.output
    again = runner.invoke(args=["suppliers", "compliance-check"])
    assert "No newly expired required documents." in again.output


def test_the_setting_is_on_the_council_settings_page(app, signed_in):
    from tests.conftest import post_form
    from tests.settings.test_settings import VALID

    client = signed_in("council_admin")
    page = client.get("/council/settings").get_data(as_text=True)
    assert "Put a vendor under review when a required compliance document expires" in page
    response = post_form(client, "/council/settings", {**VALID, "compliance_review_on_expiry": "y"})
    assert response.status_code == 302
    with app.app_context():
        assert settings_get(db.session).compliance_review_on_expiry is True
    # Unchecked (a checkbox not sent): off again.
    assert post_form(client, "/council/settings", VALID).status_code == 302
    with app.app_context():
        assert settings_get(db.session).compliance_review_on_expiry is False
