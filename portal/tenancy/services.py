"""Writes on organisations: create, apply, edit, and the status lifecycle.

Every function takes the database session and the acting :class:`Actor`, flushes
but does not commit, records an audit event, and raises a domain error when a
rule refuses the change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.orm import Session

from portal.audit.services import audit_record, changed, snapshot
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import Conflict, InvalidState, PermissionDenied, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action, Reach
from portal.signals import organisation_status_changed
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.validation import (
    Country,
    Currency,
    Email,
    OptionalText,
    Slug,
    Stripped,
    check_slug,
    errors_from,
    parse,
)

Name = Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]
# Spelled out (not optional_text()/optional_int() calls) so that they are types to mypy.
TaxId = Annotated[Annotated[str, StringConstraints(max_length=64)] | None, OptionalText]
Reason = Annotated[Annotated[str, StringConstraints(max_length=500)] | None, OptionalText]
Note = Annotated[Annotated[str, StringConstraints(max_length=2000)] | None, OptionalText]
TaxRate = Annotated[Annotated[int, Field(ge=0, le=10000)] | None, OptionalText]
# The buyer on invoices (issue 14): postal address, and the language of its invoices.
BillingAddress = Annotated[Annotated[str, StringConstraints(max_length=500)] | None, OptionalText]
InvoiceLanguage = Annotated[Literal["en", "ru"] | None, OptionalText]

PROFILE_FIELDS = (
    "name",
    "country",
    "currency",
    "tax_id",
    "billing_email",
    "billing_provider",
    "tax_rate_bp",
    "reverse_charge",
    "billing_address",
    "invoice_language",
)
AUDIT_FIELDS = ("slug", *PROFILE_FIELDS, "status")

# Which fields an organisation's own admin may change; the rest are the council's.
ORG_ADMIN_EDITABLE = {"name", "tax_id", "billing_email", "billing_address", "invoice_language"}


class OrganisationCreate(BaseModel):
    """What council staff give to create an organisation."""

    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Name
    country: Country
    currency: Currency
    tax_id: TaxId = None
    billing_email: Email
    billing_provider: Literal["stripe", "manual"] = "manual"
    tax_rate_bp: TaxRate = None
    reverse_charge: bool = False
    billing_address: BillingAddress = None
    invoice_language: InvoiceLanguage = None


class OrganisationApplication(BaseModel):
    """What a company gives on the public membership page."""

    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Name
    country: Country
    currency: Currency
    tax_id: TaxId = None
    billing_email: Email
    applicant_name: Name
    applicant_email: Email
    note: Note = None


class OrganisationUpdate(BaseModel):
    """A partial change of an organisation's profile."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    country: Country | None = None
    currency: Currency | None = None
    tax_id: TaxId = None
    billing_email: Email | None = None
    billing_provider: Literal["stripe", "manual"] | None = None
    tax_rate_bp: TaxRate = None
    reverse_charge: bool | None = None
    billing_address: BillingAddress = None
    invoice_language: InvoiceLanguage = None


# The allowed status transitions: from -> {to: audit action}.
TRANSITIONS: dict[OrganisationStatus, dict[OrganisationStatus, str]] = {
    OrganisationStatus.PENDING: {
        OrganisationStatus.ACTIVE: "organisation.approve",
        OrganisationStatus.CLOSED: "organisation.decline",
    },
    OrganisationStatus.ACTIVE: {
        OrganisationStatus.SUSPENDED: "organisation.suspend",
        OrganisationStatus.CLOSED: "organisation.close",
    },
    OrganisationStatus.SUSPENDED: {
        OrganisationStatus.ACTIVE: "organisation.reactivate",
        OrganisationStatus.CLOSED: "organisation.close",
    },
    OrganisationStatus.CLOSED: {},
}

# Each action's target status (an action leads to one status from wherever it is allowed).
ACTION_TARGETS: dict[str, OrganisationStatus] = {
    event.removeprefix("organisation."): target
    for moves in TRANSITIONS.values()
    for target, event in moves.items()
}


