"""Demo data for a newcomer's portal (``portal demo``).

Builds a small council through the same services the pages use, so the demo
obeys every rule. Running it again changes nothing. Later capabilities add
their part of the demo here (catalogue, subscriptions, usage, invoices).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.drafting import invoice_draft_refresh
from portal.billing.lifecycle import invoice_finalize, payment_record
from portal.billing.models import InvoiceStatus
from portal.catalogue.models import Product, Vendor
from portal.catalogue.selectors import product_by_sku
from portal.catalogue.services import pool_create, price_create, product_create, vendor_create
from portal.crypto import encrypt_secret
from portal.identity.accounts import language_choose, user_create
from portal.identity.models import TotpFactor, User
from portal.identity.security import hash_password
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.periods import period_of
from portal.metering.ingest import usage_ingest
from portal.procurement import demand, purchase_orders
from portal.seats.models import SeatAssignment
from portal.seats.services import seat_assign, subscription_create
from portal.settings.services import settings_update
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.tenancy.selectors import organisation_by_slug
from portal.tenancy.services import organisation_apply, organisation_create, organisation_transition

DEMO_PASSWORD = "demo-password"  # noqa: S105  (a published demo credential)
COUNCIL_ADMIN = "admin@council.example"
COUNCIL_FINANCE = "finance@council.example"
#: The authenticator-app secret of the demo's council admin and finance, who must sign in
#: with a second factor (a published demo credential, like the password).
DEMO_TOTP_SECRET = "PORTALDEMOTOTPSECRETPORTALDEMO23"  # noqa: S105

ORGANISATIONS = [
    # slug, name, country, currency, provider, members
    ("acme-gmbh", "ACME Maschinenbau GmbH", "DE", "EUR", "stripe", ["jonas", "lena", "mia"]),
    ("tbilisi-tech", "Tbilisi Tech LLC", "GE", "GEL", "manual", ["nino", "giorgi"]),
    ("thames-analytics", "Thames Analytics Ltd", "GB", "GBP", "stripe", ["oliver", "amelia"]),
    ("kyoto-robotics", "Kyoto Robotics K.K.", "JP", "JPY", "manual", ["haruto", "yui"]),
    (
        "riga-logistics",
        "Riga Logistics SIA",
        "LV",
        "EUR",
        "manual",
        ["janis", "anna", "dmitri", "olga"],
    ),
    ("nordic-design", "Nordic Design AB", "SE", "SEK", "stripe", ["elsa"]),
]


#: Russian-speaking people (SPEC section 8.6): their pages and mail are in Russian (users.locale).
#: email -> display name.
RUSSIAN_SPEAKERS = {
    "admin@riga-logistics.example": "Светлана Кузнецова",
    "dmitri@riga-logistics.example": "Дмитрий Соколов",
    "olga@riga-logistics.example": "Ольга Иванова",
}


#: The buyers' postal addresses on their invoices (issue 14); riga-logistics reads its
#: invoices in Russian (organisations.invoice_language).
BILLING_ADDRESSES = {
    "acme-gmbh": "Industriestraße 12\n70565 Stuttgart",
    "tbilisi-tech": "12 Rustaveli Avenue\n0108 Tbilisi",
    "thames-analytics": "4 Riverside Walk\nLondon SE1 9PP",
    "kyoto-robotics": "3-1 Karasuma-dori, Shimogyo-ku\nKyoto 600-8216",
    "riga-logistics": "Brīvības iela 55\nRīga, LV-1010",
    "nordic-design": "Södra Vägen 8\n411 35 Göteborg",
}
INVOICES_IN_RUSSIAN = {"riga-logistics"}

#: The seller on every invoice: the council's legal name, address, tax id and account.
SELLER = {
    "seller_legal_name": "Business Council e.V.",
    "seller_address": "Unter den Linden 10\n10117 Berlin\nGermany",
    "seller_tax_id": "DE123456789",
    "seller_iban": "DE89 3704 0044 0532 0130 00",
    "seller_bic": "COBADEFFXXX",
    "bank_details": "Commerzbank AG, Berlin",
}


def _speaks_russian(session: Session, email: str) -> None:
    """``email`` chose Russian, as they would on their profile page (audited)."""
    user = session.scalar(sa.select(User).where(User.email == email))
    assert user is not None
    language_choose(session, actor=Actor.person(user), user=user, language="ru")


def load_demo(session: Session) -> list[str]:
    """Create the demo council; return the lines to print (sign-ins)."""
    actor = Actor.system("demo")
    if session.scalar(sa.select(User.id).where(User.email == COUNCIL_ADMIN)) is not None:
        _demo_second_factors(session)  # demo data loaded before second factors existed
        return ["Demo data is already loaded.", *_sign_ins()]
    user_create(
        session,
        actor=actor,
        email=COUNCIL_ADMIN,
        name="Council Admin",
        role=Role.COUNCIL_ADMIN,
    )
    user_create(
        session,
        actor=actor,
        email=COUNCIL_FINANCE,
        name="Council Finance",
        role=Role.FINANCE,
    )
    _demo_second_factors(session)
    for slug, name, country, currency, provider, members in ORGANISATIONS:
        org = organisation_create(
            session,
            actor=actor,
            data={
                "slug": slug,
                "name": name,
                "country": country,
                "currency": currency,
                "billing_email": f"billing@{slug}.example",
                "billing_provider": provider,
                "reverse_charge": country not in ("DE",) and currency == "EUR",
                "billing_address": BILLING_ADDRESSES.get(slug),
                "invoice_language": "ru" if slug in INVOICES_IN_RUSSIAN else None,
            },
        )
        user_create(
            session,
            actor=actor,
            email=f"admin@{slug}.example",
            name=RUSSIAN_SPEAKERS.get(f"admin@{slug}.example", f"{name.split()[0]} Admin"),
            role=Role.ORG_ADMIN,
            organisation=org,
        )
        for person in members:
            user_create(
                session,
                actor=actor,
                email=f"{person}@{slug}.example",
                name=RUSSIAN_SPEAKERS.get(f"{person}@{slug}.example", person.capitalize()),
                role=Role.MEMBER,
                organisation=org,
            )
        if slug == "nordic-design":
            organisation_transition(
                session,
                actor=actor,
                organisation=org,
                to_status=OrganisationStatus.SUSPENDED,
                reason="Unpaid membership fee",
            )
    for email in RUSSIAN_SPEAKERS:
        _speaks_russian(session, email)
    settings_update(session, actor=actor, data=SELLER)
    _catalogue(session, actor)
    _supplier_status(session, actor)
    _compliance_documents(session, actor)
    _subscriptions(session, actor)
    _notifications(session, actor)
    _renewals(session, actor)
    _purchase_orders(session, actor)
    _product_requests(session, actor)
    _usage(session, actor)
    _vendor_admins(session, actor)
    _invoices(session, actor)
    _provisioning(session, actor)
    _reconciliation(session, actor)
    organisation_apply(
        session,
        actor=actor,
        data={
            "slug": "caspian-energy",
            "name": "Caspian Energy Services LLC",
            "country": "AZ",
            "currency": "USD",
            "billing_email": "billing@caspian-energy.example",
            "applicant_name": "Leyla Aliyeva",
            "applicant_email": "leyla@caspian-energy.example",
            "note": "We would like CAD and analytics seats for 40 engineers.",
        },
    )
    # One Argon2 hash for every demo account (hashing each would take seconds).
    shared_hash = hash_password(DEMO_PASSWORD)
    session.execute(
        sa.update(User)
        .where(User.password_hash.is_(None), User.email.endswith(".example"))
        .values(password_hash=shared_hash)
    )
    session.flush()
    return ["Demo data loaded.", *_sign_ins()]


VENDORS = [
    ("autodraft", "AutoDraft Systems", "active", "partners@autodraft.example"),
    ("datalake", "DataLake Analytics", "active", "sales@datalake.example"),
    ("securemail", "SecureMail AG", "active", "b2b@securemail.example"),
    ("translingo", "TransLingo", "under_review", "hello@translingo.example"),
    ("cloudsheet", "CloudSheet Inc.", "suspended", "accounts@cloudsheet.example"),
]

# meter: key, name, unit, aggregation, property (for unique_count)
MeterSpec = tuple[str, str, str, str, str | None]
# sku, vendor, name, description, capacity, unit cost EUR cents, meters
PRODUCTS: list[tuple[str, str, str, str, int, int, list[MeterSpec]]] = [
    (
        "cad-suite",
        "autodraft",
        "CAD Suite",
        "2D/3D design for engineering teams.",
        60,
        4500,
        [("render_minutes", "Cloud render minutes", "minute", "sum", None)],
    ),
    (
        "pdm-vault",
        "autodraft",
        "PDM Vault",
        "Product data management for CAD files.",
        40,
        2000,
        [("storage_gb", "Storage", "GB", "max", None)],
    ),
    (
        "bi-studio",
        "datalake",
        "BI Studio",
        "Dashboards and self-service analytics.",
        80,
        1800,
        [
            ("queries", "Queries", "query", "count", None),
            ("active_users", "Active users", "user", "unique_count", "user_email"),
        ],
    ),
    (
        "etl-flow",
        "datalake",
        "ETL Flow",
        "Data pipelines with a visual editor.",
        25,
        3000,
        [("rows_synced", "Rows synced", "row", "sum", None)],
    ),
    ("secure-mail", "securemail", "Secure Mail", "Encrypted business email.", 150, 400, []),
    (
        "lingo-pro",
        "translingo",
        "Lingo Pro",
        "Machine translation with glossaries.",
        30,
        900,
        [("characters", "Characters translated", "character", "sum", None)],
    ),
    ("sheets-plus", "cloudsheet", "Sheets Plus", "Collaborative spreadsheets.", 50, 600, []),
]

# seat price per month by currency (minor units)
SEAT_PRICES = {
    "cad-suite": {"EUR": 5900, "GEL": 17500, "GBP": 5100, "JPY": 9600, "SEK": 66000},
    "pdm-vault": {"EUR": 2600, "GEL": 7700, "GBP": 2250, "JPY": 4200, "SEK": 29000},
    "bi-studio": {"EUR": 2400, "GEL": 7100, "GBP": 2050, "JPY": 3900, "SEK": 27000},
    "etl-flow": {"EUR": 3900, "GEL": 11600, "GBP": 3350, "JPY": 6300},
    "secure-mail": {"EUR": 550, "GEL": 1600, "GBP": 470, "JPY": 900, "SEK": 6100},
    "lingo-pro": {"EUR": 1200, "GBP": 1050},
    "sheets-plus": {"EUR": 800, "GBP": 700},
}

# org slug: {sku: (quantity, members given a seat)}
SUBSCRIPTIONS = {
    "acme-gmbh": {
        "cad-suite": (12, ["jonas", "lena", "mia"]),
        "pdm-vault": (6, ["jonas"]),
        "secure-mail": (20, ["jonas", "lena", "mia"]),
    },
    "tbilisi-tech": {"bi-studio": (10, ["nino", "giorgi"]), "etl-flow": (3, ["giorgi"])},
    "thames-analytics": {
        "bi-studio": (25, ["oliver", "amelia"]),
        "etl-flow": (8, ["amelia"]),
        "secure-mail": (15, ["oliver"]),
    },
    "kyoto-robotics": {"cad-suite": (30, ["haruto", "yui"]), "pdm-vault": (20, ["haruto"])},
    "riga-logistics": {
        "secure-mail": (40, ["janis", "anna", "dmitri", "olga"]),
        "bi-studio": (5, ["anna", "olga"]),
    },
}


def _catalogue(session: Session, actor: Actor) -> None:
    today = now_utc().date()
    start = today.replace(day=1) - dt.timedelta(days=100)
    for slug, name, status, email in VENDORS:
        vendor_create(
            session,
            actor=actor,
            data={
                "slug": slug,
                "name": name,
                "status": status,
                "contact_email": email,
                "status_note": "Security review of the new data centre"
                if status == "under_review"
                else ("Licence dispute" if status == "suspended" else None),
            },
        )
    for sku, vendor, name, description, capacity, cost, meters in PRODUCTS:
        product_create(
            session,
            actor=actor,
            data={
                "sku": sku,
                "vendor": vendor,
                "name": name,
                "description": description,
                "launch_url": f"https://{sku}.example/app",
                "meters": [
                    {"key": k, "name": n, "unit": u, "aggregation": a, "property": p}
                    for k, n, u, a, p in meters
                ],
            },
        )
        pool_create(
            session,
            actor=actor,
            data={
                "product": sku,
                "capacity": capacity,
                "starts_on": start,
                "ends_on": start + dt.timedelta(days=364),
                "unit_cost": {"amount": cost, "currency": "EUR"},
                "reference": f"PO-{sku.upper()}-1",
            },
        )
        for currency, amount in SEAT_PRICES[sku].items():
            price_create(
                session,
                actor=actor,
                data={"product": sku, "currency": currency, "model": "seat", "unit_amount": amount},
            )
    # A second pool for CAD Suite bought later, and metered prices with tiers.
    pool_create(
        session,
        actor=actor,
        data={
            "product": "cad-suite",
            "capacity": 20,
            "starts_on": today.replace(day=1),
            "ends_on": today.replace(day=1) + dt.timedelta(days=364),
            "unit_cost": {"amount": 4200, "currency": "EUR"},
            "reference": "PO-CAD-SUITE-2",
        },
    )
    price_create(
        session,
        actor=actor,
        data={
            "product": "cad-suite",
            "currency": "EUR",
            "model": "metered",
            "meter": "render_minutes",
            "tier_mode": "graduated",
            "tiers": [
                {"up_to": 1000, "unit_amount": 0},
                {"up_to": 10000, "unit_amount": 2},
                {"up_to": None, "unit_amount": 1},
            ],
        },
    )
    price_create(
        session,
        actor=actor,
        data={
            "product": "etl-flow",
            "currency": "GBP",
            "model": "metered",
            "meter": "rows_synced",
            "tier_mode": "volume",
            "tiers": [
                {"up_to": 1_000_000, "unit_amount": 0, "flat_amount": 0},
                {"up_to": None, "unit_amount": 1, "flat_amount": 5000},
            ],
        },
    )


DEMO_MONTHS_BACK = 3
# People who hold a seat but never use it: the idle-seat prompt shows them.
IDLE_PEOPLE = {"mia@acme-gmbh.example", "yui@kyoto-robotics.example"}


# ---------------------------------------------------------------- suppliers online (issue 15)

# slug: legal name, country, support contact, data residency
SUPPLIER_PROFILES = {
    "autodraft": ("AutoDraft Systems GmbH", "DE", "support@autodraft.example", "EU (Frankfurt)"),
    "datalake": ("DataLake Analytics Oy", "FI", "https://help.datalake.example", "EU (Helsinki)"),
    "securemail": ("SecureMail AG", "CH", "+41 44 000 00 00", "Switzerland (Zurich)"),
    "translingo": ("TransLingo SIA", "LV", "help@translingo.example", "EU (Riga)"),
    "cloudsheet": ("CloudSheet Inc.", "US", "support@cloudsheet.example", "USA (Virginia)"),
}
# slug: (days ago the status began, status, message), oldest first; the last one is now's
SUPPLIER_HISTORY: dict[str, list[tuple[float, str, str | None]]] = {
    "autodraft": [
        (90, "operational", None),
        (61.5, "maintenance", "Planned database upgrade"),
        (61.3, "operational", None),
        (12.9, "partial_outage", "Rendering queue stalled in one region"),
        (12.75, "operational", None),
    ],
    "datalake": [
        (90, "operational", None),
        (40.2, "major_outage", "Dashboards unavailable"),
        (40.05, "operational", None),
        (0.1, "degraded", "Report exports are slow"),
    ],
    "securemail": [(90, "operational", None)],
    "translingo": [
        (90, "operational", None),
        (25, "degraded", "Machine translation slower than usual"),
        (24.5, "operational", None),
    ],
    "cloudsheet": [
        (90, "operational", None),
        (7.0, "major_outage", "Sign-in failing for all customers"),
        (6.6, "operational", None),
    ],
}


def _supplier_status(session: Session, actor: Actor) -> None:
    """Vendors' profiles, 90 days of service status history, a resolved incident and an
    open one (suppliers online, issue 15)."""
    from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
    from portal.suppliers.models import VendorStatusInterval
    from portal.suppliers.services import add_incident_update, open_incident, update_profile

    now = now_utc()
    vendors = {v.slug: v for v in session.scalars(sa.select(Vendor))}
    for slug, (legal_name, country, contact, residency) in SUPPLIER_PROFILES.items():
        update_profile(
            session,
            actor,
            vendors[slug],
            {
                "legal_name": legal_name,
                "country": country,
                "support_contact": contact,
                "data_residency": residency,
            },
        )
    # History written as it would have been recorded (the services record changes as of now).
    for slug, spans in SUPPLIER_HISTORY.items():
        vendor = vendors[slug]
        starts = [now - dt.timedelta(days=days) for days, _status, _message in spans]
        for index, (_days, status, message) in enumerate(spans):
            session.add(
                VendorStatusInterval(
                    vendor_id=vendor.id,
                    service_status=ServiceStatus(status),
                    started_at=starts[index],
                    ended_at=starts[index + 1] if index + 1 < len(spans) else None,
                    source=StatusSource.VENDOR,
                    message=message,
                )
            )
        vendor.service_status = ServiceStatus(spans[-1][1])
        vendor.service_status_message = spans[-1][2]
        vendor.service_status_source = StatusSource.VENDOR
        vendor.service_status_at = starts[-1]
    session.flush()
    past = open_incident(
        session,
        actor,
        vendors["cloudsheet"],
        title="Sign-in failing for all customers",
        impact="critical",
        body="Nobody can sign in; we are investigating.",
        source="vendor",
        opened_at=now - dt.timedelta(days=7),
    )
    add_incident_update(
        session,
        actor,
        past,
        body="An expired certificate on the identity service; renewed.",
        state="monitoring",
        created_at=now - dt.timedelta(days=6, hours=14),
    )
    add_incident_update(
        session,
        actor,
        past,
        body="Sign-ins have worked for 12 hours. Resolved.",
        state="resolved",
        created_at=now - dt.timedelta(days=6, hours=2),
    )
    current = open_incident(
        session,
        actor,
        vendors["datalake"],
        title="Report exports are slow",
        impact="minor",
        body="Exports of large reports take several minutes; dashboards are unaffected.",
        source="vendor",
        opened_at=now - dt.timedelta(hours=2, minutes=24),
    )
    add_incident_update(
        session,
        actor,
        current,
        body="A storage node is overloaded; traffic is being moved.",
        state="identified",
        created_at=now - dt.timedelta(hours=1),
    )


# ---------------------------------------------------------------- notifications (issue 15)


def _notifications(session: Session, actor: Actor) -> None:
    """The seat holders of the demo incidents' vendors told now, not only once a worker runs
    the queued ``notifications.seat_holders`` jobs (which then tell nobody twice); the
    resolved incident's notifications are read."""
    from portal.jobs.models import Job
    from portal.notifications.events import JOB, seat_holders_job
    from portal.notifications.models import Notification

    session.flush()
    for arguments in session.scalars(sa.select(Job.arguments).where(Job.name == JOB)).all():
        seat_holders_job(session, actor=actor, **arguments)
    resolved = session.scalars(
        sa.select(Notification.key).where(Notification.kind == "incident.resolved")
    ).all()
    read = {
        f"{key.removesuffix(':resolved')}:{change}"
        for key in resolved
        for change in ("opened", "resolved")
    }
    session.execute(
        sa.update(Notification).where(Notification.key.in_(read)).values(read_at=now_utc())
    )


