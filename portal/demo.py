"""Demo data for a newcomer's portal (``portal demo``).

Builds a small council through the same services the pages use, so the demo
obeys every rule. Running it again changes nothing. Later capabilities add
their part of the demo here (catalogue, subscriptions, usage, invoices).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import Actor
from portal.identity.models import Role, User
from portal.identity.services import user_create
from portal.tenancy.services import organisation_apply, organisation_create, organisation_transition

DEMO_PASSWORD = "demo-password"  # noqa: S105  (a published demo credential)
COUNCIL_ADMIN = "admin@council.example"

ORGANISATIONS = [
    # slug, name, country, currency, provider, members
    ("acme-gmbh", "ACME Maschinenbau GmbH", "DE", "EUR", "stripe", ["jonas", "lena", "mia"]),
    ("tbilisi-tech", "Tbilisi Tech LLC", "GE", "GEL", "manual", ["nino", "giorgi"]),
    ("thames-analytics", "Thames Analytics Ltd", "GB", "GBP", "stripe", ["oliver", "amelia"]),
    ("kyoto-robotics", "Kyoto Robotics K.K.", "JP", "JPY", "manual", ["haruto", "yui"]),
    ("riga-logistics", "Riga Logistics SIA", "LV", "EUR", "manual", ["janis", "anna"]),
    ("nordic-design", "Nordic Design AB", "SE", "SEK", "stripe", ["elsa"]),
]


def load_demo(session: Session) -> list[str]:
    """Create the demo council; return the lines to print (sign-ins)."""
    actor = Actor.system("demo")
    if session.scalar(sa.select(User.id).where(User.email == COUNCIL_ADMIN)) is not None:
        return ["Demo data is already loaded.", *_sign_ins()]
    user_create(
        session,
        actor=actor,
        email=COUNCIL_ADMIN,
        name="Council Admin",
        role=Role.COUNCIL_ADMIN,
        password=DEMO_PASSWORD,
    )
    user_create(
        session,
        actor=actor,
        email="finance@council.example",
        name="Council Finance",
        role=Role.FINANCE,
        password=DEMO_PASSWORD,
    )
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
            },
        )
        user_create(
            session,
            actor=actor,
            email=f"admin@{slug}.example",
            name=f"{name.split()[0]} Admin",
            role=Role.ORG_ADMIN,
            organisation=org,
            password=DEMO_PASSWORD,
        )
        for person in members:
            user_create(
                session,
                actor=actor,
                email=f"{person}@{slug}.example",
                name=person.capitalize(),
                role=Role.MEMBER,
                organisation=org,
                password=DEMO_PASSWORD,
            )
        if slug == "nordic-design":
            organisation_transition(
                session,
                actor=actor,
                organisation=org,
                to_status="suspended",
                reason="Unpaid membership fee",
            )
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
    session.flush()
    return ["Demo data loaded.", *_sign_ins()]


def _sign_ins() -> list[str]:
    return [
        f"Sign in at /login with password “{DEMO_PASSWORD}” as:",
        f"  council admin   {COUNCIL_ADMIN}",
        "  finance         finance@council.example",
        "  org admin       admin@acme-gmbh.example",
        "  member          jonas@acme-gmbh.example",
    ]
