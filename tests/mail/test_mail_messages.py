"""Every mail a recorded message, sent by a job: failed with the reason, retried, re-sendable.

The suite's SMTP server (aiosmtpd, tests/conftest.py) takes the messages; a
"silent" server (accepts the connection, never says a word) stands for an SMTP
server that does not answer. Jobs run one delivery at a time through Celery's
task (``apply``), as a worker would, so each try can be looked at.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.identity.models import Invitation
from portal.jobs.models import Job
from portal.kernel.clock import now_utc
from portal.mail import build_message, mail_queue
from portal.mail.models import MailMessage
from portal.mail.services import MAIL_ATTEMPTS
from tests.billing.conftest import billed  # noqa: F401  (the fixture ``issued`` needs)
from tests.billing.factories import issued  # noqa: F401  (a fixture)
from tests.conftest import free_port, post_form
from tests.support import deliver_job


@pytest.fixture
def silent_smtp(app) -> Iterator[int]:
    """A port where something accepts connections and never answers (1 s timeout)."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    timeout = app.config["PORTAL_SMTP_TIMEOUT"]
    app.config["PORTAL_SMTP_TIMEOUT"] = 1
    try:
        yield port
    finally:
        app.config["PORTAL_SMTP_TIMEOUT"] = timeout
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
def received(smtp_server) -> list:
    """What the suite's SMTP server received during this test (jobs are not inline)."""
    _, handler = smtp_server
    handler.messages.clear()
    return handler.messages


def _smtp_port(app, port: int) -> None:
    app.config["PORTAL_SMTP_PORT"] = port


@pytest.fixture
def real_port(app):
    port = app.config["PORTAL_SMTP_PORT"]
    yield port
    app.config["PORTAL_SMTP_PORT"] = port


def _run(app, job_id: int) -> str:
    """One delivery of the job's message, as a worker would run it."""
    return deliver_job(app, job_id)


def _message(app, message_id: int) -> MailMessage:
    with app.app_context():
        row = db.session.get(MailMessage, message_id)
        db.session.expunge_all()
        return row


def _job(app, job_id: int) -> Job:
    with app.app_context():
        row = db.session.get(Job, job_id)
        db.session.expunge_all()
        return row


def _queue_one(app, to: str = "someone@acme.example") -> MailMessage:
    with app.app_context():
        row = mail_queue(
            db.session,
            build_message(
                to=to,
                subject="Reset your portal password",
                template="password_reset",
                link="http://portal.test/password/reset/x",
                minutes=30,
                user=None,
            ),
        )
        db.session.commit()
        message_id = row.id
    return _message(app, message_id)


def test_a_queued_message_is_recorded_with_its_job_and_sealed(app, received):
    row = _queue_one(app)
    assert (row.state, row.attempts, row.kind, row.recipient) == (
        "queued",
        0,
        "password_reset",
        "someone@acme.example",
    )
    assert row.job_id is not None and _job(app, row.job_id).name == "mail.send"
    # The link (a single-use token) is not readable in the database.
    assert "password/reset" not in row.sealed
    assert received == []  # nothing is sent until a worker runs the job


def test_a_rolled_back_change_records_no_message(app):
    with app.app_context():
        mail_queue(
            db.session,
            build_message(
                to="x@acme.example",
                subject="S",
                template="password_reset",
                link="l",
                minutes=1,
                user=None,
            ),
        )
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MailMessage)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


def test_an_smtp_server_that_does_not_answer_fails_with_the_reason_then_is_retried_and_sent(
    app, received, silent_smtp, real_port
):
    row = _queue_one(app)
    _smtp_port(app, silent_smtp)
    assert _run(app, row.job_id) == "retrying"
    failed = _message(app, row.id)
    assert failed.state == "failed"
    assert failed.last_error == "The SMTP server did not answer (timed out)."
    assert failed.attempts == 1 and failed.sent_at is None
    job = _job(app, row.job_id)
    assert (job.state, job.attempts) == ("queued", 1)
    # Tried again later, with backoff: the first retry a minute on.
    assert failed.retry_at is not None
    assert dt.timedelta(seconds=50) < failed.retry_at - now_utc() <= dt.timedelta(seconds=60)
    assert job.retry_at is not None and abs(job.retry_at - failed.retry_at) < dt.timedelta(
        seconds=5
    )
    assert received == []

    _smtp_port(app, real_port)  # the server answers again
    assert _run(app, row.job_id) == "succeeded"
    sent = _message(app, row.id)
    assert (sent.state, sent.attempts, sent.last_error, sent.retry_at) == ("sent", 2, None, None)
    assert sent.sent_at is not None
    assert [m["To"] for m in received] == ["someone@acme.example"]
    assert "http://portal.test/password/reset/x" in received[0].get_content()

    # The job's message coming again (a redelivery) sends nothing twice.
    with app.app_context():
        db.session.execute(sa.update(Job).where(Job.id == row.job_id).values(state="queued"))
        db.session.commit()
    _run(app, row.job_id)
    assert len(received) == 1


