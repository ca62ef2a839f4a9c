"""Reading and changing council settings; each has a type, a default and limits."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.policy import Action
from portal.settings.models import CouncilSetting
from portal.validation import Stripped, parse


def _prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{1,12}", value):
        raise ValueError("Use 1 to 12 capital letters and digits, e.g. INV.")
    return value


Prefix = Annotated[str, Stripped, AfterValidator(_prefix)]


class CouncilSettings(BaseModel):
    """Every council setting with its default."""

    model_config = ConfigDict(extra="forbid")
    #: tax rate for organisations without their own, in basis points (2000 = 20 %)
    default_tax_rate_bp: Annotated[int, Field(ge=0, le=10000)] = 0
    #: a seat with no usage for this many days is flagged idle to the org admin
    idle_seat_days: Annotated[int, Field(ge=1, le=365)] = 30
    #: invoice numbers are PREFIX-YYYY-NNNNNN
    invoice_prefix: Prefix = "INV"
    credit_note_prefix: Prefix = "CN"
    #: days after the due date before an open invoice counts as overdue
    payment_terms_days: Annotated[int, Field(ge=0, le=120)] = 30
    overdue_grace_days: Annotated[int, Field(ge=0, le=365)] = 14
    #: refuse new subscriptions of organisations with overdue invoices
    suspend_subscriptions_when_overdue: bool = False
    bank_details: Annotated[str, Stripped, StringConstraints(max_length=1000)] = (
        "Business Council e.V. · IBAN DE00 0000 0000 0000 0000 00 · BIC COUNDEFFXXX"
    )


def settings_get(session: Session) -> CouncilSettings:
    """The council's settings, defaults filled in (one query)."""
    stored = {row.key: row.value for row in session.query(CouncilSetting).all()}
    known = {k: v for k, v in stored.items() if k in CouncilSettings.model_fields}
    return CouncilSettings.model_validate(known)


def settings_update(session: Session, *, actor: Actor, data: dict[str, Any]) -> CouncilSettings:
    """Change some settings (council admins only)."""
    policy.require(
        actor, Action.SETTINGS_UPDATE, message="Only council admins change council settings."
    )
    current = settings_get(session)
    merged = parse(CouncilSettings, {**current.model_dump(), **data})
    before, after = {}, {}
    for key in data:
        old, new = getattr(current, key), getattr(merged, key)
        if old != new:
            row = session.get(CouncilSetting, key)
            if row is None:
                session.add(CouncilSetting(key=key, value=new))
            else:
                row.value = new
            before[key], after[key] = old, new
    session.flush()
    if after:
        audit_record(
            session,
            actor=actor,
            action="settings.update",
            target_type="settings",
            target_label="council",
            before=before,
            after=after,
        )
    return merged
