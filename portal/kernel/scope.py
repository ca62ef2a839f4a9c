"""Tenant scope: the organisation an actor's reads are limited to."""

from __future__ import annotations

from portal.kernel.actor import Actor, Role


def organisation_scope(actor: Actor) -> int | None:
    """The organisation an actor's reads are limited to (None: every organisation).

    Council staff (and the system) read every organisation; anyone else only
    their own. Selectors take the result as ``organisation_id``.
    """
    if actor.role in (Role.COUNCIL_ADMIN, Role.FINANCE, None):
        return None
    return actor.organisation_id