# ---------------------------------------------------------------- compliance documents (issue 15)

# vendor slug: (kind, title, issued days ago, expires in days or None, required)
COMPLIANCE_DOCUMENTS = [
    ("autodraft", "iso27001", "ISO/IEC 27001:2022 certificate", 345, 20, True),
    ("autodraft", "dpa", "Data-processing agreement 2025", 400, None, True),
    ("securemail", "dpa", "Data-processing agreement (Swiss FADP and GDPR)", 200, None, True),
    ("datalake", "soc2", "SOC 2 Type II report", 120, 245, False),
]


def _demo_pdf(title: str, vendor: str, issued: dt.date, expires: dt.date | None) -> bytes:
    """A one-page PDF standing in for a vendor's certificate."""
    from html import escape

    from weasyprint import HTML

    until = expires.isoformat() if expires else "until terminated"
    return HTML(
        string=(
            f"<h1>{escape(title)}</h1><p>{escape(vendor)}</p>"
            f"<p>Issued {issued.isoformat()}, valid {until}.</p>"
            "<p>Demo document of the shared-use software licensing portal.</p>"
        )
    ).write_pdf()


def _compliance_documents(session: Session, actor: Actor) -> None:
    """Vendors' certificates and agreements: one certificate expiring in 20 days (flagged on
    the vendor's pages), agreements that do not expire, a valid SOC 2 report."""
    from portal.catalogue.models import Vendor
    from portal.suppliers.compliance import document_upload

    today = now_utc().date()
    for slug, kind, title, issued_ago, expires_in, required in COMPLIANCE_DOCUMENTS:
        vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        assert vendor is not None
        issued = today - dt.timedelta(days=issued_ago)
        expires = today + dt.timedelta(days=expires_in) if expires_in is not None else None
        document_upload(
            session,
            actor=actor,
            vendor=vendor,
            data={
                "kind": kind,
                "title": title,
                "issued_on": issued,
                "expires_on": expires,
                "required": required,
            },
            content=_demo_pdf(title, vendor.legal_name or vendor.name, issued, expires),
            filename=f"{slug}-{kind}.pdf",
        )


