"""Writes on suppliers: service status (and its history), incidents, the status page URL,
the vendor's profile (issue 15, SPEC 8.2).

Who may act: council admins on any vendor; a vendor admin (a person or a vendor API token)
on its own vendor only (``policy.require(..., vendor_id=vendor.id)``: another vendor's is
"not found"); the system (the Statuspage poller, the CLI) on any. Each change is audited
and sends its signal once: ``vendor_service_status_changed`` when the status changes,
``vendor_incident_changed`` with ``change=opened|impact_changed|updated|resolved``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record, changed, snapshot
from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
from portal.catalogue.services import Url
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, PermissionDenied, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.signals import vendor_incident_changed, vendor_service_status_changed
from portal.suppliers.models import (
    Incident,
    IncidentImpact,
    IncidentState,
    IncidentUpdate,
    VendorStatusInterval,
)
from portal.validation import Country, OptionalText, Stripped, optional_text, parse

#: How the council signs an incident update (a page shows it as _("The council")).
COUNCIL_AUTHOR = "The council"
TITLE_MAX = 200
MESSAGE_MAX = 500
BODY_MAX = 5000
URL_MAX = 500

Title = Annotated[str, Stripped, StringConstraints(min_length=1, max_length=TITLE_MAX)]
Body = Annotated[str, Stripped, StringConstraints(min_length=1, max_length=BODY_MAX)]


def _choice(enum_class: type[Any], value: Any, field: str) -> Any:
    """``value`` as a member of ``enum_class`` or a 422 naming the field and the choices."""
    if isinstance(value, enum_class):
        return value
    if isinstance(value, str):
        try:
            return enum_class(value.strip())
        except ValueError:
            pass
    choices = ", ".join(member.value for member in enum_class)
    raise ValidationFailed(
        _l("Some fields need attention."),
        errors={field: [_l("Choose one of: %(expected)s.", expected=choices)]},
    )


def _source_for(actor: Actor, source: StatusSource | str | None) -> StatusSource:
    """Who is saying it: a vendor's people speak as the vendor, council staff as the
    council; only the system (the poller, the CLI, the demo) names another source."""
    if actor.vendor_id is not None:
        own = StatusSource.VENDOR
    elif actor.kind == ActorKind.SYSTEM:
        return StatusSource.COUNCIL if source is None else _choice(StatusSource, source, "source")
    else:
        own = StatusSource.COUNCIL
    if source is not None and _choice(StatusSource, source, "source") != own:
        raise PermissionDenied(_l("You can speak only for yourself here."))
    return own


def _locked(session: Session, vendor: Vendor) -> Vendor:
    """The vendor row, locked for the rest of the transaction (PostgreSQL), re-read."""
    session.execute(
        sa.select(Vendor.id).where(Vendor.id == vendor.id).with_for_update()
    ).scalar_one()
    session.refresh(vendor)
    return vendor


def _open_interval(session: Session, vendor_id: int) -> VendorStatusInterval | None:
    return session.scalar(
        sa.select(VendorStatusInterval).where(
            VendorStatusInterval.vendor_id == vendor_id, VendorStatusInterval.ended_at.is_(None)
        )
    )


def _history_start(vendor: Vendor) -> dt.datetime:
    """Since when a vendor with no history was in its current status: when it was last
    set, or else since it was added (the default status, operational)."""
    return vendor.service_status_at or vendor.created_at


# ---------------------------------------------------------------- service status


class StatusFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_status: str
    message: optional_text(MESSAGE_MAX) = None  # type: ignore[valid-type]


def set_service_status(
    session: Session,
    actor: Actor,
    vendor: Vendor,
    status: ServiceStatus | str,
    message: str | None = None,
    *,
    source: StatusSource | str | None = None,
) -> bool:
    """Set the vendor's service status; True when the status changed.

    The open history interval is closed now and the next one opened; the change is
    audited and ``vendor_service_status_changed`` sent once. The same status again is a
    no-op for the history and the signal (a new message is kept and audited). ``source``
    defaults to who acts: the vendor for its own people and tokens, else the council.
    """
    policy.require(actor, Action.VENDOR_SERVICE_STATUS_SET, vendor_id=vendor.id)
    fields = parse(StatusFields, {"service_status": str(status), "message": message})
    new_status = _choice(ServiceStatus, fields.service_status, "service_status")
    said_by = _source_for(actor, source)
    vendor = _locked(session, vendor)
    old_status, old_message = vendor.service_status, vendor.service_status_message
    if new_status == old_status and fields.message == old_message:
        return False
    now = now_utc()
    current = _open_interval(session, vendor.id)
    if new_status == old_status:
        vendor.service_status_message = fields.message
        if current is not None:
            current.message = fields.message
        session.flush()
        _audit_status(session, actor, vendor, old_status, old_message, said_by)
        return False
    if current is None:
        # The first change: the status until now becomes history too.
        start = min(_history_start(vendor), now)
        current = VendorStatusInterval(
            vendor_id=vendor.id,
            service_status=old_status,
            started_at=start,
            source=vendor.service_status_source or StatusSource.COUNCIL,
            message=old_message,
        )
        session.add(current)
    current.ended_at = max(now, current.started_at)
    session.flush()  # the old interval closes before the next opens (one open per vendor)
    session.add(
        VendorStatusInterval(
            vendor_id=vendor.id,
            service_status=new_status,
            started_at=current.ended_at,
            source=said_by,
            message=fields.message,
        )
    )
    vendor.service_status = new_status
    vendor.service_status_message = fields.message
    vendor.service_status_source = said_by
    vendor.service_status_at = current.ended_at
    session.flush()
    _audit_status(session, actor, vendor, old_status, old_message, said_by)
    vendor_service_status_changed.send(
        vendor, session=session, actor=actor, old_status=old_status, source=said_by.value
    )
    return True


def _audit_status(
    session: Session,
    actor: Actor,
    vendor: Vendor,
    old_status: ServiceStatus,
    old_message: str | None,
    source: StatusSource,
) -> None:
    audit_record(
        session,
        actor=actor,
        action="vendor.service_status_set",
        target_type="vendor",
        target_id=vendor.id,
        target_label=vendor.slug,
        before={"service_status": old_status.value, "message": old_message},
        after={
            "service_status": vendor.service_status.value,
            "message": vendor.service_status_message,
            "source": source.value,
        },
    )


# ---------------------------------------------------------------- incidents


class IncidentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    impact: str
    body: Body


class UpdateFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Body
    state: str | None = None
    impact: str | None = None


def open_incident(
    session: Session,
    actor: Actor,
    vendor: Vendor,
    *,
    title: str,
    impact: IncidentImpact | str,
    body: str,
    state: IncidentState | str = IncidentState.INVESTIGATING,
    source: StatusSource | str | None = None,
    external_id: str | None = None,
    opened_at: dt.datetime | None = None,
) -> Incident:
    """Open an incident of ``vendor`` with its first update; sends ``change=opened``."""
    policy.require(actor, Action.VENDOR_INCIDENT_MANAGE, vendor_id=vendor.id)
    fields = parse(IncidentFields, {"title": title, "impact": str(impact), "body": body})
    level = _choice(IncidentImpact, fields.impact, "impact")
    first_state = _choice(IncidentState, state, "state")
    if first_state == IncidentState.RESOLVED:
        raise ValidationFailed(
            _l("Some fields need attention."),
            errors={"state": [_l("An incident opens unresolved; resolve it with an update.")]},
        )
    said_by = _source_for(actor, source)
    now = now_utc()
    when = min(opened_at, now) if opened_at is not None else now
    incident = Incident(
        vendor_id=vendor.id,
        title=fields.title,
        impact=level,
        state=first_state,
        opened_at=when,
        source=said_by,
        external_id=external_id,
        updated_at=when,
    )
    incident.updates.append(
        IncidentUpdate(
            state=first_state,
            impact=level,
            body=fields.body,
            created_at=when,
            author=_author(actor, vendor, said_by),
        )
    )
    session.add(incident)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="vendor.incident_open",
        target_type="incident",
        target_id=incident.id,
        target_label=f"{vendor.slug}: {incident.title}"[:200],
        after={"impact": level.value, "state": first_state.value, "source": said_by.value},
    )
    vendor_incident_changed.send(incident, session=session, actor=actor, change="opened")
    return incident


def add_incident_update(
    session: Session,
    actor: Actor,
    incident: Incident,
    *,
    body: str,
    state: IncidentState | str | None = None,
    impact: IncidentImpact | str | None = None,
    external_id: str | None = None,
    created_at: dt.datetime | None = None,
) -> IncidentUpdate:
    """Add a timestamped update; a new state or impact changes the incident with it.

    ``state=resolved`` resolves it (``change=resolved``); otherwise a new impact is
    ``impact_changed`` and anything else ``updated``: one signal per update. A resolved
    incident takes no more updates (409).
    """
    policy.require(actor, Action.VENDOR_INCIDENT_MANAGE, vendor_id=incident.vendor_id)
    fields = parse(
        UpdateFields,
        {
            "body": body,
            "state": None if state is None else str(state),
            "impact": None if impact is None else str(impact),
        },
    )
    new_state = (
        incident.state if fields.state is None else _choice(IncidentState, fields.state, "state")
    )
    new_impact = (
        incident.impact
        if fields.impact is None
        else _choice(IncidentImpact, fields.impact, "impact")
    )
    if not incident.is_open:
        raise Conflict(
            _l("This incident is resolved; it takes no more updates."), code="incident_resolved"
        )
    vendor = incident.vendor
    said_by = _source_for(actor, incident.source if actor.kind == ActorKind.SYSTEM else None)
    now = now_utc()
    when = max(min(created_at, now) if created_at is not None else now, incident.opened_at)
    before = snapshot(incident, ("state", "impact"))
    update = IncidentUpdate(
        state=new_state,
        impact=new_impact,
        body=fields.body,
        created_at=when,
        author=_author(actor, vendor, said_by),
        external_id=external_id,
    )
    incident.updates.append(update)
    if new_state == IncidentState.RESOLVED:
        change = "resolved"
        incident.resolved_at = when
    elif new_impact != incident.impact:
        change = "impact_changed"
    else:
        change = "updated"
    incident.state = new_state
    incident.impact = new_impact
    incident.updated_at = when
    session.flush()
    old, new = changed(before, snapshot(incident, ("state", "impact")))
    audit_record(
        session,
        actor=actor,
        action=f"vendor.incident_{change}",
        target_type="incident",
        target_id=incident.id,
        target_label=f"{vendor.slug}: {incident.title}"[:200],
        before=old or None,
        after=new or None,
    )
    vendor_incident_changed.send(incident, session=session, actor=actor, change=change)
    return update


def _author(actor: Actor, vendor: Vendor, source: StatusSource) -> str:
    """How an update is signed: the vendor's name for the vendor and its status page, else
    :data:`COUNCIL_AUTHOR` (stored in English, whoever wrote it; pages translate it)."""
    if source == StatusSource.STATUSPAGE:
        return f"{vendor.name} (status page)"[:254]
    if source == StatusSource.VENDOR:
        return vendor.name[:254]
    return COUNCIL_AUTHOR


# ---------------------------------------------------------------- the status page, the profile


def check_status_page_url(value: str) -> str:
    """An http(s) base address with a host, no credentials, query or fragment."""
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or any(ch.isspace() or ord(ch) < 32 for ch in text)
    ):
        raise ValueError(_l("Enter the status page's address, e.g. https://status.example.com."))
    if len(text) > URL_MAX:
        raise ValueError(_l("Use at most %(num)d characters.", num=URL_MAX))
    return text.rstrip("/")


class StatusPageFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status_page_url: optional_text(URL_MAX + 1) = None  # type: ignore[valid-type]


def set_status_page_url(session: Session, actor: Actor, vendor: Vendor, url: str | None) -> Vendor:
    """Set (or clear, with None or blank) the Statuspage-format site the poller reads.

    Council admins only (``vendor.update``): the portal's servers fetch the address, so a
    vendor does not choose where they connect.
    """
    policy.require(
        actor, Action.VENDOR_UPDATE, message=_l("Only council admins set a status page address.")
    )
    fields = parse(StatusPageFields, {"status_page_url": url})
    value = fields.status_page_url
    if value is not None:
        try:
            value = check_status_page_url(value)
        except ValueError as error:
            raise ValidationFailed(
                _l("Some fields need attention."), errors={"status_page_url": [str(error)]}
            ) from None
    if value == vendor.status_page_url:
        return vendor
    before = {"status_page_url": vendor.status_page_url}
    vendor.status_page_url = value
    # A new address has no reading yet.
    vendor.status_polled_at = None
    vendor.status_poll_failed_at = None
    vendor.status_poll_error = None
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="vendor.status_page_set",
        target_type="vendor",
        target_id=vendor.id,
        target_label=vendor.slug,
        before=before,
        after={"status_page_url": value},
    )
    return vendor


PROFILE_FIELDS = ("legal_name", "country", "website", "support_contact", "data_residency")


class ProfileFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    legal_name: optional_text(200) = None  # type: ignore[valid-type]
    country: Country | None = None
    website: Annotated[Url | None, OptionalText] = None
    support_contact: optional_text(254) = None  # type: ignore[valid-type]
    data_residency: optional_text(200) = None  # type: ignore[valid-type]


def update_profile(session: Session, actor: Actor, vendor: Vendor, data: dict[str, Any]) -> Vendor:
    """Change the vendor's public profile (fields of :data:`PROFILE_FIELDS`; the others
    keep their values). A vendor admin changes its own; council admins any."""
    policy.require(actor, Action.VENDOR_PROFILE_UPDATE, vendor_id=vendor.id)
    merged = {**snapshot(vendor, PROFILE_FIELDS), **data}
    if merged.get("country") in ("", None):
        merged["country"] = None
    fields = parse(ProfileFields, merged)
    before = snapshot(vendor, PROFILE_FIELDS)
    for key, value in fields.model_dump().items():
        setattr(vendor, key, value)
    session.flush()
    old, new = changed(before, snapshot(vendor, PROFILE_FIELDS))
    if new:
        audit_record(
            session,
            actor=actor,
            action="vendor.profile_update",
            target_type="vendor",
            target_id=vendor.id,
            target_label=vendor.slug,
            before=old,
            after=new,
        )
    return vendor
