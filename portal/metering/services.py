"""Writes around usage beyond ingestion: CSV uploads and idle-seat decisions."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io

import msgspec
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.metering.ingest import (
    MAX_BATCH,
    REPORTERS_ONLY,
    IngestResult,
    printable,
    usage_ingest,
)
from portal.metering.models import IdleSeatDecision
from portal.metering.quantities import lazy_number
from portal.seats.models import SeatAssignment
from portal.seats.services import (
    seat_release,
    subscription_cancel,
    subscription_resize,
)

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

    The same rules as the API (invariants 8 and 9): each rejected row is reported
    with its ``index`` among the data rows (0 is the first row after the header),
    the ``line`` of the file it starts on (the header is line 1; a quoted value
    may span lines), a stable ``code`` and its errors by column; the good rows
    are counted. A file that cannot be read as CSV at all is refused whole.
    """
    policy.require(actor, Action.USAGE_REPORT, vendor_id=vendor_id, message=REPORTERS_ONLY)
    reader = csv.DictReader(io.StringIO(text))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise _unreadable(reader, exc) from exc
    header = [h.strip() for h in fieldnames or []]
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header]
    if missing:
        raise ValidationFailed(
            _l(
                "The CSV file needs a header row naming %(columns)s.",
                columns=", ".join(REQUIRED_CSV_COLUMNS),
            ),
            errors={"file": [_l("Missing columns: %(columns)s.", columns=", ".join(missing))]},
        )
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise ValidationFailed(
            _l("The CSV file has columns the portal does not know."),
            errors={
                "file": [
                    _l(
                        "Unknown columns: %(columns)s.",
                        columns=", ".join(printable(u) for u in unknown),
                    )
                ]
            },
        )
    events: list[dict] = []
    lines: list[int] = []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _unreadable(reader, exc) from exc
        if len(events) >= MAX_BATCH:
            raise ValidationFailed(
                _l("Upload at most %(max)s events per file.", max=lazy_number(MAX_BATCH)),
                code="batch_too_large",
                errors={
                    "file": [
                        _l("Split the file into parts of %(max)s rows.", max=lazy_number(MAX_BATCH))
                    ]
                },
            )
        event: dict = {}
        spanned = 0
        for k, v in row.items():
            if k is None:  # more values than columns: rejected like an unknown field
                if any(x.strip() for x in v):
                    event["_"] = "values beyond the header's columns"
                continue
            value = v or ""
            spanned += value.count("\n")
            event[k.strip()] = value.strip()
        lines.append(reader.line_num - spanned)
        for optional in ("user_email", "properties"):
            if not event.get(optional):
                event.pop(optional, None)
        if "properties" in event:
            # Not a JSON object: left as text, so the event is rejected for its properties.
            with contextlib.suppress(msgspec.DecodeError, RecursionError):
                event["properties"] = msgspec.json.decode(event["properties"])
        events.append(event)
    if not events:
        raise ValidationFailed(
            _l("The CSV file has no events."), errors={"file": [_l("No data rows.")]}
        )
    result = usage_ingest(
        session,
        actor=actor,
        body=msgspec.json.encode({"events": events}),
        vendor_id=vendor_id,
        max_age_days=max_age_days,
    )
    for rejected in result.rejected:
        rejected["line"] = lines[rejected["index"]]
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


def _unreadable(reader: csv.DictReader, exc: csv.Error) -> ValidationFailed:
    line = reader.line_num + 1  # the line being read when it failed
    return ValidationFailed(
        _l("The file cannot be read as CSV (line %(line)d).", line=line),
        errors={
            "file": [
                _l(
                    "Line %(line)d cannot be read as CSV: %(problem)s.",
                    line=line,
                    problem=printable(str(exc)),
                )
            ]
        },
    )


def idle_seat_keep(
    session: Session, *, actor: Actor, seat: SeatAssignment, days: int = 30
) -> IdleSeatDecision:
    """Keep an idle seat; it is not flagged again for ``days`` days."""
    policy.require(actor, Action.SEAT_IDLE_DECIDE, organisation_id=seat.organisation_id)
    if seat.released_at is not None:
        raise InvalidState(_l("This seat was released already."), code="seat_released")
    if not 1 <= days <= 365:
        raise ValidationFailed(
            _l("Keep a seat for 1 to 365 days."), errors={"days": [_l("1 to 365.")]}
        )
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
    policy.require(actor, Action.SEAT_IDLE_DECIDE, organisation_id=seat.organisation_id)
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