def _subscriptions(session: Session, actor: Actor) -> None:
    """Subscriptions that began three months ago, with seats held since then."""
    started = (now_utc().date().replace(day=1) - dt.timedelta(days=62)).replace(day=1)
    for slug, subscriptions in SUBSCRIPTIONS.items():
        org = organisation_by_slug(session, slug)
        for sku, (quantity, people) in subscriptions.items():
            outcome = subscription_create(
                session,
                actor=actor,
                organisation=org,
                product=product_by_sku(session, sku),
                quantity=quantity,
                on_shortage="waitlist",
                starts_on=started,
            )
            for n, person in enumerate(people):
                seat = seat_assign(
                    session,
                    actor=actor,
                    subscription=outcome.subscription,
                    user_email=f"{person}@{slug}.example",
                )
                # Demo history: the seat was handed out in the subscription's first week.
                seat.assigned_at = dt.datetime.combine(
                    started + dt.timedelta(days=2 + n), dt.time(9), tzinfo=dt.UTC
                )


def _usage(session: Session, actor: Actor) -> int:
    """Three months of weekday usage by every seat holder (except the idle ones)."""
    rng = random.Random(2026)  # noqa: S311  (demo data, not security)
    now = now_utc()
    seats = session.scalars(
        sa.select(SeatAssignment).where(SeatAssignment.released_at.is_(None))
    ).unique()
    events = []
    for seat in seats:
        email = seat.user.email
        if email in IDLE_PEOPLE:
            continue
        product = seat.subscription.product
        day = seat.assigned_at.date()
        while day <= now.date():
            moment = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(
                minutes=rng.randint(0, 600)
            )
            if day.weekday() < 5 and moment < now:
                for meter in product.meters:
                    quantity = {
                        "sum": rng.randint(5, 400),
                        "max": rng.randint(10, 120),
                        "count": 1,
                        "unique_count": 1,
                    }[meter.aggregation]
                    events.append(
                        {
                            "idempotency_key": f"demo-{seat.id}-{meter.key}-{day.isoformat()}",
                            "organisation": seat.subscription.organisation.slug,
                            "product": product.sku,
                            "meter": meter.key,
                            "quantity": str(quantity),
                            "occurred_at": moment.isoformat(),
                            "user_email": email,
                            "properties": {"region": rng.choice(["eu", "us", "asia"])},
                        }
                    )
            day += dt.timedelta(days=1)
    accepted = 0
    for i in range(0, len(events), 10_000):
        result = usage_ingest(
            session,
            actor=actor,
            body=json.dumps({"events": events[i : i + 10_000]}).encode(),
            vendor_id=None,
            max_age_days=120,
        )
        accepted += result.accepted
    return accepted


