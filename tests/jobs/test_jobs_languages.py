"""The Jobs page in both languages (issue 14): jobs named with a human label, states translated."""

from __future__ import annotations

import html

from portal.db import db
from portal.jobs.labels import JOB_LABELS, job_label
from portal.jobs.models import Job
from portal.jobs.queue import REGISTRY
from portal.kernel.clock import now_utc


def _add(app, name: str, state: str) -> int:
    with app.app_context():
        row = Job(
            name=name,
            arguments={},
            state=state,
            attempts=1,
            max_attempts=3,
            enqueued_by="finance@council.example",
            enqueued_at=now_utc(),
        )
        db.session.add(row)
        db.session.commit()
        return row.id


def test_every_declared_job_has_a_label(app):
    assert "billing.invoice_run" in REGISTRY  # the app declared its jobs
    declared = {name for name in REGISTRY if not name.startswith("tests.")}  # not the tests' own
    assert declared <= set(JOB_LABELS), declared - set(JOB_LABELS)
    assert job_label("some.future_job") == "some.future_job"  # unknown: its name


def test_jobs_are_named_and_their_states_read_in_the_reader_s_language(app, signed_in):
    _add(app, "billing.invoice_run", "failed")
    _add(app, "payments.collect", "queued")
    admin = signed_in("council_admin")
    english = html.unescape(admin.get("/council/jobs").get_data(as_text=True))
    assert "Invoice run" in english and "Card payment collection" in english
    assert "billing.invoice_run" in english  # the code stays beside the label
    assert "2 jobs, newest first" in english
    russian = html.unescape(
        admin.get("/council/jobs", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    )
    assert "Выставление счетов" in russian and "Списание оплаты с карт" in russian
    assert "Сбой (1)" in russian and "В очереди (1)" in russian
    assert "2 задания, сначала новые" in russian
    assert ">сбой</span>" in russian and "Повторить задание" in russian
