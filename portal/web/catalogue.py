"""Catalogue pages: vendors, products, meters, pools and prices; the members' catalogue.

Council admins change the catalogue; finance reads the council pages. Every
person of an organisation browses ``/catalogue``, where members ask for a seat
and org admins subscribe (those actions are the seats domain's, see
:mod:`portal.web.seats`).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal import i18n
from portal.catalogue import selectors, services
from portal.catalogue.forms import (
    MeterForm,
    PoolEditForm,
    PoolForm,
    PriceForm,
    ProductEditForm,
    ProductForm,
    VendorForm,
)
from portal.db import db_session
from portal.forms import committed, submitted
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _n
from portal.seats import figures
from portal.suppliers import compliance
from portal.web import vendor_portal

bp = Blueprint("catalogue", __name__)

COUNCIL = (Role.COUNCIL_ADMIN, Role.FINANCE)
SEARCH_MAX = 100


def _search_term() -> str:
    return request.args.get("q", "").strip()[:SEARCH_MAX]


def _status() -> int:
    """200 for a fresh form, 400 for a submitted one shown again with its messages.

    (A stale CSRF token never reaches a view: CSRFProtect refuses it with a page
    that says nothing was saved.)
    """
    return 400 if request.method == "POST" else 200


# ---------------------------------------------------------------- council: catalogue


@bp.get("/council/catalogue")
@auth.role_required(*COUNCIL)
def council_catalogue():
    """Every product with its capacity in force, reserved, assigned, free and waiting seats."""
    search = _search_term()
    products = figures.catalogue_list(db_session(), day=now_utc().date(), search=search or None)
    return render_template("catalogue/council_catalogue.html", products=products, q=search)


# ---------------------------------------------------------------- council: vendors


@bp.get("/council/vendors")
@auth.role_required(*COUNCIL)
def vendors():
    """The council's suppliers, their standing, service status and expiring documents."""
    today = now_utc().date()
    return render_template(
        "catalogue/vendors.html",
        vendors=selectors.vendors_overview(db_session()),
        expiring=compliance.expiring_by_vendor(db_session(), actor=g.actor, today=today),
        today=today,
    )


@bp.route("/council/vendors/new", methods=["GET", "POST"])
@auth.role_required(Role.COUNCIL_ADMIN)
def vendor_new():
    """Add a supplier."""
    form = VendorForm()
    if submitted(form):
        with committed(form) as saved:
            vendor = services.vendor_create(db_session(), actor=g.actor, data=form.service_data())
        if saved:
            flash(_("%(vendor)s is added.", vendor=vendor.name), "success")
            return redirect(url_for("catalogue.vendors"))
    return render_template("catalogue/vendor_form.html", form=form, vendor=None), _status()


@bp.route("/council/vendors/<slug>", methods=["GET", "POST"])
@auth.role_required(*COUNCIL)
def vendor_edit(slug: str):
    """A supplier's details and status; council admins change them (the slug stays)."""
    vendor = selectors.vendor_by_slug(db_session(), slug)
    form = VendorForm(obj=vendor)
    del form.slug  # the slug stays
    if request.method == "POST":
        if current_user.role != Role.COUNCIL_ADMIN:
            abort(403)
        if submitted(form):
            with committed(form) as saved:
                services.vendor_update(
                    db_session(), actor=g.actor, vendor=vendor, data=form.service_data()
                )
            if saved:
                flash(_("%(vendor)s is saved.", vendor=vendor.name), "success")
                return redirect(url_for("catalogue.vendors"))
    return render_template(
        "catalogue/vendor_form.html",
        form=form,
        vendor=vendor,
        **vendor_portal.admins_context(vendor),  # its vendor admins (issue 15)
    ), _status()


# ---------------------------------------------------------------- council: products


@bp.route("/council/products/new", methods=["GET", "POST"])
@auth.role_required(Role.COUNCIL_ADMIN)
def product_new():
    """Add a product of a vendor; meters, pools and prices follow on its page."""
    form = ProductForm(vendors=selectors.vendors_list(db_session()))
    if request.method == "GET" and request.args.get("vendor"):
        form.vendor.data = request.args["vendor"]
    if submitted(form):
        with committed(form) as saved:
            product = services.product_create(db_session(), actor=g.actor, data=form.service_data())
        if saved:
            flash(
                _("%(product)s is created. Add its pools and prices below.", product=product.name),
                "success",
            )
            return redirect(url_for("catalogue.product_detail", sku=product.sku))
    return render_template("catalogue/product_new.html", form=form), _status()


def _product_page(sku: str, status: int = 200, **forms):
    """The product page, with the forms given (fresh ones for the others)."""
    overview = figures.product_overview(db_session(), sku=sku, day=now_utc().date())
    product = overview.product
    forms.setdefault("edit_form", ProductEditForm(prefix="product", obj=product))
    forms.setdefault("meter_form", MeterForm(prefix="meter"))
    forms.setdefault("pool_form", PoolForm(prefix="pool"))
    forms.setdefault("price_form", PriceForm(prefix="price", meters=product.meters))
    return (
        render_template(
            "catalogue/product_detail.html",
            overview=overview,
            product=product,
            figures=overview.figures,
            today=now_utc().date(),
            pool_edit_form=PoolEditForm(),
            **forms,
        ),
        status,
    )


@bp.get("/council/products/<sku>")
@auth.role_required(*COUNCIL)
def product_detail(sku: str):
    """A product: description, launch link, meters, pools, prices and who holds seats."""
    return _product_page(sku)