# Manually billed organisations and what they have paid by bank transfer:
# the older month in full, the last month part (riga) or nothing yet.
PAID_IN_FULL_MONTHS_BACK = 2
PART_PAID = {"riga-logistics": 2}  # org: divisor of the total paid of last month's invoice


def _invoices(session: Session, actor: Actor) -> None:
    """Invoices of the two past months, finalised (numbers, PDFs, mail), some paid, some open."""
    today = now_utc().date()
    last = today.replace(day=1) - dt.timedelta(days=1)
    months = [period_of(last.replace(day=1) - dt.timedelta(days=1)), period_of(last)]
    organisations = session.scalars(
        sa.select(Organisation)
        .where(Organisation.status != OrganisationStatus.PENDING)
        .order_by(Organisation.id)
    ).all()
    for back, period in zip((2, 1), months, strict=True):
        for org in organisations:
            invoice, _ = invoice_draft_refresh(
                session, actor=actor, organisation=org, period=period
            )
            if invoice is None:
                continue
            invoice_finalize(session, actor=actor, invoice=invoice)
            if org.billing_provider != "manual" or invoice.status != InvoiceStatus.OPEN:
                continue
            if back == PAID_IN_FULL_MONTHS_BACK:
                amount = invoice.amount_due
            elif org.slug in PART_PAID:
                amount = invoice.amount_due // PART_PAID[org.slug]
            else:
                continue
            payment_record(
                session,
                actor=actor,
                invoice=invoice,
                amount=amount,
                method="bank_transfer",
                received_on=today,
                reference=invoice.payment_reference,
            )


