"""What the portal's SCIM server stores, as scim2-models resources: one source for
``/Schemas``, ``/ResourceTypes``, request validation and user PATCHes.

The standard ``User`` schema has some thirty attributes; the portal keeps a
handful. These models declare exactly those, with the mutability the portal
gives them, so the schemas it publishes advertise what is stored and no more,
and whatever they mark writable round-trips through POST, PUT and PATCH:

* ``userName`` — the person's email address (lowercased; on a verified domain).
* ``displayName``, ``name.givenName``, ``name.familyName``, ``externalId``.
* ``active`` — required: the portal always knows it, so a PATCH cannot remove it
  (a POST without it means ``true``; a PUT without it keeps the current value).
* ``emails`` — read-only: the portal keeps one address, ``userName``.
* ``groups`` — read-only, as RFC 7643 §4.1.2 has it.

Groups keep ``displayName``, ``externalId`` and ``members`` (``value``,
``$ref``, ``type``; people only, no nested groups).

Standard attributes these models do not declare (``title``, ``phoneNumbers``,
the enterprise extension, …) are ignored wherever they come: dropped from POST
and PUT bodies and left out of PATCH operations (identity providers send whole
profiles); they are never advertised, so nothing advertised is dropped. A path
that is no SCIM attribute at all is refused (``invalidPath``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field
from scim2_models import (
    CaseExact,
    ComplexAttribute,
    Mutability,
    Required,
    Resource,
    ScimPolicy,
    Uniqueness,
)
from scim2_models import Reference as Ref
from scim2_models.urn import URN

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

# Bodies of POST and PUT: what the portal does not keep is dropped.
LENIENT = ScimPolicy(unknown=ScimPolicy.Unknown.ignore)
# PATCH operations: a path the portal does not keep is refused.
STRICT = ScimPolicy()

MAX_DISPLAY_NAME = 200
MAX_NAME_PART = 100
MAX_EXTERNAL_ID = 255
MAX_GROUP_NAME = 255


class Name(ComplexAttribute):
    """The parts of the person's name the portal keeps."""

    family_name: str | None = None
    """The family name of the User."""

    given_name: str | None = None
    """The given name of the User."""


class Email(ComplexAttribute):
    """The person's address: the portal keeps one, ``userName``."""

    value: Annotated[str | None, Mutability.read_only] = None
    """The email address (``userName``)."""

    type: Annotated[str | None, Mutability.read_only] = None
    """Always ``work``."""

    primary: Annotated[bool | None, Mutability.read_only] = None
    """Always ``true``."""


class GroupRef(ComplexAttribute):
    """A group the person is a member of."""

    value: Annotated[str | None, Mutability.read_only] = None
    """The group's id."""

    ref: Annotated[Ref["Group"] | None, Mutability.read_only] = Field(  # noqa: UP037
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The group's URI."""

    display: Annotated[str | None, Mutability.read_only] = None
    """The group's displayName."""


class User(Resource[Any]):
    """A person of the organisation."""

    __schema__ = URN(USER_SCHEMA)

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = None
    """The person's email address, on one of the organisation's verified domains."""

    name: Name | None = None
    """The components of the person's name."""

    Name: ClassVar[type[ComplexAttribute]] = Name

    display_name: str | None = None
    """The name shown for the person in the portal (at most 200 characters)."""

    active: Annotated[bool | None, Required.true] = None
    """Whether the person may sign in; false releases their seats."""

    emails: Annotated[list[Email] | None, Mutability.read_only] = None
    """The person's address (``userName``)."""

    Emails: ClassVar[type[ComplexAttribute]] = Email

    groups: Annotated[list[GroupRef] | None, Mutability.read_only] = None
    """The groups the person is a member of."""

    Groups: ClassVar[type[ComplexAttribute]] = GroupRef


class GroupMember(ComplexAttribute):
    """A person in the group."""

    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    """The member's id."""

    ref: Annotated[Ref["User"] | None, Mutability.immutable] = Field(  # noqa: UP037
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The member's URI."""

    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])
    """Always ``User``: groups hold people, not groups."""


class Group(Resource[Any]):
    """A group the organisation's identity provider manages."""

    __schema__ = URN(GROUP_SCHEMA)

    display_name: Annotated[str | None, Required.true] = None
    """The group's name, unique in the organisation (at most 255 characters)."""

    members: list[GroupMember] | None = None
    """The people in the group."""

    Members: ClassVar[type[ComplexAttribute]] = GroupMember
