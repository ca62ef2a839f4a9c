"""The invoice document: one Jinja template for the web page and the PDF.

``templates/billing/_invoice_document.html`` is the invoice itself. The web
pages include it inside the portal's layout; :func:`invoice_pdf_render`
includes it in a bare print page and hands that to WeasyPrint (A4), with the
same stylesheet (``static/invoice.css``). So what finance reviews, what the
organisation sees and the PDF it receives cannot drift apart.

The invoice speaks its organisation's language (``organisations.invoice_language``,
English when none is set; docs/I18N.md): the PDF, its mail and the lines drafted for it.
The seller (legal name, address, tax id, bank account) comes from the council settings,
the buyer (name, address, tax id) from the organisation's profile.

On finalisation (the :data:`~portal.signals.invoice_finalised` signal, in the
same transaction) the job ``billing.invoice_document`` is enqueued: a worker
renders the PDF once and stores it on the invoice (the document the organisation
received is kept as it was sent), then queues its mail to the organisation's
billing contact (a recorded message, :mod:`portal.mail`). Until the job has run,
the PDF offered for download is rendered on the fly from the same, final data.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from babel import Locale
from flask import current_app, render_template
from sqlalchemy.orm import Session

from portal import i18n
from portal.billing.models import Invoice, InvoiceStatus
from portal.jobs.queue import enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.mail.models import MailMessage
from portal.settings.services import settings_get
from portal.signals import invoice_finalised

# WeasyPrint's font machinery (fontconfig, pango) is not documented as thread-safe;
# renders are short (~0.1 s), so one at a time per process.
_RENDER_LOCK = threading.Lock()


def invoice_language(organisation: Any) -> str:
    """The language of an organisation's invoices (PDF, mail, lines): its choice, or English."""
    return i18n.supported(getattr(organisation, "invoice_language", None)) or "en"


def country_name(code: str) -> str:
    """A country in the language being spoken: ``LV`` → "Latvia" / "Латвия"."""
    return Locale.parse(i18n.language()).territories.get(code, code)


def document_context(session: Session, invoice: Invoice) -> dict[str, Any]:
    """What the invoice template needs besides the invoice: the seller and the buyer."""
    organisation = invoice.organisation
    manual = organisation.billing_provider == "manual"
    settings = settings_get(session)
    council_name = current_app.config["PORTAL_COUNCIL_NAME"]
    return {
        "invoice": invoice,
        "organisation": organisation,
        "buyer_country": country_name(organisation.country),
        "council_name": council_name,
        "seller": {
            "name": settings.seller_legal_name or council_name,
            "address": settings.seller_address,
            "tax_id": settings.seller_tax_id,
            "iban": settings.seller_iban,
            "bic": settings.seller_bic,
        },
        "bank_details": settings.bank_details if manual else None,
        "manual": manual,
    }


def _stylesheet() -> Path:
    return Path(current_app.static_folder or "static") / "invoice.css"


def pdf_render(html: str) -> bytes:
    """A print page (``html``) as a PDF with the documents' stylesheet (``static/invoice.css``),
    one render at a time: invoices here, purchase orders (portal.procurement.documents)."""
    from weasyprint import CSS, HTML  # imported on first use: it loads pango

    with _RENDER_LOCK:
        return HTML(string=html, base_url=str(_stylesheet().parent)).write_pdf(
            stylesheets=[CSS(filename=str(_stylesheet()))]
        )


def invoice_pdf_render(session: Session, invoice: Invoice) -> bytes:
    """The invoice as an A4 PDF in its organisation's language, rendered now."""
    with i18n.in_language(invoice_language(invoice.organisation)):
        html = render_template("billing/invoice_pdf.html", **document_context(session, invoice))
    return pdf_render(html)


def invoice_pdf(session: Session, invoice: Invoice) -> bytes:
    """The PDF to hand out: the one stored at finalisation, or a preview of a draft."""
    if invoice.status != InvoiceStatus.DRAFT and invoice.pdf:
        return invoice.pdf
    return invoice_pdf_render(session, invoice)


def pdf_filename(invoice: Invoice) -> str:
    """``INV-2026-000001.pdf``, or ``draft-acme-2026-05.pdf`` before a number is given."""
    if invoice.number:
        return f"{invoice.number}.pdf"
    return f"draft-{invoice.organisation.slug}-{invoice.period}.pdf"


@invoice_finalised.connect
def _store_and_send_later(invoice: Invoice, *, session: Session, actor: Actor, **_: Any) -> None:
    """Enqueue the job that renders the finalised invoice's PDF and mails it (same transaction)."""
    enqueue(session, "billing.invoice_document", {"invoice_id": invoice.id}, actor=actor)


@job("billing.invoice_document", max_attempts=4, backoff=(30, 300, 1800))
def invoice_document_job(session: Session, *, actor: Actor, invoice_id: int) -> None:
    """Render and store a finalised invoice's PDF, then queue its mail; each once.

    Run again (a redelivery, a retry after the mail could not be queued), it keeps the
    stored PDF and queues no second mail: the recorded message is the memory. A voided
    invoice keeps its document but is not mailed as issued.
    """
    policy.require(actor, Action.JOB_RUN)
    invoice = session.scalars(
        # Only the invoice's row: PostgreSQL refuses FOR UPDATE on the organisation's
        # outer join (the eager ``Invoice.organisation``).
        sa.select(Invoice).where(Invoice.id == invoice_id).with_for_update(of=Invoice)
    ).one_or_none()
    if invoice is None or invoice.status == InvoiceStatus.DRAFT:
        return
    if invoice.pdf is None:
        invoice.pdf = invoice_pdf_render(session, invoice)
        session.flush()
    mailed = session.scalar(
        sa.select(MailMessage.id).where(
            MailMessage.kind == "invoice_issued",
            MailMessage.related_type == "invoice",
            MailMessage.related_id == invoice.id,
        )
    )
    if mailed is None and invoice.status != InvoiceStatus.VOID:
        invoice_mail_queue(session, invoice)


def invoice_mail_queue(session: Session, invoice: Invoice) -> None:
    """Queue the finalised invoice's mail, its stored PDF attached, to the billing contact."""
    assert invoice.pdf is not None
    organisation = invoice.organisation
    with i18n.in_language(invoice_language(organisation)):
        message = build_message(
            to=organisation.billing_email,
            subject=_(
                "Invoice %(number)s for %(period)s", number=invoice.number, period=invoice.period
            ),
            template="invoice_issued",
            **document_context(session, invoice),
        )
    message.add_attachment(
        invoice.pdf, maintype="application", subtype="pdf", filename=pdf_filename(invoice)
    )
    mail_queue(
        session, message, organisation_id=invoice.organisation_id, related=("invoice", invoice.id)
    )