# ---------------------------------------------------------------- the vendor portal (issue 15)

#: Each demo vendor's admin signs in to the vendor portal as vendor@<vendor slug>.example.
VENDOR_ADMIN = "vendor@autodraft.example"
VENDOR_ADMIN_NAMES = {"securemail": "Ирина Волкова"}  # speaks Russian (chosen on the profile)
USAGE_HEALTH_DAYS = 14


def _vendor_admins(session: Session, actor: Actor) -> None:
    """One admin per vendor, and two weeks of usage-reporting health per vendor with
    products: the counts ingestion keeps for a vendor token's batches (``usage_report_days``),
    written directly here (the demo's own usage came in through the council's uploads)."""
    from portal.catalogue.models import Product, Vendor
    from portal.metering.models import UsageReportDay

    rng = random.Random(15)  # noqa: S311  (demo data, not security)
    now = now_utc()
    with_products = set(session.scalars(sa.select(Product.vendor_id)))
    for vendor in session.scalars(sa.select(Vendor).order_by(Vendor.slug)):
        email = f"vendor@{vendor.slug}.example"
        user_create(
            session,
            actor=actor,
            email=email,
            name=VENDOR_ADMIN_NAMES.get(vendor.slug, f"{vendor.name.split()[0]} Admin"),
            role=Role.VENDOR_ADMIN,
            vendor_id=vendor.id,
        )
        if vendor.slug in VENDOR_ADMIN_NAMES:
            _speaks_russian(session, email)
        if vendor.id not in with_products:
            continue
        for back in range(USAGE_HEALTH_DAYS, 0, -1):
            day = now.date() - dt.timedelta(days=back)
            batches = rng.randint(4, 24)
            session.add(
                UsageReportDay(
                    vendor_id=vendor.id,
                    day=day,
                    batches=batches,
                    accepted=batches * rng.randint(40, 400),
                    duplicates=rng.choice([0, 0, 3, 12, 40]),
                    rejected_invalid=rng.choice([0, 0, 0, 1, 5]),
                    rejected_no_subscription=rng.choice([0, 0, 2, 9]),
                    rejected_not_organisation_person=rng.choice([0, 0, 0, 1]),
                    last_batch_at=dt.datetime.combine(day, dt.time(23, 40), tzinfo=dt.UTC),
                )
            )
    session.flush()


