"""Reading and changing council settings; each has a type, a default and limits."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.settings.models import CouncilSetting
from portal.validation import MAX_AMOUNT, Currency, Stripped, parse

#: Purchase orders' numbers are PO-YYYY-NNNNNN, counted apart (portal.procurement).
PURCHASE_ORDER_PREFIX = "PO"


def _prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{1,12}", value):
        raise ValueError(_("Use 1 to 12 capital letters and digits, e.g. INV."))
    if value == PURCHASE_ORDER_PREFIX:
        # one counter per prefix and year: invoices numbered PO-… would share the purchase
        # orders' and leave gaps in both
        raise ValueError(_("PO numbers purchase orders; choose another prefix."))
    return value


def check_tax_id(value: str) -> str:
    """A tax (VAT) id as written on invoices: letters, digits, spaces and . - /, 4–64 long."""
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ./-]{2,62}[A-Za-z0-9]", value):
        raise ValueError(
            _("Use 4 to 64 letters, digits, spaces, dots, hyphens or slashes, e.g. DE123456789.")
        )
    return value.upper()


def check_iban(value: str) -> str:
    """An IBAN whose check digits are right (ISO 13616, mod 97), grouped by four."""
    if not value:
        return value
    compact = re.sub(r"\s+", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", compact):
        raise ValueError(_("Enter an IBAN: a country code, two check digits, then the account."))
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    if int(digits) % 97 != 1:
        raise ValueError(_("This IBAN's check digits are wrong; check it for a typing error."))
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def check_bic(value: str) -> str:
    """A BIC (SWIFT code): 8 or 11 letters and digits."""
    value = value.replace(" ", "").upper()
    if value and not re.fullmatch(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?", value):
        raise ValueError(_("Enter a BIC of 8 or 11 letters and digits, e.g. COUNDEFFXXX."))
    return value


Prefix = Annotated[str, Stripped, AfterValidator(_prefix)]
SellerText = Annotated[str, Stripped, StringConstraints(max_length=200)]
SellerAddress = Annotated[str, Stripped, StringConstraints(max_length=500)]
TaxId = Annotated[str, Stripped, StringConstraints(max_length=64), AfterValidator(check_tax_id)]
Iban = Annotated[str, Stripped, StringConstraints(max_length=50), AfterValidator(check_iban)]
Bic = Annotated[str, Stripped, StringConstraints(max_length=14), AfterValidator(check_bic)]


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
    #: the seller on every invoice (issue 14): legal name (empty: the portal's council
    #: name), postal address, tax (VAT) id, and the account transfers go to
    seller_legal_name: SellerText = ""
    seller_address: SellerAddress = ""
    seller_tax_id: TaxId = ""
    seller_iban: Iban = ""
    seller_bic: Bic = ""
    #: purchase orders (issue 16): an order whose total is above its currency's amount here
    #: (minor units) needs finance's approval as well as a council admin's, by another
    #: person; an order in a currency not listed always needs both (fails closed)
    purchase_order_finance_threshold: dict[Currency, Annotated[int, Field(ge=0, le=MAX_AMOUNT)]] = {
        "EUR": 1_000_000
    }
    #: suppliers (issue 15): a vendor is put under review when one of its documents marked
    #: required expires (once per expiry; the council may reinstate it)
    compliance_review_on_expiry: bool = False


def settings_get(session: Session) -> CouncilSettings:
    """The council's settings, defaults filled in (one query)."""
    stored = {row.key: row.value for row in session.query(CouncilSetting).all()}
    known = {k: v for k, v in stored.items() if k in CouncilSettings.model_fields}
    return CouncilSettings.model_validate(known)


def settings_errors(session: Session, *, data: dict[str, Any]) -> dict[str, list[str]]:
    """What is wrong with ``data`` as settings (nothing is changed): field → messages.

    Pages call it when their own form checks already failed, so every field's
    problem is shown on the first submit.
    """
    current = settings_get(session)
    try:
        parse(CouncilSettings, {**current.model_dump(), **data})
    except ValidationFailed as error:
        return {k: v for k, v in error.errors.items() if k in data}
    return {}


def settings_update(session: Session, *, actor: Actor, data: dict[str, Any]) -> CouncilSettings:
    """Change some settings (council admins only)."""
    policy.require(
        actor, Action.SETTINGS_UPDATE, message=_l("Only council admins change council settings.")
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
