"""Browser defences: the security headers every response carries, and CSP nonces.

One ``after_request`` hook (:func:`init_app`) sets them on every response Flask
makes: pages, error pages, static files, the API, SCIM. The entitlement fast
path (:mod:`portal.api.fastpath`) answers without Flask and sends the same
headers from :func:`response_headers`, so both paths answer alike.

* Pages (``text/html``) get a Content-Security-Policy without ``unsafe-inline``:
  scripts and styles come from the portal's own origin (``static/``), and an
  inline ``<script>`` or ``<style>`` must carry ``nonce="{{ csp_nonce() }}"``;
  the nonce is made per response, only when a template asks for one. Inline
  ``style="…"`` attributes are blocked, so templates use classes (and SVG
  presentation attributes for drawn widths and colours).
* Everything else (JSON, problem+json, SCIM, CSV, static files) gets
  ``default-src 'none'``: nothing in it may load or run anything. Invoice PDFs,
  which browsers open inline in their own viewers (some of which a
  ``default-src 'none'`` on the PDF itself has broken), get ``frame-ancestors`` only.
* ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (for older browsers):
  no page can be framed. Also ``nosniff``, a Referrer-Policy, a Permissions-Policy
  that turns off powerful features, ``Cross-Origin-Opener-Policy``, and HSTS in
  production only (development and tests run on plain ``http://127.0.0.1``).

A page whose form may lead to another site (sign-in through an organisation's
identity provider, the card form at Stripe, testing an SSO connection) gets
``form-action 'self' https:``: browsers check ``form-action`` on the redirects that
follow a form's POST. Outside production ``http:`` is allowed there too, for the
local identity provider of the tests and of development.

flask-talisman would do this but is no longer maintained; this is the whole of it.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g, has_request_context, request

# Pages whose forms may be answered with a redirect to another site.
FORMS_LEAVING_THE_SITE = frozenset(
    {
        "auth.login",  # single sign-on: POST /login → the organisation's provider
        "sso.org_sso",  # "Test connection" → the provider
        "payments.payment_method",  # "Add a card" → Stripe Checkout
    }
)

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
)
HSTS = "max-age=31536000; includeSubDomains"
# Anything that is not a page: nothing may load, run or frame it.
CSP_NOT_A_PAGE = "default-src 'none'; frame-ancestors 'none'"
CSP_PDF = "frame-ancestors 'none'"


def csp_nonce() -> str:
    """This response's nonce for an inline ``<script>`` or ``<style>`` (made on first use)."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return nonce


def page_policy(*, nonce: str | None, production: bool, forms_leave_site: bool = False) -> str:
    """The Content-Security-Policy of an HTML page."""
    allowed = f" 'nonce-{nonce}'" if nonce else ""
    form_action = "'self'"
    if forms_leave_site:
        form_action += " https:" if production else " https: http:"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self'{allowed}",
            f"style-src 'self'{allowed}",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
        )
    )


def response_headers(
    *,
    mimetype: str | None,
    production: bool,
    nonce: str | None = None,
    forms_leave_site: bool = False,
) -> list[tuple[str, str]]:
    """The security headers of a response of ``mimetype``."""
    if mimetype == "text/html":
        csp = page_policy(nonce=nonce, production=production, forms_leave_site=forms_leave_site)
    elif mimetype == "application/pdf":
        csp = CSP_PDF
    else:
        csp = CSP_NOT_A_PAGE
    headers = [
        ("Content-Security-Policy", csp),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", PERMISSIONS_POLICY),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if production:
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


def is_production(app: Flask) -> bool:
    """HSTS and the stricter form targets are for production only."""
    return app.config.get("PORTAL_ENV") == "production"


def _add_headers(response: Response) -> Response:
    """``after_request``: the headers of :func:`response_headers`, unless a view set its own."""
    endpoint = request.endpoint if has_request_context() else None
    for name, value in response_headers(
        mimetype=response.mimetype,
        production=is_production(current_app),
        nonce=g.get("csp_nonce"),
        forms_leave_site=endpoint in FORMS_LEAVING_THE_SITE,
    ):
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Register the header hook and the ``csp_nonce()`` template global."""
    app.after_request(_add_headers)
    app.add_template_global(csp_nonce)
