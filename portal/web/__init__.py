"""Blueprint registration, template helpers, the home redirect and developer pages."""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    has_request_context,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from portal import i18n
from portal.db import db_session
from portal.extensions import csrf
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.i18n import _, _l
from portal.mail import outbox_messages
from portal.seats.selectors import my_software as my_software_of

bp = Blueprint("web", __name__)


@bp.get("/")
def home() -> ResponseReturnValue:
    """Signed-in people go to their dashboard; others to the sign-in page."""
    if current_user.is_authenticated:
        return redirect(auth.home_for(current_user))
    return render_template("home.html")


@bp.get("/my")
@login_required
def my_software() -> ResponseReturnValue:
    """A person's own software: the seats they hold and the seats they asked for."""
    mine = None
    if current_user.organisation_id is not None:
        mine = my_software_of(
            db_session(), organisation_id=current_user.organisation_id, user_id=current_user.id
        )
    return render_template("my_software.html", mine=mine)


@bp.get("/dev/outbox")
def outbox() -> ResponseReturnValue:
    """Mail the portal would have sent: in development only, for signed-in council staff.

    The outbox holds every invitation and password-reset link, so anyone who could
    read it could take over any account: elsewhere it does not exist (404), and
    there only council admins and finance see it (others 403, strangers sign in).
    """
    if current_app.config["PORTAL_ENV"] != "development":
        abort(404)
    return _outbox_for_staff()


@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def _outbox_for_staff() -> ResponseReturnValue:
    return render_template("dev/outbox.html", messages=outbox_messages())


def register_blueprints(app: Flask) -> None:
    """Attach every domain's pages."""
    from portal.web.account import bp as account_bp
    from portal.web.api_tokens import bp as tokens_bp
    from portal.web.audit import bp as audit_bp
    from portal.web.billing import bp as billing_bp
    from portal.web.catalogue import bp as catalogue_bp

    # The second wave (SPEC 8): suppliers online, the vendor portal, notifications,
    # procurement, provisioning.
    from portal.web.demand import bp as demand_bp
    from portal.web.forecasts import bp as forecasts_bp
    from portal.web.identity import bp as auth_bp
    from portal.web.jobs import bp as jobs_bp
    from portal.web.language import bp as language_bp
    from portal.web.lookups import bp as lookups_bp
    from portal.web.mail import bp as mail_bp
    from portal.web.metering import bp as metering_bp
    from portal.web.notifications import bp as notifications_bp
    from portal.web.passkeys import bp as passkeys_bp
    from portal.web.people import bp as people_bp
    from portal.web.procurement import bp as procurement_bp
    from portal.web.provisioning import bp as provisioning_bp
    from portal.web.provisioning_scim import bp as provisioning_scim_bp
    from portal.web.seats import bp as seats_bp
    from portal.web.sessions import bp as sessions_bp
    from portal.web.settings import bp as settings_bp
    from portal.web.supplier_feeds import bp as supplier_feeds_bp
    from portal.web.suppliers import bp as suppliers_bp
    from portal.web.tenancy import bp as tenancy_bp
    from portal.web.vendor_portal import bp as vendor_portal_bp

    app.register_blueprint(metering_bp)
    app.register_blueprint(settings_bp)
    for blueprint in (
        bp,
        auth_bp,
        people_bp,
        tenancy_bp,
        audit_bp,
        catalogue_bp,
        seats_bp,
        sessions_bp,
        account_bp,
        passkeys_bp,
        tokens_bp,
        billing_bp,
        jobs_bp,
        mail_bp,
        language_bp,
        lookups_bp,
        suppliers_bp,
        supplier_feeds_bp,
        vendor_portal_bp,
        notifications_bp,
        procurement_bp,
        demand_bp,
        forecasts_bp,
        provisioning_bp,
        provisioning_scim_bp,
    ):
        app.register_blueprint(blueprint)

    # Single sign-on and SCIM: settings pages, provider callbacks, the /scim/v2 API.
    from portal.scim.api import bp as scim_api_bp
    from portal.web.scim_tokens import bp as scim_bp
    from portal.web.sso import bp as sso_bp

    for blueprint in (sso_bp, scim_bp, scim_api_bp):
        app.register_blueprint(blueprint)

    # Card payments: the payment-method page, and Stripe's webhook (exempt from CSRF:
    # Stripe's signature on the raw body authenticates it).
    from portal.web.payments import bp as payments_bp
    from portal.web.payments import stripe_webhook

    csrf.exempt(stripe_webhook)
    app.register_blueprint(payments_bp)

    from portal import health

    health.init_app(app)  # /healthz and /readyz


