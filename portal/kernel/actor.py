"""Who is acting (an :class:`Actor` of an explicit :class:`ActorKind`) and the roles.

Every service is given an :class:`Actor`: a signed-in person, an API or SCIM
token, the system (a job, the CLI, a webhook), or an anonymous visitor. It is a
plain value, so any domain can take it without importing the identity package.

An actor built without a kind is **anonymous**, and an anonymous actor may do
nothing that :mod:`portal.kernel.policy` does not explicitly allow: authorization
fails closed (SPEC invariant 10).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from portal.kernel.i18n import _, _l


class Role(enum.StrEnum):
    """The roles of SPEC sections 2 and 8.1."""

    COUNCIL_ADMIN = "council_admin"
    FINANCE = "finance"
    ORG_ADMIN = "org_admin"
    MEMBER = "member"
    VENDOR_ADMIN = "vendor_admin"

    @property
    def is_council(self) -> bool:
        return self in (Role.COUNCIL_ADMIN, Role.FINANCE)

    @property
    def label(self) -> str:
        """The role's name in the reader's language."""
        labels: dict[Role, str] = {
            Role.COUNCIL_ADMIN: _("Council admin"),
            Role.FINANCE: _("Finance"),
            Role.ORG_ADMIN: _("Organisation admin"),
            Role.MEMBER: _("Member"),
            Role.VENDOR_ADMIN: _("Vendor admin"),
        }
        return labels[self]


COUNCIL_ROLES = (Role.COUNCIL_ADMIN, Role.FINANCE)
ORG_ROLES = (Role.ORG_ADMIN, Role.MEMBER)


class ActorKind(enum.StrEnum):
    """What kind of thing is acting."""

    PERSON = "person"
    API_TOKEN = "api_token"  # noqa: S105 (a kind of actor, not a secret)
    SCIM_TOKEN = "scim_token"  # noqa: S105
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


def _role(value: Role | str | None) -> Role | None:
    """``value`` as a :class:`Role`; an unknown string is no role at all (fails closed)."""
    if value is None or isinstance(value, Role):
        return value
    try:
        return Role(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Actor:
    """Who is acting. Build one with the class methods; the bare constructor is anonymous."""

    label: str
    kind: ActorKind = ActorKind.ANONYMOUS
    user_id: int | None = None
    role: Role | None = None
    organisation_id: int | None = None
    vendor_id: int | None = None
    ip: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", _role(self.role))
        object.__setattr__(self, "kind", ActorKind(self.kind))

    # ------------------------------------------------------------ kinds
    @classmethod
    def anonymous(cls, ip: str | None = None) -> Actor:
        """A visitor who has not signed in."""
        return cls(label=_l("anonymous"), kind=ActorKind.ANONYMOUS, ip=ip)

    @classmethod
    def system(
        cls, label: str = "system", *, organisation_id: int | None = None, ip: str | None = None
    ) -> Actor:
        """Work the portal does by itself: a job, the CLI, a provider's callback.

        With ``organisation_id`` it acts for that one organisation only (for example
        single sign-on creating a member's account); without it, council-wide.
        """
        return cls(label=label, kind=ActorKind.SYSTEM, organisation_id=organisation_id, ip=ip)

    @classmethod
    def person(cls, user: Any, ip: str | None = None) -> Actor:
        """A signed-in person acting in their role."""
        return cls(
            label=user.email,
            kind=ActorKind.PERSON,
            user_id=user.id,
            role=user.role,
            organisation_id=user.organisation_id,
            vendor_id=getattr(user, "vendor_id", None),
            ip=ip,
        )

    for_user = person

    @classmethod
    def api_token(
        cls,
        label: str,
        *,
        role: Role,
        organisation_id: int | None = None,
        vendor_id: int | None = None,
        ip: str | None = None,
    ) -> Actor:
        """An API token acting in the role its scope grants."""
        return cls(
            label=label,
            kind=ActorKind.API_TOKEN,
            role=role,
            organisation_id=organisation_id,
            vendor_id=vendor_id,
            ip=ip,
        )

    @classmethod
    def scim_token(cls, label: str, *, organisation_id: int, ip: str | None = None) -> Actor:
        """An organisation's SCIM client: its admin, for provisioning people only."""
        return cls(
            label=label,
            kind=ActorKind.SCIM_TOKEN,
            role=Role.ORG_ADMIN,
            organisation_id=organisation_id,
            ip=ip,
        )

    # ------------------------------------------------------------ questions
    @property
    def is_system(self) -> bool:
        return self.kind == ActorKind.SYSTEM

    @property
    def is_anonymous(self) -> bool:
        return self.kind == ActorKind.ANONYMOUS

    @property
    def is_council_admin(self) -> bool:
        return self.role == Role.COUNCIL_ADMIN and self.kind != ActorKind.ANONYMOUS
