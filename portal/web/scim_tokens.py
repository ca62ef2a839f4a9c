"""An org admin's SCIM pages: tokens (shown once), and groups mapped to products.

``/org/scim`` lists the organisation's SCIM tokens and the base URL to give the
identity provider; ``/org/scim/groups`` maps the groups the provider pushed to
products the organisation subscribes to, and lists who could not get a seat.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from portal.catalogue.selectors import product_by_sku
from portal.db import db_session
from portal.forms import committed, expiry_arguments
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.i18n import _, _n
from portal.kernel.scope import Scope
from portal.scim import selectors, services
from portal.scim.forms import MappingForm, ScimTokenForm
from portal.seats.selectors import subscriptions_list

bp = Blueprint("scim", __name__)


def _tokens_page(form: ScimTokenForm, status: int = 200) -> ResponseReturnValue:
    org = auth.current_organisation()
    return render_template(
        "sso/scim_tokens.html",
        org=org,
        form=form,
        tokens=selectors.tokens_of(db_session(), organisation_id=org.id),
        base_url=current_app.config["PORTAL_BASE_URL"] + "/scim/v2",
    ), status


@bp.get("/org/scim")
@auth.role_required(Role.ORG_ADMIN)
def org_scim() -> ResponseReturnValue:
    """SCIM tokens and the endpoint to configure at the identity provider."""
    return _tokens_page(ScimTokenForm())


@bp.post("/org/scim")
@auth.role_required(Role.ORG_ADMIN)
def org_scim_token_create() -> ResponseReturnValue:
    """Create a SCIM token; it is shown once, on this answer."""
    org = auth.current_organisation()
    form = ScimTokenForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            token, plaintext = services.token_create(
                db_session(),
                actor=g.actor,
                organisation=org,
                name=form.name.data,
                **expiry_arguments(form.expires_in.data),
            )
        if saved:
            return (
                render_template(
                    "sso/scim_token_created.html",
                    token=token,
                    plaintext=plaintext,
                    base_url=current_app.config["PORTAL_BASE_URL"] + "/scim/v2",
                ),
                201,
                {"Cache-Control": "no-store"},
            )
    return _tokens_page(form, 400)


@bp.post("/org/scim/tokens/<int:token_id>/revoke")
@auth.role_required(Role.ORG_ADMIN)
def org_scim_token_revoke(token_id: int) -> ResponseReturnValue:
    """Revoke a SCIM token at once."""
    org = auth.current_organisation()
    token = selectors.token_in_scope(db_session(), organisation_id=org.id, token_id=token_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            services.token_revoke(db_session(), actor=g.actor, token=token)
        if saved:
            flash(
                _(
                    "SCIM token %(prefix)s… “%(name)s” is revoked.",
                    prefix=token.prefix,
                    name=token.name,
                ),
                "success",
            )
    return redirect(url_for("scim.org_scim"))


def _mapping_form(org: Any) -> MappingForm:
    form = MappingForm()
    form.group.choices = [
        (str(grp.id), grp.display_name)
        for grp in selectors.groups_list(db_session(), organisation_id=org.id)
    ]
    form.product.choices = [
        (s.product.sku, s.product.name)
        for s in subscriptions_list(db_session(), scope=Scope.organisation(org.id))
    ]
    return form


def _report_flash(report: services.SeatReport) -> None:
    if report.assigned:
        flash(
            _n("%(num)d seat assigned.", "%(num)d seats assigned.", len(report.assigned)), "success"
        )
    for email, sku, why in report.failed:
        flash(
            _("%(email)s got no seat of %(sku)s: %(reason)s", email=email, sku=sku, reason=why),
            "error",
        )


@bp.route("/org/scim/groups", methods=["GET", "POST"])
@auth.role_required(Role.ORG_ADMIN)
def org_scim_groups() -> ResponseReturnValue:
    """Groups from the identity provider, their product mappings, and seat shortfalls."""
    org = auth.current_organisation()
    form = _mapping_form(org)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            with committed(form) as saved:
                group = selectors.scim_group(
                    db_session(), organisation_id=org.id, resource_id=form.group.data
                )
                product = product_by_sku(db_session(), form.product.data, field="product")
                _mapping, report = services.mapping_create(
                    db_session(), actor=g.actor, organisation=org, group=group, product=product
                )
            if saved:
                flash(
                    _(
                        "%(group)s now gives seats of %(product)s.",
                        group=group.display_name,
                        product=product.name,
                    ),
                    "success",
                )
                _report_flash(report)
                return redirect(url_for("scim.org_scim_groups"))
        status = 400
    groups = selectors.groups_list(db_session(), organisation_id=org.id)
    return render_template(
        "sso/scim_groups.html",
        org=org,
        form=form,
        groups=groups,
        members=selectors.members_of(db_session(), [grp.id for grp in groups]),
        mappings=selectors.mappings_of(db_session(), organisation_id=org.id),
        shortfalls=selectors.shortfalls(db_session(), organisation_id=org.id),
    ), status


@bp.post("/org/scim/mappings/<int:mapping_id>/remove")
@auth.role_required(Role.ORG_ADMIN)
def org_scim_mapping_remove(mapping_id: int) -> ResponseReturnValue:
    """Unmap a group; its members lose the seats it gave them."""
    org = auth.current_organisation()
    mapping = selectors.mapping_in_scope(
        db_session(), organisation_id=org.id, mapping_id=mapping_id
    )
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            report = services.mapping_delete(db_session(), actor=g.actor, mapping=mapping)
        if saved:
            flash(
                _n(
                    "Mapping removed; %(num)d seat released.",
                    "Mapping removed; %(num)d seats released.",
                    len(report.released),
                ),
                "success",
            )
    return redirect(url_for("scim.org_scim_groups"))


@bp.post("/org/scim/mappings/sync")
@auth.role_required(Role.ORG_ADMIN)
def org_scim_mappings_sync() -> ResponseReturnValue:
    """Give seats again to mapped groups' members who lack one (after adding seats)."""
    org = auth.current_organisation()
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            report = services.mappings_sync(db_session(), actor=g.actor, organisation=org)
        if saved:
            _report_flash(report)
            if not report.assigned and not report.failed:
                flash(_("Everyone in a mapped group has a seat."), "info")
    return redirect(url_for("scim.org_scim_groups"))
