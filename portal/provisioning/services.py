"""Provisioning settings, the webhook secret and redelivery: the rules, for pages, API and CLI.

Council admins, and a vendor's own admins and API tokens (``Reach.OWN_VENDOR``: another
vendor's settings and deliveries do not exist for them), set where a vendor's changes go:

* a SCIM 2.0 base URL and bearer token (sealed with :mod:`portal.crypto`, never shown
  again), what a release does there (``on_release``: ``deactivate`` or ``delete``),
  whether people are pushed into a group per product, whether reconciliation fixes drift;
* a webhook URL, and its signing secret: made by the portal (``whsec_…``), shown once;
  a new one replaces it while the old one still signs for :data:`ROTATION_OVERLAP`.

Addresses must be ``https://`` in production (``http://`` elsewhere, for local tests),
with a host and without credentials, a query or a fragment.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Vendor
from portal.crypto import encrypt_secret
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.provisioning import selectors, webhooks
from portal.provisioning.delivery import enqueue_delivery
from portal.provisioning.models import Delivery, DeliveryState, OnRelease, VendorProvisioning
from portal.provisioning.outbox import forget_configuration
from portal.validation import parse

URL_MAX = 500
TOKEN_MAX = 4000
#: How long the previous webhook secret still signs after a new one is made.
ROTATION_OVERLAP = dt.timedelta(hours=webhooks.ROTATION_OVERLAP_HOURS)

#: The settings fields; a field left out is left as it is, ``None`` removes it.
FIELDS = ("scim_base_url", "scim_token", "webhook_url", "on_release", "group_push", "reconcile_fix")


class SettingsFields(BaseModel):
    """What a change of settings may carry (anything else is refused)."""

    model_config = ConfigDict(extra="forbid")

    scim_base_url: StrictStr | None = None
    scim_token: StrictStr | None = None
    webhook_url: StrictStr | None = None
    on_release: OnRelease | None = None
    group_push: StrictBool | None = None
    reconcile_fix: StrictBool | None = None


def _https_only() -> bool:
    return not has_app_context() or current_app.config.get("PORTAL_ENV") == "production"


def check_url(value: str) -> str:
    """An http(s) address with a host; ``https`` only in production; no credentials."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number raises
    except ValueError:
        raise ValueError(_l("Enter an address such as https://app.example.com/scim/v2.")) from None
    del port
    schemes = ("https",) if _https_only() else ("https", "http")
    if parts.scheme not in schemes:
        raise ValueError(
            _l("The address must start with https://.")
            if _https_only()
            else _l("The address must start with https:// (or http://).")
        )
    if not parts.hostname or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise ValueError(_l("Enter an address such as https://app.example.com/scim/v2."))
    if parts.username is not None or parts.password is not None:
        raise ValueError(_l("Leave user names and passwords out of the address."))
    if parts.fragment:
        raise ValueError(_l("Leave the #fragment out of the address."))
    if len(text) > URL_MAX:
        raise ValueError(_l("Use at most %(num)d characters.", num=URL_MAX))
    return text


