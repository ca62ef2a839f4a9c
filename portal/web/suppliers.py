"""The supplier directory (issue 15): every signed-in person's view of vendors, their service
status, incidents and uptime; the council's status, incident and compliance-document pages.

* ``/suppliers``: the directory, searched and filtered by a GET form (works without JS),
  paginated;
* ``/suppliers/<slug>``: a vendor's profile, standing, service status (a stale status page
  reading says so), uptime over 30 and 90 days, open and recent incidents with their
  updates; its compliance documents for council staff and the vendor's own admins; the
  council admins' forms (service status, status page address, incidents, documents).

The rules are the services' (:mod:`portal.suppliers.services`,
:mod:`portal.suppliers.compliance`); the council's write routes also need a council-wide
reach (a vendor admin changes its own vendor on its portal, :mod:`portal.web.vendor_portal`).
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.forms import committed, confirmation_needed, submitted
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel import policy
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.suppliers import compliance
from portal.suppliers import selectors as supplier_selectors
from portal.suppliers import services as supplier_services
from portal.suppliers.directory import directory_page, filter_choices
from portal.suppliers.directory_forms import DocumentForm, StatusPageForm
from portal.suppliers.selectors import DirectoryFilter
from portal.suppliers.vendor_portal_forms import (
    IMPACT_LABELS,
    SERVICE_STATUS_LABELS,
    SOURCE_LABELS,
    STATE_LABELS,
    IncidentForm,
    IncidentUpdateForm,
    StatusForm,
)

bp = Blueprint("suppliers", __name__)

SEARCH_MAX = 100


def _arg(name: str, length: int) -> str:
    """A query argument, stripped, without control characters, at most ``length`` long."""
    value = request.args.get(name, "")
    return "".join(ch for ch in value if ch.isprintable()).strip()[:length]


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 10 else 1


@bp.get("/suppliers")
@auth.action_required(Action.SUPPLIER_READ)
def directory():
    """Every vendor with its standing, service status, products, uptime and open incidents."""
    filters = DirectoryFilter(
        text=_arg("q", SEARCH_MAX) or None,
        country=_arg("country", 2).upper() or None,
        service_status=_arg("status", 16) or None,
        product=_arg("product", 63).lower() or None,
    )
    session = db_session()
    page = directory_page(session, filters=filters, page=_page_number(), now=now_utc())
    args = {
        key: value
        for key, value in (
            ("q", filters.text),
            ("country", filters.country),
            ("status", filters.service_status),
            ("product", filters.product),
        )
        if value
    }
    return render_template(
        "suppliers/directory.html",
        page=page,
        filters=filters,
        args=args,
        choices=filter_choices(session),
        service_status_labels=SERVICE_STATUS_LABELS,
    )


# ---------------------------------------------------------------- a vendor's page


def _vendor_page(slug: str, *, status: int = 200, **forms) -> ResponseReturnValue:
    session = db_session()
    vendor = vendor_by_slug(session, slug)
    now = now_utc()
    summary = supplier_selectors.vendor_summary(session, vendor, now=now)
    actor = g.actor
    documents = None
    if policy.allowed(actor, Action.VENDOR_DOCUMENT_READ, vendor_id=vendor.id):
        documents = compliance.documents_of(session, actor=actor, vendor=vendor)
    manage = policy.reach_of(actor, Action.VENDOR_UPDATE) == Reach.ANY
    context = {
        "vendor": vendor,
        "summary": summary,
        "documents": documents,
        "today": now.date(),
        "warning_days": compliance.EXPIRY_WARNING_DAYS,
        "kind_label": compliance.kind_label,
        "manage": manage,
        "manage_documents": policy.reach_of(actor, Action.VENDOR_DOCUMENT_MANAGE) == Reach.ANY,
        "service_status_labels": SERVICE_STATUS_LABELS,
        "source_labels": SOURCE_LABELS,
        "state_labels": STATE_LABELS,
        "impact_labels": IMPACT_LABELS,
    }
    if manage:
        context["status_form"] = forms.get("status_form") or StatusForm(
            prefix="status", data={"service_status": vendor.service_status.value}
        )
        context["status_page_form"] = forms.get("status_page_form") or StatusPageForm(
            prefix="page", data={"status_page_url": vendor.status_page_url or ""}
        )
        context["incident_form"] = forms.get("incident_form") or IncidentForm(prefix="incident")
        given = forms.get("update_forms") or {}
        context["update_forms"] = {
            incident.id: given.get(incident.id)
            or IncidentUpdateForm(prefix=f"update-{incident.id}")
            for incident in summary.open_incidents
        }
    return render_template("suppliers/vendor.html", **context), status


@bp.get("/suppliers/<slug>")
@auth.action_required(Action.SUPPLIER_READ)
def vendor(slug: str):
    """One vendor's profile, status, uptime, incidents (and documents, for those who may)."""
    return _vendor_page(slug)


@bp.post("/suppliers/<slug>/service-status")
@auth.action_required(Action.VENDOR_SERVICE_STATUS_SET, Reach.ANY)
def service_status_set(slug: str):
    """The council sets the vendor's service status."""
    vendor = vendor_by_slug(db_session(), slug)
    form = StatusForm(prefix="status")
    if submitted(form):
        with committed(form) as saved:
            changed = supplier_services.set_service_status(
                db_session(), g.actor, vendor, form.service_status.data or "", form.message.data
            )
        if saved:
            label = SERVICE_STATUS_LABELS.get(vendor.service_status.value, vendor.service_status)
            if changed:
                flash(_("The service status is now: %(status)s.", status=label), "success")
            else:
                flash(_("The service status stays: %(status)s.", status=label), "info")
            return redirect(url_for("suppliers.vendor", slug=vendor.slug))
    return _vendor_page(slug, status_form=form, status=400)


