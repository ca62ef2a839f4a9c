"""Usage ingestion: a batch of events in, each counted exactly once.

The hot path of the portal (vendors send batches of up to 10,000 events), so
it is written for speed without giving up exactness:

* The body is decoded and type-checked in one pass by msgspec into typed
  structs; quantities become :class:`~decimal.Decimal` straight from the JSON
  text, never through a float. Only when that fails is the batch decoded
  event by event, to report each bad event by its index.
* References (organisation slug, product SKU, meter key) are resolved with two
  queries per batch, then per event from dictionaries.
* SPEC invariant 8: an event counts only for an organisation holding a
  subscription of the product in force on the event's day, and only for that
  organisation's people. Both are resolved with one query each per batch
  (subscriptions of the batch's organisations × products with the day each
  first had seats; the batch's people by organisation), never per event.
* Every rejected event is reported by index with a stable ``code``
  (:data:`REJECTION_CODES`) beside its errors by field; nothing in one event
  (a NUL byte, a number past 64 bits, a date past year 9999) fails the batch
  (invariant 9).
* Valid events are written in the caller's single transaction, each
  (organisation, idempotency key) stored once — invariant 3. PostgreSQL (events
  partitioned by month, migration 0013): binary ``COPY`` into a staging table, the
  keys into ``usage_event_keys`` (whose primary key is the rule), then the events
  whose keys were new (``_insert_postgres``). SQLite: one
  ``executemany`` straight into ``usage_events`` (its primary key is the rule), with
  a lookup of the stored keys only when the batch has some. A failure mid-batch
  rolls everything back: nothing is half-written, and resending the batch counts
  each event once.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from typing import Any

import msgspec
import sqlalchemy as sa
from psycopg import ClientCursor
from psycopg.errors import UniqueViolation
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from portal.catalogue.models import Meter, Product
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.metering.models import QUANTITY_FACTOR, QUANTITY_SCALE, UsageEvent, UsageReportDay
from portal.metering.quantities import lazy_number
from portal.observability import usage_events_counted
from portal.seats.models import Subscription, SubscriptionChange, SubscriptionStatus
from portal.tenancy.models import Organisation, OrganisationStatus

MAX_BATCH = 10_000
REPORTERS_ONLY = _l("Only vendors and the council report usage.")
MAX_KEY_LENGTH = 255
MAX_QUANTITY = Decimal(10) ** 9
MAX_PROPERTIES_BYTES = 4096
MAX_FUTURE = dt.timedelta(minutes=5)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
#: Longest organisation slug or product SKU looked up (longer ones cannot exist).
MAX_REFERENCE_LENGTH = 255
#: Integers in ``properties`` must fit a signed 64-bit integer (invariant 9).
MAX_PROPERTY_INT = 2**63 - 1
#: ``properties`` nest objects and arrays at most this deep (``{"a": 1}`` is 1).
MAX_PROPERTIES_DEPTH = 32

#: Why an event was rejected, one stable code per rejected event:
#: ``invalid``: a field is malformed, unknown or out of range (see ``errors``);
#: ``no_subscription``: the organisation held no subscription of the product in
#: force on the day the event occurred (invariant 8);
#: ``not_organisation_person``: ``user_email`` is not a person of the organisation.
REJECTION_CODES = ("invalid", "no_subscription", "not_organisation_person")
NUL_MESSAGE = "Must not contain a NUL character (U+0000)."


class EventIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One usage event as vendors send it (SPEC section 6)."""

    idempotency_key: str
    organisation: str
    product: str
    meter: str
    quantity: Decimal
    occurred_at: dt.datetime
    user_email: str | None = None
    properties: dict[str, Any] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventIn]


class _RawBatch(msgspec.Struct):
    events: list[msgspec.Raw]


_batch_decoder = msgspec.json.Decoder(BatchIn)
_raw_decoder = msgspec.json.Decoder(_RawBatch)
_event_decoder = msgspec.json.Decoder(EventIn)
_encode = msgspec.json.encode


@dataclass
class IngestResult:
    """What happened to a batch: ``{accepted, duplicates, rejected: [{index, code, errors}]}``.

    ``code`` is one of :data:`REJECTION_CODES`; ``errors`` maps fields to messages.
    """

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def printable(text: str) -> str:
    """Text safe to echo back in an answer or a page: NUL bytes shown as ``\\u0000``."""
    return text.replace("\x00", "\\u0000")


def _field_of(message: str) -> tuple[str, str]:
    """msgspec says "Expected `str`, got `int` - at `$.quantity`": split field and message."""
    message = printable(message)
    match = re.search(r" - at `\$(?:\.events\[\d+\])?\.?([^`\[]*)", message)
    fieldname = (match.group(1) if match else "") or "_"
    text = message.split(" - at ")[0]
    if text.startswith("Object missing required field"):
        missing = re.search(r"`([^`]+)`", text)
        return (missing.group(1) if missing else fieldname), "This field is required."
    if text.startswith("Object contains unknown field"):
        unknown = re.search(r"`([^`]+)`", text)
        return (unknown.group(1) if unknown else fieldname), "This field is not accepted."
    return fieldname, text + "."


_TOO_DEEP = "Arrays and objects are nested too deeply."


def decode_batch(body: bytes) -> tuple[list[EventIn | None], dict[int, dict[str, list[str]]]]:
    """Events by position (None where an event is malformed) and the errors of those."""
    try:
        return list(_batch_decoder.decode(body).events), {}
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        raw = _raw_decoder.decode(body).events
    except msgspec.DecodeError as exc:
        raise ValidationFailed(
            _l('The body must be JSON: {"events": [ … ]}.'),
            errors={"events": [printable(str(exc))]},
        ) from exc
    except RecursionError as exc:
        # msgspec cannot even skip over the events: the batch cannot be split into events.
        raise ValidationFailed(
            _l("The body nests arrays or objects too deeply to be read."),
            errors={"events": [_TOO_DEEP]},
        ) from exc
    events: list[EventIn | None] = []
    errors: dict[int, dict[str, list[str]]] = {}
    for index, item in enumerate(raw):
        try:
            events.append(_event_decoder.decode(item))
        except msgspec.DecodeError as exc:
            events.append(None)
            name, message = _field_of(str(exc))
            errors[index] = {name: [message]}
        except RecursionError:
            events.append(None)
            errors[index] = {"properties": [_TOO_DEEP]}
    return events, errors


