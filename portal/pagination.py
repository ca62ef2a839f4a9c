"""Page-number pagination for pages (the API uses cursors, in ``portal.api``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session

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
    session: Session,
    query: sa.Select,
    *,
    page: int,
    per_page: int,
    total: int | None = None,
    key: sa.ColumnElement[Any] | QueryableAttribute[Any] | None = None,
) -> Page:
    """Run ``query`` for one page and count the whole (unless the caller knows ``total``,
    the number of rows ``query`` returns, from figures it reads anyway).

    ``key``, the primary key of the one entity ``query`` selects: the page's rows are chosen
    by their keys alone first (``query``'s filter and order, inside the same statement),
    then read with the relationships the entity loads by joins. Without it the database may
    join every row of the whole list before it sorts and keeps a page of them (a page of 50
    of a subscription's 1,000 seat holders joined 1,000 holders to their accounts and
    organisations: 9.1 ms against 1.7 ms at the scale of docs/PERFORMANCE.md).

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
    if key is None:
        chosen = query.limit(per_page).offset(offset)
    else:
        chosen = query.where(key.in_(query.with_only_columns(key).limit(per_page).offset(offset)))
    items = list(session.scalars(chosen).unique())
    return Page(items=items, page=page, per_page=per_page, total=total or 0)