def _reconciliation(session: Session, actor: Actor) -> None:
    """AutoDraft provisions over SCIM (issue 17), and yesterday's reconciliation found two
    differences: a contractor AutoDraft added by hand, and one seat holder missing there.
    The demo's SCIM address is not reachable: "Reconcile now" and "Test the SCIM
    connection" say so, as they would for a vendor that is down."""
    from portal.provisioning import services as provisioning
    from portal.provisioning.reconcile_models import (
        DriftFinding,
        DriftKind,
        ReconciliationRun,
        RunState,
    )

    vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == "autodraft"))
    if vendor is None:
        return
    # Configured after the demo's seats were assigned: no SCIM delivery is left waiting.
    provisioning.settings_update(
        session,
        actor=actor,
        vendor=vendor,
        data={
            "scim_base_url": "https://scim.autodraft.example/scim/v2",
            "scim_token": "demo-autodraft-scim-token",
            "on_release": "deactivate",
        },
    )
    seated = session.scalars(
        sa.select(User)
        .join(SeatAssignment, SeatAssignment.user_id == User.id)
        .join(Product, Product.id == SeatAssignment.product_id)
        .where(Product.vendor_id == vendor.id, SeatAssignment.released_at.is_(None))
        .distinct()
        .order_by(User.id)
    ).all()
    if not seated:
        return
    started = now_utc() - dt.timedelta(days=1, hours=2)
    missing = seated[-1]
    session.add(
        ReconciliationRun(
            vendor_id=vendor.id,
            state=RunState.DONE,
            fix=False,
            started_at=started,
            finished_at=started + dt.timedelta(seconds=4),
            requested_by="job:provisioning.reconcile",
            vendor_users=len(seated),
            seated_people=len(seated),
            drift_count=2,
            fixed_count=0,
            findings=[
                DriftFinding(
                    kind=DriftKind.EXTRA,
                    user_name="contractor@autodraft-partner.example",
                    vendor_resource_id="ad-7f3c9e",
                ),
                DriftFinding(kind=DriftKind.MISSING, user_id=missing.id, user_name=missing.email),
            ],
        )
    )