# An organisation's status and the lifecycle's actions, as words inside a sentence.
STATUS_NAMES = {
    OrganisationStatus.PENDING: _l("pending"),
    OrganisationStatus.ACTIVE: _l("active"),
    OrganisationStatus.SUSPENDED: _l("suspended"),
    OrganisationStatus.CLOSED: _l("closed"),
}
ACTION_NAMES = {
    "approve": _l("approve"),
    "decline": _l("decline"),
    "suspend": _l("suspend"),
    "reactivate": _l("reactivate"),
    "close": _l("close"),
}
# The actions as button labels.
ACTION_LABELS = {
    "approve": _l("Approve"),
    "decline": _l("Decline"),
    "suspend": _l("Suspend"),
    "reactivate": _l("Reactivate"),
    "close": _l("Close"),
}


def status_actions(status: OrganisationStatus) -> list[tuple[str, OrganisationStatus]]:
    """The lifecycle's actions from ``status``, in order: (action, the status it leads to)."""
    return [(event.removeprefix("organisation."), to) for to, event in TRANSITIONS[status].items()]


COUNCIL_ADMINS_ONLY = _l("Only council admins manage organisations.")


def _slug_taken(session: Session, slug: str) -> bool:
    return session.scalar(sa.select(Organisation.id).where(Organisation.slug == slug)) is not None


def organisation_problems(
    session: Session, *, data: dict[str, Any], kind: str = "create"
) -> dict[str, list[str]]:
    """Every field's problem with an organisation's ``data``, all at once (empty: none).

    ``kind``: ``create`` (council staff), ``apply`` (the public application) or ``update``
    (a partial change; the slug is not checked). The pydantic rules and whether the slug is
    free are checked together, so a form shows every message on its first submit (a bad
    tax rate does not hide a taken slug or a bad email). Nothing is written.
    """
    models: dict[str, type[BaseModel]] = {
        "create": OrganisationCreate,
        "apply": OrganisationApplication,
        "update": OrganisationUpdate,
    }
    model = models[kind]
    errors: dict[str, list[str]] = {}
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors = errors_from(exc)
    if kind != "update" and "slug" not in errors:
        try:
            slug = check_slug(str(data.get("slug") or "").strip())
        except ValueError:
            slug = None
        if slug and _slug_taken(session, slug):
            errors["slug"] = [str(_l("This slug is taken; choose another."))]
    return errors


def _validated(
    session: Session,
    model: type[OrganisationCreate] | type[OrganisationApplication],
    data: dict[str, Any],
) -> Any:
    """``data`` as ``model``, or one refusal naming every field's problem."""
    errors = organisation_problems(
        session, data=data, kind="apply" if model is OrganisationApplication else "create"
    )
    if not errors:
        return parse(model, data)
    try:
        fields = model.model_validate(data)
    except ValidationError:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors) from None
    raise Conflict(  # every field passed its rules: the one problem is the taken slug
        _l("The slug “%(slug)s” is taken by another organisation.", slug=fields.slug),
        code="slug_taken",
        errors=errors,
    )


def organisation_create(session: Session, *, actor: Actor, data: dict[str, Any]) -> Organisation:
    """Create an organisation on behalf of council staff; it starts ``active``."""
    policy.require(actor, Action.ORGANISATION_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = _validated(session, OrganisationCreate, data)
    org = Organisation(status=OrganisationStatus.ACTIVE, **fields.model_dump())
    session.add(org)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="organisation.create",
        target_type="organisation",
        target_id=org.id,
        target_label=org.slug,
        organisation_id=org.id,
        after=snapshot(org, AUDIT_FIELDS),
    )
    return org


def organisation_apply(session: Session, *, actor: Actor, data: dict[str, Any]) -> Organisation:
    """Record an application from the public membership page; it starts ``pending``."""
    policy.require(actor, Action.ORGANISATION_APPLY)
    fields = _validated(session, OrganisationApplication, data)
    values = fields.model_dump()
    org = Organisation(
        status=OrganisationStatus.PENDING,
        application_note=values.pop("note"),
        **values,
    )
    session.add(org)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="organisation.apply",
        target_type="organisation",
        target_id=org.id,
        target_label=org.slug,
        organisation_id=org.id,
        after=snapshot(org, AUDIT_FIELDS),
    )
    return org