# The main navigation per role: (endpoint, label) items, and ("Label", [items]) groups
# that render as a disclosure menu (<details>, so they work without JavaScript).
NAV: dict[Role, list] = {
    Role.COUNCIL_ADMIN: [
        ("tenancy.council_dashboard", _l("Dashboard")),
        ("tenancy.organisations", _l("Organisations")),
        ("catalogue.council_catalogue", _l("Catalogue")),
        ("catalogue.vendors", _l("Vendors")),
        ("suppliers.directory", _l("Suppliers")),
        ("metering.council_usage", _l("Usage")),
        ("billing.finance", _l("Finance")),
        (
            _l("Procurement"),
            [
                ("demand.board", _l("Demand")),
                ("procurement.purchase_orders", _l("Purchase orders")),
                ("forecasts.index", _l("Renewals")),
            ],
        ),
        (
            _l("Admin"),
            [
                ("provisioning.council_deliveries", _l("Deliveries")),
                ("provisioning_scim.council_reconciliation", _l("Reconciliation")),
                ("people.staff_users", _l("Council staff")),
                ("sso.council_domains", _l("Email domains")),
                ("tokens.council_tokens", _l("API tokens")),
                ("settings.council_settings", _l("Settings")),
                ("audit.audit_log", _l("Audit log")),
                ("jobs.jobs_list", _l("Jobs")),
            ],
        ),
    ],
    Role.FINANCE: [
        ("tenancy.council_dashboard", _l("Dashboard")),
        ("tenancy.organisations", _l("Organisations")),
        ("catalogue.council_catalogue", _l("Catalogue")),
        ("metering.council_usage", _l("Usage")),
        ("billing.finance", _l("Invoices")),
        ("billing.exports_page", _l("Exports")),
        ("procurement.purchase_orders", _l("Purchase orders")),
        ("jobs.jobs_list", _l("Jobs")),
        ("audit.chain", _l("Audit chain")),
    ],
    Role.ORG_ADMIN: [
        ("tenancy.org_dashboard", _l("Dashboard")),
        ("seats.subscriptions", _l("Subscriptions")),
        ("catalogue.member_catalogue", _l("Catalogue")),
        ("metering.org_usage", _l("Usage")),
        ("billing.org_invoices", _l("Invoices")),
        ("people.org_users", _l("People")),
        (
            _l("Admin"),
            [
                ("seats.seat_requests", _l("Seat requests")),
                ("metering.idle_seats", _l("Idle seats")),
                ("tenancy.org_profile", _l("Organisation")),
                ("payments.payment_method", _l("Payment method")),
                ("sso.org_sso", _l("Single sign-on")),
                ("sso.org_domains", _l("Domains")),
                ("scim.org_scim", _l("SCIM")),
                ("tokens.org_tokens", _l("API tokens")),
                ("audit.audit_log", _l("Audit log")),
            ],
        ),
        ("suppliers.directory", _l("Suppliers")),
        ("web.my_software", _l("My software")),
    ],
    Role.MEMBER: [
        ("web.my_software", _l("My software")),
        ("catalogue.member_catalogue", _l("Catalogue")),
        ("suppliers.directory", _l("Suppliers")),
    ],
    Role.VENDOR_ADMIN: [
        ("vendor_portal.home", _l("Overview")),
        ("vendor_portal.status", _l("Service status")),
        ("vendor_portal.products", _l("Products")),
        ("vendor_portal.usage_health", _l("Usage reporting")),
        (
            _l("Admin"),
            [
                ("vendor_portal.profile", _l("Profile")),
                ("vendor_portal.tokens", _l("API tokens")),
                ("provisioning.vendor_settings", _l("Provisioning")),
                ("provisioning.vendor_deliveries", _l("Deliveries")),
                ("provisioning_scim.vendor_reconciliation", _l("Reconciliation")),
            ],
        ),
        ("suppliers.directory", _l("Suppliers")),
    ],
}


def _nav_entries(role: Role) -> list[dict]:
    """The navigation of a role with URLs: links, and groups holding links."""
    entries = []
    for first, second in NAV[role]:
        if isinstance(second, list):
            links = [{"url": url_for(e), "label": label, "endpoint": e} for e, label in second]
            entries.append(
                {"label": first, "links": links, "endpoints": [link["endpoint"] for link in links]}
            )
        else:
            entries.append({"url": url_for(first), "label": second, "endpoint": first})
    return entries


def register_template_helpers(app: Flask) -> None:
    """Filters and globals the templates use."""
    from portal.web.layout import scrolling_tables

    # Every table of a page's content scrolls inside its own box (templates/base.html).
    app.add_template_filter(scrolling_tables, "scrolling_tables")

    # Money, numbers, dates and datetimes in the reader's locale: portal.i18n's filters.
    @app.template_filter("percent_bp")
    def percent_bp(value: int | None) -> str:
        """A tax rate in basis points; none: the council's default rate applies."""
        return _("council default") if value is None else i18n.percent_bp(value)

    @app.context_processor
    def navigation() -> dict:
        items = []
        if has_request_context() and current_user.is_authenticated:
            items = _nav_entries(Role(current_user.role))
        return {"nav_items": items, "council_name": app.config["PORTAL_COUNCIL_NAME"], "Role": Role}