@bp.post("/council/products/<sku>")
@auth.role_required(Role.COUNCIL_ADMIN)
def product_edit(sku: str):
    """Change the product's name, description or launch link."""
    product = selectors.product_by_sku(db_session(), sku)
    form = ProductEditForm(prefix="product")
    if submitted(form):
        with committed(form) as saved:
            services.product_update(
                db_session(), actor=g.actor, product=product, data=form.service_data()
            )
        if saved:
            flash(_("Product saved."), "success")
            return redirect(url_for("catalogue.product_detail", sku=product.sku))
    return _product_page(sku, 400, edit_form=form)


@bp.post("/council/products/<sku>/meters")
@auth.role_required(Role.COUNCIL_ADMIN)
def meter_new(sku: str):
    """Add a meter to the product."""
    product = selectors.product_by_sku(db_session(), sku)
    form = MeterForm(prefix="meter")
    if submitted(form):
        with committed(form) as saved:
            meter = services.meter_create(
                db_session(), actor=g.actor, product=product, data=form.service_data()
            )
        if saved:
            flash(_("Meter “%(key)s” is added.", key=meter.key), "success")
            return redirect(url_for("catalogue.product_detail", sku=sku, _anchor="meters"))
    return _product_page(sku, 400, meter_form=form)


@bp.post("/council/products/<sku>/pools")
@auth.role_required(Role.COUNCIL_ADMIN)
def pool_new(sku: str):
    """Record seats the council bought; waiting organisations may get seats at once."""
    product = selectors.product_by_sku(db_session(), sku)
    form = PoolForm(prefix="pool")
    if submitted(form):
        with committed(form, aliases=PoolForm.ALIASES) as saved:
            pool = services.pool_create(
                db_session(), actor=g.actor, data=form.service_data(product.sku)
            )
        if saved:
            flash(
                _n(
                    "A pool of %(num)d seat is added.",
                    "A pool of %(num)d seats is added.",
                    pool.capacity,
                ),
                "success",
            )
            return redirect(url_for("catalogue.product_detail", sku=sku, _anchor="pools"))
    return _product_page(sku, 400, pool_form=form)


@bp.post("/council/products/<sku>/pools/<int:pool_id>")
@auth.role_required(Role.COUNCIL_ADMIN)
def pool_edit(sku: str, pool_id: int):
    """Grow or shrink a pool, or move its end; shrinking below reserved seats is refused."""
    product = selectors.product_by_sku(db_session(), sku)
    pool = selectors.pool_of_product(db_session(), product_id=product.id, pool_id=pool_id)
    form = PoolEditForm()
    if not form.validate_on_submit():
        problems = [
            _("%(field)s: %(message)s", field=f.label.text, message=m)
            for f in form
            if f.errors
            for m in f.errors
        ]
        flash(" ".join(problems) or _("Nothing was changed."), "error")
    else:
        # Not forms.committed: the page redirects, so a refusal and its field messages are
        # flashed together.
        try:
            services.pool_update(db_session(), actor=g.actor, pool=pool, data=form.service_data())
        except DomainError as error:
            db_session().rollback()
            messages = [m for ms in error.errors.values() for m in ms]
            flash(" ".join([error.detail, *messages]), "error")
        else:
            db_session().commit()
            flash(
                _n(
                    "The pool now has %(num)d seat until %(day)s.",
                    "The pool now has %(num)d seats until %(day)s.",
                    pool.capacity,
                    day=i18n.date(pool.ends_on),
                ),
                "success",
            )
    return redirect(url_for("catalogue.product_detail", sku=sku, _anchor="pools"))


@bp.post("/council/products/<sku>/prices")
@auth.role_required(Role.COUNCIL_ADMIN)
def price_new(sku: str):
    """Set what members pay in one currency: per seat, or per unit of a meter, flat or tiered."""
    product = selectors.product_by_sku(db_session(), sku)
    form = PriceForm(prefix="price", meters=product.meters)
    if submitted(form):
        # Not forms.committed: PriceForm places the messages of its tier rows itself.
        try:
            price = services.price_create(
                db_session(), actor=g.actor, data=form.service_data(product.sku)
            )
        except DomainError as error:
            db_session().rollback()
            form.show_errors(error)
        else:
            if form.has_errors():  # the service ran only to add its messages to the fields'
                db_session().rollback()
                return _product_page(sku, 400, price_form=form)
            db_session().commit()
            if price.model == "seat":
                added = _("The seat price in %(currency)s is added.", currency=price.currency)
            else:
                added = _("The metered price in %(currency)s is added.", currency=price.currency)
            flash(added, "success")
            return redirect(url_for("catalogue.product_detail", sku=sku, _anchor="prices"))
    return _product_page(sku, 400, price_form=form)


# ---------------------------------------------------------------- members


@bp.get("/catalogue")
@auth.role_required(Role.ORG_ADMIN, Role.MEMBER)
def member_catalogue():
    """The products a person's organisation can take seats of, with search."""
    org = auth.current_organisation()
    search = _search_term()
    entries = figures.member_catalogue(
        db_session(),
        organisation_id=org.id,
        currency=org.currency,
        user_id=current_user.id,
        day=now_utc().date(),
        search=search or None,
    )
    return render_template(
        "catalogue/member_catalogue.html",
        entries=entries,
        org=org,
        q=search,
    )
