"""Provisioning pages (issue 17): a vendor's provisioning settings and webhook secret, and the
delivery log with each delivery's attempts and "deliver again".

* council: ``/council/provisioning/deliveries`` (every vendor's deliveries, filtered by
  vendor, state, event and person; every vendor's channels with a link to its settings),
  ``/council/provisioning/deliveries/<id>``, ``/council/vendors/<slug>/provisioning``;
* a vendor admin, for its own vendor only: ``/vendor/provisioning`` (settings),
  ``/vendor/provisioning/deliveries`` and ``/vendor/provisioning/deliveries/<id>``.

The pages are adapters: :mod:`portal.provisioning.services` and ``selectors`` check the
policy with the vendor, so another vendor's delivery named in a URL is not found.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice

from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug, vendors_list
from portal.db import db_session
from portal.forms import committed, submitted
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.provisioning import selectors, services
from portal.provisioning.forms import (
    CHANNEL_LABELS,
    EVENT_LABELS,
    OUTCOME_LABELS,
    STATE_LABELS,
    DeliveryFilterForm,
    RedeliverForm,
    SecretForm,
    SettingsForm,
)
from portal.provisioning.models import DeliveryState, Event, VendorProvisioning
from portal.suppliers import vendor_portal as own

bp = Blueprint("provisioning", __name__)

LABELS = {
    "state_labels": STATE_LABELS,
    "event_labels": EVENT_LABELS,
    "channel_labels": CHANNEL_LABELS,
    "outcome_labels": OUTCOME_LABELS,
}

vendor_admin_only = auth.role_required(Role.VENDOR_ADMIN)


def _page_number() -> int:
    raw = request.args.get("page", "")
    return int(raw) if raw.isdigit() and len(raw) < 10 else 1


# ---------------------------------------------------------------- settings


def _settings_form(row: VendorProvisioning | None) -> SettingsForm:
    form = SettingsForm(formdata=None)
    if row is not None:
        form.scim_base_url.data = row.scim_base_url
        form.webhook_url.data = row.webhook_url
        form.on_release.data = str(row.on_release)
        form.group_push.data = row.group_push
        form.reconcile_fix.data = row.reconcile_fix
    return form


def _settings_page(
    vendor: Vendor,
    *,
    council: bool,
    form: SettingsForm | None = None,
    new_secret: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = db_session()
    row = services.settings_of(session, actor=g.actor, vendor=vendor)
    if council:
        save_url = url_for("provisioning.council_settings", slug=vendor.slug)
        secret_url = url_for("provisioning.council_secret", slug=vendor.slug)
        log_url = url_for("provisioning.council_deliveries", vendor=vendor.slug)
    else:
        save_url = url_for("provisioning.vendor_settings")
        secret_url = url_for("provisioning.vendor_secret")
        log_url = url_for("provisioning.vendor_deliveries")
    response = make_response(
        render_template(
            "provisioning/settings.html",
            vendor=vendor,
            council=council,
            settings=services.describe(row, vendor),
            form=form or _settings_form(row),
            secret_form=SecretForm(formdata=None),
            new_secret=new_secret,
            counts=selectors.state_counts(session, vendor_id=vendor.id),
            save_url=save_url,
            secret_url=secret_url,
            log_url=log_url,
            **LABELS,
        ),
        status,
    )
    if new_secret:
        response.headers["Cache-Control"] = "no-store"
    return response


def _save_settings(vendor: Vendor, *, council: bool, back: str) -> ResponseReturnValue:
    form = SettingsForm()
    if submitted(form):
        data: dict[str, Any] = {
            "scim_base_url": (form.scim_base_url.data or "").strip() or None,
            "webhook_url": (form.webhook_url.data or "").strip() or None,
            "on_release": form.on_release.data,
            "group_push": bool(form.group_push.data),
            "reconcile_fix": bool(form.reconcile_fix.data),
        }
        if form.remove_scim_token.data:
            data["scim_token"] = None
        elif (form.scim_token.data or "").strip():
            data["scim_token"] = form.scim_token.data
        if data["on_release"] not in ("deactivate", "delete"):
            form.on_release.errors = [_("Choose what a release does.")]
        with committed(form) as saved:
            services.settings_update(db_session(), actor=g.actor, vendor=vendor, data=data)
        if saved:
            flash(_("The provisioning settings are saved."), "success")
            return redirect(back)
    return _settings_page(vendor, council=council, form=form, status=400)


def _rotate(vendor: Vendor, *, council: bool, back: str) -> ResponseReturnValue:
    form = SecretForm()
    if not submitted(form):
        return redirect(back)
    row, secret = services.webhook_secret_rotate(db_session(), actor=g.actor, vendor=vendor)
    rotated = row.previous_secret_until is not None
    db_session().commit()
    flash(
        _("A new signing secret is made. The previous one signs as well for 24 hours.")
        if rotated
        else _("A signing secret is made."),
        "success",
    )
    return _settings_page(vendor, council=council, new_secret=secret)


# ---------------------------------------------------------------- the log


def _log_page(*, council: bool, vendor: Vendor | None) -> ResponseReturnValue:
    session = db_session()
    form = DeliveryFilterForm(request.args)
    form.validate()
    vendors = vendors_list(session) if council else []
    form.vendor.choices = [
        SelectChoice("", _("Every vendor")),
        *(SelectChoice(v.slug, v.name) for v in vendors),
    ]
    filter_vendor = vendor
    unknown = False
    if council and form.vendor.data:
        filter_vendor = next((v for v in vendors if v.slug == form.vendor.data), None)
        if filter_vendor is None:
            form.vendor.errors = [_("No such vendor.")]
            unknown = True
    state = form.state.data if form.state.data in STATE_LABELS else None
    event = form.event.data if form.event.data in EVENT_LABELS else None
    if form.state.data and state is None:
        form.state.errors = [_("Choose a state from the list.")]
    if form.event.data and event is None:
        form.event.errors = [_("Choose an event from the list.")]
    person = (form.person.data or "").strip()[:254] or None
    page = selectors.deliveries_paged(
        session,
        actor=g.actor,
        filters=selectors.DeliveryFilter(
            vendor_id=-1 if unknown else (filter_vendor.id if filter_vendor else None),
            state=DeliveryState(state) if state else None,
            event=Event(event) if event else None,
            person=person,
        ),
        page=_page_number(),
    )
    settings = {row.vendor_id: row for row in selectors.all_settings(session)} if council else {}
    args = {
        k: v
        for k, v in {
            "vendor": form.vendor.data if council else None,
            "state": state,
            "event": event,
            "person": person,
        }.items()
        if v
    }
    return render_template(
        "provisioning/deliveries.html",
        council=council,
        vendor=vendor,
        vendors=vendors,
        settings=settings,
        form=form,
        page=page,
        last=selectors.last_attempts(session, page.items),
        endpoint="provisioning.council_deliveries" if council else "provisioning.vendor_deliveries",
        detail_endpoint=(
            "provisioning.council_delivery" if council else "provisioning.vendor_delivery"
        ),
        args=args,
        **LABELS,
    )


def _delivery_page(delivery_id: int, *, council: bool) -> ResponseReturnValue:
    session = db_session()
    delivery = selectors.delivery_for(session, actor=g.actor, delivery_id=delivery_id)
    redeliver_url = (
        url_for("provisioning.council_redeliver", delivery_id=delivery.id)
        if council
        else url_for("provisioning.vendor_redeliver", delivery_id=delivery.id)
    )
    back = (
        url_for("provisioning.council_deliveries", vendor=delivery.vendor.slug)
        if council
        else url_for("provisioning.vendor_deliveries")
    )
    return render_template(
        "provisioning/delivery.html",
        council=council,
        delivery=delivery,
        attempts=selectors.attempts_of(session, delivery),
        form=RedeliverForm(formdata=None),
        redeliver_url=redeliver_url,
        back=back,
        **LABELS,
    )


def _redeliver(delivery_id: int, *, council: bool) -> ResponseReturnValue:
    session = db_session()
    delivery = selectors.delivery_for(session, actor=g.actor, delivery_id=delivery_id)
    endpoint = "provisioning.council_delivery" if council else "provisioning.vendor_delivery"
    form = RedeliverForm()
    if submitted(form):
        with committed(form) as saved:
            services.redeliver(session, actor=g.actor, delivery=delivery)
        if saved:
            flash(_("The delivery goes out again shortly."), "success")
    return redirect(url_for(endpoint, delivery_id=delivery_id))


# ---------------------------------------------------------------- council


@bp.get("/council/provisioning/deliveries")
@auth.action_required(Action.DELIVERY_READ, Reach.ANY)
def council_deliveries() -> ResponseReturnValue:
    """Every vendor's deliveries, and every vendor's provisioning channels."""
    return _log_page(council=True, vendor=None)


@bp.get("/council/provisioning/deliveries/<int:delivery_id>")
@auth.action_required(Action.DELIVERY_READ, Reach.ANY)
def council_delivery(delivery_id: int) -> ResponseReturnValue:
    return _delivery_page(delivery_id, council=True)


@bp.post("/council/provisioning/deliveries/<int:delivery_id>/redeliver")
@auth.action_required(Action.DELIVERY_REDELIVER, Reach.ANY)
def council_redeliver(delivery_id: int) -> ResponseReturnValue:
    return _redeliver(delivery_id, council=True)


@bp.get("/council/vendors/<slug>/provisioning")
@auth.action_required(Action.PROVISIONING_READ, Reach.ANY)
def council_settings(slug: str) -> ResponseReturnValue:
    return _settings_page(vendor_by_slug(db_session(), slug), council=True)


@bp.post("/council/vendors/<slug>/provisioning")
@auth.action_required(Action.PROVISIONING_CONFIGURE, Reach.ANY)
def council_settings_save(slug: str) -> ResponseReturnValue:
    vendor = vendor_by_slug(db_session(), slug)
    back = url_for("provisioning.council_settings", slug=vendor.slug)
    return _save_settings(vendor, council=True, back=back)


@bp.post("/council/vendors/<slug>/provisioning/webhook-secret")
@auth.action_required(Action.PROVISIONING_CONFIGURE, Reach.ANY)
def council_secret(slug: str) -> ResponseReturnValue:
    vendor = vendor_by_slug(db_session(), slug)
    back = url_for("provisioning.council_settings", slug=vendor.slug)
    return _rotate(vendor, council=True, back=back)


# ---------------------------------------------------------------- the vendor's own


@bp.get("/vendor/provisioning")
@vendor_admin_only
def vendor_settings() -> ResponseReturnValue:
    return _settings_page(own.own_vendor(db_session(), g.actor), council=False)


@bp.post("/vendor/provisioning")
@vendor_admin_only
def vendor_settings_save() -> ResponseReturnValue:
    vendor = own.own_vendor(db_session(), g.actor)
    return _save_settings(vendor, council=False, back=url_for("provisioning.vendor_settings"))


@bp.post("/vendor/provisioning/webhook-secret")
@vendor_admin_only
def vendor_secret() -> ResponseReturnValue:
    vendor = own.own_vendor(db_session(), g.actor)
    return _rotate(vendor, council=False, back=url_for("provisioning.vendor_settings"))


@bp.get("/vendor/provisioning/deliveries")
@vendor_admin_only
def vendor_deliveries() -> ResponseReturnValue:
    vendor = own.own_vendor(db_session(), g.actor)
    return _log_page(council=False, vendor=vendor)


@bp.get("/vendor/provisioning/deliveries/<int:delivery_id>")
@vendor_admin_only
def vendor_delivery(delivery_id: int) -> ResponseReturnValue:
    return _delivery_page(delivery_id, council=False)


@bp.post("/vendor/provisioning/deliveries/<int:delivery_id>/redeliver")
@vendor_admin_only
def vendor_redeliver(delivery_id: int) -> ResponseReturnValue:
    return _redeliver(delivery_id, council=False)
