"""The audit log page: council admins see everything, org admins their own organisation."""

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal.audit.display import MONEY_KEYS, Change, broken_text, changes
from portal.audit.models import AuditEvent
from portal.audit.selectors import audit_chain_state, audit_events_list
from portal.audit.services import audit_chain_check
from portal.billing.models import CreditNote, Invoice
from portal.catalogue.models import LicencePool, Price
from portal.db import db_session
from portal.forms import committed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.i18n import _, _n
from portal.kernel.scope import Scope, scope_of
from portal.pagination import Page
from portal.tenancy.models import Organisation
from portal.web.lookups import organisation_named, organisation_suggestions

bp = Blueprint("audit", __name__)


#: Where the currency of an event's target (or its organisation) is kept.
CURRENCY_OF: dict[str, Any] = {
    "invoice": Invoice.currency,
    "credit_note": CreditNote.currency,
    "pool": LicencePool.unit_cost_currency,
    "price": Price.currency,
    "organisation": Organisation.currency,
}


def _holds_money(values: dict[str, Any] | None) -> bool:
    return any(
        k in MONEY_KEYS and isinstance(v, int) and not isinstance(v, bool)
        for k, v in (values or {}).items()
    )


def _event_currency(event: AuditEvent) -> str | None:
    """The currency of an event's amounts that the event does not name: its target's (invoice,
    credit note, pool, price), else its organisation's (looked up once per request and target)."""
    cache: dict[tuple[str, Any], str | None] = g.setdefault("audit_currencies", {})
    keys: list[tuple[str, Any]] = []
    if event.target_type in CURRENCY_OF and (event.target_id or "").isdigit():
        keys.append((event.target_type, int(event.target_id or 0)))
    if event.organisation_id is not None:
        keys.append(("organisation", event.organisation_id))
    for key in keys:
        if key not in cache:
            column = CURRENCY_OF[key[0]]
            cache[key] = db_session().scalar(sa.select(column).where(column.class_.id == key[1]))
        if cache[key]:
            return cache[key]
    return None


@bp.app_template_global("audit_changes")
def audit_changes(event: AuditEvent) -> list[Change]:
    """What an event changed, its amounts shown as money (audit/_events.html)."""
    money = _holds_money(event.before) or _holds_money(event.after)
    named = any("currency" in (values or {}) for values in (event.before, event.after))
    currency = _event_currency(event) if money and not named else None
    return changes(event.before, event.after, currency)


bp.add_app_template_global(broken_text, "audit_broken_text")


@bp.get("/audit")
@auth.role_required(Role.COUNCIL_ADMIN, Role.ORG_ADMIN)
def audit_log():
    """Newest changes first, filterable by action (and by organisation for the council)."""
    page = request.args.get("page", 1, type=int) or 1
    action = request.args.get("action", "").strip()[:80] or None
    org = None
    lookup = organisation_named(db_session(), None)
    suggestions: list[tuple[str, str]] = []
    if current_user.role == Role.COUNCIL_ADMIN:
        lookup = organisation_named(db_session(), request.args.get("organisation"))
        org = lookup.found
        scope = Scope.organisation(org.id) if org else scope_of(auth.current_actor())
        suggestions = organisation_suggestions(db_session(), lookup.near)
    else:
        org = auth.current_organisation()
        scope = Scope.organisation(org.id)
    if lookup.error:  # nothing to list until the organisation is one that exists
        events: Page[AuditEvent] = Page(items=[], page=1, per_page=1, total=0)
    else:
        events = audit_events_list(db_session(), scope=scope, action_prefix=action, page=page)
    page_html = render_template(
        "audit/log.html",
        events=events,
        org=org,
        action=action or "",
        organisation=lookup,
        organisations=suggestions,
    )
    return page_html, 422 if lookup.error else 200


@bp.get("/audit/chain")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def chain():
    """The audit log's hash chain: its length, last link and the last check's result."""
    return render_template(
        "audit/chain.html", state=audit_chain_state(db_session()), form=ConfirmForm()
    )


@bp.post("/audit/chain/verify")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def chain_verify():
    """Walk the whole chain now (in the request, streaming), record and show the result."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was checked. Try again."), "error")
        return redirect(url_for("audit.chain"))
    with committed(form) as saved:
        report = audit_chain_check(db_session(), actor=auth.current_actor())
    if saved:
        if report.intact:
            flash(
                _n(
                    "Chain intact: %(num)d event checked.",
                    "Chain intact: %(num)d events checked.",
                    report.events,
                ),
                "success",
            )
        else:
            broken = report.broken.as_dict() if report.broken else {}
            flash(_("The chain is broken at %(where)s.", where=broken_text(broken)), "error")
    return redirect(url_for("audit.chain"))
