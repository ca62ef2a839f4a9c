"""The invoice document: a real PDF from the same template as the page, stored and mailed once."""

from __future__ import annotations

import io

import pypdf
import pytest

from portal.billing import documents
from portal.billing.models import Invoice
from portal.db import db
from portal.tenancy.models import Organisation
from tests.billing.factories import draft, finalize, invoice_of

# The PDF is rendered and mailed by the job billing.invoice_document: run inline here.
pytestmark = pytest.mark.usefixtures("jobs_inline")


def _text_of(pdf: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return len(reader.pages), " ".join(page.extract_text() for page in reader.pages)


def test_the_stored_pdf_is_the_finalised_invoice(app, issued, mailbox):
    invoice = invoice_of(app, issued["invoice_id"])
    assert invoice.pdf.startswith(b"%PDF")
    pages, text = _text_of(invoice.pdf)
    assert pages == 1
    words = " ".join(text.split())
    assert f"Invoice {issued['number']}" in words
    assert "Org acme" in words and issued["period"] in words
    assert "€300.00" in words and "Tax (19%) €57.00" in words and "Total €357.00" in words
    # manual billing: the council's bank details and the payment reference
    assert "IBAN" in words and issued["number"] in words.split("reference", 1)[1]


def test_the_pdf_is_mailed_once_to_the_billing_contact(app, billed, mailbox):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    assert mailbox == []  # drafts are not sent
    number = finalize(app, invoice_id)
    [message] = mailbox
    assert message["To"] == "billing@acme.example"
    assert message["Subject"] == f"Invoice {number} for {billed['period']}"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "quoting the payment reference " + number in body
    assert f"/org/invoices/{invoice_id}" in body
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"{number}.pdf"
    assert attachment.get_content() == invoice_of(app, invoice_id).pdf


def test_a_rolled_back_finalisation_mails_nothing_and_keeps_no_pdf(app, billed, mailbox):
    from portal.billing import lifecycle
    from tests.conftest import SYSTEM

    invoice_id = draft(app, billed["org"].id, billed["period"])
    with app.app_context():
        lifecycle.invoice_finalize(
            db.session, actor=SYSTEM, invoice=db.session.get(Invoice, invoice_id)
        )
        db.session.rollback()
    assert mailbox == []
    invoice = invoice_of(app, invoice_id)
    assert (invoice.status, invoice.number, invoice.pdf) == ("draft", None, None)


def test_stripe_billed_invoices_say_so_instead_of_bank_details(app, billed):
    with app.app_context():
        db.session.get(Organisation, billed["org"].id).billing_provider = "stripe"
        db.session.commit()
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finalize(app, invoice_id)
    _, text = _text_of(invoice_of(app, invoice_id).pdf)
    assert "Stripe" in text and "IBAN" not in text


def test_reverse_charge_is_noted_on_the_document(app, billed):
    with app.app_context():
        db.session.get(Organisation, billed["org"].id).reverse_charge = True
        db.session.commit()
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finalize(app, invoice_id)
    _, text = _text_of(invoice_of(app, invoice_id).pdf)
    words = " ".join(text.split())
    assert (
        "Tax (reverse charge) €0.00" in words and "Reverse charge: VAT is to be accounted" in words
    )


def test_the_page_and_the_pdf_come_from_one_template(app, issued, signed_in):
    """The web page includes the same document the PDF was rendered from."""
    admin = signed_in("org_admin", issued["org"])
    page = admin.get(f"/org/invoices/{issued['invoice_id']}").get_data(as_text=True)
    assert 'class="invoice-doc"' in page
    with app.app_context():
        invoice = db.session.get(Invoice, issued["invoice_id"])
        again = documents.invoice_pdf_render(db.session, invoice)
        assert _text_of(again)[1] == _text_of(invoice.pdf)[1]
        assert documents.pdf_filename(invoice) == f"{issued['number']}.pdf"