#: Multiplies exactly or signals: 40 digits hold any quantity ≤ 10⁹ with six places many
#: times over; a longer one (or any rounding at all) raises ``Inexact``.
_EXACT = Context(prec=40, Emin=MIN_EMIN, Emax=MAX_EMAX, traps=[Inexact, InvalidOperation])
_FACTOR = Decimal(QUANTITY_FACTOR)


def quantity_to_micros(value: Decimal) -> int:
    """An exact non-negative decimal with at most six places, as an integer of millionths.

    Exact for any input: no rounding to the decimal context's 28 digits, no
    underflow of tiny values (``1E-999999999`` is refused, not read as 0).
    """
    # The common case in C: a finite value in range, times 10⁶ computed exactly (or
    # ``Inexact``), is a whole number. Anything else takes the digit-by-digit way below,
    # which also says what is wrong.
    if value.is_finite() and 0 <= value <= MAX_QUANTITY:
        try:
            scaled = _EXACT.multiply(value, _FACTOR)
        except (Inexact, InvalidOperation):
            pass
        else:
            if scaled == scaled.to_integral_value():
                return int(scaled)
    if not value.is_finite():
        raise ValueError("Give a finite number.")
    if value < 0:
        raise ValueError("Quantities cannot be negative.")
    if value > MAX_QUANTITY:
        raise ValueError(f"At most {MAX_QUANTITY:,} per event.")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    shift = exponent + QUANTITY_SCALE
    if shift >= 0:
        # value ≤ 10⁹ with at most 6 places: at most 16 digits, exact in any context.
        coefficient = int("".join(map(str, digits)))
        return coefficient * 10**shift
    if any(digits[shift:]):
        raise ValueError(f"Use at most {QUANTITY_SCALE} digits after the decimal point.")
    kept = digits[:shift]
    return int("".join(map(str, kept))) if kept else 0


def micros_to_decimal(micros: int) -> Decimal:
    """The exact decimal a stored quantity stands for."""
    return (Decimal(micros) / QUANTITY_FACTOR).normalize() if micros else Decimal(0)


def _lookup_key(text: str) -> bool:
    """Whether a reference can be looked up (no NUL byte, which PostgreSQL refuses)."""
    return len(text) <= MAX_REFERENCE_LENGTH and "\x00" not in text


_ORGANISATIONS = Organisation.__table__
_PRODUCTS = Product.__table__
_METERS = Meter.__table__
_SUBSCRIPTIONS = Subscription.__table__
_CHANGES = SubscriptionChange.__table__
_USERS = User.__table__


@dataclass
class _Refs:
    organisations: dict[str, tuple[int, OrganisationStatus]]  # slug -> (id, status)
    products: dict[str, tuple[int, int, dict[str, int]]]  # sku -> (id, vendor_id, {meter: id})
    emails: set[str]  # every user_email of the batch, as sent


def _load_refs(session: Session, events: Iterable[EventIn | None]) -> _Refs:
    # A batch names few organisations, products and people: each name is looked up once,
    # not per event. One pass collects them.
    slugs: set[str] = set()
    skus: set[str] = set()
    emails: set[str] = set()
    for e in events:
        if e is not None:
            slugs.add(e.organisation)
            skus.add(e.product)
            if e.user_email is not None:
                emails.add(e.user_email)
    slugs = {s for s in slugs if _lookup_key(s)}
    skus = {s for s in skus if _lookup_key(s)}
    # Core statements on the tables (no ORM entities to build): the hot path of a batch.
    org, product, meter = _ORGANISATIONS.c, _PRODUCTS.c, _METERS.c
    organisations = {
        slug: (oid, status)
        for oid, slug, status in session.execute(
            sa.select(org.id, org.slug, org.status).where(org.slug.in_(slugs))
        )
    }
    products: dict[str, tuple[int, int, dict[str, int]]] = {}
    for pid, sku, vendor_id, meter_key, meter_id in session.execute(
        sa.select(product.id, product.sku, product.vendor_id, meter.key, meter.id)
        .select_from(_PRODUCTS.outerjoin(_METERS, meter.product_id == product.id))
        .where(product.sku.in_(skus))
    ):
        entry = products.setdefault(sku, (pid, vendor_id, {}))
        if meter_key is not None:
            entry[2][meter_key] = meter_id
    return _Refs(organisations, products, emails)


Terms = dict[tuple[int, int], list[tuple[dt.date, dt.date | None]]]


def subscription_terms(
    session: Session, *, organisation_ids: Iterable[int], product_ids: Iterable[int]
) -> Terms:
    """The days each (organisation, product) held a subscription in force, in one query.

    A subscription is in force from the day it first had seats granted (its
    ``starts_on`` when granted at once; the day the waitlist served it
    otherwise) through its ``ends_on`` (the day it was cancelled), inclusive. A
    subscription that never had a seat granted (still waitlisted, or cancelled
    while waiting) was never in force. Cancelled subscriptions still count for
    the days they ran, so late usage of those days is accepted.
    """
    subscription, change = _SUBSCRIPTIONS.c, _CHANGES.c
    first_granted = (
        sa.select(sa.func.min(change.effective_at))
        .where(change.subscription_id == subscription.id, change.quantity > 0)
        .correlate(_SUBSCRIPTIONS)
        .scalar_subquery()
    )
    terms: Terms = {}
    for org_id, product_id, status, starts_on, ends_on, granted_at in session.execute(
        sa.select(
            subscription.organisation_id,
            subscription.product_id,
            subscription.status,
            subscription.starts_on,
            subscription.ends_on,
            first_granted,
        ).where(
            subscription.organisation_id.in_(set(organisation_ids)),
            subscription.product_id.in_(set(product_ids)),
        )
    ):
        if granted_at is not None:
            if isinstance(granted_at, str):  # SQLite: an aggregate of a TypeDecorator column
                granted_at = dt.datetime.fromisoformat(granted_at)
            if granted_at.tzinfo is not None:  # PostgreSQL: in the session's time zone
                granted_at = granted_at.astimezone(dt.UTC)
            first = max(starts_on, granted_at.date())
        elif status == SubscriptionStatus.ACTIVE:
            first = starts_on  # no quantity history (rows written outside the services)
        else:
            continue
        terms.setdefault((org_id, product_id), []).append((first, ends_on))
    return terms


