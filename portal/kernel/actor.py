"""Who is acting, and the four roles (SPEC section 2).

Every service is given an :class:`Actor`: a signed-in user, a CLI operator, an
API or SCIM token, or the system. It is a plain value, so any domain can take it
without importing the identity package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Role(enum.StrEnum):
    """The four roles of SPEC section 2."""

    COUNCIL_ADMIN = "council_admin"
    FINANCE = "finance"
    ORG_ADMIN = "org_admin"
    MEMBER = "member"

    @property
    def is_council(self) -> bool:
        return self in (Role.COUNCIL_ADMIN, Role.FINANCE)

    @property
    def label(self) -> str:
        return {
            Role.COUNCIL_ADMIN: "Council admin",
            Role.FINANCE: "Finance",
            Role.ORG_ADMIN: "Organisation admin",
            Role.MEMBER: "Member",
        }[self]


COUNCIL_ROLES = (Role.COUNCIL_ADMIN, Role.FINANCE)
ORG_ROLES = (Role.ORG_ADMIN, Role.MEMBER)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, a CLI operator, an API token or the system."""

    label: str
    user_id: int | None = None
    role: str | None = None
    organisation_id: int | None = None
    ip: str | None = None

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        """An actor for work the portal does by itself or from the command line."""
        return cls(label=label)

    @classmethod
    def for_user(cls, user: Any, ip: str | None = None) -> Actor:
        """An actor for a signed-in user."""
        return cls(
            label=user.email,
            user_id=user.id,
            role=user.role,
            organisation_id=user.organisation_id,
            ip=ip,
        )

    @property
    def is_council_admin(self) -> bool:
        return self.role == Role.COUNCIL_ADMIN
