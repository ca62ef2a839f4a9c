"""The invoice document: one Jinja template for the web page and the PDF.

``templates/billing/_invoice_document.html`` is the invoice itself. The web
pages include it inside the portal's layout; :func:`invoice_pdf_render`
includes it in a bare print page and hands that to WeasyPrint (A4), with the
same stylesheet (``static/invoice.css``). So what finance reviews, what the
organisation sees and the PDF it receives cannot drift apart.

On finalisation (the :data:`~portal.signals.invoice_finalised` signal, in the
same transaction) the PDF is rendered once and stored on the invoice: the
document the organisation received is kept as it was sent. It is mailed to the
organisation's billing contact after the transaction commits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from sqlalchemy.orm import Session

from portal.billing.models import Invoice, InvoiceStatus
from portal.kernel.actor import Actor
from portal.mail import build_message, mail_queue
from portal.settings.services import settings_get
from portal.signals import invoice_finalised

# WeasyPrint's font machinery (fontconfig, pango) is not documented as thread-safe;
# renders are short (~0.1 s), so one at a time per process.
_RENDER_LOCK = threading.Lock()


def document_context(session: Session, invoice: Invoice) -> dict[str, Any]:
    """What the invoice template needs besides the invoice."""
    organisation = invoice.organisation
    manual = organisation.billing_provider == "manual"
    return {
        "invoice": invoice,
        "organisation": organisation,
        "council_name": current_app.config["PORTAL_COUNCIL_NAME"],
        "bank_details": settings_get(session).bank_details if manual else None,
        "manual": manual,
    }


def _stylesheet() -> Path:
    return Path(current_app.static_folder or "static") / "invoice.css"


def invoice_pdf_render(session: Session, invoice: Invoice) -> bytes:
    """The invoice as an A4 PDF, rendered now from the document template."""
    from weasyprint import CSS, HTML  # imported on first use: it loads pango

    html = render_template("billing/invoice_pdf.html", **document_context(session, invoice))
    with _RENDER_LOCK:
        return HTML(string=html, base_url=str(_stylesheet().parent)).write_pdf(
            stylesheets=[CSS(filename=str(_stylesheet()))]
        )


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
def _store_and_send(invoice: Invoice, *, session: Session, actor: Actor, **_: Any) -> None:
    """Render the finalised invoice's PDF into the invoice, and mail it to the billing contact."""
    invoice.pdf = invoice_pdf_render(session, invoice)
    session.flush()
    organisation = invoice.organisation
    message = build_message(
        to=organisation.billing_email,
        subject=f"Invoice {invoice.number} for {invoice.period}",
        template="invoice_issued",
        **document_context(session, invoice),
    )
    message.add_attachment(
        invoice.pdf, maintype="application", subtype="pdf", filename=pdf_filename(invoice)
    )
    mail_queue(
        session, message, organisation_id=invoice.organisation_id, related=("invoice", invoice.id)
    )
