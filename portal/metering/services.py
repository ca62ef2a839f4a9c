"""Writes around usage beyond ingestion: CSV uploads and idle-seat decisions."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json

from sqlalchemy.orm import Session

from portal.audit.services import Actor, audit_record
from portal.db import now_utc
from portal.errors import InvalidState, ValidationFailed
from portal.metering.ingest import MAX_BATCH, IngestResult, usage_ingest
from portal.metering.models import IdleSeatDecision
from portal.seats.models import SeatAssignment

CSV_COLUMNS = (
    "idempotency_key",
    "organisation",
    "product",
    "meter",
    "quantity",
    "occurred_at",
    "user_email",
    "properties",
)
REQUIRED_CSV_COLUMNS = CSV_COLUMNS[:6]


def usage_ingest_csv(
    session: Session, *, actor: Actor, text: str, vendor_id: int | None, max_age_days: int
) -> IngestResult:
    """Ingest a CSV file of events (a header row, then one event per row).

    Rejected events are reported by their position among the data rows (0 is the
    first row after the header), as in the API.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header]
    if missing:
        raise ValidationFailed(
            "The CSV file needs a header row naming " + ", ".join(REQUIRED_CSV_COLUMNS) + ".",
            errors={"file": [f"Missing columns: {', '.join(missing)}."]},
        )
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise ValidationFailed(
            "The CSV file has columns the portal does not know.",
            errors={"file": [f"Unknown columns: {', '.join(unknown)}."]},
        )
    events: list[dict] = []
    for index, row in enumerate(reader):
        if index >= MAX_BATCH:
            raise ValidationFailed(
                f"Upload at most {MAX_BATCH:,} events per file.",
                code="batch_too_large",
                errors={"file": [f"Split the file into parts of {MAX_BATCH:,} rows."]},
            )
        event = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        for optional in ("user_email", "properties"):
            if not event.get(optional):
                event.pop(optional, None)
        if "properties" in event:
            # Not JSON: left as text, so the event is rejected for its properties like any other.
            with contextlib.suppress(ValueError):
                event["properties"] = json.loads(event["properties"])
        events.append(event)
    if not events:
        raise ValidationFailed("The CSV file has no events.", errors={"file": ["No data rows."]})
    result = usage_ingest(
        session,
        actor=actor,
        body=json.dumps({"events": events}).encode(),
        vendor_id=vendor_id,
        max_age_days=max_age_days,
    )
    audit_record(
        session,
        actor=actor,
        action="usage.upload",
        target_type="usage",
        target_label="csv",
        after={
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": len(result.rejected),
        },
    )
    return result


def idle_seat_keep(
    session: Session, *, actor: Actor, seat: SeatAssignment, days: int = 30
) -> IdleSeatDecision:
    """Keep an idle seat; it is not flagged again for ``days`` days."""
    from portal.seats.services import _may_manage

    _may_manage(actor, seat.organisation_id)
    if seat.released_at is not None:
        raise InvalidState("This seat was released already.", code="seat_released")
    if not 1 <= days <= 365:
        raise ValidationFailed("Keep a seat for 1 to 365 days.", errors={"days": ["1 to 365."]})
    decision = IdleSeatDecision(
        organisation_id=seat.organisation_id,
        seat_assignment_id=seat.id,
        decision="keep",
        decided_by_id=actor.user_id,
        until=now_utc().date() + dt.timedelta(days=days),
    )
    session.add(decision)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="seat.keep_idle",
        target_type="seat",
        target_id=seat.id,
        target_label=seat.user.email,
        organisation_id=seat.organisation_id,
        after={"until": decision.until.isoformat() if decision.until else None},
    )
    return decision


def idle_seat_release(session: Session, *, actor: Actor, seat: SeatAssignment) -> None:
    """Release an idle seat and give it back to the pool (the subscription shrinks by one).

    The freed seat goes to the waitlist first, as any returned seat does.
    """
    from portal.seats.services import seat_release, subscription_cancel, subscription_resize

    subscription = seat.subscription
    seat_release(
        session,
        actor=actor,
        subscription=subscription,
        user_email=seat.user.email,
        reason="idle",
    )
    session.add(
        IdleSeatDecision(
            organisation_id=seat.organisation_id,
            seat_assignment_id=seat.id,
            decision="release",
            decided_by_id=actor.user_id,
        )
    )
    if subscription.quantity > 1:
        subscription_resize(
            session, actor=actor, subscription=subscription, quantity=subscription.quantity - 1
        )
    else:
        subscription_cancel(session, actor=actor, subscription=subscription)
