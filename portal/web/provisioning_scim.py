"""Reconciliation pages (issue 17): a vendor's SCIM users compared with the seats, per vendor,
for council admins and that vendor's admins; "test the SCIM connection" beside it.

* ``/council/provisioning/reconciliation``: every vendor with SCIM and its latest run;
* ``/council/vendors/<slug>/reconciliation``: one vendor's runs and a run's findings, with
  "reconcile now" (optionally fixing: queued, a worker runs it, the page refreshes until it
  ends) and "test the SCIM connection";
* ``/vendor/provisioning/reconciliation``: the same for a vendor admin's own vendor.

The pages are adapters: :mod:`portal.provisioning.reconcile` checks the policy
(``provisioning.read``, ``provisioning.reconcile``, ``provisioning.configure``) with the
vendor, so another vendor's run named in the URL is not found.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.forms import committed, submitted
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.provisioning import reconcile
from portal.provisioning.scim_forms import (
    DRIFT_FIX_LABELS,
    DRIFT_KIND_LABELS,
    RUN_STATE_LABELS,
    ConnectionTestForm,
    ReconcileForm,
)
from portal.suppliers import vendor_portal as own

bp = Blueprint("provisioning_scim", __name__)

LABELS = {
    "state_labels": RUN_STATE_LABELS,
    "kind_labels": DRIFT_KIND_LABELS,
    "fix_labels": DRIFT_FIX_LABELS,
}


def _run_id() -> int | None:
    raw = request.args.get("run", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _page(
    vendor: Vendor,
    *,
    council: bool,
    form: ReconcileForm | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = db_session()
    runs = reconcile.runs_of(session, actor=g.actor, vendor=vendor)
    chosen = _run_id()
    run = (
        reconcile.run_of(session, actor=g.actor, vendor=vendor, run_id=chosen)
        if chosen is not None
        else (runs[0] if runs else None)
    )
    findings = reconcile.findings_of(session, actor=g.actor, run=run) if run else []
    settings = reconcile.scim_settings_of(session, actor=g.actor, vendor=vendor)
    if council:
        here = url_for("provisioning_scim.council_vendor", slug=vendor.slug)
        test_url = url_for("provisioning_scim.council_test", slug=vendor.slug)
    else:
        here = url_for("provisioning_scim.vendor_reconciliation")
        test_url = url_for("provisioning_scim.vendor_test")
    return (
        render_template(
            "provisioning_scim/reconciliation.html",
            vendor=vendor,
            council=council,
            runs=runs,
            run=run,
            findings=findings,
            scim_on=bool(settings and settings.scim_configured),
            fixes=bool(settings and settings.reconcile_fix),
            form=form or ReconcileForm(formdata=None),
            test_form=ConnectionTestForm(formdata=None),
            here=here,
            test_url=test_url,
            **LABELS,
        ),
        status,
    )


def _reconcile(vendor: Vendor, *, council: bool, back: str) -> ResponseReturnValue:
    """Queue a reconciliation (a worker runs it); the page follows the run until it ends."""
    form = ReconcileForm()
    if submitted(form):
        with committed(form) as saved:
            run = reconcile.reconcile_request(
                db_session(), actor=g.actor, vendor=vendor, fix=bool(form.fix.data)
            )
        if saved:
            flash(
                _(
                    "The reconciliation of %(vendor)s is queued: this page shows it when it "
                    "is done.",
                    vendor=vendor.name,
                ),
                "info",
            )
            return redirect(f"{back}?run={run.id}")
    return _page(vendor, council=council, form=form, status=400)


def _test(vendor: Vendor, back: str) -> ResponseReturnValue:
    form = ConnectionTestForm()
    if submitted(form):
        try:
            check = reconcile.connection_check(db_session(), actor=g.actor, vendor=vendor)
        except DomainError as error:
            flash(str(error.detail), "error")
        else:
            if check.ok:
                flash(_("The SCIM connection works."), "success")
            elif check.status is not None:
                flash(
                    _("The vendor's SCIM service answered %(status)s.", status=check.status),
                    "error",
                )
            else:
                flash(_("The vendor's SCIM service could not be reached."), "error")
    return redirect(back)


# ---------------------------------------------------------------- council


@bp.get("/council/provisioning/reconciliation")
@auth.action_required(Action.PROVISIONING_READ, Reach.ANY)
def council_reconciliation() -> ResponseReturnValue:
    """Every vendor with a SCIM connection and how its latest reconciliation went."""
    rows = reconcile.latest_runs(db_session(), actor=g.actor)
    return render_template("provisioning_scim/council.html", rows=rows, **LABELS)


@bp.get("/council/vendors/<slug>/reconciliation")
@auth.action_required(Action.PROVISIONING_READ, Reach.ANY)
def council_vendor(slug: str) -> ResponseReturnValue:
    return _page(vendor_by_slug(db_session(), slug), council=True)


@bp.post("/council/vendors/<slug>/reconciliation")
@auth.action_required(Action.PROVISIONING_RECONCILE, Reach.ANY)
def council_reconcile(slug: str) -> ResponseReturnValue:
    vendor = vendor_by_slug(db_session(), slug)
    back = url_for("provisioning_scim.council_vendor", slug=vendor.slug)
    return _reconcile(vendor, council=True, back=back)


@bp.post("/council/vendors/<slug>/scim-test")
@auth.action_required(Action.PROVISIONING_CONFIGURE, Reach.ANY)
def council_test(slug: str) -> ResponseReturnValue:
    vendor = vendor_by_slug(db_session(), slug)
    return _test(vendor, url_for("provisioning_scim.council_vendor", slug=vendor.slug))


# ---------------------------------------------------------------- the vendor's own


vendor_admin_only = auth.role_required(Role.VENDOR_ADMIN)


@bp.get("/vendor/provisioning/reconciliation")
@vendor_admin_only
def vendor_reconciliation() -> ResponseReturnValue:
    return _page(own.own_vendor(db_session(), g.actor), council=False)


@bp.post("/vendor/provisioning/reconciliation")
@vendor_admin_only
def vendor_reconcile() -> ResponseReturnValue:
    vendor = own.own_vendor(db_session(), g.actor)
    back = url_for("provisioning_scim.vendor_reconciliation")
    return _reconcile(vendor, council=False, back=back)


@bp.post("/vendor/provisioning/scim-test")
@vendor_admin_only
def vendor_test() -> ResponseReturnValue:
    vendor = own.own_vendor(db_session(), g.actor)
    return _test(vendor, url_for("provisioning_scim.vendor_reconciliation"))
