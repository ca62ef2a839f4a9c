"""Suppliers' incidents and standing → the people holding their products' seats, as jobs.

Importing this module connects two receivers of :mod:`portal.signals` (``create_app``
does) and declares the job ``notifications.seat_holders``:

* ``vendor_incident_changed`` with ``change`` ``opened``, ``impact_changed`` or
  ``resolved`` (not every ``updated``), and ``vendor_standing_changed``, each enqueue ONE
  job in the transaction of the change (an outbox: a change rolled back tells nobody).
  The job's ``dedupe_key`` is the event's key, so the same event signalled twice queues
  one job.
* The job finds the people holding an active seat of any product of the vendor (of every
  organisation: it is per person) and calls :func:`~portal.notifications.services.notify`
  with the event's key, which tells each person once however often the job is delivered.

The signal senders (portal.suppliers, portal.catalogue) hand over the incident or vendor;
this module reads their attributes only (suppliers sits above notifications in the layers).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session
from werkzeug.routing import BuildError

from portal import signals
from portal.catalogue.models import Product, Vendor
from portal.jobs.models import Job
from portal.jobs.queue import enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.notifications import kinds
from portal.notifications.services import notify
from portal.seats.models import SeatAssignment

JOB = "notifications.seat_holders"
#: The incident changes people are told of (an ``updated`` with the same impact is not).
TOLD_CHANGES = {
    "opened": kinds.INCIDENT_OPENED,
    "impact_changed": kinds.INCIDENT_IMPACT_CHANGED,
    "resolved": kinds.INCIDENT_RESOLVED,
}


def _value(value: Any) -> str:
    """An enum's value (``IncidentImpact.MAJOR`` → ``major``), or the text itself."""
    return str(getattr(value, "value", value) or "")


def vendor_link(slug: str) -> str | None:
    """The path of the vendor's page in the supplier directory (the directory's, or None)."""
    # The URL map builds paths without a request (a job, the CLI): no SERVER_NAME needed.
    urls = current_app.url_map.bind("portal.invalid")
    for endpoint, values in (("suppliers.vendor", {"slug": slug}), ("suppliers.directory", {})):
        try:
            return str(urls.build(endpoint, values))
        except BuildError:  # that page is not there (a deployment without it)
            continue
    return None


def incident_key(incident_id: int, change: str, impact: str) -> str:
    """The event's key: an incident opened, resolved, or changed to an impact, once each."""
    if change == "impact_changed":
        return f"incident:{incident_id}:impact:{impact}"
    return f"incident:{incident_id}:{change}"


def standing_key(vendor_id: int, old: str, new: str, at: dt.datetime | None) -> str:
    """The event's key: the vendor's standing changed from ``old`` to ``new`` at ``at``."""
    moment = (at or now_utc()).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"standing:{vendor_id}:{old}:{new}:{moment}"


def enqueue_seat_holders(
    session: Session,
    *,
    actor: Actor,
    vendor_id: int,
    kind: str,
    key: str,
    params: dict[str, Any],
    link: str | None,
) -> Job | None:
    """Queue the job telling the vendor's seat holders ``key`` (once: None if it is queued)."""
    dedupe = f"{JOB}:{key}"[:200]
    if session.scalar(sa.select(Job.id).where(Job.dedupe_key == dedupe)) is not None:
        return None
    arguments = {"vendor_id": vendor_id, "kind": kind, "key": key, "params": params, "link": link}
    try:
        with session.begin_nested():
            return enqueue(session, JOB, arguments, actor=actor, dedupe_key=dedupe)
    except sa.exc.IntegrityError:  # the same event queued meanwhile by another transaction
        return None


@signals.vendor_incident_changed.connect
def _incident_changed(
    incident: Any, *, session: Session, actor: Actor, change: str, **_: Any
) -> None:
    kind = TOLD_CHANGES.get(change)
    if kind is None:
        return  # an update that changed neither impact nor state: nobody is told
    vendor = getattr(incident, "vendor", None)
    vendor_id = getattr(incident, "vendor_id", None) or getattr(vendor, "id", None)
    if vendor_id is None or getattr(incident, "id", None) is None:
        return
    impact = _value(getattr(incident, "impact", ""))
    slug = getattr(vendor, "slug", "") or ""
    params = {
        "vendor": getattr(vendor, "name", "") or slug,
        "vendor_slug": slug,
        "incident_id": incident.id,
        "title": str(getattr(incident, "title", "") or ""),
        "impact": impact,
        "state": _value(getattr(incident, "state", "")),
    }
    enqueue_seat_holders(
        session,
        actor=actor,
        vendor_id=int(vendor_id),
        kind=kind,
        key=incident_key(incident.id, change, impact),
        params=params,
        link=vendor_link(slug) if slug else None,
    )


@signals.vendor_standing_changed.connect
def _standing_changed(
    vendor: Vendor, *, session: Session, actor: Actor, old_status: Any, **_: Any
) -> None:
    old, new = _value(old_status), _value(vendor.status)
    if old == new:
        return
    params = {
        "vendor": vendor.name,
        "vendor_slug": vendor.slug,
        "old": old,
        "standing": new,
        "note": getattr(vendor, "status_note", None) or "",
    }
    enqueue_seat_holders(
        session,
        actor=actor,
        vendor_id=vendor.id,
        kind=kinds.VENDOR_STANDING_CHANGED,
        key=standing_key(vendor.id, old, new, getattr(vendor, "updated_at", None)),
        params=params,
        link=vendor_link(vendor.slug),
    )


def seat_holders(session: Session, *, vendor_id: int) -> list[int]:
    """The people holding an active seat of any product of the vendor, of every organisation."""
    return list(
        session.scalars(
            sa.select(SeatAssignment.user_id)
            .join(Product, Product.id == SeatAssignment.product_id)
            .where(Product.vendor_id == vendor_id, SeatAssignment.released_at.is_(None))
            .distinct()
            .order_by(SeatAssignment.user_id)
        )
    )


@job(JOB, max_attempts=5, backoff=(30, 300, 1800))
def seat_holders_job(
    session: Session,
    *,
    actor: Actor,
    vendor_id: int,
    kind: str,
    key: str,
    params: dict[str, Any],
    link: str | None = None,
) -> None:
    """Tell the vendor's seat holders the event ``key`` (each once; their mail as they chose)."""
    policy.require(actor, Action.JOB_RUN)
    notify(
        session,
        user_ids=seat_holders(session, vendor_id=vendor_id),
        kind=kind,
        key=key,
        params=params,
        link=link,
        actor=actor,
    )