def test_backoff_grows_and_the_last_try_leaves_it_failed_for_a_person(app, received, real_port):
    row = _queue_one(app)
    _smtp_port(app, free_port())  # nothing listens: refused at once
    waits = []
    for attempt in range(1, MAIL_ATTEMPTS + 1):
        _run(app, row.job_id)
        message = _message(app, row.id)
        assert (message.state, message.attempts) == ("failed", attempt)
        assert message.last_error == (
            "The SMTP server refused the connection (nothing listens there)."
        )
        if message.retry_at is not None:
            waits.append((message.retry_at - now_utc()).total_seconds())
    assert waits == sorted(waits) and len(waits) == MAIL_ATTEMPTS - 1  # exponential-ish
    assert message.retry_at is None  # no more tries: the page says so
    assert _job(app, row.job_id).state == "failed"
    assert received == []


def _invite(client, path: str, email: str):
    return post_form(
        client, f"{path}/invite", {"invite-email": email, "invite-role": "member"}, token_from=path
    )


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_the_people_page_shows_the_invitation_mail_s_true_state_and_sends_it_again(
    app, signed_in, make_org, received, silent_smtp, real_port
):
    org = make_org("acme")
    admin = signed_in("org_admin", org)
    response = _invite(admin, "/org/users", "newcomer@acme.example")
    assert response.status_code == 302
    page = _text(admin.get("/org/users"))
    assert "Invitation to newcomer@acme.example created; its mail is queued." in page
    assert "Mail to newcomer@acme.example:" in page and "badge-queued" in page

    with app.app_context():
        invitation = db.session.scalar(sa.select(Invitation))
        message = db.session.scalar(
            sa.select(MailMessage).where(MailMessage.related_id == invitation.id)
        )
        assert (message.related_type, message.organisation_id) == ("invitation", org.id)
        message_id, first_job = message.id, message.job_id

    _smtp_port(app, silent_smtp)
    _run(app, first_job)
    page = _text(admin.get("/org/users"))
    assert "badge-failed" in page
    assert "The SMTP server did not answer (timed out)." in page
    assert "Trying again" in page and "Send again" in page

    _smtp_port(app, real_port)
    response = post_form(
        admin, f"/mail/{message_id}/resend", {"next": "/org/users"}, token_from="/org/users"
    )
    assert response.headers["Location"].endswith("/org/users")
    again = _message(app, message_id)
    assert (again.state, again.sends) == ("queued", 2) and again.job_id != first_job
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "mail.resend"))
        assert event is not None and event.target_id == str(message_id)
        assert event.organisation_id == org.id and event.actor_label == admin.user.email
    _run(app, again.job_id)
    page = _text(admin.get("/org/users"))
    assert "badge-sent" in page
    assert [m["To"] for m in received] == ["newcomer@acme.example"]
    # The first job's retry, coming late, sends nothing: the newer request was sent.
    _run(app, first_job)
    assert len(received) == 1
    assert _message(app, message_id).attempts == 2


def test_send_again_is_refused_to_others(app, signed_in, make_org, received):
    acme, other = make_org("acme"), make_org("other")
    admin = signed_in("org_admin", acme)
    _invite(admin, "/org/users", "newcomer@acme.example")
    with app.app_context():
        message = db.session.scalar(sa.select(MailMessage))
        db.session.execute(sa.update(MailMessage).values(state="failed"))
        db.session.commit()
        message_id = message.id
    stranger = signed_in("org_admin", other)
    response = post_form(stranger, f"/mail/{message_id}/resend", {}, token_from="/org/users")
    assert response.status_code == 404
    member = signed_in("member", acme)
    response = post_form(member, f"/mail/{message_id}/resend", {}, token_from="/profile")
    assert response.status_code == 403
    # Without its CSRF token nothing is queued.
    response = admin.post(f"/mail/{message_id}/resend", data={"next": "/org/users"})
    assert response.status_code in (302, 400)
    assert _message(app, message_id).state == "failed"
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "mail.resend")
            )
            == 0
        )


def test_an_invoice_page_shows_its_mail_and_finance_sends_it_again(
    app,
    issued,  # noqa: F811  (the fixture)
    signed_in,
    received,
):
    finance = signed_in("finance")
    page_path = f"/finance/invoices/{issued['invoice_id']}"
    assert "Mail to " not in _text(finance.get(page_path))  # its document job has not run
    with app.app_context():
        (document_job,) = db.session.scalars(
            sa.select(Job.id).where(Job.name == "billing.invoice_document")
        ).all()
    assert _run(app, document_job) == "succeeded"  # renders the PDF, queues the mail
    with app.app_context():  # its message delivered again: the PDF stays, no second mail
        db.session.execute(sa.update(Job).where(Job.id == document_job).values(state="queued"))
        db.session.commit()
    assert _run(app, document_job) == "succeeded"
    page = _text(finance.get(page_path))
    assert "Mail to " in page
    assert "badge-queued" in page
    with app.app_context():
        message = db.session.scalar(
            sa.select(MailMessage).where(
                MailMessage.related_type == "invoice", MailMessage.kind == "invoice_issued"
            )
        )
        message_id, job_id = message.id, message.job_id
    _run(app, job_id)
    page = _text(finance.get(page_path))
    assert "badge-sent" in page and "Send again" in page
    assert len(received) == 1 and received[0]["Subject"].startswith(f"Invoice {issued['number']}")
    response = post_form(
        finance, f"/mail/{message_id}/resend", {"next": page_path}, token_from=page_path
    )
    assert response.headers["Location"].endswith(page_path)
    _run(app, _message(app, message_id).job_id)
    assert len(received) == 2
    attachment = next(received[1].iter_attachments())
    assert attachment.get_filename() == f"{issued['number']}.pdf"
