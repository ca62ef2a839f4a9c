"""Who handles invoices: council finance and council admins (and the portal itself)."""

from __future__ import annotations

from portal.kernel.actor import Actor, Role
from portal.kernel.errors import PermissionDenied

# None: the system actor (the CLI, jobs, Stripe's webhooks).
FINANCE_ROLES = (None, Role.COUNCIL_ADMIN, Role.FINANCE)


def require_finance(actor: Actor) -> None:
    """Refuse anyone but council finance, council admins and the system."""
    if actor.role not in FINANCE_ROLES:
        raise PermissionDenied("Only council finance and council admins handle invoices.")
