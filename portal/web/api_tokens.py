"""The Tokens pages: council admins manage every API token, org admins their organisation's.

A new token is shown once, on the page that answers the creating POST (never
cached, never stored); afterwards only its prefix is visible.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from portal.api import selectors, services
from portal.api.forms import CouncilTokenForm, OrgTokenForm
from portal.api.models import TokenScope
from portal.catalogue.selectors import vendor_by_slug, vendors_list
from portal.db import db_session
from portal.forms import committed, expiry_arguments
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.i18n import _
from portal.kernel.scope import Scope, scope_of
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("tokens", __name__)


def _council_form() -> CouncilTokenForm:
    form = CouncilTokenForm()
    form.vendor.choices = [("", "—")] + [
        (v.slug, f"{v.name} ({v.slug})") for v in vendors_list(db_session())
    ]
    return form


def _created(token: Any, plaintext: str, back: str) -> ResponseReturnValue:
    response = render_template(
        "api/token_created.html", token=token, plaintext=plaintext, back=back
    )
    return response, 201, {"Cache-Control": "no-store"}


def _page(form: OrgTokenForm, *, organisation: Any, status: int = 200) -> ResponseReturnValue:
    scope = Scope.organisation(organisation.id) if organisation else Scope.council()
    tokens = selectors.tokens_list(db_session(), scope=scope)
    return (
        render_template(
            "api/tokens.html",
            tokens=tokens,
            form=form,
            org=organisation,
            confirm_form=ConfirmForm(),
        ),
        status,
    )


@bp.get("/council/tokens")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_tokens() -> ResponseReturnValue:
    """Every API token, and a form to create one of any scope."""
    return _page(_council_form(), organisation=None)


@bp.post("/council/tokens")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_token_create() -> ResponseReturnValue:
    """Create a token; its value is shown once on the answer."""
    form = _council_form()
    if form.validate_on_submit():
        with committed(form) as saved:
            scope = form.scope.data
            token, plaintext = services.token_create(
                db_session(),
                actor=g.actor,
                scope=scope,
                organisation=organisation_by_slug(
                    db_session(), form.organisation.data.strip(), field="organisation"
                )
                if scope == TokenScope.ORGANISATION and (form.organisation.data or "").strip()
                else None,
                vendor=vendor_by_slug(db_session(), form.vendor.data, field="vendor")
                if scope == TokenScope.VENDOR and form.vendor.data
                else None,
                name=form.name.data,
                **expiry_arguments(form.expires_in.data),
            )
        if saved:
            return _created(token, plaintext, url_for("tokens.council_tokens"))
    return _page(form, organisation=None, status=400)


@bp.post("/council/tokens/<int:token_id>/revoke")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_token_revoke(token_id: int) -> ResponseReturnValue:
    """Revoke any token at once."""
    token = selectors.token_in_scope(
        db_session(), scope=scope_of(auth.current_actor()), token_id=token_id
    )
    return _revoke(token, url_for("tokens.council_tokens"))


@bp.get("/org/tokens")
@auth.role_required(Role.ORG_ADMIN)
def org_tokens() -> ResponseReturnValue:
    """The organisation's own API tokens."""
    return _page(OrgTokenForm(), organisation=auth.current_organisation())


@bp.post("/org/tokens")
@auth.role_required(Role.ORG_ADMIN)
def org_token_create() -> ResponseReturnValue:
    """Create an organisation token for the admin's own organisation."""
    org = auth.current_organisation()
    form = OrgTokenForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            token, plaintext = services.token_create(
                db_session(),
                actor=g.actor,
                scope=TokenScope.ORGANISATION,
                organisation=org,
                name=form.name.data,
                **expiry_arguments(form.expires_in.data),
            )
        if saved:
            return _created(token, plaintext, url_for("tokens.org_tokens"))
    return _page(form, organisation=org, status=400)


@bp.post("/org/tokens/<int:token_id>/revoke")
@auth.role_required(Role.ORG_ADMIN)
def org_token_revoke(token_id: int) -> ResponseReturnValue:
    """Revoke one of the organisation's own tokens."""
    org = auth.current_organisation()
    token = selectors.token_in_scope(
        db_session(), scope=Scope.organisation(org.id), token_id=token_id
    )
    return _revoke(token, url_for("tokens.org_tokens"))


def _revoke(token: Any, back: str) -> ResponseReturnValue:
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(back)
    with committed(form) as saved:  # a refusal (no field errors) is flashed
        services.token_revoke(db_session(), actor=g.actor, token=token)
    if saved:
        flash(
            _(
                "Token %(prefix)s… “%(name)s” is revoked; it stops working at once.",
                prefix=token.prefix,
                name=token.name,
            ),
            "success",
        )
    return redirect(back)
