"""Jobs and their states as people read them (the Jobs page, refusals).

A job's ``name`` (``billing.invoice_run``) and state (``failed``) are codes: they stay
English in the database, the API and the audit log. People read these labels instead, in
their language; a job declared without a label here shows its name.
"""

from __future__ import annotations

from portal.kernel.i18n import _l

JOB_LABELS = {
    "billing.invoice_run": _l("Invoice run"),
    "billing.invoice_document": _l("Invoice document (PDF)"),
    "billing.overdue_reminders": _l("Overdue reminders"),
    "payments.collect": _l("Card payment collection"),
    "payments.webhook_apply": _l("Stripe event"),
    "mail.send": _l("Mail"),
    "metering.usage_partitions": _l("Usage partitions"),
    "metering.idle_seat_prompts": _l("Idle seat prompts"),
    "notifications.seat_holders": _l("Notifications to seat holders"),
    "notifications.daily_digest": _l("Org admins' daily digest"),
    "notifications.sweep": _l("Old notifications deleted"),
    "suppliers.poll_status": _l("Vendors' status pages read"),
    "suppliers.compliance_expiry": _l("Compliance documents' expiry check"),
    "procurement.pool_reminders": _l("Pool renewal reminders"),
    "provisioning.deliver": _l("Provisioning deliveries"),
    "provisioning.sweep": _l("Provisioning deliveries due"),
    "provisioning.reconcile": _l("Provisioning reconciliation"),
    "provisioning.reconcile_run": _l("Reconciliation asked for"),
    "seats.fold_counts": _l("Seat figures folded"),
}

STATE_LABELS = {
    "queued": _l("queued"),
    "running": _l("running"),
    "succeeded": _l("succeeded"),
    "failed": _l("failed"),
    "cancelled": _l("cancelled"),
    "retried": _l("retried"),
}


def job_label(name: str) -> str:
    """The human name of job ``name`` in the reader's language (the name itself if unknown)."""
    label = JOB_LABELS.get(name)
    return str(label) if label is not None else name


def state_label(state: str) -> str:
    """A job state (or the page's "retried" filter) in the reader's language."""
    label = STATE_LABELS.get(state)
    return str(label) if label is not None else state
