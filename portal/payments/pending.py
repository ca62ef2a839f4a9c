"""Collections to attempt once the session's transaction commits.

A service that makes a collection due (an invoice finalised, a new payment
method, an admin asking for a retry) notes its invoice here, inside its
transaction; :mod:`portal.payments.collection` makes the attempts after the
commit (never inside a transaction) and forgets them on rollback. This module
sits below both the services that note and the one that attempts, so neither
imports the other.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

_KEY = "portal_payments_collect"


def collect_after_commit(session: Session, invoice_id: int) -> None:
    """Attempt the collection of ``invoice_id`` once ``session`` commits (nothing on rollback)."""
    session.info.setdefault(_KEY, []).append(invoice_id)


def take_pending(session: Session) -> list[int]:
    """The invoices noted in ``session`` (each once, in order), and forget them."""
    return list(dict.fromkeys(session.info.pop(_KEY, None) or []))


def forget_pending(session: Session) -> None:
    """Drop what ``session`` noted (its transaction rolled back)."""
    session.info.pop(_KEY, None)
