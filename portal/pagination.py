"""Page-number pagination for pages (the API uses cursors, in ``portal.api``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of results and where it sits among the others."""

    items: list[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(
    session: Session, query: sa.Select, *, page: int, per_page: int, total: int | None = None
) -> Page:
    """Run ``query`` for one page and count the whole (unless the caller knows ``total``,
    the number of rows ``query`` returns, from figures it reads anyway).

    ``page`` comes from the address (``?page=``) and may be any number a client
    typed: a page past the last is empty without asking the database, so
    ``?page=99999999999999999999`` never becomes an offset past what a database
    integer holds.
    """
    page = max(1, page)
    if total is None:
        total = session.scalar(
            sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
        )
    offset = (page - 1) * per_page
    if offset >= (total or 0):
        return Page(items=[], page=page, per_page=per_page, total=total or 0)
    items = list(session.scalars(query.limit(per_page).offset(offset)).unique())
    return Page(items=items, page=page, per_page=per_page, total=total or 0)
