"""The purchase order document: one Jinja template for the web page and the PDF.

``templates/procurement/_po_document.html`` is the order itself; the detail page
includes it in the portal's layout and :func:`purchase_order_pdf_render` in a bare A4
print page handed to WeasyPrint with the invoices' stylesheet (``static/invoice.css``),
as :mod:`portal.billing.documents` does for invoices. The PDF is rendered when the order
is sent and kept as it was sent; the vendor's contact gets it attached to a recorded
message (:mod:`portal.mail`). Vendors have no language of their own in the portal, so
their document and mail are in English.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template
from sqlalchemy.orm import Session

from portal import i18n
from portal.billing.documents import pdf_render
from portal.kernel.actor import Actor
from portal.kernel.i18n import _
from portal.mail import build_message, mail_queue
from portal.procurement.models import PurchaseOrder
from portal.settings.services import settings_get

#: The language of what the vendor receives.
VENDOR_LANGUAGE = "en"


def document_context(session: Session, po: PurchaseOrder) -> dict[str, Any]:
    """What the order's template needs besides the order: the buyer (the council)."""
    settings = settings_get(session)
    council_name = current_app.config["PORTAL_COUNCIL_NAME"]
    return {
        "po": po,
        "vendor": po.vendor,
        "council_name": council_name,
        "buyer": {
            "name": settings.seller_legal_name or council_name,
            "address": settings.seller_address,
            "tax_id": settings.seller_tax_id,
        },
    }


def purchase_order_pdf_render(session: Session, po: PurchaseOrder) -> bytes:
    """The order as an A4 PDF, rendered now (in the vendor's language, English)."""
    with i18n.in_language(VENDOR_LANGUAGE):
        html = render_template("procurement/po_pdf.html", **document_context(session, po))
    return pdf_render(html)


def purchase_order_pdf(session: Session, po: PurchaseOrder) -> bytes:
    """The PDF to hand out: the one sent, or one rendered now before it was sent."""
    return po.pdf or purchase_order_pdf_render(session, po)


def pdf_filename(po: PurchaseOrder) -> str:
    """``PO-2027-000001.pdf``, or ``purchase-order-draft-12.pdf`` before approval."""
    return f"{po.number}.pdf" if po.number else f"purchase-order-draft-{po.id}.pdf"


def purchase_order_mail_queue(session: Session, po: PurchaseOrder, *, actor: Actor) -> None:
    """Queue the order's mail, its PDF attached, to the vendor's contact."""
    assert po.pdf is not None and po.sent_to
    with i18n.in_language(VENDOR_LANGUAGE):
        message = build_message(
            to=po.sent_to,
            subject=_("Purchase order %(number)s", number=po.number),
            template="purchase_order",
            **document_context(session, po),
        )
    message.add_attachment(po.pdf, maintype="application", subtype="pdf", filename=pdf_filename(po))
    mail_queue(session, message, related=("purchase_order", po.id), actor=actor)
