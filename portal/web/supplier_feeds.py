"""Machine-readable feeds of suppliers' incidents, per vendor and for all (issue 15).

* ``/feeds/suppliers.json`` and ``/feeds/suppliers.atom``: every vendor's incidents;
* ``/feeds/suppliers/<slug>.json`` and ``/feeds/suppliers/<slug>.atom``: one vendor's,
  with its service status.

JSON is a JSON Feed 1.1 (https://jsonfeed.org/version/1.1) whose items carry the incident's
machine fields under ``_incident`` (and the feed the vendors' status under ``_vendors``);
Atom is RFC 4287, written with :mod:`xml.etree.ElementTree` (which escapes text; characters
XML cannot hold are dropped first). Items are the open incidents and those resolved in the
last :data:`FEED_DAYS` days, most recently changed first, at most :data:`FEED_ITEMS`.

Readable by any signed-in person (``supplier.read``) and by any API token
(``Authorization: Bearer …``, for feed readers and scripts); nobody else (a browser is sent
to sign in, a bad token gets 401).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.routing import BuildError

from portal import i18n
from portal.api.services import token_authenticate
from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug, vendors_list
from portal.db import bind_scope, db_session
from portal.identity import auth
from portal.kernel import policy
from portal.kernel.actor import ActorKind
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.suppliers import selectors
from portal.suppliers.models import Incident

bp = Blueprint("supplier_feeds", __name__)

FEED_DAYS = 90
FEED_ITEMS = 50
ATOM = "http://www.w3.org/2005/Atom"
# XML 1.0 forbids most C0 controls (and lone surrogates, which text here cannot hold).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _state_label(state: str) -> str:
    labels = {
        "investigating": _("investigating"),
        "identified": _("identified"),
        "monitoring": _("monitoring"),
        "resolved": _("resolved"),
    }
    return labels.get(state, state)


def _reader_allowed() -> ResponseReturnValue | None:
    """None when a signed-in person or a live API token may read suppliers; else the answer."""
    if current_user.is_authenticated:
        actor = auth.current_actor()
        if actor.kind != ActorKind.PERSON or not policy.may(actor, Action.SUPPLIER_READ):
            abort(403)
        g.actor = actor
        return None
    header = request.headers.get("Authorization", "")
    scheme, _sep, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        session = db_session()
        bind_scope(session, Scope.council())  # a token of any organisation is looked up
        token = token_authenticate(session, credentials.strip())
        session.rollback()  # a feed read notes nothing (not even the token's time of use)
        if token is None:
            response = Response(
                json.dumps({"error": "The token is unknown, revoked or expired."}),
                status=401,
                mimetype="application/json",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="portal", error="invalid_token"'
            return response
        return None
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _vendor_url(slug: str, anchor: str | None = None) -> str | None:
    try:
        return url_for("suppliers.vendor", slug=slug, _external=True, _anchor=anchor)
    except BuildError:  # the directory's page is not there (yet)
        return None


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def _clean(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


def _item_title(incident: Incident) -> str:
    return _(
        "%(vendor)s: %(title)s (%(state)s)",
        vendor=incident.vendor.name,
        title=incident.title,
        state=_state_label(incident.state.value),
    )


def _item_text(incident: Incident) -> str:
    return "\n\n".join(
        f"{_iso(update.created_at)} · {_state_label(update.state.value)} · {update.author}\n"
        f"{update.body}"
        for update in incident.updates
    )


def _incidents(vendor: Vendor | None) -> list[Incident]:
    return selectors.recent_incidents(
        db_session(),
        vendor.id if vendor else None,
        now=now_utc(),
        days=FEED_DAYS,
        limit=FEED_ITEMS,
    )


def _vendors_status(vendors: Sequence[Vendor]) -> list[dict[str, Any]]:
    now = now_utc()
    return [
        {
            "slug": v.slug,
            "name": v.name,
            "service_status": v.service_status.value,
            "service_status_message": v.service_status_message,
            "service_status_at": _iso(v.service_status_at),
            "status_stale": selectors.reading_stale(v, now=now),
        }
        for v in vendors
    ]


def _json_feed(vendor: Vendor | None) -> Response:
    incidents = _incidents(vendor)
    if vendor is None:
        title = _("Supplier incidents")
        home = url_for("suppliers.directory", _external=True) if _has_directory() else None
        vendors = vendors_list(db_session())
    else:
        title = _("%(vendor)s: incidents", vendor=vendor.name)
        home = _vendor_url(vendor.slug)
        vendors = [vendor]
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": title,
        "feed_url": request.base_url,
        "language": i18n.language(),
        "items": [
            {
                "id": f"incident-{incident.id}",
                "url": _vendor_url(incident.vendor.slug, f"incident-{incident.id}"),
                "title": _item_title(incident),
                "content_text": _item_text(incident),
                "date_published": _iso(incident.opened_at),
                "date_modified": _iso(incident.updated_at),
                "_incident": {
                    "id": incident.id,
                    "vendor": incident.vendor.slug,
                    "title": incident.title,
                    "impact": incident.impact.value,
                    "state": incident.state.value,
                    "source": incident.source.value,
                    "opened_at": _iso(incident.opened_at),
                    "resolved_at": _iso(incident.resolved_at),
                    "updates": [
                        {
                            "state": u.state.value,
                            "impact": u.impact.value,
                            "body": u.body,
                            "author": u.author,
                            "created_at": _iso(u.created_at),
                        }
                        for u in incident.updates
                    ],
                },
            }
            for incident in incidents
        ],
        "_vendors": _vendors_status(vendors),
    }
    if home:
        document["home_page_url"] = home
    document = {k: v for k, v in document.items() if v is not None}
    response = Response(
        json.dumps(document, ensure_ascii=False, indent=1),
        mimetype="application/feed+json",
    )
    return _cacheable(response)


def _has_directory() -> bool:
    try:
        url_for("suppliers.directory")
    except BuildError:
        return False
    return True


def _atom_feed(vendor: Vendor | None) -> Response:
    incidents = _incidents(vendor)
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = _clean(text)
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    if vendor is None:
        sub(feed, "title", _("Supplier incidents"))
        sub(feed, "id", f"{request.host_url}feeds/suppliers")
        home = url_for("suppliers.directory", _external=True) if _has_directory() else None
    else:
        sub(feed, "title", _("%(vendor)s: incidents", vendor=vendor.name))
        sub(feed, "id", f"{request.host_url}feeds/suppliers/{vendor.slug}")
        home = _vendor_url(vendor.slug)
        sub(
            feed,
            "subtitle",
            _("Service status: %(status)s", status=vendor.service_status.value),
        )
    updated = max((i.updated_at for i in incidents), default=None) or now_utc()
    sub(feed, "updated", _iso(updated))
    sub(feed, "link", rel="self", href=request.base_url, type="application/atom+xml")
    if home:
        sub(feed, "link", rel="alternate", href=home, type="text/html")
    author = sub(feed, "author")
    sub(author, "name", _("The council"))
    for incident in incidents:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{request.host_url}feeds/incidents/{incident.id}")
        sub(entry, "title", _item_title(incident))
        sub(entry, "published", _iso(incident.opened_at))
        sub(entry, "updated", _iso(incident.updated_at))
        link = _vendor_url(incident.vendor.slug, f"incident-{incident.id}")
        if link:
            sub(entry, "link", rel="alternate", href=link, type="text/html")
        sub(entry, "category", term=f"impact:{incident.impact.value}")
        sub(entry, "category", term=f"state:{incident.state.value}")
        sub(entry, "category", term=f"vendor:{incident.vendor.slug}")
        sub(entry, "content", _item_text(incident), type="text")
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return _cacheable(Response(body, mimetype="application/atom+xml"))


def _cacheable(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, max-age=60"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/feeds/suppliers.json")
def all_json() -> ResponseReturnValue:
    """Every vendor's recent incidents, as a JSON Feed."""
    return _reader_allowed() or _json_feed(None)


@bp.get("/feeds/suppliers.atom")
def all_atom() -> ResponseReturnValue:
    """Every vendor's recent incidents, as Atom."""
    return _reader_allowed() or _atom_feed(None)


@bp.get("/feeds/suppliers/<slug>.json")
def vendor_json(slug: str) -> ResponseReturnValue:
    """One vendor's recent incidents and service status, as a JSON Feed."""
    return _reader_allowed() or _json_feed(vendor_by_slug(db_session(), slug))


@bp.get("/feeds/suppliers/<slug>.atom")
def vendor_atom(slug: str) -> ResponseReturnValue:
    """One vendor's recent incidents, as Atom."""
    return _reader_allowed() or _atom_feed(vendor_by_slug(db_session(), slug))
