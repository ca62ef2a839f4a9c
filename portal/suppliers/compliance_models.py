"""Compliance documents of vendors (issue 15): certificates and agreements the council keeps.

A document is a PDF the council uploaded for one vendor (an ISO 27001 or SOC 2 certificate,
a data-processing agreement), with its issue and expiry dates. It is stored in the
database (``content``, deferred: lists never load it). Council-wide (no organisation):
the council reads and manages every vendor's documents, a vendor admin reads its own
vendor's (:data:`portal.kernel.policy.Action.VENDOR_DOCUMENT_READ`, ``own_vendor``).
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from portal.catalogue.models import Vendor
from portal.db import Base, BigIntId, TimestampMixin, UTCDateTime, enum_column


class DocumentKind(enum.StrEnum):
    """What a compliance document is."""

    ISO27001 = "iso27001"
    SOC2 = "soc2"
    DPA = "dpa"
    OTHER = "other"


class ComplianceDocument(TimestampMixin, Base):
    """A certificate or agreement of a vendor, as a PDF with its issue and expiry dates."""

    __tablename__ = "compliance_documents"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('iso27001', 'soc2', 'dpa', 'other')", name="kind_known"),
        sa.CheckConstraint(
            "expires_on IS NULL OR expires_on >= issued_on", name="expiry_after_issue"
        ),
        sa.CheckConstraint("size_bytes > 0", name="size_positive"),
        sa.Index("ix_compliance_documents_vendor_kind", "vendor_id", "kind"),
        sa.Index("ix_compliance_documents_expires_on", "expires_on"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[DocumentKind] = mapped_column(enum_column(DocumentKind, 16), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    issued_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    #: None: the document does not expire (an agreement in force until terminated)
    expires_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: its expiry puts the vendor under review when the council's setting says so
    required: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    filename: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    size_bytes: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    content: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary, nullable=False))
    uploaded_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    #: the expiry date for which the daily check put the vendor under review (once per
    #: expiry: a council admin who reinstates the vendor is not overruled the next day)
    review_for_expiry: Mapped[dt.date | None] = mapped_column(sa.Date)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    vendor: Mapped[Vendor] = relationship(lazy="joined")

    def expired(self, today: dt.date) -> bool:
        return self.expires_on is not None and self.expires_on < today

    def expiring(self, today: dt.date, *, within_days: int) -> bool:
        """Expires within ``within_days`` from ``today`` (and has not yet)."""
        return self.expires_on is not None and today <= self.expires_on <= today + dt.timedelta(
            days=within_days
        )
