"""Reading organisations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.kernel.errors import NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.pagination import Page, paginate
from portal.tenancy.models import Organisation


def organisation_by_slug(session: Session, slug: str, *, field: str | None = None) -> Organisation:
    """The organisation with ``slug``, or :class:`NotFound`; when ``slug`` came from an
    input ``field``, a miss is a validation error of that field."""
    org = session.scalar(sa.select(Organisation).where(Organisation.slug == slug.lower()))
    if org is None:
        if field:
            raise ValidationFailed(
                _l("No organisation “%(slug)s”.", slug=slug),
                errors={field: [_l("No such organisation.")]},
            )
        raise NotFound(_l("No organisation “%(slug)s”.", slug=slug))
    return org


def organisations_list(
    session: Session,
    *,
    search: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 25,
) -> Page[Organisation]:
    """Organisations by name, filtered by a search over slug/name/email and a status."""
    query = sa.select(Organisation).order_by(Organisation.name, Organisation.id)
    if search:
        term = search.strip().lower()
        query = query.where(
            sa.or_(
                sa.func.lower(Organisation.name).contains(term, autoescape=True),
                Organisation.slug.contains(term, autoescape=True),
                sa.func.lower(Organisation.billing_email).contains(term, autoescape=True),
            )
        )
    if status:
        query = query.where(Organisation.status == status)
    return paginate(session, query, page=page, per_page=per_page)


def organisation_status_counts(session: Session) -> dict[str, int]:
    """How many organisations are in each status."""
    rows = session.execute(
        sa.select(Organisation.status, sa.func.count()).group_by(Organisation.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def organisations_after(
    session: Session, *, after_id: int | None, limit: int, status: str | None = None
) -> list[Organisation]:
    """Up to ``limit`` organisations with an id above ``after_id``, by id (API keyset pages)."""
    query = sa.select(Organisation).order_by(Organisation.id).limit(limit)
    if after_id is not None:
        query = query.where(Organisation.id > after_id)
    if status:
        query = query.where(Organisation.status == status)
    return list(session.scalars(query))