def organisation_update(
    session: Session, *, actor: Actor, organisation: Organisation, data: dict[str, Any]
) -> Organisation:
    """Change an organisation's profile. Org admins may change only their own contact fields."""
    policy.require(
        actor,
        Action.ORGANISATION_UPDATE,
        organisation_id=organisation.id,
        message=COUNCIL_ADMINS_ONLY,
    )
    if policy.reach_of(actor, Action.ORGANISATION_UPDATE) != Reach.ANY:
        not_allowed = set(data) - ORG_ADMIN_EDITABLE
        if not_allowed:
            raise PermissionDenied(
                _l(
                    "Only the council can change %(fields)s.", fields=", ".join(sorted(not_allowed))
                ),
                errors={field: [_l("Only the council can change this.")] for field in not_allowed},
            )
    fields = parse(OrganisationUpdate, data)
    given = fields.model_dump(include=set(data))
    before = snapshot(organisation, AUDIT_FIELDS)
    for key, value in given.items():
        if value is None and key not in (
            "tax_id",
            "tax_rate_bp",
            "billing_address",
            "invoice_language",
        ):
            continue
        setattr(organisation, key, value)
    session.flush()
    old, new = changed(before, snapshot(organisation, AUDIT_FIELDS))
    if new:
        audit_record(
            session,
            actor=actor,
            action="organisation.update",
            target_type="organisation",
            target_id=organisation.id,
            target_label=organisation.slug,
            organisation_id=organisation.id,
            before=old,
            after=new,
        )
    return organisation


def organisation_transition(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    to_status: str,
    reason: str | None = None,
    action: str | None = None,
) -> Organisation:
    """Move an organisation to ``to_status`` if the lifecycle allows it.

    ``action`` (``approve``, ``decline``, ``suspend``, ``reactivate``, ``close``),
    when given, must be the name of that transition from the current status: a
    page asking to *decline* an application must not close an active member.
    The row is locked first so two staff members acting at once cannot both
    apply a transition from the same old state.
    """
    policy.require(
        actor,
        Action.ORGANISATION_TRANSITION,
        organisation_id=organisation.id,
        message=COUNCIL_ADMINS_ONLY,
    )
    reason = parse(_ReasonModel, {"reason": reason}).reason
    locked = session.execute(
        sa.select(Organisation).where(Organisation.id == organisation.id).with_for_update()
    ).scalar_one()
    session.refresh(locked)
    allowed = TRANSITIONS[locked.status]
    try:
        target = OrganisationStatus(to_status)
    except ValueError as exc:
        raise InvalidState(
            _l("“%(status)s” is not an organisation status.", status=to_status)
        ) from exc
    if action is not None and allowed.get(target) != f"organisation.{action}":
        raise InvalidState(
            _l(
                "%(name)s is %(status)s; you cannot %(action)s it.",
                name=locked.name,
                status=STATUS_NAMES[locked.status],
                action=ACTION_NAMES.get(action, action),
            ),
            code="invalid_transition",
        )
    if target not in allowed:
        raise InvalidState(
            _l(
                "%(name)s is %(status)s; it cannot become %(target)s.",
                name=locked.name,
                status=STATUS_NAMES[locked.status],
                target=STATUS_NAMES[target],
            ),
            code="invalid_transition",
        )
    before = {"status": locked.status, "status_reason": locked.status_reason}
    locked.status = target
    locked.status_reason = (
        reason if target in (OrganisationStatus.SUSPENDED, OrganisationStatus.CLOSED) else None
    )
    session.flush()
    audit_record(
        session,
        actor=actor,
        action=allowed[target],
        target_type="organisation",
        target_id=locked.id,
        target_label=locked.slug,
        organisation_id=locked.id,
        before=before,
        after={"status": locked.status, "status_reason": locked.status_reason},
    )
    organisation_status_changed.send(
        locked, session=session, actor=actor, old_status=before["status"]
    )
    return locked


class _ReasonModel(BaseModel):
    reason: Reason = None