@bp.post("/suppliers/<slug>/status-page")
@auth.action_required(Action.VENDOR_UPDATE, Reach.ANY)
def status_page_set(slug: str):
    """The council sets (or clears) the status page the portal reads."""
    vendor = vendor_by_slug(db_session(), slug)
    form = StatusPageForm(prefix="page")
    if submitted(form):
        with committed(form) as saved:
            supplier_services.set_status_page_url(
                db_session(), g.actor, vendor, form.status_page_url.data or None
            )
        if saved:
            if vendor.status_page_url:
                flash(_("The status page address is saved."), "success")
            else:
                flash(_("The status page is no longer read."), "success")
            return redirect(url_for("suppliers.vendor", slug=vendor.slug))
    return _vendor_page(slug, status_page_form=form, status=400)


@bp.post("/suppliers/<slug>/incidents")
@auth.action_required(Action.VENDOR_INCIDENT_MANAGE, Reach.ANY)
def incident_open(slug: str):
    """The council opens an incident of the vendor."""
    vendor = vendor_by_slug(db_session(), slug)
    form = IncidentForm(prefix="incident")
    if submitted(form):
        with committed(form) as saved:
            incident = supplier_services.open_incident(
                db_session(),
                g.actor,
                vendor,
                title=form.title.data or "",
                impact=form.impact.data or "",
                body=form.body.data or "",
            )
        if saved:
            flash(_("Incident “%(title)s” is open.", title=incident.title), "success")
            return redirect(url_for("suppliers.vendor", slug=vendor.slug))
    return _vendor_page(slug, incident_form=form, status=400)


@bp.post("/suppliers/<slug>/incidents/<int:incident_id>/updates")
@auth.action_required(Action.VENDOR_INCIDENT_MANAGE, Reach.ANY)
def incident_update(slug: str, incident_id: int):
    """The council posts an update to an incident (choosing “Resolved” closes it)."""
    vendor = vendor_by_slug(db_session(), slug)
    incident = supplier_selectors.incident_of_vendor(db_session(), vendor, incident_id)
    form = IncidentUpdateForm(prefix=f"update-{incident.id}")
    if submitted(form):
        with committed(form) as saved:
            supplier_services.add_incident_update(
                db_session(), g.actor, incident, **form.service_data()
            )
        if saved:
            if incident.is_open:
                flash(_("The update to “%(title)s” is posted.", title=incident.title), "success")
            else:
                flash(_("“%(title)s” is resolved.", title=incident.title), "success")
            return redirect(url_for("suppliers.vendor", slug=vendor.slug))
    return _vendor_page(slug, update_forms={incident.id: form}, status=400)


# ---------------------------------------------------------------- compliance documents


@bp.route("/suppliers/<slug>/documents/new", methods=["GET", "POST"])
@auth.action_required(Action.VENDOR_DOCUMENT_MANAGE, Reach.ANY)
def document_new(slug: str):
    """Upload a certificate or agreement of the vendor (a PDF)."""
    vendor = vendor_by_slug(db_session(), slug)
    form = DocumentForm()
    if submitted(form):
        upload = form.file.data
        content = None
        if upload:
            try:  # one byte more than allowed is enough to refuse it
                content = upload.read(compliance.MAX_DOCUMENT_BYTES + 1)
            finally:
                upload.close()  # a large upload is a temporary file
        with committed(form) as saved:
            document = compliance.document_upload(
                db_session(),
                actor=g.actor,
                vendor=vendor,
                data=form.service_data(),
                content=content,
                filename=getattr(upload, "filename", None),
            )
        if saved:
            flash(_("“%(title)s” is uploaded.", title=document.title), "success")
            return redirect(url_for("suppliers.vendor", slug=vendor.slug, _anchor="documents"))
    status = 400 if request.method == "POST" else 200
    return render_template("suppliers/document_new.html", vendor=vendor, form=form), status


@bp.get("/suppliers/<slug>/documents/<int:document_id>")
@auth.action_required(Action.VENDOR_DOCUMENT_READ)
def document_download(slug: str, document_id: int):
    """The document's PDF, as a download."""
    session = db_session()
    vendor = vendor_by_slug(session, slug)
    document = compliance.document_of(
        session, actor=g.actor, vendor=vendor, document_id=document_id, content=True
    )
    return Response(
        document.content,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{document.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.post("/suppliers/<slug>/documents/<int:document_id>/delete")
@auth.action_required(Action.VENDOR_DOCUMENT_MANAGE, Reach.ANY)
def document_delete(slug: str, document_id: int):
    """Remove a document (asks first)."""
    session = db_session()
    vendor = vendor_by_slug(session, slug)
    document = compliance.document_of(
        session, actor=g.actor, vendor=vendor, document_id=document_id
    )
    back = url_for("suppliers.vendor", slug=vendor.slug, _anchor="documents")
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was removed. Try again."), "error")
        return redirect(back)
    page = confirmation_needed(
        title=_("Remove “%(title)s”?", title=document.title),
        consequences=[
            _("The PDF is deleted; the audit log keeps its title, dates and checksum."),
        ],
        confirm_label=_("Remove the document"),
        cancel_url=back,
    )
    if page is not None:
        return page
    title = document.title
    with committed(form) as saved:
        compliance.document_delete(session, actor=g.actor, document=document)
    if saved:
        flash(_("“%(title)s” is removed.", title=title), "success")
    return redirect(back)
