"""Tenant scope: whose rows a piece of work may read and change.

A :class:`Scope` is either council-wide or one organisation. Selectors of
tenant-owned rows take one and there is no default: "every organisation" is
said explicitly with :meth:`Scope.council`, never implied by a missing id.
:func:`scope_of` derives the scope from an :class:`Actor` and refuses an actor
whose scope is unknown (anonymous, or a role without an organisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.errors import PermissionDenied
from portal.kernel.i18n import _l


@dataclass(frozen=True)
class Scope:
    """Council-wide (``organisation_id`` None) or one organisation's rows."""

    organisation_id: int | None

    @classmethod
    def council(cls) -> Scope:
        """Every organisation's rows: council staff, council tokens, council-wide jobs."""
        return cls(None)

    @classmethod
    def organisation(cls, organisation_id: int) -> Scope:
        """One organisation's rows only."""
        if not isinstance(organisation_id, int) or isinstance(organisation_id, bool):
            raise TypeError("An organisation scope needs the organisation's id.")
        return cls(organisation_id)

    @property
    def is_council(self) -> bool:
        return self.organisation_id is None

    def covers(self, organisation_id: int | None) -> bool:
        """Whether a row of ``organisation_id`` is inside this scope."""
        return self.organisation_id is None or self.organisation_id == organisation_id

    def filter(self, column: Any) -> Any:
        """A SQL condition limiting ``column`` (an ``organisation_id`` column) to this scope.

        Council-wide gives ``True`` (no condition), so ``select(...).where(scope.filter(c))``
        reads the same either way.
        """
        if self.organisation_id is None:
            return True
        return column == self.organisation_id


def scope_of(actor: Actor) -> Scope:
    """The scope ``actor``'s work is limited to; :class:`PermissionDenied` if it is unknown."""
    if actor.kind == ActorKind.SYSTEM:
        if actor.organisation_id is None:
            return Scope.council()
        return Scope.organisation(actor.organisation_id)
    if actor.kind == ActorKind.ANONYMOUS or actor.role is None:
        raise PermissionDenied(_l("Sign in to see this."))
    if actor.role in (Role.COUNCIL_ADMIN, Role.FINANCE):
        return Scope.council()
    if actor.role in (Role.ORG_ADMIN, Role.MEMBER) and actor.organisation_id is not None:
        return Scope.organisation(actor.organisation_id)
    raise PermissionDenied(_l("You may not see organisations' data."))
