"""Who manages an organisation's subscriptions and seats.

Council admins (and the system, an actor without a role) manage every
organisation's; an org admin manages their own organisation's only, and another
organisation's subscription is :class:`~portal.kernel.errors.NotFound` to them
(it is not said to exist). Everyone else is refused. Metering's idle-seat
decisions follow the same rule.
"""

from __future__ import annotations

from portal.kernel.actor import Actor, Role
from portal.kernel.errors import NotFound, PermissionDenied


def require_seat_manager(actor: Actor, organisation_id: int) -> None:
    """Refuse unless ``actor`` manages ``organisation_id``'s subscriptions and seats."""
    if actor.role is None or actor.role == Role.COUNCIL_ADMIN:
        return
    if actor.role == Role.ORG_ADMIN:
        if actor.organisation_id != organisation_id:
            raise NotFound("No such subscription.")
        return
    raise PermissionDenied("Only your organisation's admin manages subscriptions and seats.")
