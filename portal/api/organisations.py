"""``/organisations``: the council's tenants (council tokens only).

Request bodies are the tenancy services' own pydantic models, so the API, the
pages and the CLI share one set of rules and messages.
"""

from __future__ import annotations

from typing import Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from portal.api import pagination
from portal.api.auth import COUNCIL, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import ApiModel, ListQuery, SlugPath
from portal.db import db_session
from portal.kernel.policy import Action
from portal.tenancy import selectors, services
from portal.tenancy.models import Organisation

tag = Tag(name="Organisations", description="Member organisations (tenants) of the council.")


class OrganisationCreate(services.OrganisationCreate, ApiModel):
    """What council staff give to create an organisation."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "slug": "globex",
                "name": "Globex Ltd",
                "country": "GB",
                "currency": "GBP",
                "billing_email": "accounts@globex.example",
            }
        }
    )


class OrganisationUpdate(services.OrganisationUpdate, ApiModel):
    """A partial change of an organisation's profile; a field left out or null stays."""


class OrganisationOut(BaseModel):
    """A member organisation."""

    slug: str
    name: str
    country: str = Field(description="ISO 3166-1 alpha-2")
    currency: str = Field(description="Billing currency, ISO 4217")
    tax_id: str | None
    billing_email: str
    status: Literal["pending", "active", "suspended", "closed"]
    tax_rate_bp: int | None = Field(
        description="Tax rate in basis points (2000 = 20%); null: the council's default"
    )
    reverse_charge: bool
    billing_provider: Literal["stripe", "manual"]

    @classmethod
    def of(cls, org: Organisation) -> OrganisationOut:
        return cls.model_validate(org, from_attributes=True)


class OrganisationList(BaseModel):
    """One page of organisations."""

    data: list[OrganisationOut]
    next_cursor: str | None


class OrganisationListQuery(ListQuery):
    status: Literal["pending", "active", "suspended", "closed"] | None = None


def _serialise(org: Organisation) -> dict:
    return OrganisationOut.of(org).model_dump(mode="json")


@route(
    "post",
    "/organisations",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.ORGANISATION_CREATE,
    responses={201: OrganisationOut},
    errors=[409],
    creates=True,
)
def organisation_create(body: OrganisationCreate) -> Response:
    """Create an organisation (it starts active); 409 `slug_taken` for a taken slug."""
    org = services.organisation_create(
        db_session(), actor=current_actor(), data=body.model_dump(exclude_unset=True)
    )
    return reply(OrganisationOut.of(org), 201)


@route(
    "get",
    "/organisations",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.ORGANISATION_READ,
    responses={200: OrganisationList},
)
def organisations_list(query: OrganisationListQuery) -> Response:
    """List organisations, oldest first, optionally of one status."""
    rows = selectors.organisations_after(
        db_session(),
        after_id=pagination.decode_cursor(query.cursor),
        limit=query.limit + 1,
        status=query.status,
    )
    return reply(pagination.page(rows, limit=query.limit, serialise=_serialise, key=_id))


@route(
    "get",
    "/organisations/<slug>",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.ORGANISATION_READ,
    responses={200: OrganisationOut},
    errors=[404],
)
def organisation_get(path: SlugPath) -> Response:
    """One organisation by slug."""
    return reply(OrganisationOut.of(selectors.organisation_by_slug(db_session(), path.slug)))


@route(
    "patch",
    "/organisations/<slug>",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.ORGANISATION_UPDATE,
    responses={200: OrganisationOut},
    errors=[404],
)
def organisation_update(path: SlugPath, body: OrganisationUpdate) -> Response:
    """Change some of an organisation's fields (the slug and status stay)."""
    org = services.organisation_update(
        db_session(),
        actor=current_actor(),
        organisation=selectors.organisation_by_slug(db_session(), path.slug),
        data=body.model_dump(exclude_unset=True),
    )
    return reply(OrganisationOut.of(org))


def _id(org: Organisation) -> int:
    return org.id