def _provisioning(session: Session, actor: Actor) -> None:
    """SecureMail takes signed webhooks (issue 17), and its delivery log shows a few days of
    them: seats assigned and delivered at the first try, and one delivered after its
    receiver answered 503 twice. The demo's address is not reachable: a seat assigned
    in the demo is tried again for three days, then fails, as a real outage would."""
    from portal.provisioning import services as provisioning
    from portal.provisioning.models import Channel, Delivery, DeliveryAttempt, Event
    from portal.provisioning.models import DeliveryState as State

    vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == "securemail"))
    if vendor is None:
        return
    provisioning.settings_update(
        session,
        actor=actor,
        vendor=vendor,
        data={"webhook_url": "https://hooks.securemail.example/portal"},
    )
    provisioning.webhook_secret_rotate(session, actor=actor, vendor=vendor)
    seats = session.execute(
        sa.select(SeatAssignment, User)
        .join(User, User.id == SeatAssignment.user_id)
        .join(Product, Product.id == SeatAssignment.product_id)
        .where(Product.vendor_id == vendor.id, SeatAssignment.released_at.is_(None))
        .order_by(SeatAssignment.id)
        .limit(4)
    ).all()
    now = now_utc()
    for n, (seat, user) in enumerate(seats):
        at = now - dt.timedelta(days=4 - n, hours=3)
        product = session.get(Product, seat.product_id)
        organisation = session.get(Organisation, seat.organisation_id)
        assert product is not None and organisation is not None
        delivery = Delivery(
            organisation_id=seat.organisation_id,
            vendor_id=vendor.id,
            channel=Channel.WEBHOOK,
            event=Event.SEAT_ASSIGNED,
            sequence_key=f"user:{user.id}",
            user_id=user.id,
            product_id=product.id,
            message_id=f"msg_demo{seat.id:06d}",
            payload={
                "type": "seat.assigned",
                "timestamp": at.isoformat(),
                "data": {
                    "seat": {"id": str(seat.id), "assigned_at": at.isoformat()},
                    "person": {
                        "id": str(user.id),
                        "email": user.email,
                        "name": user.name,
                        "active": True,
                    },
                    "organisation": {
                        "id": str(organisation.id),
                        "slug": organisation.slug,
                        "name": organisation.name,
                    },
                    "product": {"id": str(product.id), "sku": product.sku, "name": product.name},
                },
            },
            state=State.DELIVERED,
            attempts=3 if n == 1 else 1,
            created_at=at,
            next_attempt_at=at,
            delivered_at=at + dt.timedelta(minutes=2 if n == 1 else 0, seconds=1),
            last_attempt_at=at,
            last_status=200,
        )
        session.add(delivery)
        session.flush()
        tries = (
            [(503, "retry", 0), (503, "retry", 40), (200, "delivered", 121)]
            if n == 1
            else [(200, "delivered", 1)]
        )
        for status, outcome, seconds in tries:
            session.add(
                DeliveryAttempt(
                    organisation_id=seat.organisation_id,
                    delivery_id=delivery.id,
                    at=at + dt.timedelta(seconds=seconds),
                    outcome=outcome,
                    status=status,
                    request=f"POST https://hooks.securemail.example/portal\nwebhook-id: "
                    f"{delivery.message_id}\n\n(the JSON body above)",
                    response=f"HTTP {status}\n\n" + ('{"ok":true}' if status == 200 else "busy"),
                    error=None if status == 200 else f"HTTP {status}",
                    duration_ms=80 + 10 * n,
                )
            )
    vendor_settings = provisioning.selectors.settings_for(session, vendor.id)
    if vendor_settings is not None:
        vendor_settings.last_success_at = now - dt.timedelta(days=1)


def _demo_second_factors(session: Session) -> None:
    """Council admin and finance must sign in with a second factor: the demo gives them
    an authenticator app with :data:`DEMO_TOTP_SECRET` (unless they have one already)."""
    for email in (COUNCIL_ADMIN, COUNCIL_FINANCE):
        user = session.scalar(sa.select(User).where(User.email == email))
        if user is None or session.scalar(
            sa.select(TotpFactor.id).where(TotpFactor.user_id == user.id)
        ):
            continue
        session.add(
            TotpFactor(
                user_id=user.id,
                organisation_id=user.organisation_id,
                secret_encrypted=encrypt_secret(DEMO_TOTP_SECRET),
                confirmed_at=now_utc(),
            )
        )
    session.flush()


def _sign_ins() -> list[str]:
    return [
        f"Sign in at /login with password “{DEMO_PASSWORD}” as:",
        f"  council admin   {COUNCIL_ADMIN}",
        f"  finance         {COUNCIL_FINANCE}",
        "  org admin       admin@acme-gmbh.example",
        "  member          jonas@acme-gmbh.example",
        f"  vendor admin    {VENDOR_ADMIN} (and vendor@<vendor>.example for each vendor)",
        "Council admin and finance then type a code from an authenticator app holding the",
        f"secret {DEMO_TOTP_SECRET}, or from: .venv/bin/python -c "
        f"\"import pyotp; print(pyotp.TOTP('{DEMO_TOTP_SECRET}').now())\"",
    ]


# ------------------------------------------------ renewals and council volume pricing (issue 16)

#: Team Chat: one pool of 32 seats ending in 50 days, council volume prices (SPEC 8.3), and
#: five months of growing seats: (organisation, days ago, seats from then on).
RENEWAL_SKU = "team-chat"
RENEWAL_HISTORY = [
    ("acme-gmbh", 150, 6),
    ("thames-analytics", 140, 4),
    ("acme-gmbh", 120, 8),
    ("thames-analytics", 100, 6),
    ("riga-logistics", 90, 5),
    ("acme-gmbh", 85, 10),
    ("thames-analytics", 70, 5),
    ("acme-gmbh", 50, 11),
    ("thames-analytics", 40, 8),
    ("acme-gmbh", 20, 14),
    ("thames-analytics", 10, 10),
]
RENEWAL_TIERS = {
    # currency: (up to 10 seats, up to 25, above), per seat-month, minor units
    "EUR": (1500, 1200, 950),
    "GBP": (1300, 1050, 850),
}