def _check_token(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError(_l("Enter the token, or remove it."))
    if len(text) > TOKEN_MAX or any(ord(ch) < 33 or ord(ch) > 126 for ch in text):
        raise ValueError(_l("Paste the token as the vendor gave it (printable characters)."))
    return text


def settings_of(session: Session, *, actor: Actor, vendor: Vendor) -> VendorProvisioning | None:
    """The vendor's settings (None: never configured)."""
    policy.require(actor, Action.PROVISIONING_READ, vendor_id=vendor.id)
    return selectors.settings_for(session, vendor.id)


def _settings_row(session: Session, vendor: Vendor) -> VendorProvisioning:
    row = selectors.settings_for(session, vendor.id)
    if row is None:
        row = VendorProvisioning(
            vendor_id=vendor.id,
            on_release=OnRelease.DEACTIVATE,
            group_push=False,
            reconcile_fix=False,
        )
        session.add(row)
    return row


def describe(row: VendorProvisioning | None, vendor: Vendor) -> dict[str, Any]:
    """The settings as pages, the API and the audit log show them: never a secret (times
    as datetimes)."""
    if row is None:
        return {
            "vendor": vendor.slug,
            "scim_base_url": None,
            "scim_token_set": False,
            "webhook_url": None,
            "webhook_secret_set": False,
            "webhook_secret_created_at": None,
            "previous_secret_until": None,
            "on_release": OnRelease.DEACTIVATE.value,
            "group_push": False,
            "reconcile_fix": False,
            "failing": False,
            "failing_since": None,
            "last_success_at": None,
        }
    return {
        "vendor": vendor.slug,
        "scim_base_url": row.scim_base_url,
        "scim_token_set": row.scim_token_sealed is not None,
        "webhook_url": row.webhook_url,
        "webhook_secret_set": row.webhook_secret_sealed is not None,
        "webhook_secret_created_at": row.webhook_secret_created_at,
        "previous_secret_until": (
            row.previous_secret_until
            if row.previous_secret_until and row.previous_secret_until > now_utc()
            else None
        ),
        "on_release": str(row.on_release),
        "group_push": row.group_push,
        "reconcile_fix": row.reconcile_fix,
        "failing": row.failing,
        "failing_since": row.failing_since,
        "last_success_at": row.last_success_at,
    }


def _audit_view(described: dict[str, Any]) -> dict[str, Any]:
    keys = ("scim_base_url", "scim_token_set", "webhook_url", "on_release", "group_push")
    return {k: described[k] for k in (*keys, "reconcile_fix")}


def settings_update(
    session: Session, *, actor: Actor, vendor: Vendor, data: dict[str, Any]
) -> VendorProvisioning:
    """Change the fields ``data`` names (``None`` removes one); the rest stay as they are."""
    policy.require(actor, Action.PROVISIONING_CONFIGURE, vendor_id=vendor.id)
    if not isinstance(data, dict):
        raise ValidationFailed(_l("Send a JSON object of settings."))
    fields = parse(SettingsFields, data)
    given = fields.model_fields_set
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name in ("scim_base_url", "webhook_url"):
        if name in given and getattr(fields, name) is not None:
            raw = getattr(fields, name)
            if not raw.strip():
                values[name] = None  # blank: removed, as a form's empty field says
                continue
            try:
                values[name] = check_url(raw)
            except ValueError as error:
                errors[name] = [str(error)]
        elif name in given:
            values[name] = None
    if "scim_token" in given:
        token = fields.scim_token
        if token is None:
            values["scim_token"] = None
        else:
            try:
                values["scim_token"] = _check_token(token)
            except ValueError as error:
                errors["scim_token"] = [str(error)]
    for name in ("on_release", "group_push", "reconcile_fix"):
        if name in given:
            value = getattr(fields, name)
            if value is None:
                errors[name] = [_l("Choose a value.")]
            else:
                values[name] = value
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    row = _settings_row(session, vendor)
    before = _audit_view(describe(row, vendor)) if row.id else {}
    for name, value in values.items():
        if name == "scim_token":
            row.scim_token_sealed = encrypt_secret(value) if value else None
        else:
            setattr(row, name, value)
    session.flush()
    forget_configuration(session)
    after = _audit_view(describe(row, vendor))
    if before != after:
        audit_record(
            session,
            actor=actor,
            action="provisioning.configure",
            target_type="vendor",
            target_id=vendor.id,
            target_label=vendor.slug,
            before={k: v for k, v in before.items() if after.get(k) != v},
            after={k: v for k, v in after.items() if before.get(k) != v},
        )
    return row


def webhook_secret_rotate(
    session: Session, *, actor: Actor, vendor: Vendor
) -> tuple[VendorProvisioning, str]:
    """A new signing secret (returned once, in the clear); the old one signs as well until
    :data:`ROTATION_OVERLAP` has passed."""
    policy.require(actor, Action.PROVISIONING_CONFIGURE, vendor_id=vendor.id)
    row = _settings_row(session, vendor)
    now = now_utc()
    secret = webhooks.new_secret()
    rotated = row.webhook_secret_sealed is not None
    if rotated:
        row.previous_secret_sealed = row.webhook_secret_sealed
        row.previous_secret_until = now + ROTATION_OVERLAP
    row.webhook_secret_sealed = encrypt_secret(secret)
    row.webhook_secret_created_at = now
    session.flush()
    forget_configuration(session)
    audit_record(
        session,
        actor=actor,
        action="provisioning.webhook_secret",
        target_type="vendor",
        target_id=vendor.id,
        target_label=vendor.slug,
        after={
            "rotated": rotated,
            "previous_signs_until": (
                row.previous_secret_until.isoformat()
                if rotated and row.previous_secret_until
                else None
            ),
        },
    )
    return row, secret


def redeliver(session: Session, *, actor: Actor, delivery: Delivery) -> Delivery:
    """Send a delivered or failed delivery again (same ``webhook-id``), soon, in its turn."""
    policy.require(actor, Action.DELIVERY_REDELIVER, vendor_id=delivery.vendor_id)
    if delivery.state == DeliveryState.PENDING:
        raise InvalidState(
            _l("This delivery is still being tried; it goes out by itself."),
            code="delivery_pending",
        )
    before = {"state": str(delivery.state), "attempts": delivery.attempts}
    now = now_utc()
    delivery.state = DeliveryState.PENDING
    delivery.next_attempt_at = now
    delivery.redelivered_at = now
    delivery.lease_until = None
    delivery.leased_by = None
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="provisioning.redeliver",
        target_type="delivery",
        target_id=delivery.id,
        target_label=f"{delivery.vendor.slug} {delivery.event} {delivery.message_id}",
        organisation_id=delivery.organisation_id,
        before=before,
        after={"state": "pending"},
    )
    enqueue_delivery(session, delivery.vendor_id)
    return delivery