def in_force(terms: list[tuple[dt.date, dt.date | None]] | None, day: dt.date) -> bool:
    """Whether any of an (organisation, product)'s subscription terms covers ``day``."""
    if not terms:
        return False
    return any(first <= day and (last is None or day <= last) for first, last in terms)


def organisation_people(
    session: Session, *, organisation_ids: Iterable[int], emails: Iterable[str]
) -> set[tuple[int | None, str]]:
    """(organisation id, email) of the given emails that are accounts of those
    organisations, active or not, in one query.

    The accounts are found by email alone (its unique index: one probe per address) and
    kept when their organisation is one of those. Asking for both in SQL let PostgreSQL's
    cached plan for the statement read every account of the organisation and compare each
    with every address of the batch: 6 ms for 100 events of an organisation of 1,000
    people (docs/PERFORMANCE.md)."""
    emails = set(emails)
    if not emails:
        return set()
    organisations = set(organisation_ids)
    user = _USERS.c
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter, not one per address: the same statement for any batch.
        wanted = user.email == sa.any_(sa.literal(sorted(emails), postgresql.ARRAY(sa.String)))
    else:
        wanted = user.email.in_(emails)
    return {
        (org_id, email)
        for org_id, email in session.execute(
            sa.select(user.organisation_id, user.email).where(wanted)
        )
        if org_id in organisations
    }


def usage_ingest(
    session: Session,
    *,
    actor: Actor,
    body: bytes,
    vendor_id: int | None,
    max_age_days: int,
    token_id: int | None = None,
) -> IngestResult:
    """Validate and store a batch; each bad event is reported and the good ones kept.

    ``vendor_id`` limits the batch to that vendor's products (vendor tokens);
    ``None`` is for council tokens and staff uploads. Either way an event counts
    only for an organisation holding a subscription of its product in force on
    the event's day, and only for that organisation's people (invariant 8).
    """
    policy.require(actor, Action.USAGE_REPORT, vendor_id=vendor_id, message=REPORTERS_ONLY)
    events, errors = decode_batch(body)
    if len(events) > MAX_BATCH:
        raise ValidationFailed(
            _l(
                "A batch holds at most %(max)s events; this one has %(count)s.",
                max=lazy_number(MAX_BATCH),
                count=lazy_number(len(events)),
            ),
            code="batch_too_large",
            errors={
                "events": [_l("Send at most %(max)s events per batch.", max=lazy_number(MAX_BATCH))]
            },
        )
    if not events:
        raise ValidationFailed(
            _l("The batch is empty."), errors={"events": [_l("Send at least one event.")]}
        )
    now = now_utc()
    checks = _Checks.load(
        session,
        _load_refs(session, events),
        vendor_id=vendor_id,
        now=now,
        max_age_days=max_age_days,
        token_id=token_id,
    )
    codes = dict.fromkeys(errors, "invalid")
    rows = _rows(events, checks, errors, codes)
    result = IngestResult()
    result.rejected = [{"index": i, "code": codes[i], "errors": errors[i]} for i in sorted(errors)]
    # The vendor's day of reporting health: added by the insert itself when it can (every key
    # new, on PostgreSQL), otherwise below.
    report = None if vendor_id is None else _report_values(vendor_id, now, result.rejected)
    reported = False
    if rows:
        result.accepted, reported = _insert(session, rows, report)
        result.duplicates = len(rows) - result.accepted
    usage_events_counted(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=(rejection["code"] for rejection in result.rejected),
    )
    if report is not None and not reported:
        session.execute(
            _COUNT_REPORT, report | {"accepted": result.accepted, "duplicates": result.duplicates}
        )
    return result


_COUNTS = (
    "batches",
    "accepted",
    "duplicates",
    "rejected_invalid",
    "rejected_no_subscription",
    "rejected_not_organisation_person",
)


# The batch added to its vendor's day of usage-reporting health (``usage_report_days``): one
# ``INSERT … ON CONFLICT DO UPDATE`` adding the counts, in the batch's transaction. One
# statement for both databases, built once: building the upsert with SQLAlchemy's constructs
# cost more per batch (about 2 ms) than the database's work on it. The same SQL with
# psycopg's placeholders is the end of a new batch's last round trip on PostgreSQL.
def _count_report_sql(mark: str) -> str:
    names = ("vendor_id", "day", "last_batch_at", *_COUNTS)
    return (
        f"INSERT INTO usage_report_days AS r ({', '.join(names)}) "  # noqa: S608 (constant columns)
        f"VALUES ({', '.join(mark.format(name) for name in names)}) "
        "ON CONFLICT (vendor_id, day) DO UPDATE SET "
        + ", ".join(f"{c} = r.{c} + excluded.{c}" for c in _COUNTS)
        + ", last_batch_at = excluded.last_batch_at"
    )


_COUNT_REPORT = sa.text(_count_report_sql(":{}")).bindparams(
    sa.bindparam("day", type_=sa.Date()),
    sa.bindparam("last_batch_at", type_=UsageReportDay.__table__.c.last_batch_at.type),
)
_PG_COUNT_REPORT = _count_report_sql("%({})s")