def _renewals(session: Session, actor: Actor) -> None:
    """A product whose pool ends soon and fills up: its renewal forecast, reminders and the
    council volume tier on its members' invoices. The seats' history is written as it would
    have been: each change made through the services, then dated back (as the demo's seat
    assignments are)."""
    from portal.seats.models import SubscriptionChange
    from portal.seats.subscriptions import subscription_resize

    today = now_utc().date()
    product_create(
        session,
        actor=actor,
        data={
            "sku": RENEWAL_SKU,
            "vendor": "securemail",
            "name": "Team Chat",
            "description": "Encrypted team messaging and video calls.",
            "launch_url": f"https://{RENEWAL_SKU}.example/app",
            "meters": [],
        },
    )
    pool_create(
        session,
        actor=actor,
        data={
            "product": RENEWAL_SKU,
            "capacity": 32,
            "starts_on": today - dt.timedelta(days=315),
            "ends_on": today + dt.timedelta(days=50),
            "unit_cost": {"amount": 700, "currency": "EUR"},
            "reference": "PO-TEAM-CHAT-1",
        },
    )
    for currency, (small, middle, large) in RENEWAL_TIERS.items():
        price_create(
            session,
            actor=actor,
            data={
                "product": RENEWAL_SKU,
                "currency": currency,
                "model": "seat",
                "tier_mode": "volume",
                "tier_basis": "council",
                "tiers": [
                    {"up_to": 10, "unit_amount": small},
                    {"up_to": 25, "unit_amount": middle},
                    {"up_to": None, "unit_amount": large},
                ],
            },
        )
    product = product_by_sku(session, RENEWAL_SKU)
    subscriptions: dict[str, Any] = {}
    for slug, days_ago, seats in RENEWAL_HISTORY:
        when = dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(9), tzinfo=dt.UTC)
        subscription = subscriptions.get(slug)
        if subscription is None:
            subscription = subscriptions[slug] = subscription_create(
                session,
                actor=actor,
                organisation=organisation_by_slug(session, slug),
                product=product,
                quantity=seats,
                starts_on=when.date(),
            ).subscription
        else:
            subscription_resize(session, actor=actor, subscription=subscription, quantity=seats)
        session.flush()
        change = session.scalars(
            sa.select(SubscriptionChange)
            .where(SubscriptionChange.subscription_id == subscription.id)
            .order_by(SubscriptionChange.id.desc())
            .limit(1)
        ).one()
        change.effective_at = when


# ---------------------------------------------------------------- purchase orders (issue 16)


def _purchase_orders(session: Session, actor: Actor) -> None:
    """Three orders: a draft (from the demand board), one approved by the council admin and
    finance (above the threshold) and one received into a pool of PDM Vault."""
    admin = Actor.person(session.scalar(sa.select(User).where(User.email == COUNCIL_ADMIN)))
    finance = Actor.person(session.scalar(sa.select(User).where(User.email == COUNCIL_FINANCE)))
    products = {p.sku: p for p in session.scalars(sa.select(Product))}
    vendors = {v.slug: v.id for v in session.scalars(sa.select(Vendor))}
    today = now_utc().date()
    next_year = today.replace(day=1) + dt.timedelta(days=366)
    purchase_orders.draft_purchase_order(
        session,
        actor,
        vendor_id=vendors["datalake"],
        lines=[{"product_id": products["bi-studio"].id, "seats": 20, "unit_cost": 1700}],
        currency="EUR",
        starts_on=next_year.replace(day=1),
        ends_on=next_year.replace(day=1, year=next_year.year + 1) - dt.timedelta(days=1),
        source="demand",
        notes="Waitlist on BI Studio; renewal at the volume price offered.",
    )
    approved = purchase_orders.draft_purchase_order(
        session,
        actor,
        vendor_id=vendors["securemail"],
        lines=[{"product_id": products["secure-mail"].id, "seats": 100, "unit_cost": 900}],
        currency="EUR",
        starts_on=today,
        ends_on=today + dt.timedelta(days=364),
    )
    purchase_orders.approve(session, admin, approved)
    purchase_orders.approve(session, finance, approved)
    received = purchase_orders.draft_purchase_order(
        session,
        actor,
        vendor_id=vendors["autodraft"],
        lines=[{"product_id": products["pdm-vault"].id, "seats": 10, "unit_cost": 1900}],
        currency="EUR",
        starts_on=today,
        ends_on=today + dt.timedelta(days=364),
        notes="Ten more PDM Vault seats for the waitlist.",
    )
    purchase_orders.approve(session, admin, received)
    purchase_orders.send(session, admin, received)
    purchase_orders.confirm(session, admin, received, vendor_reference="AD-SO-2291")
    purchase_orders.receive(session, admin, received)


def _product_requests(session: Session, actor: Actor) -> None:
    """Requests for products not in the catalogue (issue 16): ACME and Riga Logistics both
    ask for Atlas GIS (merged, planned), Thames Analytics for a design tool (declined), and
    Riga Logistics for a fleet tracker nobody answered yet."""
    admin = Actor.person(session.scalar(sa.select(User).where(User.email == COUNCIL_ADMIN)))

    def ask(email: str, name: str, vendor: str, seats: int, note: str):
        person = Actor.person(session.scalar(sa.select(User).where(User.email == email)))
        return demand.product_request_create(
            session, person, product_name=name, vendor_name=vendor, seats=seats, note=note
        )

    atlas = ask("jonas@acme-gmbh.example", "Atlas GIS", "Atlas Geo", 8, "Site planning maps.")
    twin = ask("janis@riga-logistics.example", "Atlas GIS Pro", "Atlas Geo", 5, "Route maps.")
    design = ask("oliver@thames-analytics.example", "Sketchboard", "Sketch Ltd", 4, "")
    ask("anna@riga-logistics.example", "FleetTrack", "Fleet Systems", 12, "Live truck positions.")
    demand.product_request_merge(session, admin, twin, into=atlas.id)
    demand.product_request_answer(
        session, admin, atlas, state="planned", reply="We are asking Atlas Geo for a quote."
    )
    demand.product_request_answer(
        session,
        admin,
        design,
        state="declined",
        reply="Please use the design tool already in the catalogue.",
    )
