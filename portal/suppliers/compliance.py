"""Compliance documents of vendors (issue 15): upload, read, remove, expiry.

The council (admins: :data:`Action.VENDOR_DOCUMENT_MANAGE`) uploads a vendor's
certificates and agreements as PDFs with their issue and expiry dates; council staff and
that vendor's admins read them (:data:`Action.VENDOR_DOCUMENT_READ`; another vendor's
document is as if it did not exist). A file must really be a PDF: it starts with
``%PDF-`` and pypdf opens it and finds a page; at most :data:`MAX_DOCUMENT_BYTES`.

Expiry: a document expiring within :data:`EXPIRY_WARNING_DAYS` is flagged on the vendor's
pages. The daily job ``suppliers.compliance_expiry`` looks at the documents marked
*required* whose expiry has passed and which no newer document of the same kind
replaces; when the council's setting ``compliance_review_on_expiry`` is on, it puts an
active vendor under review (a normal standing change: audited, with a note naming the
document, ``signals.vendor_standing_changed`` sent) and remembers the expiry it acted on
(``review_for_expiry``), so a council admin who reinstates the vendor is not overruled the
next day. A new expiry (a replaced document that expires in turn) acts again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator
from sqlalchemy.orm import Session, undefer

from portal.audit.services import audit_record
from portal.catalogue.models import Vendor, VendorStatus
from portal.catalogue.services import vendor_update
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound, ValidationFailed
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.settings.services import settings_get
from portal.suppliers.compliance_models import ComplianceDocument, DocumentKind
from portal.validation import SafeDate, Stripped, parse

log = logging.getLogger("portal.suppliers.compliance")

#: The largest document accepted (10 MiB).
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
#: Documents expiring within this many days are flagged.
EXPIRY_WARNING_DAYS = 30
#: How often the schedule checks expiries.
CHECK_EVERY = dt.timedelta(days=1)
PDF_MAGIC = b"%PDF-"

COUNCIL_ADMINS_ONLY = _l("Only council admins manage vendors' compliance documents.")

KIND_LABELS = {
    DocumentKind.ISO27001: _l("ISO/IEC 27001 certificate"),
    DocumentKind.SOC2: _l("SOC 2 report"),
    DocumentKind.DPA: _l("Data-processing agreement"),
    DocumentKind.OTHER: _l("Other document"),
}


def kind_label(kind: DocumentKind | str) -> str:
    """A document kind in the reader's language."""
    try:
        return str(KIND_LABELS[DocumentKind(kind)])
    except ValueError:
        return str(kind)


class DocumentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["iso27001", "soc2", "dpa", "other"]
    title: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]
    issued_on: SafeDate
    expires_on: SafeDate | None = None
    required: bool = False

    @model_validator(mode="after")
    def _expiry_after_issue(self) -> DocumentFields:
        if self.expires_on is not None and self.expires_on < self.issued_on:
            raise ValueError(_("The expiry date is before the issue date."))
        return self


def _file_error(message: Any) -> ValidationFailed:
    return ValidationFailed(message, errors={"file": [message]})


