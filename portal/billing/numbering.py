"""Gapless document numbers: ``{PREFIX}-{YYYY}-{NNNNNN}`` (invariant 4).

The counter row of a prefix and year is locked (``SELECT … FOR UPDATE``) and
incremented in the transaction that finalises the document. Concurrent
finalisations queue on that lock; a rolled-back one gives its number back.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.billing.models import DocumentCounter


def next_number(session: Session, *, prefix: str, year: int) -> str:
    """The next number of ``prefix`` in ``year``, taken inside the caller's transaction."""
    counter = session.scalar(
        sa.select(DocumentCounter)
        .where(DocumentCounter.prefix == prefix, DocumentCounter.year == year)
        .with_for_update()
    )
    if counter is None:
        try:
            with session.begin_nested():
                session.add(DocumentCounter(prefix=prefix, year=year, last_value=0))
        except IntegrityError:
            pass  # another transaction created it first; lock theirs below
        counter = session.scalar(
            sa.select(DocumentCounter)
            .where(DocumentCounter.prefix == prefix, DocumentCounter.year == year)
            .with_for_update()
        )
        assert counter is not None
    session.refresh(counter)
    counter.last_value += 1
    session.flush()
    return f"{prefix}-{year:04d}-{counter.last_value:06d}"
