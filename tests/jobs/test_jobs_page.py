"""The council's Jobs page: who sees it, retry and cancel (POST, CSRF, audited), paging."""

from __future__ import annotations

import datetime as dt
import html

import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.jobs.models import Job
from portal.kernel.clock import now_utc
from tests.conftest import csrf_token, flashes


def _add(app, **fields) -> int:
    values = {
        "name": "billing.invoice_run",
        "arguments": {"run_id": 1},
        "state": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "enqueued_by": "finance@council.example",
        "enqueued_at": now_utc(),
        **fields,
    }
    with app.app_context():
        row = Job(**values)
        db.session.add(row)
        db.session.commit()
        return row.id


def _state(app, job_id: int) -> tuple[str, int]:
    with app.app_context():
        row = db.session.get(Job, job_id)
        return row.state.value, row.attempts


def _audit(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)).all()
        db.session.expunge_all()
        return rows


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_council_admins_see_queued_running_failed_and_retried_jobs(app, signed_in):
    _add(app, name="payments.collect", arguments={})
    _add(app, state="running", attempts=1, started_at=now_utc())
    failed = _add(
        app,
        state="failed",
        attempts=3,
        last_error="ConnectionError: Stripe did not answer",
        finished_at=now_utc(),
    )
    admin = signed_in("council_admin")
    page = _text(admin.get("/council/jobs"))
    assert "payments.collect" in page and "billing.invoice_run" in page
    assert "run_id=1" in page
    assert "ConnectionError: Stripe did not answer" in page
    assert "Traceback" not in page
    assert f"Retry job {failed}" in page and f"Cancel job {failed}" in page
    failed_only = _text(admin.get("/council/jobs?show=failed"))
    assert "ConnectionError" in failed_only and "payments.collect" not in failed_only
    retried = _text(admin.get("/council/jobs?show=retried"))
    assert "ConnectionError" in retried and "payments.collect" not in retried
    assert "Failed (1)" in page and "Queued (1)" in page and "Running (1)" in page
    assert admin.get("/council/jobs?show=nonsense").status_code == 200


def test_finance_reads_the_page_without_buttons_and_may_not_act(app, signed_in):
    failed = _add(app, state="failed", attempts=3, last_error="ValueError: x")
    finance = signed_in("finance")
    page = _text(finance.get("/council/jobs"))
    assert "ValueError: x" in page and "Retry job" not in page and "Cancel job" not in page
    token = csrf_token(finance, "/council/jobs")
    response = finance.post(f"/council/jobs/{failed}/retry", data={"csrf_token": token})
    assert response.status_code == 403
    assert _state(app, failed) == ("failed", 3)
    assert _audit(app, "job.retry") == []


def test_others_may_not_see_the_page(app, signed_in, make_org, client):
    org = make_org("acme")
    assert signed_in("org_admin", org).get("/council/jobs").status_code == 403
    assert signed_in("member", org).get("/council/jobs").status_code == 403
    anonymous = client.get("/council/jobs")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    job_id = _add(app, state="failed", attempts=1)
    assert client.post(f"/council/jobs/{job_id}/retry").status_code in (302, 400)
    assert _state(app, job_id) == ("failed", 1)


def test_a_council_admin_retries_a_failed_job_audited(app, signed_in):
    failed = _add(app, state="failed", attempts=3, last_error="ValueError: x")
    admin = signed_in("council_admin")
    token = csrf_token(admin, "/council/jobs")
    response = admin.post(f"/council/jobs/{failed}/retry?show=failed", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/council/jobs?show=failed")
    assert _state(app, failed) == ("queued", 0)
    with app.app_context():
        assert db.session.get(Job, failed).dispatched_at is not None  # sent after the commit
    (event,) = _audit(app, "job.retry")
    assert (event.target_type, event.target_id, event.target_label) == (
        "job",
        str(failed),
        "billing.invoice_run",
    )
    assert event.actor_label == admin.user.email
    page = admin.get("/council/jobs")
    assert f"Job {failed} (Invoice run) queued again." in flashes(page)


def test_a_council_admin_cancels_a_queued_job_audited(app, signed_in):
    queued = _add(app)
    admin = signed_in("council_admin")
    token = csrf_token(admin, "/council/jobs")
    assert (
        admin.post(f"/council/jobs/{queued}/cancel", data={"csrf_token": token}).status_code == 302
    )
    assert _state(app, queued) == ("cancelled", 0)
    assert [e.target_id for e in _audit(app, "job.cancel")] == [str(queued)]
    # A running or finished job can be neither cancelled nor retried.
    running = _add(app, state="running", attempts=1)
    done = _add(app, state="succeeded", attempts=1, finished_at=now_utc())
    for job_id, verb in ((running, "cancel"), (done, "retry"), (done, "cancel")):
        response = admin.post(
            f"/council/jobs/{job_id}/{verb}", data={"csrf_token": token}, follow_redirects=True
        )
        assert response.status_code == 200
        assert any("can be" in message for message in flashes(response)), flashes(response)
    assert (_state(app, running), _state(app, done)) == (("running", 1), ("succeeded", 1))
    assert len(_audit(app, "job.cancel")) == 1 and _audit(app, "job.retry") == []


def test_a_form_without_its_csrf_token_changes_nothing(app, signed_in):
    queued = _add(app)
    admin = signed_in("council_admin")
    assert admin.post(f"/council/jobs/{queued}/cancel", data={}).status_code == 400
    assert _state(app, queued) == ("queued", 0)
    token = csrf_token(admin, "/council/jobs")
    missing = admin.post(
        "/council/jobs/999999/cancel", data={"csrf_token": token}, follow_redirects=True
    )
    assert "No such job." in flashes(missing)
    assert (
        admin.post(f"/council/jobs/{queued}/delete", data={"csrf_token": token}).status_code == 404
    )


def test_the_page_is_paginated_newest_first(app, signed_in):
    start = now_utc() - dt.timedelta(hours=2)
    with app.app_context():
        db.session.add_all(
            Job(
                name=f"tests.job-{i:02d}",
                arguments={},
                state="succeeded",
                attempts=1,
                max_attempts=1,
                enqueued_by="test",
                enqueued_at=start + dt.timedelta(minutes=i),
                finished_at=start + dt.timedelta(minutes=i),
            )
            for i in range(55)
        )
        db.session.commit()
    admin = signed_in("council_admin")
    first = _text(admin.get("/council/jobs"))
    assert "tests.job-54" in first and "tests.job-05" in first and "tests.job-04" not in first
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = _text(admin.get("/council/jobs?page=2"))
    assert "tests.job-04" in second and "tests.job-00" in second and "tests.job-05" not in second
    assert admin.get("/council/jobs?page=99999999999999999999").status_code == 200