def check_pdf(content: bytes | None) -> None:
    """Refuse ``content`` unless it is a PDF of at most :data:`MAX_DOCUMENT_BYTES` that
    pypdf can open, with at least one page."""
    if not content:
        raise _file_error(_l("Choose a PDF file."))
    if len(content) > MAX_DOCUMENT_BYTES:
        raise _file_error(
            _l("The file is larger than %(mb)d MB.", mb=MAX_DOCUMENT_BYTES // (1024 * 1024))
        )
    if not content.startswith(PDF_MAGIC):
        raise _file_error(_l("This file is not a PDF."))
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _file_error(_l("This PDF is protected by a password; upload it unprotected."))
        pages = len(reader.pages)
    except ValidationFailed:
        raise
    except Exception as error:  # pypdf raises many kinds on a damaged file
        log.info("compliance document refused: %s", type(error).__name__)
        raise _file_error(_l("This PDF is damaged and cannot be opened.")) from None
    if pages < 1:
        raise _file_error(_l("This PDF has no pages."))


def _safe_filename(name: str | None, kind: str) -> str:
    """The uploaded file's base name, reduced to safe characters (for Content-Disposition)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-")[:150]
    if not base:
        base = f"{kind}"
    if not base.lower().endswith(".pdf"):
        base = f"{base}.pdf"
    return base


def document_upload(
    session: Session,
    *,
    actor: Actor,
    vendor: Vendor,
    data: dict[str, Any],
    content: bytes | None,
    filename: str | None = None,
) -> ComplianceDocument:
    """Keep a PDF of ``vendor`` with its kind, title, issue and expiry dates.

    Every problem (fields and file) is reported at once, as field messages."""
    policy.require(
        actor, Action.VENDOR_DOCUMENT_MANAGE, vendor_id=vendor.id, message=COUNCIL_ADMINS_ONLY
    )
    errors: dict[str, list[str]] = {}
    fields = None
    try:
        fields = parse(DocumentFields, data)
    except ValidationFailed as error:
        errors.update(error.errors)
    try:
        check_pdf(content)
    except ValidationFailed as error:
        errors.update(error.errors)
    if errors or fields is None or content is None:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    document = ComplianceDocument(
        vendor_id=vendor.id,
        kind=DocumentKind(fields.kind),
        title=fields.title,
        issued_on=fields.issued_on,
        expires_on=fields.expires_on,
        required=fields.required,
        filename=_safe_filename(filename, fields.kind),
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_by_id=actor.user_id,
    )
    session.add(document)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="compliance_document.upload",
        target_type="compliance_document",
        target_id=document.id,
        target_label=f"{vendor.slug}/{document.title}",
        after={
            "vendor": vendor.slug,
            "kind": document.kind.value,
            "title": document.title,
            "issued_on": document.issued_on.isoformat(),
            "expires_on": document.expires_on.isoformat() if document.expires_on else None,
            "required": document.required,
            "filename": document.filename,
            "size_bytes": document.size_bytes,
            "sha256": document.sha256,
        },
    )
    return document


def document_delete(session: Session, *, actor: Actor, document: ComplianceDocument) -> None:
    """Remove a document (uploaded by mistake, or replaced); the audit log keeps its facts."""
    policy.require(
        actor,
        Action.VENDOR_DOCUMENT_MANAGE,
        vendor_id=document.vendor_id,
        message=COUNCIL_ADMINS_ONLY,
    )
    audit_record(
        session,
        actor=actor,
        action="compliance_document.delete",
        target_type="compliance_document",
        target_id=document.id,
        target_label=f"{document.vendor.slug}/{document.title}",
        before={
            "kind": document.kind.value,
            "title": document.title,
            "expires_on": document.expires_on.isoformat() if document.expires_on else None,
            "sha256": document.sha256,
        },
    )
    session.delete(document)
    session.flush()


# ---------------------------------------------------------------- reads


def documents_of(session: Session, *, actor: Actor, vendor: Vendor) -> list[ComplianceDocument]:
    """The vendor's documents, newest expiry first (without their content)."""
    policy.require(actor, Action.VENDOR_DOCUMENT_READ, vendor_id=vendor.id)
    return list(
        session.scalars(
            sa.select(ComplianceDocument)
            .where(ComplianceDocument.vendor_id == vendor.id)
            .order_by(
                ComplianceDocument.kind,
                ComplianceDocument.expires_on.desc().nulls_first(),
                ComplianceDocument.id.desc(),
            )
        )
    )


def document_of(
    session: Session, *, actor: Actor, vendor: Vendor, document_id: int, content: bool = False
) -> ComplianceDocument:
    """One document of ``vendor`` (with its content when asked); NotFound otherwise."""
    policy.require(actor, Action.VENDOR_DOCUMENT_READ, vendor_id=vendor.id)
    query = sa.select(ComplianceDocument).where(
        ComplianceDocument.id == document_id, ComplianceDocument.vendor_id == vendor.id
    )
    if content:
        query = query.options(undefer(ComplianceDocument.content))
    document = session.scalar(query)
    if document is None:
        raise NotFound(_l("No such document."))
    return document


def expiring_by_vendor(
    session: Session, *, actor: Actor, today: dt.date, within_days: int = EXPIRY_WARNING_DAYS
) -> dict[int, list[ComplianceDocument]]:
    """Documents expired or expiring within ``within_days``, by vendor id, for the vendors
    ``actor`` may read documents of (council: all; a vendor admin: its own)."""
    reach = policy.reach_of(actor, Action.VENDOR_DOCUMENT_READ)
    if reach is None:
        return {}
    query = sa.select(ComplianceDocument).where(
        ComplianceDocument.expires_on.is_not(None),
        ComplianceDocument.expires_on <= today + dt.timedelta(days=within_days),
    )
    if reach != policy.Reach.ANY:
        if actor.vendor_id is None:
            return {}
        query = query.where(ComplianceDocument.vendor_id == actor.vendor_id)
    found: dict[int, list[ComplianceDocument]] = {}
    for document in session.scalars(query.order_by(ComplianceDocument.expires_on)):
        if _superseded(session, document, today):
            continue
        found.setdefault(document.vendor_id, []).append(document)
    return found


def _superseded(session: Session, document: ComplianceDocument, today: dt.date) -> bool:
    """Whether another document of the same vendor and kind is in force today and lasts
    longer (it replaces this one)."""
    assert document.expires_on is not None
    return (
        session.scalar(
            sa.select(ComplianceDocument.id)
            .where(
                ComplianceDocument.vendor_id == document.vendor_id,
                ComplianceDocument.kind == document.kind,
                ComplianceDocument.id != document.id,
                ComplianceDocument.issued_on <= today,
                sa.or_(
                    ComplianceDocument.expires_on.is_(None),
                    ComplianceDocument.expires_on > document.expires_on,
                ),
            )
            .limit(1)
        )
        is not None
    )


# ---------------------------------------------------------------- the daily check


def compliance_expiry_check(
    session: Session, *, actor: Actor, today: dt.date
) -> list[ComplianceDocument]:
    """Put vendors under review for their expired required documents (when the council's
    setting says so), once per expiry; the documents acted on."""
    policy.require(actor, Action.JOB_RUN)
    if not settings_get(session).compliance_review_on_expiry:
        return []
    expired = session.scalars(
        sa.select(ComplianceDocument)
        .where(
            ComplianceDocument.required.is_(True),
            ComplianceDocument.expires_on < today,
            sa.or_(
                ComplianceDocument.review_for_expiry.is_(None),
                ComplianceDocument.review_for_expiry != ComplianceDocument.expires_on,
            ),
        )
        .order_by(ComplianceDocument.vendor_id, ComplianceDocument.id)
        .with_for_update(of=ComplianceDocument)
    ).all()
    acted = []
    for document in expired:
        if _superseded(session, document, today):
            continue
        vendor = session.get(Vendor, document.vendor_id, with_for_update=True)
        assert vendor is not None and document.expires_on is not None
        document.review_for_expiry = document.expires_on
        document.reviewed_at = now_utc()
        acted.append(document)
        if vendor.status != VendorStatus.ACTIVE:
            continue  # already under review or suspended: nothing to add
        note = _(
            "Under review: the required document “%(title)s” (%(kind)s) expired on %(day)s.",
            title=document.title,
            kind=kind_label(document.kind),
            day=document.expires_on.isoformat(),
        )
        vendor_update(
            session,
            actor=actor,
            vendor=vendor,
            data={"status": VendorStatus.UNDER_REVIEW.value, "status_note": note[:500]},
        )
    session.flush()
    return acted


@job("suppliers.compliance_expiry", max_attempts=3, backoff=(300, 1800), every=CHECK_EVERY)
def compliance_expiry_job(session: Session, *, actor: Actor) -> None:
    """Put vendors whose required documents expired under review (the council's setting)."""
    policy.require(actor, Action.JOB_RUN)
    compliance_expiry_check(session, actor=actor, today=now_utc().date())
