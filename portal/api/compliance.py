"""A vendor's compliance documents over the API (issue 15): list and download.

* ``GET /vendors/{slug}/documents``: the documents' details (kind, title, issue and expiry
  dates, whether required, expiring within 30 days or expired, size and SHA-256);
* ``GET /vendors/{slug}/documents/{id}.pdf``: the PDF itself.

A council token reads every vendor's; a vendor token its own vendor's only (another
vendor's answers 404, as if it were not there); an organisation token 403. Uploading
stays on the council's pages (a multipart form with the PDF check's messages beside
its fields; see docs/SUPPLIERS.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Response
from pydantic import BaseModel, Field

from portal.api.auth import COUNCIL, VENDOR, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import MAX_ID, SlugPath
from portal.api.vendors import tag
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.suppliers import compliance
from portal.suppliers.compliance_models import ComplianceDocument


class DocumentPath(SlugPath):
    id: int = Field(ge=1, le=MAX_ID, description="The document's id")


class DocumentOut(BaseModel):
    id: int
    kind: Literal["iso27001", "soc2", "dpa", "other"]
    title: str
    issued_on: dt.date
    expires_on: dt.date | None = Field(description="None: it does not expire")
    required: bool = Field(
        description="Its expiry puts the vendor under review (when the council's setting is on)"
    )
    expiring: bool = Field(description="It expires within 30 days")
    expired: bool
    filename: str
    size_bytes: int
    sha256: str
    uploaded_at: dt.datetime
    download: str = Field(description="The API path of the PDF")

    @classmethod
    def of(cls, document: ComplianceDocument, slug: str, today: dt.date) -> DocumentOut:
        return cls(
            id=document.id,
            kind=document.kind.value,
            title=document.title,
            issued_on=document.issued_on,
            expires_on=document.expires_on,
            required=document.required,
            expiring=document.expiring(today, within_days=compliance.EXPIRY_WARNING_DAYS),
            expired=document.expired(today),
            filename=document.filename,
            size_bytes=document.size_bytes,
            sha256=document.sha256,
            uploaded_at=document.created_at,
            download=f"/api/v1/vendors/{slug}/documents/{document.id}.pdf",
        )


class DocumentList(BaseModel):
    data: list[DocumentOut]


PDF_RESPONSE = {
    "description": "The document as uploaded (application/pdf)",
    "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
}


@route(
    "get",
    "/vendors/<slug>/documents",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_DOCUMENT_READ,
    responses={200: DocumentList},
    errors=[404],
)
def vendor_documents(path: SlugPath) -> Response:
    """The vendor's compliance documents (certificates, agreements), by kind."""
    session = db_session()
    vendor = vendor_by_slug(session, path.slug)
    documents = compliance.documents_of(session, actor=current_actor(), vendor=vendor)
    today = now_utc().date()
    return reply(DocumentList(data=[DocumentOut.of(d, vendor.slug, today) for d in documents]))


@route(
    "get",
    "/vendors/<slug>/documents/<int:id>.pdf",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_DOCUMENT_READ,
    responses={200: PDF_RESPONSE},  # type: ignore[dict-item]
    errors=[404],
)
def vendor_document_pdf(path: DocumentPath) -> Response:
    """One compliance document's PDF, as a download."""
    session = db_session()
    vendor = vendor_by_slug(session, path.slug)
    document = compliance.document_of(
        session, actor=current_actor(), vendor=vendor, document_id=path.id, content=True
    )
    return Response(
        document.content,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{document.filename}"',
            "Cache-Control": "private, no-store",
        },
    )