def _report_values(
    vendor_id: int, now: dt.datetime, rejected: list[dict[str, Any]]
) -> dict[str, Any]:
    """The bound values of ``_COUNT_REPORT`` for one batch, but ``accepted`` and
    ``duplicates``, known once it is inserted."""
    codes = dict.fromkeys(REJECTION_CODES, 0)
    for rejection in rejected:
        codes[rejection["code"]] += 1
    return {
        "vendor_id": vendor_id,
        "day": now.date(),
        "last_batch_at": now,
        "batches": 1,
        "rejected_invalid": codes["invalid"],
        "rejected_no_subscription": codes["no_subscription"],
        "rejected_not_organisation_person": codes["not_organisation_person"],
    }


def _property_problem(properties: dict[str, Any]) -> str | None:
    """What is wrong inside ``properties`` (a NUL byte, an integer past 64 bits,
    nesting past :data:`MAX_PROPERTIES_DEPTH`), if anything. Iterative: no
    recursion for a hostile depth to exhaust."""
    stack: list[tuple[Any, int]] = [(properties, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return NUL_MESSAGE
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -MAX_PROPERTY_INT - 1 <= value <= MAX_PROPERTY_INT:
                return "Numbers must fit in 64 bits (at most 9223372036854775807)."
        elif isinstance(value, dict | list):
            if depth > MAX_PROPERTIES_DEPTH:
                return f"Nest objects and arrays at most {MAX_PROPERTIES_DEPTH} levels deep."
            if isinstance(value, dict):
                for key in value:
                    if "\x00" in key:
                        return NUL_MESSAGE
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
    return None


def _email(text: str) -> str | list[str]:
    """``user_email`` as stored (trimmed, lower case), or what is wrong with it."""
    email = text.strip().lower()
    if "\x00" in email:
        return [NUL_MESSAGE]
    if len(email) > 254 or not _EMAIL.match(email):
        return ["Give a valid email address."]
    return email


@dataclass(slots=True)
class _Rejected:
    code: str  # one of REJECTION_CODES
    errors: dict[str, list[str]]


@dataclass(slots=True)
class _Checks:
    """What a batch's events are checked against, loaded once per batch, and what checking
    them has found so far (each distinct name, address and quantity is read once)."""

    refs: _Refs
    vendor_id: int | None
    oldest: dt.datetime
    newest: dt.datetime
    #: The extra columns of every row: when it was received, by which token.
    received: tuple[dt.datetime, int | None]
    #: user_email as sent -> as stored (:func:`_email`), or what is wrong with it.
    emails: dict[str, str | list[str]]
    #: The days each (organisation id, product id) held a subscription in force.
    terms: Terms
    #: organisation id -> the addresses of its people among the batch's.
    people: dict[int | None, set[str]]
    #: (organisation, product, meter) as sent -> (ids, whether the organisation's
    #: subscription covers every day an event may name): for the names that are right.
    resolved: dict[tuple[str, str, str], tuple[int, int, int, bool]] = field(default_factory=dict)
    #: quantity as written (``str()``: exact, and cheaper to hash than a Decimal) -> micros,
    #: for the quantities that are right.
    quantities: dict[str, int] = field(default_factory=dict)
    #: properties as stored (their JSON) -> what is wrong inside them (None: nothing), for
    #: those within :data:`MAX_PROPERTIES_BYTES`. The JSON decides it: equal JSON, equal
    #: objects (msgspec writes a float with a point or an exponent, an int without).
    property_problems: dict[bytes, str | None] = field(default_factory=dict)
    #: (organisation id, product id, day) -> in force that day, when not every day.
    days: dict[tuple[int, int, dt.date], bool] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        session: Session,
        refs: _Refs,
        *,
        vendor_id: int | None,
        now: dt.datetime,
        max_age_days: int,
        token_id: int | None,
    ) -> _Checks:
        """Invariant 8's facts for every organisation, product and person the batch names
        (one query each), before any event is checked."""
        emails = {raw: _email(raw) for raw in refs.emails}
        organisation_ids = {oid for oid, _ in refs.organisations.values()}
        terms: Terms = {}
        if organisation_ids and refs.products:
            terms = subscription_terms(
                session,
                organisation_ids=organisation_ids,
                product_ids={pid for pid, _, _ in refs.products.values()},
            )
        people: dict[int | None, set[str]] = {}
        addresses = {email for email in emails.values() if isinstance(email, str)}
        if organisation_ids and addresses:
            for org_id, email in organisation_people(
                session, organisation_ids=organisation_ids, emails=addresses
            ):
                people.setdefault(org_id, set()).add(email)
        return cls(
            refs,
            vendor_id,
            now - dt.timedelta(days=max_age_days),
            now + MAX_FUTURE,
            (now, token_id),
            emails,
            terms,
            people,
        )


def _resolve(
    event: EventIn, checks: _Checks, problems: dict[str, list[str]]
) -> tuple[int, int, int, bool] | None:
    """The ids an event's organisation, product and meter name, or ``None`` with what is
    wrong with them in ``problems``."""
    refs = checks.refs
    org = refs.organisations.get(event.organisation)
    if "\x00" in event.organisation:
        problems["organisation"] = [NUL_MESSAGE]
    elif org is None or org[1] == OrganisationStatus.PENDING:
        problems["organisation"] = ["No such organisation."]
    product = refs.products.get(event.product)
    meter_id = None
    if "\x00" in event.product:
        problems["product"] = [NUL_MESSAGE]
    elif product is None:
        problems["product"] = ["No such product."]
    elif checks.vendor_id is not None and product[1] != checks.vendor_id:
        problems["product"] = ["This product is not one of yours."]
    elif "\x00" in event.meter:
        problems["meter"] = [NUL_MESSAGE]
    else:
        meter_id = product[2].get(event.meter)
        if meter_id is None:
            problems["meter"] = [f"{event.product} has no meter “{event.meter[:100]}”."]
    if org is None or product is None or meter_id is None or problems:
        return None
    first, last = checks.oldest.date(), checks.newest.date()
    every_day = any(
        start <= first and (end is None or last <= end)
        for start, end in checks.terms.get((org[0], product[0]), ())
    )
    ids = (org[0], product[0], meter_id, every_day)
    checks.resolved[(event.organisation, event.product, event.meter)] = ids
    return ids


def _check(event: EventIn, checks: _Checks) -> tuple | _Rejected:
    """The row to insert for an event, or why it is rejected: its errors by field
    (``invalid``), or invariant 8 (``no_subscription``, ``not_organisation_person``)."""
    problems: dict[str, list[str]] = {}
    key = event.idempotency_key
    if not key or len(key) > MAX_KEY_LENGTH:
        problems["idempotency_key"] = [f"Give 1 to {MAX_KEY_LENGTH} characters."]
    elif "\x00" in key:
        problems["idempotency_key"] = [NUL_MESSAGE]
    ids = checks.resolved.get((event.organisation, event.product, event.meter))
    if ids is None:
        ids = _resolve(event, checks, problems)
    quantity = event.quantity
    # A quantity's micros once per distinct value as written.
    written = str(quantity)
    micros = checks.quantities.get(written)
    if micros is None:
        try:
            micros = checks.quantities[written] = quantity_to_micros(quantity)
        except (ValueError, InvalidOperation) as exc:
            problems["quantity"] = [str(exc)]
    occurred = event.occurred_at
    if occurred.tzinfo is None:
        problems["occurred_at"] = ["Give a time zone (RFC 3339, e.g. 2026-11-28T10:00:00Z)."]
    elif occurred > checks.newest:
        problems["occurred_at"] = ["This is more than 5 minutes in the future."]
    elif occurred < checks.oldest:
        problems["occurred_at"] = ["This is older than the portal accepts."]
    email = None
    if event.user_email is not None:
        read = checks.emails[event.user_email]
        if isinstance(read, list):
            problems["user_email"] = list(read)  # its own list: the answer may be changed
        else:
            email = read
    properties = None
    if event.properties is not None:
        try:
            properties = _encode(event.properties)
        except RecursionError:
            problems["properties"] = [_TOO_DEEP]
        else:
            if len(properties) > MAX_PROPERTIES_BYTES:
                problems["properties"] = [
                    f"Keep properties under {MAX_PROPERTIES_BYTES} bytes of JSON."
                ]
            else:
                known = checks.property_problems
                if properties in known:
                    problem = known[properties]
                else:
                    problem = known[properties] = _property_problem(event.properties)
                if problem:
                    problems["properties"] = [problem]
    if problems:
        return _Rejected("invalid", problems)
    assert ids is not None and micros is not None
    org_id, product_id, meter_id, every_day = ids
    if occurred.tzinfo is not dt.UTC:
        occurred = occurred.astimezone(dt.UTC)
    # Invariant 8: a subscription in force on the event's day, one of the organisation's people.
    if not every_day:
        day = occurred.date()
        held = checks.days.get((org_id, product_id, day))
        if held is None:
            held = checks.days[(org_id, product_id, day)] = in_force(
                checks.terms.get((org_id, product_id)), day
            )
        if not held:
            return _Rejected(
                "no_subscription",
                {
                    "organisation": [
                        f"{event.organisation} holds no subscription of {event.product} "
                        f"in force on {day.isoformat()}."
                    ]
                },
            )
    if email is not None and email not in checks.people.get(org_id, ()):
        return _Rejected(
            "not_organisation_person",
            {"user_email": [f"This is not a person of {event.organisation}."]},
        )
    return (
        org_id,
        product_id,
        meter_id,
        key,
        micros,
        occurred,
        email,
        properties.decode() if properties is not None else None,
        *checks.received,
    )


def _rows(
    events: list[EventIn | None],
    checks: _Checks,
    errors: dict[int, dict[str, list[str]]],
    codes: dict[int, str],
) -> list[tuple]:
    """The rows of a batch's events that pass :func:`_check`, in order; each other event's
    errors and code go into ``errors`` and ``codes`` under its index.

    Most of a batch's events repeat names, quantities, addresses and properties that an
    earlier event of it had checked (each is checked once, into ``checks``'s caches). Such an
    event, with its key and time plainly right, is made a row here from what those caches
    hold; any other goes through :func:`_check`, which checks it all again and says what is
    wrong. So the short path only ever accepts what :func:`_check` accepts, and makes the
    same row (``tests/metering/test_ingest_checks.py``); it costs about two thirds as much
    per event (docs/PERFORMANCE.md, "a batch's events checked on a short path").
    """
    resolved, quantities, emails, people, property_problems = (
        checks.resolved,
        checks.quantities,
        checks.emails,
        checks.people,
        checks.property_problems,
    )
    oldest, newest = checks.oldest, checks.newest
    received_at, token_id = checks.received
    utc = dt.UTC
    rows: list[tuple] = []
    append = rows.append
    for index, event in enumerate(events):
        if event is None:
            continue
        ids = resolved.get((event.organisation, event.product, event.meter))
        key = event.idempotency_key
        quantity = event.quantity
        occurred = event.occurred_at
        if (
            ids is not None
            and ids[3]  # a subscription in force every day an event may name
            and 0 < len(key) <= MAX_KEY_LENGTH
            and "\x00" not in key
            and occurred.tzinfo is utc
            and oldest <= occurred <= newest
        ):
            micros = quantities.get(str(quantity))
            raw = event.user_email
            email = None if raw is None else emails[raw]
            stored: bytes | None = None
            properties = event.properties
            if properties is not None:
                try:
                    stored = _encode(properties)
                except RecursionError:
                    micros = None  # _check says why
                else:
                    if property_problems.get(stored, "") is not None:
                        micros = None  # a problem found before, or never checked: _check
            if micros is not None and (
                email is None or (type(email) is str and email in people.get(ids[0], ()))
            ):
                append(
                    (
                        ids[0],
                        ids[1],
                        ids[2],
                        key,
                        micros,
                        occurred,
                        email,
                        None if stored is None else stored.decode(),
                        received_at,
                        token_id,
                    )
                )
                continue
        checked = _check(event, checks)
        if isinstance(checked, tuple):
            append(checked)
        else:
            errors[index] = checked.errors
            codes[index] = checked.code
    return rows


#: The columns of a usage_events row as ingestion builds it (``_check``), in order.
EVENT_COLUMNS = (
    "organisation_id",
    "product_id",
    "meter_id",
    "idempotency_key",
    "quantity_micros",
    "occurred_at",
    "user_email",
    "properties",
    "received_at",
    "source_token_id",
)


def _insert(session: Session, rows: list[tuple], report: dict[str, Any] | None) -> tuple[int, bool]:
    """Insert rows, skipping (organisation, key) pairs already stored; return how many were new
    and whether the vendor's ``report`` (``_report_values``) was added too, as it is on
    PostgreSQL when every key is new.

    A key sent twice in one batch counts once: the first event of the batch with it is the
    one stored (as when the two are sent in two batches).
    """
    unique = rows
    if len({row[3] for row in rows}) < len(rows):  # a key twice (in one organisation or two)
        seen: set[tuple[int, str]] = set()
        unique = []
        for row in rows:
            key = (row[0], row[3])
            if key not in seen:
                seen.add(key)
                unique.append(row)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        if report is not None:  # as they stand if every key is new
            report = report | {"accepted": len(unique), "duplicates": len(rows) - len(unique)}
        return _insert_postgres(connection, unique, report)
    return _insert_sqlite(connection, unique), False


# PostgreSQL types of EVENT_COLUMNS in usage_events (migration 0003), for binary COPY: the
# rows go to the server as they are in memory, with no text to format or parse.
# ``text`` for the varchar and json columns: their binary form is their text.
_PG_TYPES = (
    "int8",
    "int8",
    "int8",
    "text",
    "int8",
    "timestamptz",
    "text",
    "text",
    "timestamptz",
    "int8",
)
_COLS = ", ".join(EVENT_COLUMNS)
_ROLLUP_COLUMNS = "organisation_id, product_id, meter_id, occurred_at, quantity_micros, user_email"

# Session-local tables, emptied at commit: the batch as sent (COPY's target), when some of
# its keys were stored already the events of it actually inserted (what the rollups add),
# and those events grouped once for the three rollups. One round trip makes and empties them.
_PG_PREPARE = (
    "CREATE TEMP TABLE IF NOT EXISTS usage_stage "
    "(LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS usage_inserted (organisation_id int8, product_id int8, "
    "meter_id int8, occurred_at timestamptz, quantity_micros int8, user_email text) "
    "ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS usage_groups (organisation_id int8, product_id int8, "
    "meter_id int8, user_email text, day date, last_occurred_at timestamptz, events int8, "
    "quantity_micros numeric, max_micros int8) ON COMMIT DELETE ROWS; "
    "DELETE FROM usage_stage; DELETE FROM usage_inserted; DELETE FROM usage_groups"
)
# Invariant 3 across the month partitions (migration 0013): the batch's keys go into
# usage_event_keys, whose primary key is (organisation, key), and an event is inserted only
# if its key was new there. The keys are inserted in one order (bytewise: sorting by "C" is
# cheaper than by the database's collation, and any one order will do), so two batches
# sharing keys wait for each other (the second finds what the first committed) rather than
# deadlock. The keys of a batch are distinct (``_insert``).
_KEYS_OF_STAGE = (
    "INSERT INTO usage_event_keys (organisation_id, idempotency_key) "
    "SELECT organisation_id, idempotency_key FROM usage_stage "
    'ORDER BY organisation_id, idempotency_key COLLATE "C"'
)
_KEYS_PRIMARY_KEY = "pk_usage_event_keys"
# Every key new (the common case): a plain insert of the keys, which fails on the first key
# stored already, then every staged event, with no join; the rollups add the staged events.
_PG_KEYS = "SAVEPOINT usage_keys; " + _KEYS_OF_STAGE
_PG_INSERT_ALL = (
    "RELEASE SAVEPOINT usage_keys; "  # noqa: S608 (constant columns)
    f"INSERT INTO usage_events ({_COLS}) SELECT {_COLS} FROM usage_stage"
)
# Some key stored already: back to before the keys, then one statement inserts the keys that
# are new (``ON CONFLICT DO NOTHING``) and the events of those, and keeps the events for the
# rollups.
_STAGED = ", ".join("s." + c for c in EVENT_COLUMNS)
_PG_INSERT_NEW = (
    f"WITH new_keys AS ({_KEYS_OF_STAGE} "  # noqa: S608 (constant columns)
    "ON CONFLICT (organisation_id, idempotency_key) DO NOTHING "
    "RETURNING organisation_id, idempotency_key), "
    f"inserted AS (INSERT INTO usage_events ({_COLS}) "
    f"SELECT {_STAGED} FROM usage_stage s "
    "JOIN new_keys k ON k.organisation_id = s.organisation_id "
    "AND k.idempotency_key = s.idempotency_key "
    f"RETURNING {_ROLLUP_COLUMNS}) "
    f"INSERT INTO usage_inserted ({_ROLLUP_COLUMNS}) SELECT {_ROLLUP_COLUMNS} FROM inserted"
)


def _insert_postgres(
    connection: sa.Connection, rows: list[tuple], report: dict[str, Any] | None
) -> tuple[int, bool]:
    """COPY into a staging table, insert what is new, and add exactly those rows to the
    rollups: three round trips whatever the batch's size when every key is new (the tables
    made ready, COPY, the rest, which also adds ``report`` to the vendor's day).

    The keys are inserted first, under a savepoint, by a plain ``INSERT``: when all of them
    are new (a batch sent for the first time), every staged event is inserted and rolled up
    as it is. A plain insert costs two thirds of one with ``ON CONFLICT DO NOTHING``, which
    looks each key up before inserting it (docs/PERFORMANCE.md). A key stored already (or
    being stored by a transaction that then commits) makes that insert fail; the batch goes
    back to the savepoint and inserts the keys that are new and their events by a join
    (``_PG_INSERT_NEW``), as a resent batch must. Such a failure leaves one line in
    PostgreSQL's log ("duplicate key value violates unique constraint") and nothing else.
    """
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_PG_PREPARE)
        with cursor.copy(f"COPY usage_stage ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_PG_TYPES)
            for row in rows:
                copy.write_row(row)
        statement = _PG_ALL_NEW
        if report is not None:  # a string of statements takes no parameters: values written in
            statement += "; " + ClientCursor(cursor.connection).mogrify(_PG_COUNT_REPORT, report)
        try:
            # One round trip when every key is new. When one is stored already, PostgreSQL
            # stops at the keys' insert, skips the rest of the string and leaves the
            # transaction failed until it goes back to the savepoint.
            cursor.execute(statement)
        except UniqueViolation as exc:
            if exc.diag.constraint_name != _KEYS_PRIMARY_KEY:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT usage_keys")
            cursor.execute(_PG_INSERT_NEW)
            inserted = cursor.rowcount
            cursor.execute("RELEASE SAVEPOINT usage_keys")
            if inserted:
                cursor.execute(_PG_ROLLUPS_OF_INSERTED)
            return inserted, False
        return len(rows), report is not None
    finally:
        cursor.close()


# --- rollups (usage_daily, usage_daily_people: migration 0014; usage_last_use: 0033) -----
#
# Updated from the events just inserted, in the same transaction, by SQL on both databases
# (no row comes back to Python). Parallel batches add to the same rows without losing an
# update: ``ON CONFLICT ... DO UPDATE SET q = q + excluded.q`` (PostgreSQL locks the row;
# SQLite has one writer at a time). On PostgreSQL the upserts visit the rows in key order,
# and always usage_daily_people, then usage_last_use, then usage_daily, then the vendor's
# usage_report_days, so two batches wait on each other rather than deadlock. The rows most
# batches share come last, so they are held for the shortest time before the commit.

_PG_ROLLUPS = (
    # The events grouped once by organisation, product, meter, person (or none) and UTC day:
    # a batch of 10,000 events is a few hundred groups, which each rollup reads instead of the
    # events (docs/PERFORMANCE.md, "the rollups read the batch grouped once").
    "INSERT INTO usage_groups (organisation_id, product_id, meter_id, user_email, day, "
    "last_occurred_at, events, quantity_micros, max_micros) "
    "SELECT organisation_id, product_id, meter_id, user_email, "
    "(occurred_at AT TIME ZONE 'UTC')::date, max(occurred_at), count(*), "
    "sum(quantity_micros), max(quantity_micros) FROM {source} GROUP BY 1, 2, 3, 4, 5; "
    "INSERT INTO usage_daily_people AS p (organisation_id, product_id, user_email, meter_id, "
    "day, last_occurred_at, events) "
    "SELECT organisation_id, product_id, user_email, meter_id, day, last_occurred_at, events "
    "FROM usage_groups WHERE user_email IS NOT NULL "
    "ORDER BY 1, 2, 3, 4, 5 "
    "ON CONFLICT (organisation_id, product_id, user_email, meter_id, day) DO UPDATE SET "
    "last_occurred_at = greatest(p.last_occurred_at, excluded.last_occurred_at), "
    "events = p.events + excluded.events; "
    # usage_last_use (migration 0033): only the people whose stored last day is older than
    # the batch's, so a person's row is written once a day, not once a batch (HAVING reads
    # the row first; ON CONFLICT's WHERE keeps the later day if another batch wrote between).
    "INSERT INTO usage_last_use AS l (organisation_id, product_id, user_email, last_day) "
    "SELECT i.organisation_id, i.product_id, i.user_email, max(i.day) FROM usage_groups i "
    "WHERE i.user_email IS NOT NULL GROUP BY 1, 2, 3 "
    "HAVING NOT EXISTS (SELECT 1 FROM usage_last_use s WHERE s.organisation_id = "
    "i.organisation_id AND s.product_id = i.product_id AND s.user_email = i.user_email "
    "AND s.last_day >= max(i.day)) "
    "ORDER BY 1, 2, 3 "
    "ON CONFLICT (organisation_id, product_id, user_email) DO UPDATE SET "
    "last_day = excluded.last_day WHERE l.last_day < excluded.last_day; "
    # Last, as the row every batch of an organisation's product and day writes: from here to
    # the commit another batch of that day waits (docs/PERFORMANCE.md).
    "INSERT INTO usage_daily AS d (organisation_id, product_id, meter_id, day, "
    "quantity_micros, max_micros, events) "
    "SELECT organisation_id, product_id, meter_id, day, sum(quantity_micros), "
    "max(max_micros), sum(events) FROM usage_groups "
    "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
    "ON CONFLICT (organisation_id, product_id, meter_id, day) DO UPDATE SET "
    "quantity_micros = d.quantity_micros + excluded.quantity_micros, "
    "max_micros = greatest(d.max_micros, excluded.max_micros), "
    "events = d.events + excluded.events"
)
# The events just inserted: the whole batch as staged, or the part of it kept in usage_inserted.
_PG_ROLLUPS_OF_STAGE = _PG_ROLLUPS.format(source="usage_stage")
_PG_ROLLUPS_OF_INSERTED = _PG_ROLLUPS.format(source="usage_inserted")
# The keys, then (if all were new) the events and their rollups: one round trip.
_PG_ALL_NEW = f"{_PG_KEYS}; {_PG_INSERT_ALL}; {_PG_ROLLUPS_OF_STAGE}"
# SQLite: the rows are inserted with one executemany, straight into usage_events; the
# rollups are grouped in Python from the rows inserted (times as stored: naive UTC text,
# whose first ten characters are the day) and upserted with one executemany each.
_SQLITE_INSERT = (
    f"INSERT INTO usage_events ({_COLS}) "  # noqa: S608 (constant columns)
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_SQLITE_STORED = (
    "SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]') FROM json_each(?) j "
    "WHERE EXISTS (SELECT 1 FROM usage_events e "
    "WHERE e.organisation_id = json_extract(j.value, '$[0]') "
    "AND e.idempotency_key = json_extract(j.value, '$[1]'))"
)
_SQLITE_DAILY = (
    "INSERT INTO usage_daily AS d (organisation_id, product_id, meter_id, day, "
    "quantity_micros, max_micros, events) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (organisation_id, product_id, meter_id, day) DO UPDATE SET "
    "quantity_micros = d.quantity_micros + excluded.quantity_micros, "
    "max_micros = max(d.max_micros, excluded.max_micros), "
    "events = d.events + excluded.events"
)
_SQLITE_PEOPLE = (
    "INSERT INTO usage_daily_people AS p (organisation_id, product_id, user_email, meter_id, "
    "day, last_occurred_at, events) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (organisation_id, product_id, user_email, meter_id, day) DO UPDATE SET "
    "last_occurred_at = max(p.last_occurred_at, excluded.last_occurred_at), "
    "events = p.events + excluded.events"
)
_SQLITE_LAST_USE = (
    "INSERT INTO usage_last_use AS l (organisation_id, product_id, user_email, last_day) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (organisation_id, product_id, user_email) DO UPDATE SET "
    "last_day = excluded.last_day WHERE l.last_day < excluded.last_day"
)


def _insert_sqlite(connection: sa.Connection, rows: list[tuple]) -> int:
    """SQLite: one ``executemany`` of the rows straight into usage_events, with no conflict
    clause, under a savepoint. A batch of new events (the common case) costs what a bare
    executemany costs. If a key is stored already the insert stops at it (IntegrityError):
    back to the savepoint, one query finds the batch's keys already stored, and the others
    are inserted. The rollups are added from exactly the rows inserted.

    Exact because SQLite has one writer at a time and the portal's transactions begin
    with ``BEGIN IMMEDIATE`` (``portal.db``): no other transaction can store a key between
    the check and the insert. Were one to (a connection without that rule), the second
    insert fails on the primary key and the batch is rolled back whole: never counted
    twice, never rolled up wrongly.
    """
    stored = sqlite_rows(rows)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SAVEPOINT usage_batch")
        try:
            cursor.executemany(_SQLITE_INSERT, stored)
        except sqlite3.IntegrityError:
            cursor.execute("ROLLBACK TO usage_batch")
            pairs = _encode([[row[0], row[3]] for row in stored]).decode()
            seen = {(org, key) for org, key in cursor.execute(_SQLITE_STORED, (pairs,))}
            stored = [row for row in stored if (row[0], row[3]) not in seen]
            if stored:
                cursor.executemany(_SQLITE_INSERT, stored)
        cursor.execute("RELEASE usage_batch")
        if stored:
            daily, people = _rollup_rows(stored)
            cursor.executemany(_SQLITE_DAILY, daily)
            if people:
                cursor.executemany(_SQLITE_PEOPLE, people)
                cursor.executemany(_SQLITE_LAST_USE, _last_days(people))
    finally:
        cursor.close()
    return len(stored)


def _rollup_rows(stored: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """usage_daily and usage_daily_people rows (in key order) of the rows SQLite inserted
    (:func:`sqlite_rows`: times as naive UTC text, whose first ten characters are the day)."""
    daily: dict[tuple, list[int]] = {}
    people: dict[tuple, list] = {}
    for org_id, product_id, meter_id, _, micros, occurred, email, *_ in stored:
        day = occurred[:10]
        total = daily.get((org_id, product_id, meter_id, day))
        if total is None:
            daily[(org_id, product_id, meter_id, day)] = [micros, micros, 1]
        else:
            total[0] += micros
            if micros > total[1]:
                total[1] = micros
            total[2] += 1
        if email is not None:
            seen = people.get((org_id, product_id, email, meter_id, day))
            if seen is None:
                people[(org_id, product_id, email, meter_id, day)] = [occurred, 1]
            else:
                if occurred > seen[0]:
                    seen[0] = occurred
                seen[1] += 1
    return (
        [(*key, *value) for key, value in sorted(daily.items())],
        [(*key, *value) for key, value in sorted(people.items())],
    )


def _last_days(people: list[tuple]) -> list[tuple]:
    """usage_last_use rows (in key order) of the usage_daily_people rows of a batch
    (:func:`_rollup_rows`): each person's latest day per product, whatever the meter."""
    last: dict[tuple, str] = {}
    for org_id, product_id, email, _meter, day, *_ in people:
        key = (org_id, product_id, email)
        if day > last.get(key, ""):
            last[key] = day
    return [(*key, day) for key, day in sorted(last.items())]


SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite


def _sqlite_time(moment: dt.datetime) -> str:
    """``moment`` (UTC) as SQLAlchemy stores it on SQLite (:data:`SQLITE_TIME`, the year in
    four digits): ``isoformat``'s first 26 characters, much cheaper than ``strftime``."""
    return moment.astimezone(dt.UTC).isoformat(" ", "microseconds")[:26]


def sqlite_rows(rows: list[tuple]) -> list[tuple]:
    """Rows (tuples of :data:`EVENT_COLUMNS`) with their times as SQLAlchemy stores them on
    SQLite (naive UTC text).

    Every row of a batch has the same ``received_at``: it is formatted once.
    """
    formatted: dict[dt.datetime, str] = {}
    out = []
    for row in rows:
        received = formatted.get(row[8])
        if received is None:
            received = formatted[row[8]] = _sqlite_time(row[8])
        occurred = row[5]
        text = (
            occurred.isoformat(" ", "microseconds")[:26]
            if occurred.tzinfo is dt.UTC
            else _sqlite_time(occurred)
        )
        out.append((*row[:5], text, row[6], row[7], received, row[9]))
    return out


__all__ = [
    "EVENT_COLUMNS",
    "REJECTION_CODES",
    "SQLITE_TIME",
    "IngestResult",
    "UsageEvent",
    "decode_batch",
    "quantity_to_micros",
    "sqlite_rows",
    "usage_ingest",
]
