"""Helpers of the compliance-document tests: a real small PDF, a document made by the service."""

from __future__ import annotations

import datetime as dt
import io

import sqlalchemy as sa

from portal.catalogue.models import Vendor
from portal.db import db
from tests.conftest import SYSTEM


def pdf_bytes(pages: int = 1, text: str = "certificate") -> bytes:
    """A real PDF made by pypdf (blank pages, the text in its metadata)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": text})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def vendor_id(app, slug: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == slug))


def upload(
    app,
    slug: str,
    *,
    kind: str = "iso27001",
    title: str = "ISO 27001 certificate",
    issued_on: dt.date,
    expires_on: dt.date | None,
    required: bool = False,
) -> int:
    """A document of the vendor ``slug``, uploaded by the system; its id."""
    from portal.suppliers.compliance import document_upload

    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        document = document_upload(
            db.session,
            actor=SYSTEM,
            vendor=vendor,
            data={
                "kind": kind,
                "title": title,
                "issued_on": issued_on.isoformat(),
                "expires_on": expires_on.isoformat() if expires_on else None,
                "required": required,
            },
            content=pdf_bytes(),
            filename=f"{kind}.pdf",
        )
        db.session.commit()
        return document.id
